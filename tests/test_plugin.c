/*
 * Suite `plugin`: device plugins from a manifest (agent/plugin/) and the
 * device lifecycle in the vmm (agent/vmx/plugdev.c), with the plugins the
 * build installs (build/plugins) and tests/plugins/fickle.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

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
	size_t len;
	char *b = slurp(TPLUGINS "/fickle.so", &len), hex[65], json[512];
	free(t_write(p, "fickle.so", b, len));
	sha256_hex(b, len, hex);
	free(b);
	snprintf(json, sizeof(json), "{\"name\":\"fickle\",\"class\":"
		 "\"transform\",\"abi\":1,\"file\":\"fickle.so\",\"sha256\":"
		 "\"%s\"}", hex);
	free(t_write(m, "fickle.json", json, strlen(json)));
	/* Not manifests: ignored. */
	free(t_write(m, "README", "not json", 8));
	free(t_write(m, ".hidden.json", "{", 1));
	return dir;
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
		cr_assert_eq(plugin_lib_open(s.p[i].fd, s.p[i].m.name,
					     s.p[i].m.plugin_class, &lib, &err),
			     0, "%s", perr_msg(&err));
		cr_assert_str_eq(lib.p->name, s.p[i].m.name);
		plugin_lib_close(&lib);
	}
	/* A manifest naming a class other than the plugin's own. */
	struct plugin_lib lib;
	const struct plugin_verified *x = plugin_set_find(&s, "xts");
	cr_assert_eq(plugin_lib_open(x->fd, "xts", PARLEY_PLUGIN_BLOCK, &lib,
				     &err), -EINVAL);
	cr_assert(strstr(perr_msg(&err), "plugin xts"), "%s", perr_msg(&err));
	cr_assert_eq(plugin_lib_open(x->fd, "xts", PARLEY_PLUGIN_TRANSFORM,
				     &lib, &err), 0, "%s", perr_msg(&err));
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
	cr_assert_eq(plugin_lib_open(x->fd, "xts", PARLEY_PLUGIN_TRANSFORM,
				     &lib, &err), 0, "%s", perr_msg(&err));
	cr_assert_str_eq(lib.p->name, "xts");
	plugin_lib_close(&lib);
	/* The copy is sealed: not even its holder can change it. */
	cr_assert_lt(write(x->fd, "x", 1), 0);
	cr_assert_eq(errno, EPERM);
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
	cr_assert_eq(plugin_lib_open(f->fd, "fickle", PARLEY_PLUGIN_TRANSFORM,
				     &lib, &err), -ENOTSUP);
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
	cr_assert_eq(plugin_lib_open(v->fd, name, v->m.plugin_class, lib,
				     &err), 0, "%s", perr_msg(&err));
}

/* create, snapshot, stop; then restore from the saved state: the states
 * in order, and the device's state carried (a console line cut by the
 * snapshot is finished by the restored device). */
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
	uint8_t state[4096];
	size_t len;
	uint32_t ver;
	cr_assert_eq(plugdev_save(&d, state, sizeof(state), &len, &ver, &err),
		     0, "%s", perr_msg(&err));
	cr_assert_eq(ver, 1);
	/* Stopped after the snapshot, as a migration's source would be
	 * killed: its half line is in the state, not emitted yet. */
	cr_assert_str_eq(out.s, "[1]done\n");
	out.s[0] = 0;
	struct plugdev gone = d;
	gone.on_state = NULL;
	lib.p->ops.teardown(gone.dev);
	d.dev = NULL;
	d.state = PLUGDEV_TORN_DOWN;
	cr_assert_str_eq(t.s, "initialising powering-up running saving-state "
			 "running");
	t.s[0] = 0;
	struct plugdev r = { .on_state = on_state, .ctx = &t };
	cr_assert_eq(plugdev_create(&r, lib.p, &c, &err), 0);
	cr_assert_eq(plugdev_load(&r, state, len, ver, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(plugdev_run(&r, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(lib.p->u.console.write(r.dev, 1, "ne\n", 3), 0);
	cr_assert_str_eq(out.s, "[1]half a line\n");
	cr_assert_eq(plugdev_stop(&r, &err), 0);
	cr_assert_str_eq(t.s, "initialising powering-up loading-state running "
			 "powering-down torn-down");
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
