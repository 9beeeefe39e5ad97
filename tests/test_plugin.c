/*
 * Suite `plugin`: device plugins from a manifest (agent/plugin/) and the
 * device lifecycle in the vmm (agent/vmx/plugdev.c), with the plugins the
 * build installs (build/plugins) and tests/plugins/fickle.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "agent/ctl/stop.h"
#include "agent/beneath.h"
#include "agent/disk/keys.h"
#include "agent/plugin/manifest.h"
#include "agent/plugin/plugdir.h"
#include "agent/vmx/blk_xts.h"
#include "agent/vmx/plugdev.h"
#include "tests/helpers/testutil.h"

#define PLUGINS PARLEY_BUILD_DIR "/plugins"
#define TPLUGINS PARLEY_BUILD_DIR "/tests/plugins"

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void sha256_hex(const void *p, size_t len, char out[65])
{
	uint8_t d[32];
	unsigned dl;
	EVP_Digest(p, len, d, &dl, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* dir/m (manifests) and dir/p (plugin files): the built plugins copied,
 * with their built manifests, plus `fickle` with a manifest of its hash. */
static void put_plugin(const char *dir, const char *name, const char *src,
		       const char *file)
{
	size_t len;
	char *b = slurp(src, &len), hex[65], json[512], d[PATH_MAX];
	snprintf(d, sizeof(d), "%s/p", dir);
	free(t_write(d, file, b, len));
	sha256_hex(b, len, hex);
	free(b);
	snprintf(json, sizeof(json), "{\"name\":\"%s\",\"class\":"
		 "\"transform\",\"abi\":1,\"file\":\"%s\",\"sha256\":"
		 "\"%s\"}", name, file, hex);
	snprintf(d, sizeof(d), "%s/m", dir);
	char n[64];
	snprintf(n, sizeof(n), "%s.json", name);
	free(t_write(d, n, json, strlen(json)));
}

static char *plugin_dirs(void)
{
	char *dir = t_tmpdir();
	char m[PATH_MAX], p[PATH_MAX], src[PATH_MAX];
	snprintf(m, sizeof(m), "%s/m", dir);
	snprintf(p, sizeof(p), "%s/p", dir);
	cr_assert_eq(mkdir(m, 0700), 0);
	cr_assert_eq(mkdir(p, 0700), 0);
	static const char *const names[] = { "file", "console", "xts" };
	for (int i = 0; i < 3; i++) {
		size_t len;
		snprintf(src, sizeof(src), PLUGINS "/parley-plugin-%s.so",
			 names[i]);
		char *b = slurp(src, &len);
		char n[64];
		snprintf(n, sizeof(n), "parley-plugin-%s.so", names[i]);
		free(t_write(p, n, b, len));
		free(b);
		snprintf(src, sizeof(src), PLUGINS "/manifests/%s.json",
			 names[i]);
		b = slurp(src, &len);
		snprintf(n, sizeof(n), "%s.json", names[i]);
		free(t_write(m, n, b, len));
		free(b);
	}
	put_plugin(dir, "fickle", TPLUGINS "/fickle.so", "fickle.so");
	/* Not manifests: ignored. */
	free(t_write(m, "README", "not json", 8));
	free(t_write(m, ".hidden.json", "{", 1));
	return dir;
}

/* The verified copy as a path dlopen takes (the vmm uses its jail's
 * bind; this process has /proc). */
static const char *fdpath(int fd)
{
	static char b[4][64];
	static unsigned n;
	char *p = b[n++ % 4];
	snprintf(p, 64, "/proc/self/fd/%d", fd);
	return p;
}

static int load(const char *dir, struct plugin_set *s, struct parley_err *e)
{
	char m[PATH_MAX], p[PATH_MAX];
	snprintf(m, sizeof(m), "%s/m", dir);
	snprintf(p, sizeof(p), "%s/p", dir);
	return plugin_set_load(m, p, s, e);
}

Test(plugin, manifest_parses)
{
	const char *j = "{\"name\":\"xts\",\"class\":\"transform\",\"abi\":1,"
			"\"file\":\"x.so\",\"sha256\":\"00112233445566778899"
			"aabbccddeeff00112233445566778899aabbccddeeff\"}";
	struct plugin_manifest m;
	struct parley_err err = { 0 };
	cr_assert_eq(plugin_manifest_parse(j, strlen(j), &m, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_str_eq(m.name, "xts");
	cr_assert_str_eq(m.file, "x.so");
	cr_assert_eq(m.plugin_class, PARLEY_PLUGIN_TRANSFORM);
	cr_assert_eq(m.sha256[0], 0x00);
	cr_assert_eq(m.sha256[1], 0x11);
	cr_assert_eq(m.sha256[31], 0xff);
}

/* Each refused, with a printable message saying what. */
Test(plugin, manifest_hostile)
{
#define H "\"sha256\":\"" \
	"0000000000000000000000000000000000000000000000000000000000000000\""
	static const struct { const char *json; int rc; const char *says; }
	cases[] = {
		{ "", -EINVAL, "invalid JSON" },
		{ "[]", -EINVAL, "expected an object" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"a.so\"," H ",\"extra\":1}", -EINVAL, "unknown field" },
		{ "{\"name\":\"a\",\"name\":\"b\",\"class\":\"block\","
		  "\"abi\":1,\"file\":\"a.so\"," H "}", -EINVAL, "duplicate" },
		{ "{\"class\":\"block\",\"abi\":1,\"file\":\"a.so\"," H "}",
		  -EINVAL, "name: expected a string" },
		{ "{\"name\":\"../a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"a.so\"," H "}", -EINVAL, "name:" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"../../bin/sh\"," H "}", -EINVAL, "file:" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"/etc/x.so\"," H "}", -EINVAL, "file:" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"a\\u0000b\"," H "}", -EINVAL, "NUL" },
		{ "{\"name\":\"a\",\"class\":\"disk\",\"abi\":1,\"file\":"
		  "\"a.so\"," H "}", -EINVAL, "class:" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":2,\"file\":"
		  "\"a.so\"," H "}", -ENOTSUP, "ABI 2" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":\"1\",\"file\":"
		  "\"a.so\"," H "}", -EINVAL, "abi: expected an integer" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"a.so\",\"sha256\":\"00\"}", -EINVAL, "sha256:" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"a.so\",\"sha256\":\"000000000000000000000000000000000000"
		  "00000000000000000000000000AA\"}", -EINVAL, "lower-case" },
		{ "{\"name\":\"a\",\"class\":\"block\",\"abi\":1,\"file\":"
		  "\"a.so\",\"sha256\":\"\\u001b[2J000000000000000000000000000000"
		  "000000000000000000000000000000\"}", -EINVAL, "sha256:" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct plugin_manifest m;
		struct parley_err err = { 0 };
		int rc = plugin_manifest_parse(cases[i].json,
					       strlen(cases[i].json), &m, &err);
		cr_expect_eq(rc, cases[i].rc, "case %zu: %d (%s)", i, rc,
			     perr_msg(&err));
		cr_expect(strstr(perr_msg(&err), cases[i].says),
			  "case %zu: %s", i, perr_msg(&err));
		cr_expect(printable(perr_msg(&err)), "case %zu", i);
		cr_expect_eq(m.name[0], 0, "case %zu left a name", i);
	}
	char big[PLUGIN_MANIFEST_MAX + 2];
	memset(big, ' ', sizeof(big));
	struct plugin_manifest m;
	cr_expect_eq(plugin_manifest_parse(big, sizeof(big), &m, NULL), -E2BIG);
}

/* The built plugins load from their verified copies, and the xts plugin
 * is the vmm's XTS. */
/* Copies an agent left when it died without freeing its set (kill -9)
 * are removed by the next load: a dead PID's directory goes, files and
 * all; a live PID's, a symlink named like one, and other names stay. */
Test(plugin, copies_of_dead_agents_are_swept)
{
	char *dir = plugin_dirs(), *tmp = t_tmpdir(), path[512];
	pid_t dead = fork();
	cr_assert_geq(dead, 0);
	if (dead == 0)
		_exit(0);
	cr_assert_eq(waitpid(dead, NULL, 0), dead);
	snprintf(path, sizeof(path), "%s/parley-plugins.%d.abcdef", tmp,
		 (int)dead);
	cr_assert_eq(mkdir(path, 0700), 0);
	char f[600];
	snprintf(f, sizeof(f), "%s/xts.so", path);
	cr_assert_eq(close(open(f, O_WRONLY | O_CREAT, 0600)), 0);
	char live[512], other[512], link[512], target[512];
	snprintf(live, sizeof(live), "%s/parley-plugins.%d.ghijkl", tmp,
		 (int)getpid());
	snprintf(other, sizeof(other), "%s/parley-plugins.XYZabc", tmp);
	snprintf(target, sizeof(target), "%s/target", tmp);
	snprintf(link, sizeof(link), "%s/parley-plugins.%d.mnopqr", tmp,
		 (int)dead);
	cr_assert_eq(mkdir(live, 0700), 0);
	cr_assert_eq(mkdir(other, 0700), 0);
	cr_assert_eq(mkdir(target, 0700), 0);
	cr_assert_eq(symlink(target, link), 0);
	setenv("TMPDIR", tmp, 1);
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), 0, "%s", perr_msg(&err));
	unsetenv("TMPDIR");
	struct stat st;
	cr_expect_eq(lstat(path, &st), -1, "%s was not swept", path);
	cr_expect_eq(stat(live, &st), 0, "a live agent's copies went");
	cr_expect_eq(stat(other, &st), 0);
	cr_expect_eq(lstat(link, &st), 0, "the symlink was removed");
	cr_expect_eq(stat(target, &st), 0);
	cr_expect(strstr(s.copies, tmp) == s.copies, "%s", s.copies);
	plugin_set_free(&s);
	t_rmtree(tmp);
	free(tmp);
	t_rmtree(dir);
	free(dir);
}

Test(plugin, set_verifies_and_loads)
{
	char *dir = plugin_dirs();
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(s.n, 4);
	cr_assert_str_eq(s.p[0].m.name, "console"); /* sorted */
	cr_assert_str_eq(s.p[3].m.name, "xts");
	for (unsigned i = 0; i < s.n; i++) {
		struct plugin_lib lib;
		cr_assert_eq(plugin_lib_open(fdpath(s.p[i].fd), s.p[i].m.name,
					     s.p[i].m.plugin_class, &lib, &err),
			     0, "%s", perr_msg(&err));
		cr_assert_str_eq(lib.p->name, s.p[i].m.name);
		plugin_lib_close(&lib);
	}
	/* A manifest naming a class other than the plugin's own. */
	struct plugin_lib lib;
	const struct plugin_verified *x = plugin_set_find(&s, "xts");
	cr_assert_eq(plugin_lib_open(fdpath(x->fd), "xts", PARLEY_PLUGIN_BLOCK,
				     &lib, &err), -EINVAL);
	cr_assert(strstr(perr_msg(&err), "plugin xts"), "%s", perr_msg(&err));
	cr_assert_eq(plugin_lib_open(fdpath(x->fd), "xts",
				     PARLEY_PLUGIN_TRANSFORM, &lib, &err), 0,
		     "%s", perr_msg(&err));
	uint8_t key[64], in[8192], a[8192], b[8192];
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 37 + 1);
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7);
	struct parley_plugin_config c = { .device = "d", .fd = -1,
					  .unit = 512, .key = key,
					  .key_len = 64 };
	struct plugdev d = { 0 };
	cr_assert_eq(plugdev_create(&d, lib.p, &c, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(plugdev_run(&d, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(lib.p->u.transform.encrypt(d.dev, in, a, sizeof(in),
						 4096), 0);
	struct blk_xts *ref;
	cr_assert_eq(xts_new(key, sizeof(in), &ref, &err), 0);
	cr_assert_eq(xts_crypt(ref, 1, in, b, sizeof(in), 4096), 0);
	xts_free(ref);
	cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
	cr_assert_eq(lib.p->u.transform.decrypt(d.dev, a, a, sizeof(a), 4096),
		     0);
	cr_assert_eq(memcmp(a, in, sizeof(a)), 0);
	cr_assert_eq(plugdev_stop(&d, &err), 0, "%s", perr_msg(&err));
	plugin_lib_close(&lib);
	plugin_set_free(&s);
	t_rmtree(dir);
	free(dir);
}

/* One byte of a plugin changed: the whole set is refused, naming it. */
Test(plugin, hash_differs_from_manifest_refused)
{
	char *dir = plugin_dirs();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/p/parley-plugin-xts.so", dir);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	uint8_t c;
	cr_assert_eq(pread(fd, &c, 1, 100), 1);
	c ^= 1;
	cr_assert_eq(pwrite(fd, &c, 1, 100), 1);
	close(fd);
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), -EPERM);
	cr_assert(strstr(perr_msg(&err), "plugin xts: parley-plugin-xts.so "
		  "has SHA-256"), "%s", perr_msg(&err));
	cr_assert_eq(s.n, 0);
	t_rmtree(dir);
	free(dir);
}

/* The file checked is the file loaded: swapping it after the check (in
 * place or by rename) changes nothing in what the vmm would load. */
Test(plugin, file_swapped_after_check_is_not_what_loads)
{
	char *dir = plugin_dirs();
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), 0, "%s", perr_msg(&err));
	char path[PATH_MAX], other[PATH_MAX];
	snprintf(path, sizeof(path), "%s/p/parley-plugin-xts.so", dir);
	snprintf(other, sizeof(other), "%s/p/fickle.so", dir);
	size_t len;
	char *b = slurp(other, &len);
	FILE *f = fopen(path, "wb"); /* in place */
	cr_assert_not_null(f);
	fwrite(b, 1, len, f);
	fclose(f);
	free(b);
	struct plugin_lib lib;
	const struct plugin_verified *x = plugin_set_find(&s, "xts");
	cr_assert_eq(plugin_lib_open(fdpath(x->fd), "xts",
				     PARLEY_PLUGIN_TRANSFORM, &lib, &err), 0,
		     "%s", perr_msg(&err));
	cr_assert_str_eq(lib.p->name, "xts");
	plugin_lib_close(&lib);
	/* The copy is held read-only: not even its holder can change it. */
	cr_assert_lt(write(x->fd, "x", 1), 0);
	cr_assert_eq(errno, EBADF);
	plugin_set_free(&s);
	/* Loaded again, the swapped file is refused. */
	cr_assert_eq(load(dir, &s, &err), -EPERM);
	cr_assert(strstr(perr_msg(&err), "plugin xts"), "%s", perr_msg(&err));
	t_rmtree(dir);
	free(dir);
}

Test(plugin, symlinked_or_missing_plugin_refused)
{
	char *dir = plugin_dirs();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/p/fickle.so", dir);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(symlink(PARLEY_BUILD_DIR "/tests/plugins/fickle.so",
			     path), 0);
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), -ELOOP, "%s", perr_msg(&err));
	cr_assert(strstr(perr_msg(&err), "plugin fickle"), "%s",
		  perr_msg(&err));
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(load(dir, &s, &err), -ENOENT, "%s", perr_msg(&err));
	t_rmtree(dir);
	free(dir);
}

/* A plugin built for another ABI whose manifest claims this one: its hash
 * matches, its own header does not. */
Test(plugin, other_abi_refused_at_load)
{
	char *dir = plugin_dirs();
	size_t len;
	char *b = slurp(TPLUGINS "/fickle-abi99.so", &len), hex[65], json[512];
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/p", dir);
	free(t_write(p, "fickle.so", b, len));
	sha256_hex(b, len, hex);
	free(b);
	snprintf(json, sizeof(json), "{\"name\":\"fickle\",\"class\":"
		 "\"transform\",\"abi\":1,\"file\":\"fickle.so\",\"sha256\":"
		 "\"%s\"}", hex);
	snprintf(p, sizeof(p), "%s/m", dir);
	free(t_write(p, "fickle.json", json, strlen(json)));
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), 0, "%s", perr_msg(&err));
	struct plugin_lib lib;
	const struct plugin_verified *f = plugin_set_find(&s, "fickle");
	cr_assert_eq(plugin_lib_open(fdpath(f->fd), "fickle",
				     PARLEY_PLUGIN_TRANSFORM, &lib, &err),
		     -ENOTSUP);
	cr_assert(strstr(perr_msg(&err), "plugin fickle: built for ABI 99"),
		  "%s", perr_msg(&err));
	plugin_set_free(&s);
	t_rmtree(dir);
	free(dir);
}

/* ---- the lifecycle ---- */

struct trail {
	char s[512];
};

static void on_state(void *ctx, const struct plugdev *d)
{
	struct trail *t = ctx;
	size_t n = strlen(t->s);
	snprintf(t->s + n, sizeof(t->s) - n, "%s%s", n ? " " : "",
		 plugdev_state_name(d->state));
}

struct emitted {
	char s[256];
};

static void emit(void *ctx, unsigned vcpu, const char *buf, size_t len)
{
	struct emitted *e = ctx;
	size_t n = strlen(e->s);
	snprintf(e->s + n, sizeof(e->s) - n, "[%u]%.*s", vcpu, (int)len, buf);
}

static void open_lib(struct plugin_set *s, const char *name,
		     struct plugin_lib *lib)
{
	const struct plugin_verified *v = plugin_set_find(s, name);
	cr_assert_not_null(v, "%s", name);
	struct parley_err err = { 0 };
	cr_assert_eq(plugin_lib_open(fdpath(v->fd), name, v->m.plugin_class,
				     lib, &err), 0, "%s", perr_msg(&err));
}

/* create, snapshot, stop; then restore from the saved state: the states
 * in order, and the device's state carried (the console's count of bytes
 * written goes on from where the snapshot left it). */
Test(plugin, lifecycle_in_order_and_state_carried)
{
	char *dir = plugin_dirs();
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), 0, "%s", perr_msg(&err));
	struct plugin_lib lib;
	open_lib(&s, "console", &lib);
	struct emitted out = { "" };
	struct trail t = { "" };
	struct parley_plugin_config c = { .device = "console", .fd = -1,
					  .emit = emit, .emit_ctx = &out };
	struct plugdev d = { .on_state = on_state, .ctx = &t };
	cr_assert_eq(plugdev_create(&d, lib.p, &c, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(plugdev_run(&d, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(lib.p->u.console.write(d.dev, 1, "done\nhalf a li", 14),
		     0);
	cr_assert_str_eq(out.s, "[1]done\nhalf a li");
	uint8_t state[4096];
	size_t len;
	uint32_t ver;
	cr_assert_eq(plugdev_save(&d, state, sizeof(state), &len, &ver, &err),
		     0, "%s", perr_msg(&err));
	cr_assert_eq(ver, 1);
	cr_assert_eq(len, 8);
	/* Gone after the snapshot, as a migration's source would be. */
	lib.p->ops.teardown(d.dev);
	cr_assert_str_eq(t.s, "initialising powering-up running saving-state "
			 "running");
	t.s[0] = 0;
	struct plugdev r = { .on_state = on_state, .ctx = &t };
	cr_assert_eq(plugdev_create(&r, lib.p, &c, &err), 0);
	cr_assert_eq(plugdev_load(&r, state, len, ver, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(plugdev_run(&r, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(lib.p->u.console.write(r.dev, 1, "ne\n", 3), 0);
	uint64_t bytes;
	cr_assert_eq(plugdev_save(&r, state, sizeof(state), &len, &ver, &err),
		     0);
	memcpy(&bytes, state, sizeof(bytes));
	cr_assert_eq(bytes, 17, "the count did not carry: %llu",
		     (unsigned long long)bytes);
	cr_assert_eq(plugdev_stop(&r, &err), 0);
	cr_assert_str_eq(t.s, "initialising powering-up loading-state running "
			 "saving-state running powering-down torn-down");
	/* A state of another version is refused by the device, named. */
	struct plugdev r2 = { 0 };
	cr_assert_eq(plugdev_create(&r2, lib.p, &c, &err), 0);
	cr_assert_lt(plugdev_load(&r2, state, len, 2, &err), 0);
	cr_assert(strstr(perr_msg(&err), "device console (plugin console) "
			 "refused load_state: saved state version 2"), "%s",
		  perr_msg(&err));
	cr_assert_eq(r2.state, PLUGDEV_FAILED);
	cr_assert_eq(plugdev_stop(&r2, &err), 0);
	cr_assert_eq(r2.state, PLUGDEV_TORN_DOWN);
	plugin_lib_close(&lib);
	plugin_set_free(&s);
	t_rmtree(dir);
	free(dir);
}

/* Each transition refused in turn: the operation fails naming the device,
 * the plugin and its reason (made printable), and the device has failed. */
Test(plugin, refused_transition_names_device_and_reason)
{
	char *dir = plugin_dirs();
	struct plugin_set s;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &s, &err), 0, "%s", perr_msg(&err));
	struct plugin_lib lib;
	open_lib(&s, "fickle", &lib);
	static const char *const ops[] = { "init", "power_up", "load_state",
					   "run", "save_state", "power_down" };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		char dev[32], want[128];
		snprintf(dev, sizeof(dev), "refuse-%s", ops[i]);
		snprintf(want, sizeof(want), "device %s (plugin fickle) "
			 "refused %s: told to refuse %s", dev, ops[i], ops[i]);
		struct parley_plugin_config c = { .device = dev, .fd = -1 };
		struct plugdev d = { 0 };
		uint64_t zero = 0;
		uint8_t buf[64];
		size_t len;
		uint32_t ver;
		int rc = plugdev_create(&d, lib.p, &c, &err);
		if (rc == 0 && !strcmp(ops[i], "load_state"))
			rc = plugdev_load(&d, &zero, 8, 7, &err);
		if (rc == 0)
			rc = plugdev_run(&d, &err);
		if (rc == 0)
			rc = plugdev_save(&d, buf, sizeof(buf), &len, &ver,
					  &err);
		if (rc == 0)
			rc = plugdev_stop(&d, &err);
		cr_expect_lt(rc, 0, "%s", ops[i]);
		cr_expect(strstr(perr_msg(&err), want), "%s", perr_msg(&err));
		cr_expect(printable(perr_msg(&err)), "%s", perr_msg(&err));
		plugdev_stop(&d, NULL);
		cr_expect_eq(d.state, PLUGDEV_TORN_DOWN);
	}
	/* Out of order: refused without asking the plugin. */
	struct parley_plugin_config c = { .device = "d", .fd = -1 };
	struct plugdev d = { 0 };
	cr_assert_eq(plugdev_create(&d, lib.p, &c, &err), 0);
	uint8_t buf[64];
	size_t len;
	uint32_t ver;
	cr_assert_eq(plugdev_save(&d, buf, sizeof(buf), &len, &ver, &err),
		     -EPROTO);
	cr_assert(strstr(perr_msg(&err), "save_state while powering-up"),
		  "%s", perr_msg(&err));
	cr_assert_eq(plugdev_run(&d, &err), 0);
	cr_assert_eq(plugdev_load(&d, buf, 8, 7, &err), -EPROTO);
	cr_assert_eq(plugdev_stop(&d, &err), 0);
	plugin_lib_close(&lib);
	plugin_set_free(&s);
	t_rmtree(dir);
	free(dir);
}

/* ---- partitions with plugins, on every backend ---- */

#define DISK "\"name\":\"data\",\"path\":\"data.img\",\"size\":\"1M\""
#define ENC DISK ",\"encryption\":{\"cipher\":\"aes-xts-plain64\"," \
	"\"key\":\"data.key\"}"

/* Every device state reported, "device/plugin state[: detail]" a line. */
static char states[4096];

static void on_dev(struct partition *p, const char *device,
		   const char *plugin, const char *state, const char *detail,
		   void *ctx)
{
	(void)ctx;
	size_t n = strlen(states);
	snprintf(states + n, sizeof(states) - n, "%s %s/%s %s%s%s\n", p->name,
		 device, plugin, state, detail ? ": " : "",
		 detail ? detail : "");
}

/* The states of one device, in order, space-separated. */
static void trail_of(const char *part, const char *dev, char *out, size_t cap)
{
	char key[128];
	snprintf(key, sizeof(key), "%s %s ", part, dev);
	out[0] = 0;
	for (const char *l = states; *l;) {
		const char *e = strchr(l, '\n');
		if (!strncmp(l, key, strlen(key))) {
			size_t n = strlen(out);
			snprintf(out + n, cap - n, "%s%.*s", n ? " " : "",
				 (int)(e - l - strlen(key)), l + strlen(key));
		}
		l = e + 1;
	}
}

struct run {
	struct t_console out;
	struct partition *p;
};

static bool start_paused; /* the next start() holds its vCPUs */

static int start(const char *dir, const struct plugin_set *ps,
		 const char *name, const char *cmdline, const char *disk,
		 struct run *r, struct parley_err *err)
{
	char json[2048];
	snprintf(json, sizeof(json), "{\"name\":\"%s\",\"image\":"
		 "\"blktest.elf\",\"memory\":\"8M\",\"cmdline\":\"%s\","
		 "\"disks\":[{%s}]}", name, cmdline, disk);
	struct part_spec s;
	cr_assert_eq(spec_parse(json, strlen(json), dir, &s, err), 0, "%s",
		     perr_msg(err));
	static const char *dirs[2];
	dirs[0] = dir;
	static struct beneath_dirs kd;
	memset(&kd, 0, sizeof(kd));
	beneath_add(&kd, dir);
	static struct disk_key_source keys;
	keys = (struct disk_key_source){ disk_key_file, &kd };
	memset(r, 0, sizeof(*r));
	struct part_opts o = t_opts(&r->out);
	o.disk_dirs = dirs;
	o.keys = &keys;
	o.plugins = ps;
	o.on_device_state = on_dev;
	o.start_paused = start_paused;
	int rc = partition_create(&s, &o, &r->p, err);
	spec_free(&s);
	return rc;
}

/* To the end: the stop reason. */
static unsigned finish(struct run *r)
{
	cr_assert_eq(partition_wait(r->p, 60000), 0, "did not finish:\n%s",
		     r->out.buf ? r->out.buf : "");
	unsigned why = r->p->fin.reason;
	cr_log_info("%s: %s: %s", r->p->name, vmx_stop_name(why),
		    r->p->fin.detail);
	return why;
}

static void runs_ok(const char *dir, const struct plugin_set *ps,
		    const char *cmdline, const char *disk)
{
	struct run r;
	struct parley_err err = { 0 };
	cr_assert_eq(start(dir, ps, "blk", cmdline, disk, &r, &err), 0, "%s",
		     perr_msg(&err));
	unsigned why = finish(&r);
	cr_assert_eq(why, VMX_STOP_EXIT, "%s: %s\n%s", vmx_stop_name(why),
		     r.p->fin.detail, r.out.buf);
	cr_assert_eq(r.p->fin.code, 0, "%s", r.out.buf);
	cr_assert(strstr(r.out.buf, "blk ok\n"), "%s", r.out.buf);
	partition_destroy(r.p);
	t_console_free(&r.out);
}

static void key_file(const char *dir)
{
	uint8_t key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 37 + 11);
	char *path = t_write(dir, "data.key", key, sizeof(key));
	cr_assert_eq(chmod(path, 0600), 0);
	free(path);
}

#define LIFE "initialising powering-up running powering-down torn-down"

/* An encrypted disk through the plugins file and xts, the console through
 * console: data written with plugins reads back without them (the vmm's
 * built-in devices) and the other way round, and every device went
 * through its states in order. */
T_BACKEND_TEST(plugin, partition_devices_are_plugins, .timeout = 120)
{
	char *dir = plugin_dirs();
	struct plugin_set ps;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &ps, &err), 0, "%s", perr_msg(&err));
	key_file(dir);
	states[0] = 0;
	runs_ok(dir, &ps, "mode=write seed=21 sectors=2048", ENC);
	char t[512];
	trail_of("blk", "console/console", t, sizeof(t));
	cr_assert_str_eq(t, LIFE, "%s", states);
	trail_of("blk", "data/file", t, sizeof(t));
	cr_assert_str_eq(t, LIFE, "%s", states);
	trail_of("blk", "data/xts", t, sizeof(t));
	cr_assert_str_eq(t, LIFE, "%s", states);
	runs_ok(dir, NULL, "mode=check seed=21 sectors=2048", ENC);
	runs_ok(dir, NULL, "mode=write seed=22 sectors=2048", ENC);
	runs_ok(dir, &ps, "mode=check seed=22 sectors=2048", ENC);
	runs_ok(dir, &ps, "mode=batch seed=23 sectors=512", DISK);
	runs_ok(dir, NULL, "mode=check seed=23 sectors=512", DISK);
	plugin_set_free(&ps);
	t_rmtree(dir);
	free(dir);
}

/* Two partitions at once, one of them with an "xts" plugin that dies in
 * its transform: that one stops with reason plugin naming it, the other
 * runs to its end. */
T_BACKEND_TEST(plugin, crashing_plugin_stops_only_its_partition,
	       .timeout = 120)
{
	char *good = plugin_dirs(), *bad = plugin_dirs();
	put_plugin(bad, "xts", TPLUGINS "/fickle-xts-crash.so",
		   "parley-plugin-xts.so");
	struct plugin_set gs, bs;
	struct parley_err err = { 0 };
	cr_assert_eq(load(good, &gs, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(load(bad, &bs, &err), 0, "%s", perr_msg(&err));
	key_file(good);
	key_file(bad);
	struct run a, b;
	cr_assert_eq(start(bad, &bs, "crashy", "mode=write seed=3 sectors=2048",
			   ENC, &a, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(start(good, &gs, "steady", "mode=write seed=3 "
			   "sectors=2048", ENC, &b, &err), 0, "%s",
		     perr_msg(&err));
	unsigned why = finish(&a);
	cr_assert_eq(why, VMX_STOP_PLUGIN, "%s: %s", vmx_stop_name(why),
		     a.p->fin.detail);
	cr_assert(strstr(a.p->fin.detail, "plugin xts crashed (signal 4) in "
			 "encrypt"), "%s", a.p->fin.detail);
	why = finish(&b);
	cr_assert_eq(why, VMX_STOP_EXIT, "%s: %s", vmx_stop_name(why),
		     b.p->fin.detail);
	cr_assert(strstr(b.out.buf, "blk ok\n"), "%s", b.out.buf);
	partition_destroy(a.p);
	partition_destroy(b.p);
	t_console_free(&a.out);
	t_console_free(&b.out);
	plugin_set_free(&gs);
	plugin_set_free(&bs);
	t_rmtree(good);
	t_rmtree(bad);
	free(good);
	free(bad);
}

/* A device refusing to power up: the partition does not start, the error
 * names device, plugin and reason, and the device's states say so. */
T_BACKEND_TEST(plugin, refusing_device_fails_the_start, .timeout = 60)
{
	char *dir = plugin_dirs();
	put_plugin(dir, "xts", TPLUGINS "/fickle-xts.so",
		   "parley-plugin-xts.so");
	struct plugin_set ps;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &ps, &err), 0, "%s", perr_msg(&err));
	key_file(dir);
	states[0] = 0;
	struct run r;
	int rc = start(dir, &ps, "blk", "mode=write seed=1 sectors=8",
		       "\"name\":\"refuse-power_up\",\"path\":\"data.img\","
		       "\"size\":\"1M\",\"encryption\":{\"cipher\":"
		       "\"aes-xts-plain64\",\"key\":\"data.key\"}", &r, &err);
	cr_assert_lt(rc, 0);
	cr_assert(strstr(perr_msg(&err), "device refuse-power_up (plugin xts) "
			 "refused power_up: told to refuse power_up"), "%s",
		  perr_msg(&err));
	char t[512];
	trail_of("blk", "refuse-power_up/xts", t, sizeof(t));
	cr_assert(!strncmp(t, "initialising powering-up failed: device "
			   "refuse-power_up (plugin xts) refused power_up",
			   strlen("initialising powering-up failed: device "
				  "refuse-power_up (plugin xts) refused "
				  "power_up")), "%s", states);
	t_console_free(&r.out);
	plugin_set_free(&ps);
	t_rmtree(dir);
	free(dir);
}

/* ---- the agent: --plugin-dir, baselines, audit ---- */

/* A plugin directory as the package lays it out (plugins in D, their
 * manifests in D/manifests), from the build's; xts_so, if given, replaces
 * the xts plugin (with a manifest of its own hash). */
static char *agent_plugin_dir(const char *xts_so)
{
	char *d = t_tmpdir();
	char m[PATH_MAX], src[PATH_MAX], n[64];
	snprintf(m, sizeof(m), "%s/manifests", d);
	cr_assert_eq(mkdir(m, 0700), 0);
	static const char *const names[] = { "file", "console", "xts" };
	for (int i = 0; i < 3; i++) {
		size_t len;
		snprintf(src, sizeof(src), PLUGINS "/parley-plugin-%s.so",
			 names[i]);
		if (i == 2 && xts_so)
			snprintf(src, sizeof(src), "%s", xts_so);
		char *b = slurp(src, &len), hex[65], json[512];
		snprintf(n, sizeof(n), "parley-plugin-%s.so", names[i]);
		free(t_write(d, n, b, len));
		sha256_hex(b, len, hex);
		free(b);
		snprintf(json, sizeof(json), "{\"name\":\"%s\",\"class\":\"%s\","
			 "\"abi\":1,\"file\":\"%s\",\"sha256\":\"%s\"}",
			 names[i], i == 0 ? "block" : i == 1 ? "console"
							     : "transform",
			 n, hex);
		snprintf(n, sizeof(n), "%s.json", names[i]);
		free(t_write(m, n, json, strlen(json)));
	}
	return d;
}

static int agent_run(const char *pdir, const char *state, char **out)
{
	char bl[PATH_MAX], au[PATH_MAX];
	snprintf(bl, sizeof(bl), "%s/bl.json", state);
	snprintf(au, sizeof(au), "%s/audit.jsonl", state);
	char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
			 PARLEY_BUILD_DIR "/guest", "--plugin-dir",
			 (char *)pdir, "--baselines", bl, "--audit", au,
			 PARLEY_SOURCE_DIR "/examples/hello.json", NULL };
	return t_run(argv, out, 60);
}

static char *read_text(const char *dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	size_t len;
	return slurp(path, &len);
}

/* Enrolled with its plugins; the xts plugin then replaced by another
 * (with a manifest that matches it: the set verifies): the partition is
 * refused, an INTEGRITY failure naming the plugin. */
Test(plugin, plugin_swapped_after_enrolment_is_integrity_failure,
     .timeout = 120)
{
	char *state = t_tmpdir();
	char *good = agent_plugin_dir(NULL);
	char *out;
	int rc = agent_run(good, state, &out);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "hello: exited with code 0"), "%s", out);
	free(out);
	char *bl = read_text(state, "bl.json");
	cr_assert(strstr(bl, "\"plugins\""), "%s", bl);
	cr_assert(strstr(bl, "\"xts\""), "%s", bl);
	free(bl);
	char *au = read_text(state, "audit.jsonl");
	cr_assert(strstr(au, "\"event\":\"device_state\""), "%s", au);
	cr_assert(strstr(au, "device console (plugin console): running"),
		  "%s", au);
	cr_assert(strstr(au, "device console (plugin console): torn-down"),
		  "%s", au);
	free(au);
	/* Again with the same plugins: admitted. */
	rc = agent_run(good, state, &out);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	free(out);
	char *swapped = agent_plugin_dir(TPLUGINS "/fickle-xts.so");
	rc = agent_run(swapped, state, &out);
	cr_assert_neq(rc, 0, "%s", out);
	cr_assert(strstr(out, "device plugin \"xts\" differs from its "
			 "baseline"), "%s", out);
	free(out);
	au = read_text(state, "audit.jsonl");
	cr_assert(strstr(au, "\"reason\":\"INTEGRITY\""), "%s", au);
	cr_assert(strstr(au, "device plugin \\\"xts\\\" differs"), "%s", au);
	free(au);
	t_rmtree(swapped);
	t_rmtree(good);
	t_rmtree(state);
	free(swapped);
	free(good);
	free(state);
}

/* A plugin file changed under its manifest: the agent does not start. */
Test(plugin, agent_refuses_a_plugin_its_manifest_does_not_match,
     .timeout = 60)
{
	char *state = t_tmpdir();
	char *d = agent_plugin_dir(NULL);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/parley-plugin-file.so", d);
	FILE *f = fopen(path, "ab");
	cr_assert_not_null(f);
	fputc(0, f);
	fclose(f);
	char *out;
	int rc = agent_run(d, state, &out);
	cr_assert_neq(rc, 0, "%s", out);
	cr_assert(strstr(out, "plugin file: parley-plugin-file.so has SHA-256"),
		  "%s", out);
	cr_assert_null(strstr(out, "hello|"), "%s", out);
	free(out);
	t_rmtree(d);
	t_rmtree(state);
	free(d);
	free(state);
}

/* ---- snapshot and restore ---- */

static void run_until_ticks(struct partition *p, struct t_console *out,
			    int n)
{
	for (int i = 0; i < 2000 && t_count_lines(out->buf, "tick ") < n; i++) {
		cr_assert_eq(p->finished, false, "finished early: %s",
			     p->fin.detail);
		if (partition_wait(p, 10) == 0)
			break;
	}
	cr_assert_geq(t_count_lines(out->buf, "tick "), n);
}

/* Snapshot: each device saves its state (saving-state, then running);
 * restore: each loads it (loading-state) before running, the console's
 * byte count going on from the snapshot's; in order, as the audit would
 * show them (on_device_state is what the agent audits). */
T_BACKEND_TEST(plugin, snapshot_restore_carries_device_state, .timeout = 90)
{
	char *dir = plugin_dirs();
	struct plugin_set ps;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &ps, &err), 0, "%s", perr_msg(&err));
	struct t_console before = { 0 }, after = { 0 };
	struct part_spec s;
	t_spec(&s, "counter", "counter.elf", "count=12 work=3000000", NULL);
	struct part_opts o = t_opts(&before);
	o.plugins = &ps;
	o.on_device_state = on_dev;
	states[0] = 0;
	struct partition *p = NULL;
	cr_assert_eq(partition_create(&s, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	spec_free(&s);
	run_until_ticks(p, &before, 3);
	cr_assert_eq(partition_pause(p, &err), 0, "%s", perr_msg(&err));
	char snap[PATH_MAX];
	snprintf(snap, sizeof(snap), "%s/counter.snap", dir);
	cr_assert_eq(partition_save(p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(p);
	char t[512];
	/* partition_destroy stops it as an agent's stop does: its devices
	 * are powered down before the vmm goes. */
	trail_of("counter", "console/console", t, sizeof(t));
	cr_assert_str_eq(t, "initialising powering-up running saving-state "
			 "running powering-down torn-down", "%s", states);

	states[0] = 0;
	o = t_opts(&after);
	o.plugins = &ps;
	o.on_device_state = on_dev;
	cr_assert_eq(partition_restore(snap, "counter", &o, &p, &err), 0,
		     "%s", perr_msg(&err));
	cr_assert_eq(partition_wait(p, 30000), 0);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s", p->fin.detail);
	trail_of("counter", "console/console", t, sizeof(t));
	cr_assert_str_eq(t, "initialising powering-up loading-state running "
			 "powering-down torn-down", "%s", states);
	cr_assert_gt(after.len, 0);
	partition_destroy(p);
	t_console_free(&before);
	t_console_free(&after);
	plugin_set_free(&ps);
	t_rmtree(dir);
	free(dir);
}

/* The spec start() makes, for a restore to re-open its disks from. */
static void disk_spec(const char *dir, const char *name, const char *cmdline,
		      const char *disk, struct part_spec *s)
{
	char json[2048];
	struct parley_err err = { 0 };
	snprintf(json, sizeof(json), "{\"name\":\"%s\",\"image\":"
		 "\"blktest.elf\",\"memory\":\"8M\",\"cmdline\":\"%s\","
		 "\"disks\":[{%s}]}", name, cmdline, disk);
	cr_assert_eq(spec_parse(json, strlen(json), dir, s, &err), 0, "%s",
		     perr_msg(&err));
}

/* Restore options like start()'s: the disks beneath dir, key files. */
static struct part_opts restore_opts(const char *dir, struct t_console *out,
				     const struct plugin_set *ps,
				     const struct part_spec *s)
{
	static const char *dirs[2];
	dirs[0] = dir;
	static struct beneath_dirs kd;
	memset(&kd, 0, sizeof(kd));
	beneath_add(&kd, dir);
	static struct disk_key_source keys;
	keys = (struct disk_key_source){ disk_key_file, &kd };
	struct part_opts o = t_opts(out);
	o.disk_dirs = dirs;
	o.keys = &keys;
	o.plugins = ps;
	o.on_device_state = on_dev;
	o.restore_spec = s;
	return o;
}

/* Does the file hold these bytes anywhere? */
static bool file_holds(const char *path, const void *pat, size_t n)
{
	size_t len;
	char *b = slurp(path, &len);
	bool found = false;
	for (size_t i = 0; !found && i + n <= len; i++)
		found = !memcmp(b + i, pat, n);
	free(b);
	return found;
}

#define RESUME "mode=resume seed=5 sectors=256 ticks=40 work=3000000"

/* A partition with an encrypted disk writes, is paused mid-run and
 * snapshotted (each device through saving-state; no key byte in the
 * file), stopped, and restored with the spec it was created from: its
 * disks re-opened, the key fetched again after the baseline check, each
 * device loading its saved state before running. It reads back what it
 * wrote before the snapshot and writes more, which a later run reads. */
T_BACKEND_TEST(plugin, snapshot_restore_of_encrypted_disk, .timeout = 150)
{
	char *dir = plugin_dirs();
	struct plugin_set ps;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &ps, &err), 0, "%s", perr_msg(&err));
	key_file(dir);
	states[0] = 0;
	struct run r;
	cr_assert_eq(start(dir, &ps, "blk", RESUME, ENC, &r, &err), 0, "%s",
		     perr_msg(&err));
	run_until_ticks(r.p, &r.out, 2);
	cr_assert(strstr(r.out.buf, "blk written\n"), "%s", r.out.buf);
	cr_assert_eq(partition_pause(r.p, &err), 0, "%s", perr_msg(&err));
	char snap[PATH_MAX];
	snprintf(snap, sizeof(snap), "%s/blk.snap", dir);
	cr_assert_eq(partition_save(r.p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(r.p);
	t_console_free(&r.out);
	char t[512];
	static const char *const devs[] = { "console/console", "data/file",
					    "data/xts" };
	for (int i = 0; i < 3; i++) {
		trail_of("blk", devs[i], t, sizeof(t));
		cr_assert_str_eq(t, "initialising powering-up running "
				 "saving-state running powering-down "
				 "torn-down", "%s: %s", devs[i], states);
	}
	/* Keys are never written into a snapshot: neither the whole key nor
	 * either XTS half is anywhere in the file. */
	uint8_t key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 37 + 11);
	cr_assert(!file_holds(snap, key, 64));
	cr_assert(!file_holds(snap, key, 32));
	cr_assert(!file_holds(snap, key + 32, 32));

	states[0] = 0;
	struct part_spec s;
	disk_spec(dir, "blk", RESUME, ENC, &s);
	struct t_console out = { 0 };
	struct part_opts o = restore_opts(dir, &out, &ps, &s);
	struct partition *p = NULL;
	cr_assert_eq(partition_restore(snap, "blk", &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	spec_free(&s);
	cr_assert_eq(partition_wait(p, 60000), 0);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s: %s\n%s",
		     vmx_stop_name(p->fin.reason), p->fin.detail, out.buf);
	cr_assert_eq(p->fin.code, 0, "%s", out.buf);
	cr_assert(strstr(out.buf, "blk ok\n"), "%s", out.buf);
	cr_assert_null(strstr(out.buf, "blk written"), "%s", out.buf);
	for (int i = 0; i < 3; i++) {
		trail_of("blk", devs[i], t, sizeof(t));
		cr_assert_str_eq(t, "initialising powering-up loading-state "
				 "running powering-down torn-down", "%s: %s",
				 devs[i], states);
	}
	partition_destroy(p);
	t_console_free(&out);
	/* What the restored partition wrote is on the disk, with the key. */
	runs_ok(dir, &ps, "mode=check seed=6 sectors=256", ENC);
	plugin_set_free(&ps);
	t_rmtree(dir);
	free(dir);
}

static char key_events[1024];

static void on_key(struct partition *p, const char *disk, const char *event,
		   const char *detail, void *ctx)
{
	(void)ctx;
	size_t n = strlen(key_events);
	snprintf(key_events + n, sizeof(key_events) - n, "%s %s %s: %s\n",
		 p->name, disk, event, detail ? detail : "");
}

/* A key source that withholds every key, as the daemon's does for a
 * partition that failed its integrity check. */
static int withhold(void *ctx, const char *part,
		    const struct part_disk_spec *d,
		    uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err)
{
	(void)ctx;
	(void)key;
	return perr(err, -EACCES, "key of %s/%s withheld: INTEGRITY", part,
		    d->name);
}

/* A snapshot holding a disk's device states: restored without its spec,
 * refused naming the device whose state has nowhere to go; with another
 * partition's spec, refused; with its key refused, refused naming the
 * disk, the refusal reported, and no vmm ever started. */
T_BACKEND_TEST(plugin, restore_of_disk_partition_refusals, .timeout = 90)
{
	char *dir = plugin_dirs();
	struct plugin_set ps;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &ps, &err), 0, "%s", perr_msg(&err));
	key_file(dir);
	states[0] = 0;
	struct run r;
	start_paused = true; /* created, its devices running, never resumed */
	cr_assert_eq(start(dir, &ps, "blk", "mode=write seed=4 sectors=2048",
			   ENC, &r, &err), 0, "%s", perr_msg(&err));
	start_paused = false;
	char snap[PATH_MAX];
	snprintf(snap, sizeof(snap), "%s/blk.snap", dir);
	cr_assert_eq(partition_save(r.p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(r.p);
	t_console_free(&r.out);
	struct t_console out = { 0 };
	struct part_opts o = t_opts(&out);
	o.plugins = &ps;
	struct partition *p = NULL;
	cr_assert_lt(partition_restore(snap, "blk", &o, &p, &err), 0);
	cr_assert(strstr(perr_msg(&err), "holds the state of device data "
			 "(plugin file), which this partition does not have"),
		  "%s", perr_msg(&err));

	struct part_spec other;
	disk_spec(dir, "other", "mode=check", ENC, &other);
	o = restore_opts(dir, &out, &ps, &other);
	cr_assert_lt(partition_restore(snap, "blk", &o, &p, &err), 0);
	cr_assert(strstr(perr_msg(&err), "the spec given for its disks is "
			 "other's, not blk's"), "%s", perr_msg(&err));
	spec_free(&other);

	struct part_spec s;
	disk_spec(dir, "blk", "mode=write seed=4 sectors=2048", ENC, &s);
	o = restore_opts(dir, &out, &ps, &s);
	struct disk_key_source refuse = { withhold, NULL };
	o.keys = &refuse;
	o.on_disk_key = on_key;
	key_events[0] = 0;
	states[0] = 0;
	cr_assert_lt(partition_restore(snap, "blk", &o, &p, &err), 0);
	cr_assert(strstr(perr_msg(&err), "disk data: key of blk/data "
			 "withheld: INTEGRITY"), "%s", perr_msg(&err));
	cr_assert_str_eq(key_events, "blk data disk_key_refused: key of "
			 "blk/data withheld: INTEGRITY\n");
	cr_assert_str_eq(states, "", "a vmm ran: %s", states);
	spec_free(&s);
	t_console_free(&out);
	plugin_set_free(&ps);
	t_rmtree(dir);
	free(dir);
}

/* ---- stop ---- */

/* A stop asks the vmm to power its devices down before it goes: each
 * device through powering-down to torn-down (the file disk's power_down
 * is its fdatasync: torn-down means the flush succeeded), the end the
 * vmm's own report. A vmm that does not answer (stopped with SIGSTOP) is
 * killed after the short deadline, as before: no device powered down,
 * and each one is then "failed" (the agent's word: the vmm's can no
 * longer come), not left "running" for a stopped partition. */
T_BACKEND_TEST(plugin, stop_powers_devices_down, .timeout = 120)
{
	char *dir = plugin_dirs();
	struct plugin_set ps;
	struct parley_err err = { 0 };
	cr_assert_eq(load(dir, &ps, &err), 0, "%s", perr_msg(&err));
	key_file(dir);
	states[0] = 0;
	struct run r;
	cr_assert_eq(start(dir, &ps, "blk", RESUME, ENC, &r, &err), 0, "%s",
		     perr_msg(&err));
	run_until_ticks(r.p, &r.out, 1);
	cr_assert_eq(partition_stop(r.p), 0);
	cr_assert(r.p->finished);
	cr_assert_eq(r.p->fin.reason, VMX_STOP_KILLED, "%s",
		     vmx_stop_name(r.p->fin.reason));
	cr_assert_str_eq(r.p->fin.detail, "stopped by the agent");
	char t[512];
	static const char *const devs[] = { "console/console", "data/file",
					    "data/xts" };
	for (int i = 0; i < 3; i++) {
		trail_of("blk", devs[i], t, sizeof(t));
		cr_assert_str_eq(t, LIFE, "%s: %s", devs[i], states);
	}
	partition_destroy(r.p);
	t_console_free(&r.out);
	/* What it wrote before the stop is there. */
	runs_ok(dir, &ps, "mode=check seed=5 sectors=256", ENC);

	states[0] = 0;
	cr_assert_eq(start(dir, &ps, "blk", RESUME, ENC, &r, &err), 0, "%s",
		     perr_msg(&err));
	run_until_ticks(r.p, &r.out, 1);
	cr_assert_gt(r.p->pid, 0);
	cr_assert_eq(kill(r.p->pid, SIGSTOP), 0);
	cr_assert_eq(partition_stop(r.p), 0);
	cr_assert(r.p->finished);
	cr_assert_eq(r.p->fin.reason, VMX_STOP_KILLED);
	cr_assert_str_eq(r.p->fin.detail, "stopped by the agent");
	for (int i = 0; i < 3; i++) {
		trail_of("blk", devs[i], t, sizeof(t));
		cr_assert_str_eq(t, "initialising powering-up running failed: "
				 "its vmm was killed before tearing it down",
				 "%s: %s", devs[i], states);
	}
	partition_destroy(r.p);
	t_console_free(&r.out);
	plugin_set_free(&ps);
	t_rmtree(dir);
	free(dir);
}
