/*
 * The hand-over message (agent/handover.h): its encoder and its one
 * checked parser.
 */
#include "agent/handover.h"
#include "agent/partition.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PAGE PARLEY_PAGE_SIZE

unsigned ho_sections(enum grant_dir dir)
{
	return 1 + 2 * (dir == GRANT_BOTH ? 2 : 1);
}

/* ---- encoding ---------------------------------------------------------- */

struct wbuf {
	uint8_t *b;
	size_t n, cap;
	bool oom;
};

static void put(struct wbuf *w, const void *p, size_t n)
{
	if (w->oom)
		return;
	if (w->n + n > w->cap) {
		size_t c = w->cap ? w->cap : 4096;
		while (c < w->n + n)
			c *= 2;
		uint8_t *nb = realloc(w->b, c);
		if (!nb) {
			w->oom = true;
			return;
		}
		w->b = nb;
		w->cap = c;
	}
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void put_u8(struct wbuf *w, uint8_t v) { put(w, &v, 1); }

static void put_u16(struct wbuf *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	put(w, b, 2);
}

static void put_u32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4];
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(w, b, 4);
}

static void put_u64(struct wbuf *w, uint64_t v)
{
	put_u32(w, (uint32_t)v);
	put_u32(w, (uint32_t)(v >> 32));
}

static void put_str(struct wbuf *w, const char *s)
{
	size_t n = strlen(s);
	put_u16(w, (uint16_t)n);
	put(w, s, n);
}

static void put_measure(struct wbuf *w, const struct measure *m)
{
	/* A count past its array (only a test makes one) is written with
	 * the entries there are: the parser must stop at the count. */
	put_u32(w, m->nfile);
	for (unsigned i = 0; i < m->nfile && i < PARLEY_CONFIG_FILES_MAX; i++) {
		put_str(w, m->file[i].name);
		put_u64(w, m->file[i].off);
		put_u64(w, m->file[i].size);
		put(w, m->file[i].digest, MEASURE_DIGEST);
	}
	put_u32(w, m->nseg);
	for (unsigned i = 0; i < m->nseg && i < MEASURE_SEGS_MAX; i++) {
		put_u64(w, m->seg[i].gpa);
		put_u64(w, m->seg[i].size);
		put(w, m->seg[i].digest, MEASURE_DIGEST);
	}
	put(w, m->digest, MEASURE_DIGEST);
	put_u64(w, m->npages);
	if (m->npages)
		put(w, m->page, m->npages * MEASURE_DIGEST);
	for (uint64_t i = 0; i < (m->npages + 63) / 64; i++)
		put_u64(w, m->dirty[i]);
}

static void put_part(struct wbuf *w, const struct ho_part *p)
{
	put_str(w, p->name);
	put_u32(w, p->state);
	put_u32(w, (uint32_t)p->pid);
	put_u32(w, p->vmm_uid);
	put_u32(w, p->vcpus);
	put_u32(w, p->backend);
	put_u32(w, p->caps);
	put_u64(w, p->ram_size);
	put_u64(w, p->cfg_size);
	put_u64(w, p->entry);
	put_u64(w, p->image_hi);
	put_u32(w, p->open_pending);
	put_u32(w, p->nrange);
	for (unsigned i = 0; i < p->nrange && i < HO_RANGES_MAX; i++) {
		put_u64(w, p->range[i].gpa);
		put_u64(w, p->range[i].size);
		put_u32(w, p->range[i].flags);
	}
	put_str(w, p->vmm_version);
	put_u8(w, p->quarantined);
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		put_u16(w, p->gen[i]);
	put_u64(w, p->win_cursor);
	put_str(w, p->blame);
	put_measure(w, &p->measure);
}

static void put_chan(struct wbuf *w, const struct ho_chan *c)
{
	put_u32(w, c->id);
	put_str(w, c->g.channel);
	put_str(w, c->g.a);
	put_str(w, c->g.b);
	put_u32(w, (uint32_t)c->g.dir);
	put_u64(w, c->g.ring_bytes);
	put_u8(w, c->g.require_integrity);
	put_u8(w, c->svc);
	put_u8(w, c->revoking);
	put_u8(w, c->peer_gone);
	put_u32(w, c->revoke_left_ms);
	for (int s = 0; s < 2; s++) {
		const struct ho_end *e = &c->end[s];
		put_u32(w, (uint32_t)e->part);
		put_u8(w, e->mapped);
		put_u8(w, e->unmapping);
		put_u32(w, e->slot);
		put_u64(w, e->handle);
		put_u64(w, e->gpa);
	}
}

int handover_encode(const struct handover *h, uint8_t **out, size_t *len,
		    struct parley_err *err)
{
	struct wbuf w = { 0 };
	put(&w, HO_MAGIC, 8);
	put_u32(&w, HO_VERSION);
	put_u32(&w, 0);
	put_str(&w, h->old_version);
	put_str(&w, h->old_exe);
	put_str(&w, h->vmm_path);
	put_str(&w, h->vmm_version);
	put_u64(&w, h->pause_ns);
	put_u32(&w, h->next_chan_id);
	put_u32(&w, h->policy_len);
	if (h->policy_len)
		put(&w, h->policy, h->policy_len);
	put_u32(&w, h->npart);
	for (unsigned i = 0; i < h->npart; i++)
		put_part(&w, &h->part[i]);
	put_u32(&w, h->nchan);
	for (unsigned i = 0; i < h->nchan; i++)
		put_chan(&w, &h->chan[i]);
	put_u32(&w, h->noffer);
	for (unsigned i = 0; i < h->noffer; i++) {
		put_u32(&w, h->offer[i].part);
		put_str(&w, h->offer[i].name);
	}
	put_u32(&w, h->npending);
	for (unsigned i = 0; i < h->npending; i++)
		put_u32(&w, h->pending[i]);
	put_u32(&w, h->nfds);
	if (w.oom) {
		free(w.b);
		return perr(err, -ENOMEM, "out of memory");
	}
	if (w.n > HO_BYTES_MAX) {
		free(w.b);
		return perr(err, -E2BIG, "hand-over message of %zu bytes", w.n);
	}
	*out = w.b;
	*len = w.n;
	return 0;
}

/* ---- parsing ----------------------------------------------------------- */

struct rbuf {
	const uint8_t *b;
	size_t n, off;
	struct parley_err *err;
	int rc;                     /* the first error */
};

static int bad(struct rbuf *r, const char *what)
{
	if (r->rc == 0)
		r->rc = perr(r->err, -EBADMSG, "hand-over message at byte %zu: "
			     "%s", r->off, what);
	return r->rc;
}

static const uint8_t *take(struct rbuf *r, size_t n)
{
	if (r->rc || n > r->n - r->off) {
		bad(r, "truncated");
		return NULL;
	}
	const uint8_t *p = r->b + r->off;
	r->off += n;
	return p;
}

static uint8_t get_u8(struct rbuf *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

static bool get_bool(struct rbuf *r)
{
	uint8_t v = get_u8(r);
	if (v > 1)
		bad(r, "a flag is neither 0 nor 1");
	return v == 1;
}

static uint16_t get_u16(struct rbuf *r)
{
	const uint8_t *p = take(r, 2);
	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint32_t get_u32(struct rbuf *r)
{
	const uint8_t *p = take(r, 4);
	return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 |
			   (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
		 : 0;
}

static uint64_t get_u64(struct rbuf *r)
{
	uint64_t lo = get_u32(r);
	return lo | (uint64_t)get_u32(r) << 32;
}

/* A string into out[cap]: shorter than cap, no NUL or control byte. */
static void get_str(struct rbuf *r, char *out, size_t cap, bool nonempty,
		    const char *what)
{
	uint16_t n = get_u16(r);
	out[0] = 0;
	if (r->rc)
		return;
	if (n >= cap) {
		bad(r, what);
		return;
	}
	const uint8_t *p = take(r, n);
	if (!p)
		return;
	for (uint16_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f) {
			bad(r, what);
			return;
		}
	memcpy(out, p, n);
	out[n] = 0;
	if (nonempty && !n)
		bad(r, what);
}

static bool page_aligned(uint64_t v) { return (v & (PAGE - 1)) == 0; }

static void get_measure(struct rbuf *r, struct measure *m, uint64_t cfg_size,
			uint64_t ram_size)
{
	m->nfile = get_u32(r);
	if (m->nfile > PARLEY_CONFIG_FILES_MAX)
		bad(r, "too many measured files");
	for (unsigned i = 0; !r->rc && i < m->nfile; i++) {
		struct measure_file *f = &m->file[i];
		get_str(r, f->name, sizeof(f->name), true, "measured file name");
		f->off = get_u64(r);
		f->size = get_u64(r);
		const uint8_t *d = take(r, MEASURE_DIGEST);
		if (d)
			memcpy(f->digest, d, MEASURE_DIGEST);
		if (f->off > cfg_size || f->size > cfg_size - f->off)
			bad(r, "measured file outside the config region");
	}
	m->nseg = get_u32(r);
	if (m->nseg > MEASURE_SEGS_MAX)
		bad(r, "too many measured segments");
	for (unsigned i = 0; !r->rc && i < m->nseg; i++) {
		struct measure_seg *s = &m->seg[i];
		s->gpa = get_u64(r);
		s->size = get_u64(r);
		const uint8_t *d = take(r, MEASURE_DIGEST);
		if (d)
			memcpy(s->digest, d, MEASURE_DIGEST);
		if (s->gpa > ram_size || s->size > ram_size - s->gpa)
			bad(r, "measured segment outside RAM");
	}
	const uint8_t *d = take(r, MEASURE_DIGEST);
	if (d)
		memcpy(m->digest, d, MEASURE_DIGEST);
	m->npages = get_u64(r);
	if (r->rc)
		return;
	if (m->npages != cfg_size / PAGE)
		return (void)bad(r, "page count is not the config region's");
	uint64_t words = (m->npages + 63) / 64;
	const uint8_t *pg = take(r, m->npages * MEASURE_DIGEST);
	if (!pg || !(m->page = malloc(m->npages ? m->npages * MEASURE_DIGEST
						: 1)) ||
	    !(m->dirty = calloc(words ? words : 1, sizeof(uint64_t))))
		return (void)bad(r, "out of memory or truncated");
	memcpy(m->page, pg, m->npages * MEASURE_DIGEST);
	for (uint64_t i = 0; i < words; i++)
		m->dirty[i] = get_u64(r);
	if (!r->rc && (m->npages & 63) &&
	    (m->dirty[words - 1] >> (m->npages & 63)))
		bad(r, "dirty bits past the config region");
}

static void get_part(struct rbuf *r, struct ho_part *p)
{
	get_str(r, p->name, sizeof(p->name), true, "partition name");
	p->state = get_u32(r);
	p->pid = (int32_t)get_u32(r);
	p->vmm_uid = get_u32(r);
	p->vcpus = get_u32(r);
	p->backend = get_u32(r);
	p->caps = get_u32(r);
	p->ram_size = get_u64(r);
	p->cfg_size = get_u64(r);
	p->entry = get_u64(r);
	p->image_hi = get_u64(r);
	p->open_pending = get_u32(r);
	p->nrange = get_u32(r);
	if (r->rc)
		return;
	if (p->state != PART_RUNNING && p->state != PART_PAUSED)
		bad(r, "partition state");
	else if (p->pid <= 0)
		bad(r, "vmm pid");
	else if (p->vcpus < 1 || p->vcpus > PARLEY_VCPUS_MAX ||
		 (p->open_pending >> p->vcpus))
		bad(r, "vCPU count or pending opens");
	else if (p->backend != CTL_BACKEND_KVM &&
		 p->backend != CTL_BACKEND_PROCESS)
		bad(r, "backend");
	else if (p->caps & ~SPEC_CAP_UPDATE)
		bad(r, "unknown capability");
	else if (!p->ram_size || !page_aligned(p->ram_size) ||
		 p->ram_size > PARLEY_CHAN_BASE || !page_aligned(p->cfg_size) ||
		 p->cfg_size / PAGE > HO_CFG_PAGES_MAX)
		bad(r, "memory sizes");
	else if (p->nrange > HO_RANGES_MAX)
		bad(r, "too many image ranges");
	for (unsigned i = 0; !r->rc && i < p->nrange; i++) {
		p->range[i].gpa = get_u64(r);
		p->range[i].size = get_u64(r);
		p->range[i].flags = get_u32(r);
		if (p->range[i].gpa > p->ram_size ||
		    p->range[i].size > p->ram_size - p->range[i].gpa)
			bad(r, "image range outside RAM");
	}
	get_str(r, p->vmm_version, sizeof(p->vmm_version), false,
		"vmm version");
	p->quarantined = get_bool(r);
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		p->gen[i] = get_u16(r);
	p->win_cursor = get_u64(r);
	if (p->win_cursor > PARLEY_CHAN_SIZE)
		bad(r, "window cursor");
	get_str(r, p->blame, sizeof(p->blame), false, "blame");
	if (!r->rc)
		get_measure(r, &p->measure, p->cfg_size, p->ram_size);
}

static bool pow2_ring(uint64_t v)
{
	return v >= 4096 && v <= (16u << 20) && (v & (v - 1)) == 0;
}

/* One end against its partition: the right name, a slot it holds under
 * the generation the partition is at. */
static void check_end(struct rbuf *r, const struct handover *h,
		      const struct ho_chan *c, int s)
{
	const struct ho_end *e = &c->end[s];
	const char *want = s ? c->g.b : c->g.a;
	if (e->part < -1 || e->part >= (int32_t)h->npart)
		return (void)bad(r, "channel end names no partition");
	if ((e->mapped || e->unmapping) && e->part < 0)
		return (void)bad(r, "mapped end without a partition");
	if (e->unmapping && !e->mapped)
		return (void)bad(r, "unmapping an end that is not mapped");
	if (e->part >= 0 && strcmp(h->part[e->part].name, want))
		return (void)bad(r, "channel end is not its grant's partition");
	if (!e->mapped)
		return;
	const struct ho_part *p = &h->part[e->part];
	if (e->slot >= CTL_WIN_SLOTS ||
	    e->handle != ((uint64_t)p->gen[e->slot] << 16 | e->slot) ||
	    !p->gen[e->slot])
		return (void)bad(r, "channel handle");
	uint64_t size = PAGE * (1 + (c->g.dir == GRANT_BOTH ? 2 : 1) * 2) +
			c->g.ring_bytes * (c->g.dir == GRANT_BOTH ? 2 : 1);
	if (!page_aligned(e->gpa) || e->gpa < PARLEY_CHAN_BASE ||
	    e->gpa - PARLEY_CHAN_BASE > PARLEY_CHAN_SIZE ||
	    size > PARLEY_CHAN_BASE + PARLEY_CHAN_SIZE - e->gpa)
		bad(r, "channel window");
}

static void get_chan(struct rbuf *r, struct handover *h, struct ho_chan *c)
{
	c->id = get_u32(r);
	get_str(r, c->g.channel, sizeof(c->g.channel), true, "channel name");
	get_str(r, c->g.a, sizeof(c->g.a), true, "channel endpoint");
	get_str(r, c->g.b, sizeof(c->g.b), true, "channel endpoint");
	uint32_t dir = get_u32(r);
	c->g.ring_bytes = get_u64(r);
	c->g.require_integrity = get_bool(r);
	c->svc = get_bool(r);
	c->revoking = get_bool(r);
	c->peer_gone = get_bool(r);
	c->revoke_left_ms = get_u32(r);
	for (int s = 0; s < 2; s++) {
		struct ho_end *e = &c->end[s];
		e->part = (int32_t)get_u32(r);
		e->mapped = get_bool(r);
		e->unmapping = get_bool(r);
		e->slot = get_u32(r);
		e->handle = get_u64(r);
		e->gpa = get_u64(r);
	}
	if (r->rc)
		return;
	if (dir > GRANT_BOTH)
		return (void)bad(r, "channel direction");
	c->g.dir = (enum grant_dir)dir;
	if (!pow2_ring(c->g.ring_bytes))
		return (void)bad(r, "ring size");
	if (!c->id || c->id >= h->next_chan_id)
		return (void)bad(r, "channel id");
	if (c->revoke_left_ms > 60000)
		return (void)bad(r, "revocation deadline");
	c->nsec = ho_sections(c->g.dir);
	for (int s = 0; s < 2 && !r->rc; s++)
		check_end(r, h, c, s);
}

/* Channel ids unique, and no slot of a partition held twice. */
static void check_unique(struct rbuf *r, const struct handover *h)
{
	for (unsigned i = 0; !r->rc && i < h->nchan; i++) {
		for (unsigned k = i + 1; k < h->nchan; k++)
			if (h->chan[i].id == h->chan[k].id)
				return (void)bad(r, "channel id twice");
		for (int s = 0; s < 2; s++) {
			const struct ho_end *e = &h->chan[i].end[s];
			if (!e->mapped)
				continue;
			for (unsigned k = i; k < h->nchan; k++)
				for (int t = k == i ? s + 1 : 0; t < 2; t++) {
					const struct ho_end *o =
						&h->chan[k].end[t];
					if (o->mapped && o->part == e->part &&
					    o->slot == e->slot)
						return (void)bad(r, "window "
							"slot held twice");
				}
		}
	}
}

static void *alloc_n(struct rbuf *r, uint32_t n, size_t each)
{
	void *p = calloc(n ? n : 1, each);
	if (!p)
		bad(r, "out of memory");
	return p;
}

static void parse_body(struct rbuf *r, struct handover *h, unsigned nfds)
{
	const uint8_t *m = take(r, 8);
	if (!m || memcmp(m, HO_MAGIC, 8))
		return (void)bad(r, "not a hand-over message");
	if (get_u32(r) != HO_VERSION)
		return (void)bad(r, "hand-over version this agent does not "
				 "speak");
	if (get_u32(r) != 0)
		return (void)bad(r, "unknown flags");
	get_str(r, h->old_version, sizeof(h->old_version), true, "version");
	get_str(r, h->old_exe, sizeof(h->old_exe), false, "old binary path");
	get_str(r, h->vmm_path, sizeof(h->vmm_path), false, "vmm path");
	get_str(r, h->vmm_version, sizeof(h->vmm_version), false,
		"vmm version");
	h->pause_ns = get_u64(r);
	h->next_chan_id = get_u32(r);
	h->policy_len = get_u32(r);
	if (r->rc)
		return;
	if (h->policy_len > GRANT_FILE_MAX)
		return (void)bad(r, "policy too large");
	const uint8_t *pol = take(r, h->policy_len);
	if (!pol || !(h->policy = alloc_n(r, h->policy_len + 1, 1)))
		return;
	memcpy(h->policy, pol, h->policy_len);
	h->npart = get_u32(r);
	if (h->npart > CM_PARTS_MAX)
		return (void)bad(r, "too many partitions");
	if (!(h->part = alloc_n(r, h->npart, sizeof(*h->part))))
		return;
	unsigned fd = 0;
	for (unsigned i = 0; !r->rc && i < h->npart; i++) {
		get_part(r, &h->part[i]);
		for (unsigned k = 0; !r->rc && k < i; k++)
			if (!strcmp(h->part[i].name, h->part[k].name))
				bad(r, "partition named twice");
		h->part[i].fd = fd;
		fd += HO_FDS_PER_PART;
	}
	if (r->rc)
		return;
	h->nchan = get_u32(r);
	if (h->nchan > CM_CHANS_MAX)
		return (void)bad(r, "too many channels");
	if (!(h->chan = alloc_n(r, h->nchan, sizeof(*h->chan))))
		return;
	for (unsigned i = 0; !r->rc && i < h->nchan; i++) {
		get_chan(r, h, &h->chan[i]);
		h->chan[i].fd = fd;
		fd += 2 + 2 * h->chan[i].nsec;
	}
	if (r->rc)
		return;
	h->noffer = get_u32(r);
	if (h->noffer > CM_OFFERS_MAX)
		return (void)bad(r, "too many service offers");
	if (!(h->offer = alloc_n(r, h->noffer, sizeof(*h->offer))))
		return;
	for (unsigned i = 0; !r->rc && i < h->noffer; i++) {
		h->offer[i].part = get_u32(r);
		get_str(r, h->offer[i].name, sizeof(h->offer[i].name), true,
			"service name");
		if (h->offer[i].part >= h->npart)
			bad(r, "offer of no partition");
	}
	if (r->rc)
		return;
	h->npending = get_u32(r);
	if (h->npending > CM_CHANS_MAX)
		return (void)bad(r, "too many pending calls");
	if (!(h->pending = alloc_n(r, h->npending, sizeof(*h->pending))))
		return;
	for (unsigned i = 0; !r->rc && i < h->npending; i++) {
		h->pending[i] = get_u32(r);
		if (h->pending[i] >= h->nchan || !h->chan[h->pending[i]].svc)
			bad(r, "pending call of no service channel");
	}
	h->nfds = get_u32(r);
	if (r->rc)
		return;
	if (h->nfds != fd || nfds != fd)
		return (void)bad(r, "descriptor count differs from what the "
				 "message needs");
	if (r->off != r->n)
		return (void)bad(r, "bytes after the end");
	check_unique(r, h);
}

int handover_parse(const uint8_t *buf, size_t len, unsigned nfds,
		   struct handover *h, struct parley_err *err)
{
	memset(h, 0, sizeof(*h));
	struct rbuf r = { .b = buf, .n = len, .err = err };
	if (len > HO_BYTES_MAX)
		return perr(err, -E2BIG, "hand-over message of %zu bytes", len);
	parse_body(&r, h, nfds);
	if (r.rc)
		handover_free(h);
	return r.rc;
}

void handover_free(struct handover *h)
{
	for (unsigned i = 0; h->part && i < h->npart; i++)
		measure_free(&h->part[i].measure);
	free(h->part);
	free(h->chan);
	free(h->offer);
	free(h->pending);
	free(h->policy);
	memset(h, 0, sizeof(*h));
}
