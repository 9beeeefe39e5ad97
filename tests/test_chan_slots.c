/* The grant manager and the supervisor give a partition's record back
 * (chanmgr_remove, sup_remove): nothing keeps pointing at it, and the
 * next partition -- of the same name or not -- takes it. With real
 * partitions where channels are involved. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ctl/clock.h"
#include "agent/ctl/stop.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

#define ONEWAY(ch, a, b)                                                   \
	"{\"grants\":[{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\","    \
	"\"endpoint_b\":\"" b "\",\"direction\":\"a_to_b\","                \
	"\"ring_bytes\":4096}]}"

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Step the fleet until p has finished (and the supervisor told chanmgr:
 * both happen in one sup_step), at most ms. */
static void until_finished(struct t_fleet *f, struct partition *p, int ms)
{
	uint64_t end = mono_now_ns() + (uint64_t)ms * 1000000;
	while (!p->finished && mono_now_ns() < end)
		sup_step(&f->sup, -1, 20);
	cr_assert(p->finished, "%s still running:\n%s", p->name,
		  t_fleet_out(f));
}

/* b receives ten messages and exits; its record is removed (and its
 * channel end with it) while a still holds the channel; a new b takes
 * the same record, and a opens the channel again with it. */
T_BACKEND_TEST(chan_slots, removed_record_is_forgotten_and_reused,
	       .timeout = 120)
{
	struct t_fleet f;
	t_fleet_init(&f, ONEWAY("c1", "a", "b"));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,send:0:10,sleep:1500,close:0,open:c1,send:1:10",
		NULL, false, NULL);
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
					  "steps=open:c1,recv:0:10", NULL,
					  false, NULL);
	t_fleet_go(&f);
	until_finished(&f, b, 30000);
	cr_assert_eq(b->fin.reason, VMX_STOP_EXIT, "%s", b->fin.detail);
	struct cm_part *old = b->owner;
	cr_assert(old);
	cr_assert_eq(f.cm.nparts, 2);
	/* a runs: its vmm may map windows, so its record stays. */
	cr_assert(!a->finished);
	cr_assert_eq(chanmgr_remove(&f.cm, a), -EBUSY);
	/* c1 is still there (a holds it), with b's end pointing at b. */
	cr_assert_eq(f.cm.nchans, 1);
	cr_assert(f.cm.chans[0]->end[1].ep == old);
	sup_remove(&f.sup, b);
	cr_assert_eq(f.sup.n, 1);
	cr_assert_eq(chanmgr_remove(&f.cm, b), 0);
	cr_assert_null(b->owner);
	cr_assert_null(old->p);
	cr_assert_eq(f.cm.nparts, 1, "the freed last record is trimmed");
	for (unsigned i = 0; i < f.cm.nchans; i++)
		for (int s = 0; s < 2; s++)
			cr_assert(f.cm.chans[i]->end[s].ep != old);
	cr_assert_eq(chanmgr_remove(&f.cm, b), -ENOENT);
	partition_destroy(b);

	b = t_fleet_add(&f, "b", "chantest.elf", "steps=open:c1,recv:0:10",
			NULL, false, NULL);
	cr_assert(b->owner == old, "the freed record is taken again");
	struct parley_err err = { 0 };
	cr_assert_eq(partition_resume(b, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(t_fleet_run(&f, 30000), 0, "%s", t_fleet_out(&f));
	const char *out = t_fleet_out(&f);
	cr_assert_eq(count(out, "b| received 10"), 2, "%s", out);
	cr_assert_eq(count(out, "a| sent 10"), 2, "%s", out);
	cr_assert_eq(a->fin.code, 0, "%s", out);
	cr_assert_eq(count(t_fleet_audit(&f), "\"event\":\"open_allowed\","
			   "\"partition\":\"b\""), 2, "%s", t_fleet_audit(&f));
	t_fleet_free(&f);
}

/* A partition removed without chanmgr_gone first (stopped, never
 * reported): its channel goes as chanmgr_gone would take it -- the
 * peer's waits see PEER_DOWN, audited peer_gone -- and nothing points at
 * the record. */
T_BACKEND_TEST(chan_slots, removed_before_gone_tells_the_peer,
	       .timeout = 60)
{
	struct t_fleet f;
	t_fleet_init(&f, ONEWAY("c1", "a", "b"));
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
					  "steps=open:c1,sleep:300000", NULL,
					  false, NULL);
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
					  "steps=open:c1,recvall:0", NULL,
					  false, NULL);
	t_fleet_go(&f);
	uint64_t end = mono_now_ns() + 30000ull * 1000000;
	while (!strstr(t_fleet_out(&f), "b| open c1 0") &&
	       mono_now_ns() < end)
		sup_step(&f.sup, -1, 20);
	cr_assert(strstr(t_fleet_out(&f), "b| open c1 0"), "%s",
		  t_fleet_out(&f));
	struct cm_part *old = a->owner;
	partition_stop(a);
	sup_remove(&f.sup, a);     /* its end never reported to chanmgr */
	cr_assert_eq(chanmgr_remove(&f.cm, a), 0);
	for (unsigned i = 0; i < f.cm.nchans; i++)
		for (int s = 0; s < 2; s++)
			cr_assert(f.cm.chans[i]->end[s].ep != old);
	partition_destroy(a);
	cr_assert(strstr(t_fleet_audit(&f), "\"event\":\"peer_gone\","
			 "\"partition\":\"a\",\"channel\":\"c1\""), "%s",
		  t_fleet_audit(&f));
	/* b's recvall ends (CLOSED or PEER_DOWN), b exits. */
	cr_assert_eq(t_fleet_run(&f, 30000), 0, "%s", t_fleet_out(&f));
	cr_assert(b->finished);
	cr_assert_eq(f.cm.nchans, 0, "nobody holds c1: gone");
	t_fleet_free(&f);
}

static struct partition *fake(const char *fmt, int i)
{
	struct partition *p = calloc(1, sizeof(*p));
	cr_assert(p);
	snprintf(p->name, sizeof(p->name), fmt, i);
	p->finished = true; /* no vmm: nothing to map */
	p->ctl = p->pidfd = p->mem_fd = -1;
	return p;
}

/* Only records held at once count: 127 held, 1000 more come and go one
 * at a time, never -ENOSPC; with all 128 held the next one is refused.
 * An offer of a removed partition goes with its record. The supervisor
 * the same way. */
Test(chan_slots, records_never_run_out_across_cycles)
{
	static struct chanmgr cm;
	static struct supervisor sup;
	struct audit au = { 0 };
	chanmgr_init(&cm, &au);
	sup.out = stdout;
	struct partition *held[CM_PARTS_MAX];
	for (int i = 0; i < CM_PARTS_MAX - 1; i++) {
		held[i] = fake("held%d", i);
		cr_assert_eq(chanmgr_add(&cm, held[i]), 0);
		cr_assert_eq(sup_add(&sup, held[i]), 0);
	}
	for (int i = 0; i < 1000; i++) {
		struct partition *p = fake("cycle%d", i);
		cr_assert_eq(chanmgr_add(&cm, p), 0, "cycle %d", i);
		cr_assert_eq(sup_add(&sup, p), 0, "cycle %d", i);
		cr_assert_eq(cm.nparts, CM_PARTS_MAX);
		cm.offers[cm.noffers++] = (struct cm_offer){ .cp = p->owner,
							     .name = "svc" };
		sup_remove(&sup, p);
		cr_assert_eq(chanmgr_remove(&cm, p), 0);
		cr_assert_eq(cm.noffers, 0, "its offer went with it");
		cr_assert_eq(sup.n, CM_PARTS_MAX - 1);
		free(p);
	}
	/* A hole in the middle is taken first. */
	struct cm_part *hole = held[5]->owner;
	cr_assert_eq(chanmgr_remove(&cm, held[5]), 0);
	sup_remove(&sup, held[5]);
	free(held[5]);
	held[5] = fake("again%d", 5);
	cr_assert_eq(chanmgr_add(&cm, held[5]), 0);
	cr_assert(held[5]->owner == hole);
	cr_assert_eq(sup_add(&sup, held[5]), 0);
	/* Full: 128 held. */
	held[CM_PARTS_MAX - 1] = fake("held%d", CM_PARTS_MAX - 1);
	cr_assert_eq(chanmgr_add(&cm, held[CM_PARTS_MAX - 1]), 0);
	struct partition *over = fake("over%d", 0);
	cr_assert_eq(chanmgr_add(&cm, over), -ENOSPC);
	cr_assert_eq(chanmgr_remove(&cm, over), -ENOENT);
	free(over);
	for (int i = 0; i < CM_PARTS_MAX; i++) {
		cr_assert_eq(chanmgr_remove(&cm, held[i]), 0);
		free(held[i]);
	}
	cr_assert_eq(cm.nparts, 0);
	sup.n = 0; /* (the fakes are freed above, not by sup_free) */
	chanmgr_free(&cm);
	audit_free(&au);
}
