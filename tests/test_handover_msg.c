/* The hand-over message (agent/handover.c): encode → parse round trip,
 * every truncation refused, and one hostile message per rule the parser
 * enforces (each built by breaking one field of a good message and
 * encoding it: the encoder checks nothing). Also writes the fuzz seeds
 * (fuzz/seeds/handover) when PARLEY_WRITE_SEEDS is set, and otherwise
 * checks they are what the encoder makes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/handover.h"
#include "agent/partition.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

#define PAGES 3

static void sample_part(struct ho_part *p, const char *name, int pid)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->state = PART_RUNNING;
	p->pid = pid;
	p->vmm_uid = 6000000 + (uint32_t)pid % 7;
	p->vcpus = 2;
	p->backend = CTL_BACKEND_PROCESS;
	p->caps = SPEC_CAP_UPDATE;
	p->ram_size = 8 << 20;
	p->cfg_size = PAGES * PARLEY_PAGE_SIZE;
	p->entry = 0x100000;
	p->image_hi = 0x180000;
	p->open_pending = 0x2;
	p->nrange = 1;
	p->range[0] = (struct layout_range){ 0x100000, 0x80000, 5 };
	snprintf(p->vmm_version, sizeof(p->vmm_version), "0.4.0");
	p->gen[0] = 1;
	p->gen[3] = 7;
	p->win_cursor = 0x24000;
	struct measure *m = &p->measure;
	m->nfile = 1;
	snprintf(m->file[0].name, sizeof(m->file[0].name), "%s.conf", name);
	m->file[0].off = 0;
	m->file[0].size = 100;
	memset(m->file[0].digest, 0xab, MEASURE_DIGEST);
	m->nseg = 1;
	m->seg[0].gpa = 0x100000;
	m->seg[0].size = 0x1000;
	m->npages = PAGES;
	m->page = calloc(PAGES, MEASURE_DIGEST);
	m->dirty = calloc(1, sizeof(uint64_t));
	cr_assert(m->page && m->dirty);
	memset(m->page, 0x5a, PAGES * MEASURE_DIGEST);
	m->dirty[0] = 0x4;
}

/* Two partitions, a both-way channel mapped in both, a service call
 * channel pending, an offer; descriptors as the message implies. */
static void sample(struct handover *h)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->old_version, sizeof(h->old_version), "0.4.0");
	snprintf(h->old_exe, sizeof(h->old_exe), "/usr/sbin/parley-agent");
	snprintf(h->vmm_path, sizeof(h->vmm_path), "/var/lib/parley/stage/"
		 "parley-vmm");
	snprintf(h->vmm_version, sizeof(h->vmm_version), "0.5.0");
	h->pause_ns = 123456789;
	h->next_chan_id = 9;
	static const char pol[] = "{\"grants\":[]}";
	h->policy = malloc(sizeof(pol));
	memcpy(h->policy, pol, sizeof(pol));
	h->policy_len = sizeof(pol) - 1;
	h->npart = 2;
	h->part = calloc(2, sizeof(*h->part));
	sample_part(&h->part[0], "ping", 101);
	sample_part(&h->part[1], "pong", 102);
	h->nchan = 2;
	h->chan = calloc(2, sizeof(*h->chan));
	struct ho_chan *c = &h->chan[0];
	c->id = 3;
	snprintf(c->g.channel, sizeof(c->g.channel), "pingpong");
	snprintf(c->g.a, sizeof(c->g.a), "ping");
	snprintf(c->g.b, sizeof(c->g.b), "pong");
	c->g.dir = GRANT_BOTH;
	c->g.ring_bytes = 65536;
	c->g.require_integrity = true;
	c->end[0] = (struct ho_end){ 0, true, false, 0, (1u << 16) | 0,
				     PARLEY_CHAN_BASE };
	c->end[1] = (struct ho_end){ 1, true, false, 3, (7u << 16) | 3,
				     PARLEY_CHAN_BASE + 0x10000 };
	c->nsec = ho_sections(GRANT_BOTH);
	c = &h->chan[1];
	c->id = 8;
	snprintf(c->g.channel, sizeof(c->g.channel), "auth");
	snprintf(c->g.a, sizeof(c->g.a), "ping");
	snprintf(c->g.b, sizeof(c->g.b), "pong");
	c->g.dir = GRANT_A_TO_B;
	c->g.ring_bytes = 4096;
	c->svc = true;
	c->end[0] = (struct ho_end){ 0, false, false, 0, 0, 0 };
	c->end[1] = (struct ho_end){ -1, false, false, 0, 0, 0 };
	c->nsec = ho_sections(GRANT_A_TO_B);
	h->noffer = 1;
	h->offer = calloc(1, sizeof(*h->offer));
	h->offer[0].part = 1;
	snprintf(h->offer[0].name, sizeof(h->offer[0].name), "auth");
	h->npending = 1;
	h->pending = calloc(1, sizeof(*h->pending));
	h->pending[0] = 1;
	h->nfds = 2 * HO_FDS_PER_PART + (2 + 2 * 5) + (2 + 2 * 3);
}

static int parse_of(const struct handover *h, unsigned nfds,
		    struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(handover_encode(h, &buf, &len, err), 0);
	struct handover got;
	int rc = handover_parse(buf, len, nfds, &got, err);
	if (rc == 0)
		handover_free(&got);
	free(buf);
	return rc;
}

Test(handover_msg, round_trip)
{
	struct handover h, got;
	struct parley_err err = { 0 };
	uint8_t *a, *b;
	size_t la, lb;
	sample(&h);
	cr_assert_eq(handover_encode(&h, &a, &la, &err), 0);
	cr_assert_eq(handover_parse(a, la, h.nfds, &got, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_eq(got.npart, 2);
	cr_expect_eq(got.nchan, 2);
	cr_expect_str_eq(got.part[1].name, "pong");
	cr_expect_eq(got.part[1].measure.dirty[0], 0x4);
	cr_expect_eq(got.chan[0].end[1].handle, (7u << 16) | 3);
	cr_expect_eq(got.chan[0].fd, 6);
	cr_expect_eq(got.chan[1].fd, 6 + 12);
	cr_expect_eq(got.part[1].fd, 3);
	cr_expect_eq(got.pending[0], 1);
	cr_expect_eq(got.policy_len, h.policy_len);
	cr_assert_eq(handover_encode(&got, &b, &lb, &err), 0);
	cr_expect_eq(la, lb);
	cr_expect_arr_eq(a, b, la, "re-encoded differently");
	free(a);
	free(b);
	handover_free(&got);
	handover_free(&h);
}

Test(handover_msg, every_truncation_refused)
{
	struct handover h, got;
	struct parley_err err = { 0 };
	uint8_t *a;
	size_t la;
	sample(&h);
	cr_assert_eq(handover_encode(&h, &a, &la, &err), 0);
	for (size_t n = 0; n < la; n++) {
		int rc = handover_parse(a, n, h.nfds, &got, &err);
		cr_assert_eq(rc, -EBADMSG, "%zu of %zu bytes: %d", n, la, rc);
	}
	/* And one byte more. */
	uint8_t *longer = malloc(la + 1);
	memcpy(longer, a, la);
	longer[la] = 0;
	cr_expect_eq(handover_parse(longer, la + 1, h.nfds, &got, &err),
		     -EBADMSG);
	cr_expect(strstr(perr_msg(&err), "after the end"), "%s",
		  perr_msg(&err));
	free(longer);
	free(a);
	handover_free(&h);
}

/* One broken rule per case; the message must name it. */
struct hostile {
	const char *name;
	void (*bend)(struct handover *h);
	const char *says;
};

/* Counts past a cap come with as many entries (the parser must stop at
 * the count). */
static void b_npart(struct handover *h)
{
	h->part = realloc(h->part, (CM_PARTS_MAX + 1) * sizeof(*h->part));
	for (unsigned i = 2; i <= CM_PARTS_MAX; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "p%u", i);
		sample_part(&h->part[i], nm, 200 + (int)i);
	}
	h->npart = CM_PARTS_MAX + 1;
}
static void b_dup_name(struct handover *h)
{
	snprintf(h->part[1].name, sizeof(h->part[1].name), "ping");
}
static void b_state(struct handover *h) { h->part[0].state = PART_STOPPED; }
static void b_pid(struct handover *h) { h->part[0].pid = 0; }
static void b_vcpus(struct handover *h) { h->part[0].vcpus = 0; }
static void b_pending_vcpu(struct handover *h) { h->part[0].open_pending = 4; }
static void b_backend(struct handover *h) { h->part[0].backend = 9; }
static void b_caps(struct handover *h) { h->part[0].caps = 0x80; }
static void b_ram(struct handover *h) { h->part[0].ram_size = 4097; }
static void b_cfg_huge(struct handover *h)
{
	h->part[0].cfg_size = (uint64_t)(HO_CFG_PAGES_MAX + 1) * 4096;
}
static void b_ranges(struct handover *h) { h->part[0].nrange = 17; }
static void b_range_out(struct handover *h)
{
	h->part[0].range[0].size = h->part[0].ram_size;
}
static void b_name_ctrl(struct handover *h) { h->part[0].name[1] = '\n'; }
static void b_name_empty(struct handover *h) { h->part[0].name[0] = 0; }
static void b_cursor(struct handover *h)
{
	h->part[0].win_cursor = PARLEY_CHAN_SIZE + 1;
}
static void b_files(struct handover *h)
{
	h->part[0].measure.nfile = PARLEY_CONFIG_FILES_MAX + 1;
}
static void b_file_out(struct handover *h)
{
	h->part[0].measure.file[0].size = PAGES * 4096 + 1;
}
static void b_seg_out(struct handover *h)
{
	h->part[0].measure.seg[0].gpa = h->part[0].ram_size;
}
static void b_npages(struct handover *h) { h->part[0].measure.npages = 2; }
static void b_dirty_past(struct handover *h)
{
	h->part[0].measure.dirty[0] = 1u << PAGES;
}
static void b_nchan(struct handover *h)
{
	h->chan = realloc(h->chan, (CM_CHANS_MAX + 1) * sizeof(*h->chan));
	for (unsigned i = 2; i <= CM_CHANS_MAX; i++)
		h->chan[i] = h->chan[1];
	h->nchan = CM_CHANS_MAX + 1;
}
static void b_dir(struct handover *h) { h->chan[0].g.dir = 3; }
static void b_ring(struct handover *h) { h->chan[0].g.ring_bytes = 3000; }
static void b_ring_big(struct handover *h)
{
	h->chan[0].g.ring_bytes = 32u << 20;
}
static void b_chan_id0(struct handover *h) { h->chan[0].id = 0; }
static void b_chan_id_next(struct handover *h) { h->chan[0].id = 9; }
static void b_chan_id_dup(struct handover *h) { h->chan[1].id = 3; }
static void b_end_part(struct handover *h) { h->chan[0].end[0].part = 2; }
static void b_end_neg(struct handover *h) { h->chan[0].end[0].part = -2; }
static void b_end_other(struct handover *h) { h->chan[0].end[0].part = 1; }
static void b_end_unknown_mapped(struct handover *h)
{
	h->chan[0].end[0].part = -1;
}
static void b_unmapping(struct handover *h)
{
	h->chan[1].end[0].unmapping = true;
}
static void b_slot(struct handover *h) { h->chan[0].end[0].slot = 32; }
static void b_gen(struct handover *h)
{
	h->chan[0].end[1].handle = (6u << 16) | 3;
}
static void b_gen0(struct handover *h)
{
	h->part[0].gen[0] = 0;
	h->chan[0].end[0].handle = 0;
}
static void b_gpa_low(struct handover *h)
{
	h->chan[0].end[0].gpa = PARLEY_CHAN_BASE - 4096;
}
static void b_gpa_high(struct handover *h)
{
	h->chan[0].end[0].gpa = PARLEY_CHAN_BASE + PARLEY_CHAN_SIZE - 4096;
}
static void b_gpa_odd(struct handover *h) { h->chan[0].end[0].gpa += 1; }
static void b_slot_twice(struct handover *h)
{
	/* The service channel mapped in ping's slot 0 as well. */
	struct ho_end *e = &h->chan[1].end[0];
	*e = (struct ho_end){ 0, true, false, 0, 1u << 16,
			      PARLEY_CHAN_BASE + 0x40000 };
}
static void b_revoke_left(struct handover *h)
{
	h->chan[0].revoking = true;
	h->chan[0].revoke_left_ms = 600000;
}
static void b_offer_part(struct handover *h) { h->offer[0].part = 2; }
static void b_offers(struct handover *h)
{
	h->offer = realloc(h->offer, (CM_OFFERS_MAX + 1) * sizeof(*h->offer));
	for (unsigned i = 1; i <= CM_OFFERS_MAX; i++)
		h->offer[i] = h->offer[0];
	h->noffer = CM_OFFERS_MAX + 1;
}
static void b_pending_chan(struct handover *h) { h->pending[0] = 2; }
static void b_pending_nonsvc(struct handover *h) { h->pending[0] = 0; }
static void b_nfds(struct handover *h) { h->nfds--; }
static void b_policy_big(struct handover *h)
{
	free(h->policy);
	h->policy_len = GRANT_FILE_MAX + 1;
	h->policy = calloc(1, h->policy_len);
}

static const struct hostile hostile[] = {
	{ "npart", b_npart, "too many partitions" },
	{ "dup_name", b_dup_name, "named twice" },
	{ "state", b_state, "partition state" },
	{ "pid", b_pid, "vmm pid" },
	{ "vcpus", b_vcpus, "vCPU" },
	{ "pending_vcpu", b_pending_vcpu, "pending opens" },
	{ "backend", b_backend, "backend" },
	{ "caps", b_caps, "unknown capability" },
	{ "ram", b_ram, "memory sizes" },
	{ "cfg_huge", b_cfg_huge, "memory sizes" },
	{ "ranges", b_ranges, "too many image ranges" },
	{ "range_out", b_range_out, "image range outside RAM" },
	{ "name_ctrl", b_name_ctrl, "partition name" },
	{ "name_empty", b_name_empty, "partition name" },
	{ "cursor", b_cursor, "window cursor" },
	{ "files", b_files, "too many measured files" },
	{ "file_out", b_file_out, "outside the config region" },
	{ "seg_out", b_seg_out, "segment outside RAM" },
	{ "npages", b_npages, "page count" },
	{ "dirty_past", b_dirty_past, "dirty bits past" },
	{ "nchan", b_nchan, "too many channels" },
	{ "dir", b_dir, "channel direction" },
	{ "ring", b_ring, "ring size" },
	{ "ring_big", b_ring_big, "ring size" },
	{ "chan_id0", b_chan_id0, "channel id" },
	{ "chan_id_next", b_chan_id_next, "channel id" },
	{ "chan_id_dup", b_chan_id_dup, "channel id twice" },
	{ "end_part", b_end_part, "names no partition" },
	{ "end_neg", b_end_neg, "names no partition" },
	{ "end_other", b_end_other, "not its grant's partition" },
	{ "end_unknown_mapped", b_end_unknown_mapped, "without a partition" },
	{ "unmapping", b_unmapping, "not mapped" },
	{ "slot", b_slot, "channel handle" },
	{ "gen", b_gen, "channel handle" },
	{ "gen0", b_gen0, "channel handle" },
	{ "gpa_low", b_gpa_low, "channel window" },
	{ "gpa_high", b_gpa_high, "channel window" },
	{ "gpa_odd", b_gpa_odd, "channel window" },
	{ "slot_twice", b_slot_twice, "slot held twice" },
	{ "revoke_left", b_revoke_left, "revocation deadline" },
	{ "offer_part", b_offer_part, "offer of no partition" },
	{ "offers", b_offers, "too many service offers" },
	{ "pending_chan", b_pending_chan, "pending call" },
	{ "pending_nonsvc", b_pending_nonsvc, "pending call" },
	{ "nfds", b_nfds, "descriptor count" },
	{ "policy_big", b_policy_big, "policy too large" },
};

Test(handover_msg, hostile_messages_refused_with_the_rule)
{
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		struct handover h;
		struct parley_err err = { 0 };
		sample(&h);
		unsigned want = h.nfds;
		hostile[i].bend(&h);
		int rc = parse_of(&h, want, &err);
		cr_expect_eq(rc, -EBADMSG, "%s: %d", hostile[i].name, rc);
		cr_expect(strstr(perr_msg(&err), hostile[i].says),
			  "%s: \"%s\" does not say \"%s\"", hostile[i].name,
			  perr_msg(&err), hostile[i].says);
		handover_free(&h);
	}
}

static uint8_t *encoded(struct handover *h, size_t *len)
{
	struct parley_err err = { 0 };
	uint8_t *buf;
	cr_assert_eq(handover_encode(h, &buf, len, &err), 0);
	return buf;
}

Test(handover_msg, header_and_descriptor_count)
{
	struct handover h, got;
	struct parley_err err = { 0 };
	size_t len;
	sample(&h);
	uint8_t *buf = encoded(&h, &len);
	struct { size_t off; uint8_t v; const char *says; } bad[] = {
		{ 0, 'X', "not a hand-over message" },
		{ 7, 1, "not a hand-over message" },
		{ 8, 2, "version" },
		{ 12, 1, "unknown flags" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t keep = buf[bad[i].off];
		buf[bad[i].off] = bad[i].v;
		cr_expect_eq(handover_parse(buf, len, h.nfds, &got, &err),
			     -EBADMSG);
		cr_expect(strstr(perr_msg(&err), bad[i].says), "%s",
			  perr_msg(&err));
		buf[bad[i].off] = keep;
	}
	/* The descriptors that came must be exactly those it names. */
	cr_expect_eq(handover_parse(buf, len, h.nfds + 1, &got, &err),
		     -EBADMSG);
	cr_expect_eq(handover_parse(buf, len, h.nfds - 1, &got, &err),
		     -EBADMSG);
	cr_expect_eq(handover_parse(buf, len, h.nfds, &got, &err), 0);
	handover_free(&got);
	free(buf);
	handover_free(&h);
}

/* The fuzz seeds are what this encoder makes (PARLEY_WRITE_SEEDS=1 writes
 * them): the good message, and one with no partition at all. */
Test(handover_msg, fuzz_seeds_are_the_encoders)
{
	struct handover h;
	struct { const char *name; bool empty; } seeds[] = {
		{ "sample", false }, { "empty", true },
	};
	for (size_t i = 0; i < 2; i++) {
		sample(&h);
		if (seeds[i].empty) {
			handover_free(&h);
			memset(&h, 0, sizeof(h));
			snprintf(h.old_version, sizeof(h.old_version), "0.4.0");
			h.next_chan_id = 1;
		}
		size_t len;
		uint8_t *buf = encoded(&h, &len);
		char path[512];
		snprintf(path, sizeof(path), PARLEY_SOURCE_DIR
			 "/fuzz/seeds/handover/%s", seeds[i].name);
		if (getenv("PARLEY_WRITE_SEEDS")) {
			FILE *f = fopen(path, "wb");
			cr_assert(f, "%s", path);
			fwrite(buf, 1, len, f);
			fclose(f);
		}
		uint8_t *disk;
		size_t dlen;
		struct parley_err err = { 0 };
		cr_assert_eq(file_read_all(path, HO_BYTES_MAX, &disk, &dlen,
					   &err), 0, "%s", perr_msg(&err));
		cr_expect_eq(dlen, len, "%s", path);
		cr_expect(dlen == len && !memcmp(disk, buf, len), "%s", path);
		free(disk);
		free(buf);
		handover_free(&h);
	}
}
