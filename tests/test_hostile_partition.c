/*
 * hostile_partition: a partition attacking the agent through what it
 * controls — the addresses it hands to hypercalls, and code it puts where
 * its data lives — is stopped with a named reason, while the grant manager
 * and a second partition keep running and nothing the partition did not
 * write itself changes: its config region still matches its baseline page
 * for page, its read-only image its measured digests, its system tables and
 * boot info their bytes at launch. Issue 8, finding 1 and "Guest pointers".
 *
 * Every case runs on every backend present (t_backends()), as Criterion
 * parameters: backend b, then the case.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <elf.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/backend.h"
#include "agent/ctl/stop.h"
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

/* ---- the fleet every case runs in --------------------------------------- */

/* h is the hostile partition; w a well-behaved one, the writer of the
 * one-way channel "ro" whose reader h is, and h's peer on "c1" (both ways,
 * what the laundering open asks for). */
#define GRANTS                                                               \
	"{\"grants\":["                                                      \
	"{\"channel\":\"ro\",\"endpoint_a\":\"w\",\"endpoint_b\":\"h\","     \
	"\"direction\":\"a_to_b\",\"ring_bytes\":4096},"                     \
	"{\"channel\":\"c1\",\"endpoint_a\":\"w\",\"endpoint_b\":\"h\","     \
	"\"direction\":\"both\",\"ring_bytes\":4096}]}"

static const char *const motd[] = { "motd=hello, operator\n",
				    "app.conf=mode=strict\n", NULL };

struct hp {
	struct t_fleet f;
	struct partition *h, *w;
	uint32_t backend;
	uint8_t low[PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE];
};

/* The process backend needs its stub beside the vmm. The build always
 * makes it (parley-vmm depends on it): missing is a broken tree, a
 * failure, never a skip. */
static void require_backend(uint32_t b)
{
	if (b == CTL_BACKEND_PROCESS && access(T_BIN("parley-vmm-stub"), X_OK))
		cr_assert_fail("process backend: %s not built",
			       T_BIN("parley-vmm-stub"));
}

/* Start w and h (paused), remember h's system tables and boot info as
 * launched, then let both run. */
static void hp_start(struct hp *t, uint32_t backend, const char *h_cmdline,
		     uint32_t h_vcpus)
{
	require_backend(backend);
	memset(t, 0, sizeof(*t));
	t->backend = backend;
	t_fleet_init(&t->f, GRANTS);
	t->f.backend = backend;
	/* w opens "ro" only where h needs it open (chantest retries an open
	 * while the peer is down, which would only slow the other cases). */
	t->w = t_fleet_add(&t->f, "w", "chantest.elf",
			   strstr(h_cmdline, "at=chanro") ? "steps=open:ro,sleep:300"
							  : "steps=sleep:300",
			   motd, false, NULL);
	t->f.vcpus = h_vcpus;
	t->h = t_fleet_add(&t->f, "h", "hostile.elf", h_cmdline, motd, false,
			   NULL);
	t->f.vcpus = 0;
	memcpy(t->low, t->h->mem, sizeof(t->low));
	t_fleet_go(&t->f);
}

/* Run until h stops; w must not have been stopped with it, and finish
 * normally. (w sleeps 300 ms: on a loaded machine h may take longer to
 * reach its hostile call, and w may already have ended — then it must
 * have ended by its own exit, 0, like every other run.) */
static void hp_run(struct hp *t)
{
	for (int i = 0; i < 500 && !t->h->finished; i++)
		t_fleet_run(&t->f, 20);
	cr_assert(t->h->finished, "[%s] h still running:\n%s",
		  backend_name(t->backend), t_fleet_out(&t->f));
	cr_assert(!t->w->finished || (t->w->fin.reason == VMX_STOP_EXIT &&
				      t->w->fin.code == 0),
		  "[%s] w stopped with h: %s (%s)", backend_name(t->backend),
		  vmx_stop_name(t->w->fin.reason), t->w->fin.detail);
	cr_assert_eq(t_fleet_run(&t->f, 20000), 0, "still running:\n%s",
		     t_fleet_out(&t->f));
	cr_assert_eq(t->w->fin.reason, VMX_STOP_EXIT, "w: %s (%s)",
		     vmx_stop_name(t->w->fin.reason), t->w->fin.detail);
	cr_assert_eq(t->w->fin.code, 0, "w exit %lld\n%s",
		     (long long)t->w->fin.code, t_fleet_out(&t->f));
}

static void hp_stopped(struct hp *t, unsigned reason, const char *detail)
{
	struct partition *h = t->h;
	cr_assert_eq(h->fin.reason, reason, "[%s] h: %s (%s), want %s\n%s",
		     backend_name(t->backend), vmx_stop_name(h->fin.reason),
		     h->fin.detail, vmx_stop_name(reason), t_fleet_out(&t->f));
	if (detail)
		cr_assert(strstr(h->fin.detail, detail),
			  "[%s] h: \"%s\" does not say \"%s\"",
			  backend_name(t->backend), h->fin.detail, detail);
	/* The grant manager saw it and audits it by name. */
	char want[96];
	snprintf(want, sizeof(want),
		 "\"event\":\"fault\",\"partition\":\"h\",\"reason\":\"%s\"",
		 vmx_stop_name(reason));
	cr_assert(strstr(t_fleet_audit(&t->f), want), "no %s in audit:\n%s",
		  want, t_fleet_audit(&t->f));
	cr_assert_null(strstr(t_fleet_out(&t->f), "hostile: accepted"), "%s",
		       t_fleet_out(&t->f));
}

/* Re-measured from the grant manager's own view: no config page differs
 * from its baseline. */
static void config_intact(struct partition *p)
{
	uint64_t *differ = measure_rehash_all(&p->measure,
					      p->mem + p->ram_size);
	cr_assert_not_null(differ);
	for (uint64_t i = 0; i < p->measure.npages; i++)
		cr_expect_not(differ[i / 64] >> (i % 64) & 1,
			      "%s: config page %llu differs from its baseline",
			      p->name, (unsigned long long)i);
	free(differ);
}

/* The read-only image segments still have their measured digests. */
static void image_intact(struct partition *p)
{
	for (unsigned i = 0; i < p->measure.nseg && i < p->nrange; i++) {
		if (p->range[i].flags & PF_W)
			continue;
		uint8_t d[32];
		unsigned len = 0;
		const struct measure_seg *s = &p->measure.seg[i];
		cr_assert(EVP_Digest(p->mem + s->gpa, s->size, d, &len,
				     EVP_sha256(), NULL));
		cr_expect_eq(memcmp(d, s->digest, sizeof(d)), 0,
			     "%s: read-only segment at 0x%llx changed", p->name,
			     (unsigned long long)s->gpa);
	}
}

static void baselines_intact(struct hp *t)
{
	config_intact(t->h);
	config_intact(t->w);
	image_intact(t->h);
	cr_expect_eq(memcmp(t->low, t->h->mem, sizeof(t->low)), 0,
		     "h: system tables or boot info changed");
}

static void hp_free(struct hp *t)
{
	t_fleet_free(&t->f);
}

/* ---- where an argument struct may not be -------------------------------- */

enum at { AT_CONFIG, AT_BOOTINFO, AT_PT, AT_GDT, AT_TSS, AT_RODATA, AT_TEXT,
	  AT_CHANRO, AT_N };

static const struct {
	const char *name;
	const char *refusal;   /* what the stop detail names */
} places[AT_N] = {
	[AT_CONFIG] = { "config", "in the config region" },
	[AT_BOOTINFO] = { "bootinfo", "in boot info" },
	[AT_PT] = { "pt", "in the system tables" },
	[AT_GDT] = { "gdt", "in the system tables" },
	[AT_TSS] = { "tss", "in the system tables" },
	[AT_RODATA] = { "rodata", "in a read-only image page" },
	[AT_TEXT] = { "text", "in a read-only image page" },
	[AT_CHANRO] = { "chanro", "in the channel window area" },
};

static const char *const hc_names[PARLEY_HC_MAX + 1] = {
	[PARLEY_HC_CONSOLE_WRITE] = "console", [PARLEY_HC_CLOCK] = "clock",
	[PARLEY_HC_EXIT] = "exit", [PARLEY_HC_HALT] = "halt",
	[PARLEY_HC_CHAN_OPEN] = "open", [PARLEY_HC_CHAN_NOTIFY] = "notify",
	[PARLEY_HC_CHAN_WAIT] = "wait", [PARLEY_HC_CHAN_CLOSE] = "close",
	[PARLEY_HC_SVC_OFFER] = "svc_offer", [PARLEY_HC_SVC_CALL] = "svc_call",
	[PARLEY_HC_SVC_ACCEPT] = "svc_accept",
	[PARLEY_HC_UPDATE_BEGIN] = "upd_begin",
	[PARLEY_HC_UPDATE_WRITE] = "upd_write",
	[PARLEY_HC_UPDATE_COMMIT] = "upd_commit",
	[PARLEY_HC_UPDATE_STATUS] = "upd_status",
	[PARLEY_HC_SEG_ATTACH] = "seg_attach",
	[PARLEY_HC_SEG_DETACH] = "seg_detach",
	[PARLEY_HC_BLK_INFO] = "blk_info", [PARLEY_HC_BLK_READ] = "blk_read",
	[PARLEY_HC_BLK_WRITE] = "blk_write",
	[PARLEY_HC_BLK_FLUSH] = "blk_flush",
	[PARLEY_HC_BLK_SUBMIT] = "blk_submit",
};

/* The hypercall numbers this agent serves (the table may have gaps). */
static unsigned hc_known(unsigned *nr)
{
	unsigned n = 0;
	for (unsigned i = 1; i <= PARLEY_HC_MAX; i++)
		if (hc_names[i])
			nr[n++] = i;
	return n;
}

/* Parameters hold numbers only: Criterion copies them into each test's
 * process, where no pointer of the runner's would be valid. */
struct hp_param {
	uint32_t backend;
	unsigned hc;      /* 0: a console buffer rather than a struct */
	unsigned at;
};

static struct hp_param *params_alloc(size_t per_backend, size_t *n)
{
	uint32_t b[T_BACKENDS_MAX];
	unsigned nb = t_backends(b);
	struct hp_param *p = cr_malloc(sizeof(*p) * nb * per_backend);
	cr_assert_not_null(p);
	for (size_t i = 0; i < nb * per_backend; i++)
		p[i] = (struct hp_param){ .backend = b[i / per_backend] };
	*n = nb * per_backend;
	return p;
}

static void params_free(struct criterion_test_params *ctp)
{
	cr_free(ctp->params);
}

ParameterizedTestParameters(hostile_partition, argument_struct_refused)
{
	unsigned nr[PARLEY_HC_MAX];
	size_t n, per = hc_known(nr) * AT_N;
	struct hp_param *p = params_alloc(per, &n);
	for (size_t i = 0; i < n; i++) {
		p[i].hc = nr[(unsigned)(i % per) / AT_N];
		p[i].at = (unsigned)(i % per) % AT_N;
	}
	return cr_make_param_array(struct hp_param, p, n, params_free);
}

/* Every hypercall, its struct in every place the partition may not write:
 * refused before the handler runs, so the vmm writes nothing there. */
ParameterizedTest(struct hp_param *c, hostile_partition,
		  argument_struct_refused, .timeout = 60)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "mode=place hc=%s at=%s chan=ro",
		 hc_names[c->hc], places[c->at].name);
	struct hp t;
	hp_start(&t, c->backend, cmd, 0);
	hp_run(&t);
	hp_stopped(&t, VMX_STOP_BAD_HYPERCALL, places[c->at].refusal);
	cr_assert(strstr(t.h->fin.detail, "argument struct at 0x"), "%s",
		  t.h->fin.detail);
	if (c->at == AT_CHANRO) {
		cr_assert(strstr(t_fleet_out(&t.f), "h| hostile: open ro 0 rx 1"),
			  "%s", t_fleet_out(&t.f));
		/* h's end of the channel went with it, and the audit says
		 * so: its peer learns PEER_DOWN. */
		cr_assert(strstr(t_fleet_audit(&t.f), "\"event\":\"peer_gone\","
					"\"partition\":\"h\",\"channel\":\"ro\""),
			  "%s", t_fleet_audit(&t.f));
	}
	baselines_intact(&t);
	hp_free(&t);
}

/* The places a buffer the vmm only reads may not be, on every backend. */
static struct criterion_test_params refused_buffers(void)
{
	static const unsigned refused[] = { AT_CONFIG, AT_BOOTINFO, AT_PT,
					    AT_GDT, AT_TSS, AT_CHANRO };
	size_t n, per = sizeof(refused) / sizeof(refused[0]);
	struct hp_param *p = params_alloc(per, &n);
	for (size_t i = 0; i < n; i++)
		p[i].at = refused[i % per];
	return cr_make_param_array(struct hp_param, p, n, params_free);
}

/* hostile in `mode` with its buffer at c's place: stopped, the detail
 * naming `what`, the neighbours' baselines intact. */
static void buffer_refused(const struct hp_param *c, const char *mode,
			   const char *what)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "mode=%s at=%s chan=ro", mode,
		 places[c->at].name);
	struct hp t;
	hp_start(&t, c->backend, cmd, 0);
	hp_run(&t);
	hp_stopped(&t, VMX_STOP_BAD_HYPERCALL, places[c->at].refusal);
	cr_assert(strstr(t.h->fin.detail, what), "%s", t.h->fin.detail);
	baselines_intact(&t);
	hp_free(&t);
}

ParameterizedTestParameters(hostile_partition, console_buffer_refused)
{
	return refused_buffers();
}

/* A buffer the vmm only reads may be anywhere the partition may read of
 * its own — but not in the tables that confine it, its boot info, its
 * config region, or a channel. */
ParameterizedTest(struct hp_param *c, hostile_partition,
		  console_buffer_refused, .timeout = 60)
{
	buffer_refused(c, "buf", "console write: buffer 0x");
}

ParameterizedTestParameters(hostile_partition, update_buffer_refused)
{
	return refused_buffers();
}

/* An update write's buffer is checked by the vmm as a console buffer is
 * (the grant manager checks it again, through its own view). The
 * partition has no update capability: a bad pointer is malice before it
 * is a request. */
ParameterizedTest(struct hp_param *c, hostile_partition,
		  update_buffer_refused, .timeout = 60)
{
	buffer_refused(c, "upd_buf", "update write: buffer 0x");
}

/* The control: a buffer in its own image reaches the grant manager, which
 * here (the tests' grant manager wires no updates) answers NOSYS. */
Test(hostile_partition, update_buffer_in_own_image_is_asked, .timeout = 60)
{
	struct hp t;
	hp_start(&t, CTL_BACKEND_PROCESS, "mode=upd_buf at=rodata", 0);
	hp_run(&t);
	cr_assert_eq(t.h->fin.reason, VMX_STOP_EXIT, "%s (%s)",
		     vmx_stop_name(t.h->fin.reason), t.h->fin.detail);
	cr_assert(strstr(t_fleet_out(&t.f), "hostile: update write accepted "
			 "buffer at 0x"), "%s", t_fleet_out(&t.f));
	cr_assert(strstr(t_fleet_out(&t.f), ": -10\n"), "%s",
		  t_fleet_out(&t.f));
	hp_free(&t);
}

ParameterizedTestParameters(hostile_partition, console_buffer_in_own_image)
{
	size_t n;
	struct hp_param *p = params_alloc(2, &n);
	for (size_t i = 0; i < n; i++)
		p[i].at = i % 2 ? AT_TEXT : AT_RODATA;
	return cr_make_param_array(struct hp_param, p, n, params_free);
}

/* The control: its own read-only image is a legitimate console source
 * (string literals live in rodata). */
ParameterizedTest(struct hp_param *c, hostile_partition,
		  console_buffer_in_own_image, .timeout = 60)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "mode=buf at=%s", places[c->at].name);
	struct hp t;
	hp_start(&t, c->backend, cmd, 0);
	hp_run(&t);
	cr_assert_eq(t.h->fin.reason, VMX_STOP_EXIT, "%s (%s)",
		     vmx_stop_name(t.h->fin.reason), t.h->fin.detail);
	cr_assert(strstr(t_fleet_out(&t.f), "hostile: accepted buffer at 0x"), "%s",
		  t_fleet_out(&t.f));
	baselines_intact(&t);
	hp_free(&t);
}

/* ---- the laundering attack (issue 8, finding 1) ------------------------- */

ParameterizedTestParameters(hostile_partition, laundering_open_refused)
{
	static const unsigned delays_us[] = { 0, 100, 2000 };
	size_t n, per = sizeof(delays_us) / sizeof(delays_us[0]);
	struct hp_param *p = params_alloc(per, &n);
	for (size_t i = 0; i < n; i++)
		p[i].at = delays_us[i % per]; /* here: the restorer's delay */
	return cr_make_param_array(struct hp_param, p, n, params_free);
}

/* A CHAN_OPEN struct in the config region holding tampered bytes, the
 * baseline bytes restored by a second vCPU before the grant manager looks:
 * the open is refused outright (the struct is not writable RAM), never a
 * channel granted to a partition whose config was tampered. */
ParameterizedTest(struct hp_param *c, hostile_partition,
		  laundering_open_refused, .timeout = 60)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "mode=launder chan=c1 delay_us=%u", c->at);
	struct hp t;
	hp_start(&t, c->backend, cmd, 2);
	hp_run(&t);
	hp_stopped(&t, VMX_STOP_BAD_HYPERCALL, "in the config region");
	const char *aud = t_fleet_audit(&t.f);
	cr_assert_null(strstr(aud, "\"event\":\"open_allowed\","
				   "\"partition\":\"h\""), "%s", aud);
	cr_assert_null(strstr(t_fleet_out(&t.f), "laundered open"));
	/* The config may differ where h wrote it itself (if the restorer
	 * had not run yet): that write went through h's own page tables and
	 * is seen by measurement; nothing else changed. */
	config_intact(t.w);
	image_intact(t.h);
	cr_expect_eq(memcmp(t.low, t.h->mem, sizeof(t.low)), 0);
	hp_free(&t);
}

/* ---- one rule for reserved fields --------------------------------------- */

ParameterizedTestParameters(hostile_partition, reserved_field_stops)
{
	size_t n;
	struct hp_param *p = params_alloc(2, &n);
	for (size_t i = 0; i < n; i++)
		p[i].hc = i % 2 ? PARLEY_HC_CHAN_WAIT : PARLEY_HC_HALT;
	return cr_make_param_array(struct hp_param, p, n, params_free);
}

ParameterizedTest(struct hp_param *c, hostile_partition, reserved_field_stops,
		  .timeout = 60)
{
	struct hp t;
	hp_start(&t, c->backend, c->hc == PARLEY_HC_HALT
				      ? "mode=hc_halt_reserved"
				      : "mode=hc_wait_reserved", 0);
	hp_run(&t);
	hp_stopped(&t, VMX_STOP_BAD_HYPERCALL, "reserved field is not 0");
	baselines_intact(&t);
	hp_free(&t);
}

/* ---- W^X inside the partition ------------------------------------------- */

static const char *const wx_modes[] = {
	"write_text", "exec_data", "exec_stack", "exec_heap", "exec_rodata",
	"exec_bootinfo", "exec_config",
};
#define WX_N (sizeof(wx_modes) / sizeof(wx_modes[0]))

ParameterizedTestParameters(hostile_partition, wx_violation_stops)
{
	size_t n;
	struct hp_param *p = params_alloc(WX_N, &n);
	for (size_t i = 0; i < n; i++)
		p[i].at = (unsigned)(i % WX_N);
	return cr_make_param_array(struct hp_param, p, n, params_free);
}

/* A write to its own text, or running code from data, stack, heap,
 * rodata, boot info or the config region: the page tables forbid it, the
 * fault stops the partition. */
ParameterizedTest(struct hp_param *c, hostile_partition, wx_violation_stops,
		  .timeout = 60)
{
	char cmd[64];
	const char *mode = wx_modes[c->at];
	snprintf(cmd, sizeof(cmd), "mode=%s", mode);
	struct hp t;
	hp_start(&t, c->backend, cmd, 0);
	hp_run(&t);
	/* KVM tells a fetch from a write by CR2 and RIP; another backend
	 * need only name the fault. */
	const char *why = c->backend != CTL_BACKEND_KVM ? NULL
			  : !strcmp(mode, "write_text")
				  ? "write to a read-only image page"
				  : "instruction fetch";
	hp_stopped(&t, VMX_STOP_TRIPLE_FAULT, why);
	cr_assert_null(strstr(t_fleet_out(&t.f), "executed"));
	if (strcmp(mode, "exec_config")) /* that one wrote a `ret` there */
		config_intact(t.h);
	config_intact(t.w);
	image_intact(t.h);
	hp_free(&t);
}
