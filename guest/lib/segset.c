/* Segment sets in the SDK (parley/segsdk.h). Freestanding: built into the
 * partition SDK and, with the host compiler, into tests and fuzz targets. */
#include <parley/segsdk.h>

#define PAGE PARLEY_SEGSET_PAGE

static uint64_t load_acq(const volatile uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_rel(volatile uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Byte copies to and from shared memory: each byte read exactly once. */
static void copy_in(void *dst, const volatile void *src, uint64_t n)
{
	uint8_t *d = dst;
	const volatile uint8_t *s = src;
	for (uint64_t i = 0; i < n; i++)
		d[i] = s[i];
}

static void copy_out(volatile void *dst, const void *src, uint64_t n)
{
	volatile uint8_t *d = dst;
	const uint8_t *s = src;
	for (uint64_t i = 0; i < n; i++)
		d[i] = s[i];
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* NUL-terminated within cap, 1..cap-1 of [A-Za-z0-9_.-], not starting
 * with '.' or '-' (common/jsonv.c's rule for names); "" only if empty_ok. */
static int name_ok(const char *s, unsigned cap, int empty_ok)
{
	unsigned i = 0;
	for (; i < cap && s[i]; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '_' ||
			 ((c == '.' || c == '-') && i > 0);
		if (!ok)
			return 0;
	}
	if (i == cap)
		return 0;
	for (unsigned j = i; j < cap; j++)  /* no stray bytes after it */
		if (s[j])
			return 0;
	return i > 0 || empty_ok;
}

static int zero(const void *p, unsigned n)
{
	const uint8_t *b = p;
	for (unsigned i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

static int pow2_ring(uint64_t n)
{
	return n >= PARLEY_SEG_RING_MIN && n <= PARLEY_SEG_RING_MAX &&
	       (n & (n - 1)) == 0;
}

static int check_member(const struct parley_segtab *t, uint32_t i)
{
	const struct parley_segset_member *m = &t->member[i];
	if (!name_ok(m->name, sizeof(m->name), 0) || m->id != i ||
	    m->state > PARLEY_MEMBER_REMOVED ||
	    m->pos_seg != 1 + t->hdr.ndecl + i || m->reserved)
		return 0;
	for (uint32_t j = 0; j < i; j++)
		if (streq(t->member[j].name, m->name))
			return 0;
	return 1;
}

static int check_seg(const struct parley_segtab *t, uint32_t i,
		     uint64_t *next)
{
	const struct parley_segset_seg *g = &t->seg[i];
	uint32_t nm = t->hdr.nmembers;
	uint64_t all = nm == 64 ? ~0ull : (1ull << nm) - 1;
	if (g->number != i || g->offset != *next || g->size == 0 ||
	    g->size % PAGE || g->size > PARLEY_SEGSET_WINDOW_MAX ||
	    (g->state != PARLEY_SEG_LIVE && g->state != PARLEY_SEG_REVOKED) ||
	    g->reserved || (g->readers & ~all) ||
	    !name_ok(g->name, sizeof(g->name), 0))
		return 0;
	int is_queue = g->kind == PARLEY_SEG_QUEUE;
	if (!name_ok(g->queue, sizeof(g->queue), !is_queue) ||
	    (!is_queue && g->queue[0]))
		return 0;
	if (g->writer != PARLEY_SEG_WRITER_AGENT &&
	    (g->writer >= nm || ((g->readers >> g->writer) & 1)))
		return 0;
	if (i == 0) {
		if (g->kind != PARLEY_SEG_TABLE || g->size != t->hdr.table_size ||
		    g->writer != PARLEY_SEG_WRITER_AGENT || g->readers != all)
			return 0;
	} else if (i <= t->hdr.ndecl) {
		if (g->kind == PARLEY_SEG_AREA) {
			if (g->size > PARLEY_SEG_AREA_MAX)
				return 0;
		} else if (g->kind == PARLEY_SEG_PIPE || is_queue) {
			if (!pow2_ring(g->size - PAGE) ||
			    (is_queue && g->writer == PARLEY_SEG_WRITER_AGENT))
				return 0;
		} else {
			return 0;
		}
	} else {
		if (g->kind != PARLEY_SEG_POS || g->size != PAGE ||
		    g->writer != (uint32_t)(i - 1 - t->hdr.ndecl))
			return 0;
	}
	for (uint32_t j = 0; j < i; j++)
		if (streq(t->seg[j].name, g->name))
			return 0;
	*next = g->offset + g->size;
	return 1;
}

int parley_segtab_check(const struct parley_segtab *t, uint64_t len)
{
	const struct parley_segset_hdr *h = &t->hdr;
	if (h->magic != PARLEY_SEGSET_MAGIC ||
	    h->version != PARLEY_SEGSET_VERSION || h->hdr_size != sizeof(*h) ||
	    (h->epoch & 1) || h->reserved0 || !zero(h->reserved,
						    sizeof(h->reserved)) ||
	    !name_ok(h->name, sizeof(h->name), 0))
		return PARLEY_SEG_CORRUPT;
	if (h->nmembers < PARLEY_SEGSET_MEMBERS_MIN ||
	    h->nmembers > PARLEY_SEGSET_MEMBERS_MAX || h->ndecl < 1 ||
	    h->ndecl > PARLEY_SEGSET_DECL_MAX ||
	    h->nsegs != 1 + h->ndecl + h->nmembers)
		return PARLEY_SEG_CORRUPT;
	if (h->member_off != sizeof(*h) ||
	    h->seg_off != h->member_off + h->nmembers *
				  sizeof(struct parley_segset_member) ||
	    h->table_size != PARLEY_SEGSET_TABLE_BYTES(h->nmembers, h->nsegs) ||
	    h->table_size > len || h->window_size % PAGE ||
	    h->window_size > PARLEY_SEGSET_WINDOW_MAX)
		return PARLEY_SEG_CORRUPT;
	for (uint32_t i = 0; i < h->nmembers; i++)
		if (!check_member(t, i))
			return PARLEY_SEG_CORRUPT;
	uint64_t next = 0;
	for (uint32_t i = 0; i < h->nsegs; i++)
		if (!check_seg(t, i, &next))
			return PARLEY_SEG_CORRUPT;
	return next == h->window_size ? PARLEY_SEG_OK : PARLEY_SEG_CORRUPT;
}

int parley_segtab_read(const volatile void *seg0, uint64_t len,
		       struct parley_segtab *t)
{
	const volatile uint8_t *b = seg0;
	const volatile struct parley_segset_hdr *vh = seg0;
	if (len < sizeof(t->hdr))
		return PARLEY_SEG_CORRUPT;
	uint64_t e0 = load_acq(&vh->epoch);
	if (e0 & 1)
		return PARLEY_SEG_AGAIN;
	copy_in(&t->hdr, b, sizeof(t->hdr));
	uint32_t nm = t->hdr.nmembers, ns = t->hdr.nsegs;
	/* Bound the copies by the header before it is checked whole. */
	if (nm > PARLEY_SEGSET_MEMBERS_MAX || ns > PARLEY_SEGSET_SEGS_MAX ||
	    t->hdr.member_off != sizeof(t->hdr) ||
	    t->hdr.seg_off != sizeof(t->hdr) +
				      nm * sizeof(struct parley_segset_member) ||
	    t->hdr.seg_off + (uint64_t)ns * sizeof(struct parley_segset_seg) >
		    len)
		return PARLEY_SEG_CORRUPT;
	copy_in(t->member, b + t->hdr.member_off,
		nm * sizeof(struct parley_segset_member));
	copy_in(t->seg, b + t->hdr.seg_off,
		ns * sizeof(struct parley_segset_seg));
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (load_acq(&vh->epoch) != e0 || t->hdr.epoch != e0)
		return PARLEY_SEG_AGAIN;
	return parley_segtab_check(t, len);
}

int parley_segtab_find(const struct parley_segtab *t, const char *name)
{
	for (uint32_t i = 0; i < t->hdr.nsegs; i++)
		if (streq(t->seg[i].name, name))
			return (int)i;
	return PARLEY_SEG_NOENT;
}

int parley_segtab_member(const struct parley_segtab *t, const char *name)
{
	for (uint32_t i = 0; i < t->hdr.nmembers; i++)
		if (streq(t->member[i].name, name))
			return (int)i;
	return PARLEY_SEG_NOENT;
}

static int access_of(const struct parley_segset_seg *g, uint32_t self)
{
	if (g->writer == self)
		return 2;
	return self < 64 && ((g->readers >> self) & 1);
}

int parley_seg_area(const struct parley_segtab *t, uint8_t *base,
		    uint32_t self, const char *name, volatile uint8_t **p,
		    uint64_t *size, int *writable)
{
	int s = parley_segtab_find(t, name);
	if (s < 0)
		return s;
	const struct parley_segset_seg *g = &t->seg[s];
	if (g->kind != PARLEY_SEG_AREA)
		return PARLEY_SEG_INVAL;
	int a = access_of(g, self);
	if (!a)
		return PARLEY_SEG_ACCESS;
	if (g->state != PARLEY_SEG_LIVE)
		return PARLEY_SEG_GONE;
	*p = base + g->offset;
	*size = g->size;
	*writable = a == 2;
	return PARLEY_SEG_OK;
}

static void *pos_page(const struct parley_segtab *t, uint8_t *base,
		      uint32_t member)
{
	return base + t->seg[t->member[member].pos_seg].offset;
}

int parley_seg_pipe_update(struct parley_seg_pipe *p,
			   const struct parley_segtab *t)
{
	p->seen = t->hdr.epoch;
	if (t->seg[p->seg].state != PARLEY_SEG_LIVE)
		return PARLEY_SEG_GONE;
	p->readers = 0;
	for (uint32_t m = 0; m < t->hdr.nmembers; m++)
		if (((t->seg[p->seg].readers >> m) & 1) &&
		    t->member[m].state == PARLEY_MEMBER_PRESENT)
			p->readers |= 1ull << m;
	return PARLEY_SEG_OK;
}

static int pipe_open(struct parley_seg_pipe *p, const struct parley_segtab *t,
		     uint8_t *base, uint32_t self, int s, int writer)
{
	if (s < 0)
		return s;
	const struct parley_segset_seg *g = &t->seg[s];
	if (g->kind != PARLEY_SEG_PIPE && g->kind != PARLEY_SEG_QUEUE)
		return PARLEY_SEG_INVAL;
	if (self >= t->hdr.nmembers || access_of(g, self) != (writer ? 2 : 1))
		return PARLEY_SEG_ACCESS;
	if (g->state != PARLEY_SEG_LIVE)
		return PARLEY_SEG_GONE;
	for (unsigned i = 0; i < sizeof(*p); i++)
		((uint8_t *)p)[i] = 0;
	p->seg = (uint32_t)s;
	p->self = self;
	p->writer = writer;
	p->from = g->writer;
	p->hdr = (volatile void *)(base + g->offset);
	p->ring = base + g->offset + PAGE;
	p->ring_size = g->size - PAGE;
	p->epoch = &((volatile struct parley_segset_hdr *)base)->epoch;
	p->seen = t->hdr.epoch;
	for (uint32_t m = 0; m < t->hdr.nmembers; m++)
		p->pos[m] = pos_page(t, base, m);
	if (writer) {
		p->hdr->ring = p->ring_size;
		store_rel(&p->hdr->head, 0);
		store_rel(&p->hdr->magic, PARLEY_SEG_PIPE_MAGIC);
		parley_seg_pipe_update(p, t);
		return PARLEY_SEG_OK;
	}
	p->own_pos = pos_page(t, base, self);
	/* Start where this member's position page says, if the writer kept
	 * everything since (it counts every PRESENT reader's position); a
	 * position it no longer holds (a late joiner's 0, or garbage): at the
	 * head, i.e. with what is written from now on. */
	uint64_t h = load_acq(&p->hdr->magic) == PARLEY_SEG_PIPE_MAGIC
			     ? load_acq(&p->hdr->head) : 0;
	uint64_t at = load_acq(&p->own_pos->at[s].v);
	if (at > h || h - at > p->ring_size || at % 8)
		at = h;
	p->at = at;
	store_rel(&p->own_pos->at[s].v, at);
	return PARLEY_SEG_OK;
}

int parley_seg_pipe_writer(struct parley_seg_pipe *p,
			   const struct parley_segtab *t, uint8_t *base,
			   uint32_t self, const char *name)
{
	return pipe_open(p, t, base, self, parley_segtab_find(t, name), 1);
}

int parley_seg_pipe_reader(struct parley_seg_pipe *p,
			   const struct parley_segtab *t, uint8_t *base,
			   uint32_t self, const char *name)
{
	return pipe_open(p, t, base, self, parley_segtab_find(t, name), 0);
}

/* Ring bytes at free-running offset `at`, wrapping at the end. */
static void ring_write(struct parley_seg_pipe *p, uint64_t at,
		       const void *src, uint64_t n)
{
	uint64_t o = at & (p->ring_size - 1), first = p->ring_size - o;
	if (first > n)
		first = n;
	copy_out(p->ring + o, src, first);
	copy_out(p->ring, (const uint8_t *)src + first, n - first);
}

static void ring_read(const struct parley_seg_pipe *p, uint64_t at,
		      void *dst, uint64_t n)
{
	uint64_t o = at & (p->ring_size - 1), first = p->ring_size - o;
	if (first > n)
		first = n;
	copy_in(dst, p->ring + o, first);
	copy_in((uint8_t *)dst + first, p->ring, n - first);
}

int parley_seg_send(struct parley_seg_pipe *p, const void *buf, uint32_t len)
{
	if (!p->writer)
		return PARLEY_SEG_ACCESS;
	if (load_acq(p->epoch) != p->seen)
		return PARLEY_SEG_CHANGED;
	uint64_t need = (PARLEY_SEG_REC_HDR + (uint64_t)len + 7) & ~7ull;
	if (need > p->ring_size)
		return PARLEY_SEG_INVAL;
	for (uint32_t m = 0; m < PARLEY_SEGSET_MEMBERS_MAX; m++) {
		if (!((p->readers >> m) & 1))
			continue;
		uint64_t r = load_acq(&p->pos[m]->at[p->seg].v);
		/* Out of range: not started or hostile; it holds no one. */
		if (r > p->at || p->at - r > p->ring_size)
			continue;
		if (p->ring_size - (p->at - r) < need)
			return PARLEY_SEG_AGAIN;
	}
	uint32_t rec[2] = { len, 0 };
	ring_write(p, p->at, rec, sizeof(rec));
	ring_write(p, p->at + PARLEY_SEG_REC_HDR, buf, len);
	p->at += need;
	store_rel(&p->hdr->head, p->at);
	return PARLEY_SEG_OK;
}

int parley_seg_recv(struct parley_seg_pipe *p, void *buf, uint32_t cap,
		    uint32_t *len)
{
	if (p->writer)
		return PARLEY_SEG_ACCESS;
	if (load_acq(p->epoch) != p->seen)
		return PARLEY_SEG_CHANGED;
	if (load_acq(&p->hdr->magic) != PARLEY_SEG_PIPE_MAGIC)
		return PARLEY_SEG_AGAIN;  /* the writer has not started */
	uint64_t h = load_acq(&p->hdr->head);
	if (h == p->at)
		return PARLEY_SEG_AGAIN;
	uint64_t fill = h - p->at;
	if (h < p->at || fill > p->ring_size || fill < PARLEY_SEG_REC_HDR ||
	    fill % 8)
		return PARLEY_SEG_CORRUPT;
	uint32_t rec[2];
	ring_read(p, p->at, rec, sizeof(rec));
	uint64_t need = (PARLEY_SEG_REC_HDR + (uint64_t)rec[0] + 7) & ~7ull;
	if (rec[1] != 0 || need > fill)
		return PARLEY_SEG_CORRUPT;
	if (rec[0] > cap)
		return PARLEY_SEG_INVAL;
	ring_read(p, p->at + PARLEY_SEG_REC_HDR, buf, rec[0]);
	*len = rec[0];
	p->at += need;
	store_rel(&p->own_pos->at[p->seg].v, p->at);
	return PARLEY_SEG_OK;
}

int parley_seg_queue_reader(struct parley_seg_queue *q,
			    const struct parley_segtab *t, uint8_t *base,
			    uint32_t self, const char *name)
{
	q->n = q->next = 0;
	for (uint32_t s = 1; s <= t->hdr.ndecl; s++) {
		const struct parley_segset_seg *g = &t->seg[s];
		if (g->kind != PARLEY_SEG_QUEUE || !streq(g->queue, name) ||
		    access_of(g, self) != 1 || g->state != PARLEY_SEG_LIVE)
			continue;
		int rc = pipe_open(&q->in[q->n], t, base, self, (int)s, 0);
		if (rc < 0)
			return rc;
		q->n++;
	}
	return q->n ? PARLEY_SEG_OK : PARLEY_SEG_NOENT;
}

int parley_seg_queue_writer(struct parley_seg_pipe *p,
			    const struct parley_segtab *t, uint8_t *base,
			    uint32_t self, const char *queue)
{
	for (uint32_t s = 1; s <= t->hdr.ndecl; s++) {
		const struct parley_segset_seg *g = &t->seg[s];
		if (g->kind == PARLEY_SEG_QUEUE && streq(g->queue, queue) &&
		    g->writer == self)
			return pipe_open(p, t, base, self, (int)s, 1);
	}
	return PARLEY_SEG_NOENT;
}

int parley_seg_queue_recv(struct parley_seg_queue *q, void *buf,
			  uint32_t cap, uint32_t *len, uint32_t *from)
{
	for (unsigned k = 0; k < q->n; k++) {
		unsigned i = (q->next + k) % q->n;
		int rc = parley_seg_recv(&q->in[i], buf, cap, len);
		if (rc == PARLEY_SEG_AGAIN)
			continue;
		q->next = i + 1;
		if (rc == PARLEY_SEG_OK && from)
			*from = q->in[i].from;
		return rc;
	}
	return PARLEY_SEG_AGAIN;
}
