/* The thin hypervisor with real KVM partitions, driven through the agent's
 * partition API: each test starts real vmm processes. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "agent/snapshot.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

static struct partition *start(const char *name, const char *image,
			       const char *cmdline, struct t_console *out)
{
	struct part_spec s;
	t_spec(&s, name, image, cmdline, NULL);
	struct part_opts o = t_opts(out);
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	int rc = partition_create(&s, &o, &p, &err);
	spec_free(&s);
	cr_assert_eq(rc, 0, "create %s: %s", name, perr_msg(&err));
	return p;
}

static void finish(struct partition *p)
{
	cr_assert_eq(partition_wait(p, 20000), 0, "%s did not finish",
		     p->name);
}

T_BACKEND_TEST(vmx, hello_runs_and_exits_with_its_code, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("hello", "hello.elf", "exit=7", &out);
	finish(p);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "reason %s: %s",
		     vmx_stop_name(p->fin.reason), p->fin.detail);
	cr_assert_eq(p->fin.code, 7);
	cr_assert(strstr(out.buf, "hello, world (abi 1.3, 8 MiB, 1 vcpu)\n"),
		  "output: %s", out.buf);
	cr_assert_eq(p->state, PART_STOPPED);
	partition_destroy(p);
	t_console_free(&out);
}

static struct partition *start_smp(const char *image, const char *cmdline,
				    struct t_console *out)
{
	char json[256];
	snprintf(json, sizeof(json), "{\"name\":\"smp\",\"image\":\"%s\","
		 "\"vcpus\":4,\"memory\":\"8M\",\"cmdline\":\"%s\"}", image,
		 cmdline);
	struct part_spec s;
	cr_assert_eq(spec_parse(json, strlen(json), PARLEY_BUILD_DIR "/guest",
				&s, NULL), 0);
	struct part_opts o = t_opts(out);
	struct partition *p;
	struct parley_err err = { 0 };
	cr_assert_eq(partition_create(&s, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	spec_free(&s);
	return p;
}

static void wait_lines(struct partition *p, struct t_console *out,
		       const char *prefix, int n);

/* The secondaries' state as the vmm reports it: a partition whose first
 * vCPU is still computing is paused and saved (the vmm sends each vCPU's
 * state, its `halted` flag included) and the snapshot read back. vCPUs
 * 1..3 entered the SDK's default parley_secondary(), which parks them
 * with HALT: they must be halted; vCPU 0 must not. Then a 4-vCPU
 * partition whose first vCPU exits ends with that exit (the parked ones
 * do not keep it alive). */
/* Whether every secondary of a 4-vCPU snapshot is halted. */
static bool smp_parked(const struct snap_image *img)
{
	for (unsigned i = 1; i < 4; i++)
		if (!img->vcpu[i].halted)
			return false;
	return true;
}

T_BACKEND_TEST(vmx, secondary_vcpus_park_and_partition_exits, .timeout = 60)
{
	struct t_console run = { 0 };
	struct partition *p = start_smp("counter.elf",
					"count=100000 work=3000000", &run);
	char *dir = t_tmpdir(), *snap;
	cr_assert(asprintf(&snap, "%s/smp.snap", dir) > 0);
	static char host[SNAP_HOST_MAX];
	cr_assert_eq(snap_host(host, NULL), 0);
	struct snap_expect want = { .host = host };
	struct snap_image img;
	struct parley_err err = { 0 };
	/* A secondary's thread may not have reached its HALT when vCPU 0
	 * prints its first tick (a loaded 2-core CI machine schedules it
	 * late): the partition is resumed and looked at again, a tick
	 * later each time, until all three are parked or 20 ticks passed. */
	for (int tick = 1; tick <= 20; tick++) {
		wait_lines(p, &run, "tick ", tick);
		cr_assert_eq(partition_pause(p, &err), 0, "%s", perr_msg(&err));
		cr_assert_eq(partition_save(p, snap, &err), 0, "%s",
			     perr_msg(&err));
		cr_assert_eq(snap_read(snap, t_snap_key(), &want, &img, &err),
			     0, "%s", perr_msg(&err));
		close(img.mem_fd);
		if (smp_parked(&img) || tick == 20)
			break;
		cr_assert_eq(partition_resume(p, &err), 0, "%s",
			     perr_msg(&err));
	}
	partition_destroy(p);
	cr_assert_eq(img.h.vcpus, 4);
	cr_expect_eq(img.vcpu[0].halted, 0, "vCPU 0 (computing) halted");
	for (unsigned i = 1; i < 4; i++) {
		cr_expect_eq(img.vcpu[i].index, i);
		cr_expect_eq(img.vcpu[i].halted, 1, "vCPU %u is not parked", i);
	}
	t_rmtree(dir);
	free(dir);
	free(snap);
	t_console_free(&run);

	struct t_console out = { 0 };
	p = start_smp("hello.elf", "", &out);
	finish(p);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s", p->fin.detail);
	cr_assert(strstr(out.buf, "4 vcpu"), "%s", out.buf);
	partition_destroy(p);
	t_console_free(&out);
}

/* Decode the `hex NAME OFF BYTES` lines hello prints with `dump`. */
static size_t undump(const char *text, const char *name, uint8_t *buf,
		     size_t cap)
{
	size_t got = 0;
	char want[96];
	snprintf(want, sizeof(want), "hex %s ", name);
	for (const char *l = strstr(text, want); l; l = strstr(l + 1, want)) {
		unsigned long off;
		char hex[80];
		if (sscanf(l + strlen(want), "%lu %79s", &off, hex) != 2)
			continue;
		for (size_t i = 0; hex[2 * i] && off + i < cap; i++) {
			unsigned v;
			sscanf(hex + 2 * i, "%2x", &v);
			buf[off + i] = (uint8_t)v;
			if (off + i + 1 > got)
				got = off + i + 1;
		}
	}
	return got;
}

T_BACKEND_TEST(vmx, config_files_read_back_byte_for_byte, .timeout = 60)
{
	char *dir = t_tmpdir();
	uint8_t bin[5000];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 131 + (i >> 8));
	const char *text = "listen=0.0.0.0:80\nmode=strict\n";
	free(t_write(dir, "blob.bin", bin, sizeof(bin)));
	free(t_write(dir, "app.conf", text, strlen(text)));
	free(t_write(dir, "empty", "", 0));
	char *spec;
	cr_assert(asprintf(&spec,
		"{\"name\":\"cfg\",\"image\":\"hello.elf\",\"memory\":\"8M\","
		"\"cmdline\":\"dump\",\"config\":["
		"{\"name\":\"blob\",\"path\":\"blob.bin\"},"
		"{\"name\":\"app.conf\",\"path\":\"app.conf\"},"
		"{\"name\":\"empty\",\"path\":\"empty\"}]}") > 0);
	char *path = t_write(dir, "cfg.json", spec, strlen(spec));
	struct part_spec s;
	struct parley_err err = { 0 };
	cr_assert_eq(spec_load(path, &s, &err), 0, "%s", perr_msg(&err));
	struct t_console out = { 0 };
	struct part_opts o = t_opts(&out);
	struct partition *p;
	cr_assert_eq(partition_create(&s, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	finish(p);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT);
	static uint8_t got[8192];
	cr_assert_eq(undump(out.buf, "blob", got, sizeof(got)), sizeof(bin));
	cr_assert_eq(memcmp(got, bin, sizeof(bin)), 0);
	cr_assert_eq(undump(out.buf, "app.conf", got, sizeof(got)),
		     strlen(text));
	cr_assert_eq(memcmp(got, text, strlen(text)), 0);
	cr_assert(strstr(out.buf, "config empty: 0 bytes"), "%s", out.buf);
	partition_destroy(p);
	spec_free(&s);
	t_console_free(&out);
	free(spec);
	free(path);
	t_rmtree(dir);
	free(dir);
}

struct hostile_case {
	const char *mode;
	unsigned reason;
	const char *detail;
};

static const struct hostile_case hostile_cases[] = {
	{ "ud2", VMX_STOP_TRIPLE_FAULT, "triple fault" },
	{ "null", VMX_STOP_TRIPLE_FAULT, "cr2 0x0" },
	{ "write_text", VMX_STOP_TRIPLE_FAULT, "cr2 0x1" },
	{ "read_sys", VMX_STOP_TRIPLE_FAULT, "cr2 0x1000" },
	{ "write_bootinfo", VMX_STOP_TRIPLE_FAULT, "cr2 0x13000" },
	{ "badport", VMX_STOP_BAD_PORT, "port 0x80" },
	{ "inport", VMX_STOP_BAD_PORT, "IN of 1 byte(s) to port 0x60" },
	{ "hc_oob", VMX_STOP_BAD_HYPERCALL, "outside guest memory" },
	{ "hc_buf_oob", VMX_STOP_BAD_HYPERCALL, "buffer 0x7ffff0 + 64 bytes" },
	{ "hc_overflow", VMX_STOP_BAD_HYPERCALL, "buffer 0xfffffffffffff000" },
	{ "hc_unaligned", VMX_STOP_BAD_HYPERCALL, "not 8-byte aligned" },
	{ "hc_unknown", VMX_STOP_BAD_HYPERCALL, "unknown hypercall number 66" },
	{ "hc_halt_reserved", VMX_STOP_BAD_HYPERCALL, "reserved field" },
	/* KVM also names the access (read of 8 bytes); a process-backend
	 * fault carries only the address. */
	{ "wild", VMX_STOP_BAD_ACCESS, "guest-physical 0x30000000" },
	{ "wild_write", VMX_STOP_BAD_ACCESS, "guest-physical 0x30000000" },
};

static void check_neighbour(struct partition *n, struct t_console *out,
			    int ticks)
{
	finish(n);
	cr_assert_eq(n->fin.reason, VMX_STOP_EXIT, "neighbour: %s",
		     n->fin.detail);
	cr_assert_eq(n->fin.code, 0);
	cr_assert_eq(t_count_lines(out->buf, "tick "), ticks, "%s", out->buf);
}

T_BACKEND_TEST(vmx, hostile_partition_stops_alone_with_reason, .timeout = 120)
{
	for (size_t i = 0; i < sizeof(hostile_cases) / sizeof(*hostile_cases);
	     i++) {
		const struct hostile_case *c = &hostile_cases[i];
		struct t_console nout = { 0 }, hout = { 0 };
		struct partition *n = start("neighbour", "counter.elf",
					    "count=4 work=20000", &nout);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "mode=%s", c->mode);
		struct partition *h = start("hostile", "hostile.elf", cmd, &hout);
		finish(h);
		cr_assert_eq(h->fin.reason, c->reason, "%s: got %s (%s)",
			     c->mode, vmx_stop_name(h->fin.reason),
			     h->fin.detail);
		cr_assert(strstr(h->fin.detail, c->detail), "%s: detail \"%s\"",
			  c->mode, h->fin.detail);
		cr_assert(strstr(hout.buf, "hostile: starting"));
		cr_assert_null(strstr(hout.buf, "unknown mode"));
		check_neighbour(n, &nout, 4);
		partition_destroy(h);
		partition_destroy(n);
		t_console_free(&nout);
		t_console_free(&hout);
	}
}

/* A copy of the hello image with one change made by `mutate`. */
static char *mutated_image(const char *dir, const char *name,
			   void (*mutate)(uint8_t *, size_t *))
{
	uint8_t *img;
	size_t len;
	cr_assert_eq(file_read_all(T_IMAGE("hello.elf"), 1 << 24, &img, &len,
				   NULL), 0);
	mutate(img, &len);
	char *path = t_write(dir, name, img, len);
	free(img);
	return path;
}

static Elf64_Phdr *phdr(uint8_t *img, unsigned i)
{
	Elf64_Ehdr *e = (Elf64_Ehdr *)img;
	return (Elf64_Phdr *)(img + e->e_phoff) + i;
}

static void m_truncate(uint8_t *img, size_t *len)
{
	(void)img;
	*len = 100;
}

static void m_machine(uint8_t *img, size_t *len)
{
	(void)len;
	((Elf64_Ehdr *)img)->e_machine = EM_AARCH64;
}

static void m_overlap(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 1)->p_vaddr = phdr(img, 0)->p_vaddr + 0x10;
	phdr(img, 1)->p_offset = phdr(img, 0)->p_offset + 0x10;
}

static void m_beyond_memory(uint8_t *img, size_t *len)
{
	(void)len;
	phdr(img, 1)->p_memsz = 64ull << 20;
}

static const struct {
	const char *name;
	void (*mutate)(uint8_t *, size_t *);
	const char *msg;
} bad_images[] = {
	{ "truncated", m_truncate, "truncated" },
	{ "aarch64", m_machine, "not x86-64" },
	{ "overlap", m_overlap, "overlaps" },
	{ "too-big", m_beyond_memory, "outside partition memory" },
};

T_BACKEND_TEST(vmx, hostile_image_refused_with_named_problem, .timeout = 60)
{
	char *dir = t_tmpdir();
	struct t_console nout = { 0 };
	struct partition *n = start("neighbour", "counter.elf",
				    "count=6 work=50000", &nout);
	for (size_t i = 0; i < sizeof(bad_images) / sizeof(*bad_images); i++) {
		char *img = mutated_image(dir, bad_images[i].name,
					  bad_images[i].mutate);
		struct part_spec s;
		t_spec(&s, "bad", bad_images[i].name, "", NULL);
		struct t_console out = { 0 };
		struct part_opts o = t_opts(&out);
		const char *const dirs[] = { dir, NULL };
		o.image_dirs = dirs;
		struct partition *p = NULL;
		struct parley_err err = { 0 };
		int rc = partition_create(&s, &o, &p, &err);
		cr_assert_lt(rc, 0, "%s accepted", bad_images[i].name);
		cr_assert_null(p);
		cr_assert(strstr(err.msg, bad_images[i].msg), "%s: \"%s\"",
			  bad_images[i].name, err.msg);
		cr_assert(strstr(err.msg, bad_images[i].name),
			  "message names the file: %s", err.msg);
		spec_free(&s);
		free(img);
	}
	check_neighbour(n, &nout, 6);
	partition_destroy(n);
	t_console_free(&nout);
	t_rmtree(dir);
	free(dir);
}

static void wait_lines(struct partition *p, struct t_console *out,
		       const char *prefix, int n)
{
	for (int i = 0; i < 2000 && t_count_lines(out->buf, prefix) < n; i++) {
		struct parley_err err = { 0 };
		cr_assert_eq(p->finished, false, "finished early: %s",
			     p->fin.detail);
		(void)err;
		if (partition_wait(p, 10) == 0)
			break;
	}
	cr_assert_geq(t_count_lines(out->buf, prefix), n);
}

T_BACKEND_TEST(vmx, pause_stops_progress_and_resume_continues, .timeout = 60)
{
	struct t_console out = { 0 };
	struct partition *p = start("counter", "counter.elf",
				    "count=40 work=5000000", &out);
	wait_lines(p, &out, "tick ", 2);
	struct parley_err err = { 0 };
	cr_assert_eq(partition_pause(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(p->state, PART_PAUSED);
	int seen = t_count_lines(out.buf, "tick ");
	cr_assert_eq(partition_wait(p, 300), -ETIMEDOUT);
	cr_assert_eq(t_count_lines(out.buf, "tick "), seen,
		     "ran while paused");
	cr_assert_lt(partition_pause(p, &err), 0, "pause twice");
	cr_assert_eq(partition_resume(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(p->state, PART_RUNNING);
	finish(p);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT);
	cr_assert_eq(t_count_lines(out.buf, "tick "), 40);
	partition_destroy(p);
	t_console_free(&out);
}

T_BACKEND_TEST(vmx, save_restore_continues_like_an_uninterrupted_run, .timeout = 90)
{
	const char *cmd = "count=16 work=3000000";
	struct t_console whole = { 0 }, before = { 0 }, after = { 0 };
	struct partition *p = start("counter", "counter.elf", cmd, &whole);
	finish(p);
	cr_assert_eq(p->fin.code, 0);
	partition_destroy(p);

	char *dir = t_tmpdir(), *snap;
	cr_assert(asprintf(&snap, "%s/counter.snap", dir) > 0);
	p = start("counter", "counter.elf", cmd, &before);
	wait_lines(p, &before, "tick ", 5);
	struct parley_err err = { 0 };
	cr_assert_lt(partition_save(p, snap, &err), 0, "saved while running");
	cr_assert_eq(partition_pause(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(partition_save(p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(p); /* the original is gone for good */

	struct part_opts o = t_opts(&after);
	cr_assert_eq(partition_restore(snap, NULL, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_str_eq(p->name, "counter");
	finish(p);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s", p->fin.detail);
	cr_assert_eq(p->fin.code, 0);
	char *joined;
	cr_assert(asprintf(&joined, "%s%s", before.buf, after.buf ? after.buf : "") > 0);
	cr_assert_str_eq(joined, whole.buf);
	cr_assert_gt(t_count_lines(after.buf, "tick "), 0, "nothing ran after restore");
	partition_destroy(p);
	free(joined);
	free(snap);
	t_rmtree(dir);
	free(dir);
	t_console_free(&whole);
	t_console_free(&before);
	t_console_free(&after);
}

T_BACKEND_TEST(vmx, stop_kills_a_spinning_partition, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("spin", "hostile.elf", "mode=spin", &out);
	cr_assert_eq(partition_wait(p, 100), -ETIMEDOUT);
	partition_stop(p);
	cr_assert(p->finished);
	cr_assert_eq(p->fin.reason, VMX_STOP_KILLED, "%s",
		     vmx_stop_name(p->fin.reason));
	partition_destroy(p);
	t_console_free(&out);
}

T_BACKEND_TEST(vmx, vmm_process_death_is_reported, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("spin", "hostile.elf", "mode=spin", &out);
	kill(p->pid, SIGKILL);
	finish(p);
	cr_assert_eq(p->fin.reason, VMX_STOP_VMM_DIED);
	cr_assert(strstr(p->fin.detail, "signal 9"), "%s", p->fin.detail);
	partition_destroy(p);
	t_console_free(&out);
}

T_BACKEND_TEST(vmx, vmm_process_runs_under_seccomp, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("spin", "hostile.elf", "mode=spin", &out);
	char path[64], *status;
	size_t len;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
	/* /proc files report size 0: read through a pipe-free loop. */
	FILE *f = fopen(path, "r");
	cr_assert(f);
	status = calloc(1, 8192);
	len = fread(status, 1, 8191, f);
	fclose(f);
	cr_assert_gt(len, 0);
	cr_assert(strstr(status, "Seccomp:\t2"), "%s", status);
	free(status);
	partition_stop(p);
	partition_destroy(p);
	t_console_free(&out);
}
