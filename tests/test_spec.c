/*
 * Partition spec parser (agent/spec.c) and byte sizes (common/size.c): the
 * good specs, then a table of hostile ones, each with the error code and the
 * words of the message a person would need to fix it.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/spec.h"
#include "common/size.h"

#ifndef PARLEY_SOURCE_DIR
#define PARLEY_SOURCE_DIR "."
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SPEC_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPEC_TEST_LSAN 1
#endif
#endif
#ifdef SPEC_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* The two required fields, for cases that vary something else. */
#define REQ "\"name\":\"p\",\"image\":\"p.elf\""

static const char full_spec[] =
	"{\n"
	"  \"name\": \"hello\",\n"
	"  \"image\": \"hello.elf\",\n"
	"  \"memory\": \"32M\",\n"
	"  \"vcpus\": 2,\n"
	"  \"config\": [ {\"name\": \"motd\", \"path\": \"motd.txt\"},\n"
	"              {\"name\": \"app.conf\", \"path\": \"etc/app.conf\"} ],\n"
	"  \"cmdline\": \"exit=0 verbose\"\n"
	"}\n";

/* Fields a failed parse must leave empty ("nothing is allocated"). */
static void expect_zeroed(const struct part_spec *s, const char *what)
{
	cr_expect_null(s->image, "%s: image left allocated", what);
	cr_expect_null(s->base_dir, "%s: base_dir left allocated", what);
	cr_expect_eq(s->nconfig, 0, "%s: nconfig %u", what, s->nconfig);
	for (int i = 0; i < PARLEY_CONFIG_FILES_MAX; i++)
		cr_expect_null(s->config[i].path, "%s: config[%d].path left",
			       what, i);
	cr_expect_eq(s->ndisk, 0, "%s: ndisk %u", what, s->ndisk);
	for (int i = 0; i < PARLEY_DISKS_MAX; i++)
		cr_expect(!s->disk[i].path && !s->disk[i].key,
			  "%s: disk[%d] left allocated", what, i);
}

/* Criterion takes a test's verdict before its worker exits, so a leak that
 * LeakSanitizer finds at exit is printed but fails nothing. Look for leaks
 * while the test can still fail; without ASan this checks nothing. */
static void expect_no_leaks(void)
{
#ifdef SPEC_TEST_LSAN
	cr_expect_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

Test(spec, full)
{
	struct part_spec s;
	struct parley_err e = { 0 };
	int rc = spec_parse(full_spec, strlen(full_spec), "/srv/specs", &s, &e);
	cr_assert_eq(rc, 0, "spec_parse: %d %s", rc, e.msg);
	cr_expect_str_eq(s.name, "hello");
	cr_expect_str_eq(s.image, "hello.elf");
	cr_expect_str_eq(s.base_dir, "/srv/specs");
	cr_expect_eq(s.mem_bytes, 32ull << 20);
	cr_expect_eq(s.vcpus, 2);
	cr_assert_eq(s.nconfig, 2);
	cr_expect_str_eq(s.config[0].name, "motd");
	cr_expect_str_eq(s.config[0].path, "motd.txt"); /* as written */
	cr_expect_str_eq(s.config[1].name, "app.conf");
	cr_expect_str_eq(s.config[1].path, "etc/app.conf");
	cr_expect_str_eq(s.cmdline, "exit=0 verbose");
	spec_free(&s);
	expect_zeroed(&s, "after spec_free");
	spec_free(&s); /* twice is harmless */
	spec_free(NULL);
	expect_no_leaks();
}

Test(spec, disks)
{
	static const char json[] = "{" REQ ",\"disks\":["
		"{\"name\":\"data\",\"path\":\"d/data.img\",\"size\":\"64M\"},"
		"{\"name\":\"ro\",\"path\":\"ro.img\",\"size\":8192,"
		"\"sector_size\":4096,\"read_only\":true},"
		"{\"name\":\"sec\",\"path\":\"sec.img\",\"size\":\"1M\","
		"\"encryption\":{\"cipher\":\"aes-xts-plain64\","
		"\"key\":\"keys/sec.key\"}}]}";
	struct part_spec s;
	struct parley_err e = { 0 };
	cr_assert_eq(spec_parse(json, strlen(json), NULL, &s, &e), 0, "%s",
		     e.msg);
	cr_assert_eq(s.ndisk, 3);
	cr_expect_str_eq(s.disk[0].name, "data");
	cr_expect_str_eq(s.disk[0].path, "d/data.img");
	cr_expect_eq(s.disk[0].size, 64ull << 20);
	cr_expect_eq(s.disk[0].sector_size, 512);
	cr_expect(!s.disk[0].read_only && !s.disk[0].encrypted);
	cr_expect_eq(s.disk[1].sector_size, 4096);
	cr_expect(s.disk[1].read_only);
	cr_expect(s.disk[2].encrypted);
	cr_expect_str_eq(s.disk[2].key, "keys/sec.key");
	spec_free(&s);
	expect_zeroed(&s, "after spec_free");
	expect_no_leaks();
}

Test(spec, minimal_defaults)
{
	static const char json[] = "{" REQ "}";
	struct part_spec s;
	int rc = spec_parse(json, strlen(json), NULL, &s, NULL);
	cr_assert_eq(rc, 0);
	cr_expect_str_eq(s.name, "p");
	cr_expect_str_eq(s.image, "p.elf");
	cr_expect_str_eq(s.base_dir, ".");
	cr_expect_eq(s.mem_bytes, 16ull << 20);
	cr_expect_eq(s.vcpus, 1);
	cr_expect_eq(s.nconfig, 0);
	cr_expect_str_eq(s.cmdline, "");
	spec_free(&s);
	expect_no_leaks();
}

/* The parser must stop at len: an exact-size heap copy lets ASan catch any
 * read past it. */
Test(spec, not_nul_terminated)
{
	size_t len = strlen(full_spec);
	char *buf = malloc(len);
	cr_assert_not_null(buf);
	memcpy(buf, full_spec, len);
	struct part_spec s;
	struct parley_err e = { 0 };
	int rc = spec_parse(buf, len, NULL, &s, &e);
	cr_expect_eq(rc, 0, "%s", e.msg);
	cr_expect_str_eq(s.config[0].path, "motd.txt");
	spec_free(&s);
	/* The same bytes minus the closing brace are truncated JSON. */
	rc = spec_parse(buf, len - 2, NULL, &s, &e);
	cr_expect_eq(rc, -EINVAL);
	free(buf);
	expect_no_leaks();
}

static char *make_config(unsigned n)
{
	size_t cap = 64 + (size_t)n * 48;
	char *b = malloc(cap);
	cr_assert_not_null(b);
	size_t off = (size_t)snprintf(b, cap, "{" REQ ",\"config\":[");
	for (unsigned i = 0; i < n; i++)
		off += (size_t)snprintf(b + off, cap - off,
					"%s{\"name\":\"f%u\",\"path\":\"f%u\"}",
					i ? "," : "", i, i);
	snprintf(b + off, cap - off, "]}");
	return b;
}

/* A spec whose one string field `key` holds `n` copies of `c`. */
static char *make_long(const char *key, size_t n, char c)
{
	size_t cap = n + 128;
	char *b = malloc(cap);
	cr_assert_not_null(b);
	int off = snprintf(b, cap, "{\"name\":\"p\",\"image\":\"p.elf\",\"%s\":\"",
			   key);
	if (!strcmp(key, "image"))
		off = snprintf(b, cap, "{\"name\":\"p\",\"image\":\"");
	else if (!strcmp(key, "name"))
		off = snprintf(b, cap, "{\"image\":\"p.elf\",\"name\":\"");
	memset(b + off, c, n);
	snprintf(b + off + n, cap - off - n, "\"}");
	return b;
}

Test(spec, limits_accepted)
{
	char *many = make_config(PARLEY_CONFIG_FILES_MAX);
	char *cmd = make_long("cmdline", PARLEY_CMDLINE_MAX - 1, 'x');
	char *name = make_long("name", 63, 'n');
	char *image = make_long("image", SPEC_PATH_MAX - 1, 'i');
	const char *ok[] = {
		many, cmd, name, image,
		"{" REQ ",\"memory\":\"4M\"}",
		"{" REQ ",\"memory\":\"1G\"}",
		"{" REQ ",\"memory\":\"1GiB\"}",
		"{" REQ ",\"memory\":\"6144KiB\"}",
		"{" REQ ",\"memory\":16777216}",
		"{" REQ ",\"vcpus\":8}",
		"{" REQ ",\"config\":[]}",
		"{" REQ ",\"cmdline\":\"\"}",
		"{" REQ ",\"config\":[{\"path\":\"x\",\"name\":\" ~!odd name.\"}]}",
		"{\"name\":\"A-z_0.9\",\"image\":\"sub/\xc3\xa9.elf\"}",
		"{\"name\":\"p\",\"image\":\"./x..y/..z/.../p.elf\"}",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct part_spec s;
		struct parley_err e = { 0 };
		int rc = spec_parse(ok[i], strlen(ok[i]), NULL, &s, &e);
		cr_expect_eq(rc, 0, "case %zu: %d %s", i, rc, e.msg);
		spec_free(&s);
	}
	struct part_spec s;
	cr_assert_eq(spec_parse(many, strlen(many), NULL, &s, NULL), 0);
	cr_expect_eq(s.nconfig, PARLEY_CONFIG_FILES_MAX);
	cr_expect_str_eq(s.config[31].name, "f31");
	spec_free(&s);
	free(many);
	free(cmd);
	free(name);
	free(image);
	expect_no_leaks();
}

static char *gen_many_config(size_t *len)
{
	char *b = make_config(PARLEY_CONFIG_FILES_MAX + 1);
	*len = strlen(b);
	return b;
}

static char *gen_long_cmdline(size_t *len)
{
	char *b = make_long("cmdline", PARLEY_CMDLINE_MAX, 'x');
	*len = strlen(b);
	return b;
}

static char *gen_long_image(size_t *len)
{
	char *b = make_long("image", SPEC_PATH_MAX, 'i');
	*len = strlen(b);
	return b;
}

static char *gen_long_name(size_t *len)
{
	char *b = make_long("name", 64, 'n');
	*len = strlen(b);
	return b;
}

/* Valid JSON, but 70 KiB of it. */
static char *gen_70k(size_t *len)
{
	char *b = make_long("cmdline", 70 * 1024, ' ');
	*len = strlen(b);
	return b;
}

/* 3000 nested arrays: jansson's depth limit must hold. */
static char *gen_deep(size_t *len)
{
	static const char head[] = "{" REQ ",\"config\":";
	size_t n = 3000;
	char *b = malloc(sizeof(head) + 2 * n + 2);
	cr_assert_not_null(b);
	size_t off = sizeof(head) - 1;
	memcpy(b, head, off);
	memset(b + off, '[', n);
	memset(b + off + n, ']', n);
	strcpy(b + off + 2 * n, "}");
	*len = strlen(b);
	return b;
}

struct bad_case {
	const char *what;
	const char *json;            /* NULL: built by make() */
	size_t len;                  /* 0: strlen(json) */
	char *(*make)(size_t *len);
	int rc;
	const char *msg;             /* must occur in the error message */
};

/* Literal with embedded NUL bytes: length from sizeof, not strlen. */
#define RAW(s) .json = (s), .len = sizeof(s) - 1

static const struct bad_case bad_cases[] = {
	/* Not JSON, or not a JSON object. */
	{ "empty input", "", 0, NULL, -EINVAL, "invalid JSON at line 1" },
	{ "trailing comma", "{" REQ ",}", 0, NULL, -EINVAL, "invalid JSON at line 1, column" },
	{ "truncated", "{\"name\":\"p\",\"image\":\"p.el", 0, NULL, -EINVAL, "invalid JSON" },
	{ "truncated after key", "{\"name\"", 0, NULL, -EINVAL, "invalid JSON" },
	{ "trailing garbage", "{" REQ "} x", 0, NULL, -EINVAL, "invalid JSON" },
	{ "multi-line error position", "{\n\"name\":\"p\",\n\"image\" \"p.elf\"}", 0, NULL, -EINVAL, "line 3" },
	{ "top-level array", "[{" REQ "}]", 0, NULL, -EINVAL, "expected an object, got an array" },
	{ "top-level string", "\"hello\"", 0, NULL, -EINVAL, "invalid JSON" },
	{ "top-level null", "null", 0, NULL, -EINVAL, "invalid JSON" },
	{ "raw NUL in string", RAW("{\"name\":\"p\0q\",\"image\":\"p.elf\"}"), NULL, -EINVAL, "invalid JSON" },
	{ "raw NUL after object", RAW("{" REQ "}\0"), NULL, -EINVAL, "invalid JSON" },
	{ "NUL in key", "{" REQ ",\"a\\u0000b\":1}", 0, NULL, -EINVAL, "invalid JSON" },
	{ "bad UTF-8", "{\"name\":\"p\",\"image\":\"\xff\xfe\"}", 0, NULL, -EINVAL, "invalid JSON" },
	{ "deep nesting", NULL, 0, gen_deep, -EINVAL, "invalid JSON" },
	{ "duplicate top-level key", "{" REQ ",\"name\":\"q\"}", 0, NULL, -EINVAL, "duplicate object key" },
	{ "duplicate key in config entry", "{" REQ ",\"config\":[{\"name\":\"a\",\"name\":\"b\",\"path\":\"x\"}]}", 0, NULL, -EINVAL, "duplicate object key" },
	{ "70 KiB input", NULL, 0, gen_70k, -EFBIG, "more than the 65536 allowed" },

	/* Unknown and missing fields. */
	{ "unknown field", "{" REQ ",\"memroy\":\"16M\"}", 0, NULL, -EINVAL, "unknown field \"memroy\"" },
	{ "unknown field with escapes", "{" REQ ",\"\\u001b[31m\":1}", 0, NULL, -EINVAL, "unknown field \"\\x1b[31m\"" },
	{ "unknown field in config entry", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"x\",\"mode\":1}]}", 0, NULL, -EINVAL, "config[0]: unknown field \"mode\"" },
	{ "missing name", "{\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "missing field \"name\"" },
	{ "missing image", "{\"name\":\"p\"}", 0, NULL, -EINVAL, "missing field \"image\"" },
	{ "empty object", "{}", 0, NULL, -EINVAL, "missing field \"name\"" },

	/* Wrong types, one per field. */
	{ "name integer", "{\"name\":1,\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "field \"name\": expected a string, got an integer" },
	{ "image array", "{\"name\":\"p\",\"image\":[]}", 0, NULL, -EINVAL, "field \"image\": expected a string, got an array" },
	{ "image null", "{\"name\":\"p\",\"image\":null}", 0, NULL, -EINVAL, "field \"image\": expected a string, got null" },
	{ "memory boolean", "{" REQ ",\"memory\":true}", 0, NULL, -EINVAL, "field \"memory\": expected a size string or an integer, got a boolean" },
	{ "memory real", "{" REQ ",\"memory\":16.5}", 0, NULL, -EINVAL, "got a real number" },
	{ "vcpus string", "{" REQ ",\"vcpus\":\"1\"}", 0, NULL, -EINVAL, "field \"vcpus\": expected an integer, got a string" },
	{ "vcpus real", "{" REQ ",\"vcpus\":1.0}", 0, NULL, -EINVAL, "field \"vcpus\": expected an integer, got a real number" },
	{ "config object", "{" REQ ",\"config\":{}}", 0, NULL, -EINVAL, "field \"config\": expected an array, got an object" },
	{ "config entry string", "{" REQ ",\"config\":[\"motd\"]}", 0, NULL, -EINVAL, "config[0]: expected an object, got a string" },
	{ "config name integer", "{" REQ ",\"config\":[{\"name\":7,\"path\":\"x\"}]}", 0, NULL, -EINVAL, "config[0].name: expected a string, got an integer" },
	{ "config path boolean", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":false}]}", 0, NULL, -EINVAL, "config[0].path: expected a string, got a boolean" },
	{ "cmdline object", "{" REQ ",\"cmdline\":{}}", 0, NULL, -EINVAL, "field \"cmdline\": expected a string, got an object" },

	/* Partition name and image. */
	{ "empty name", "{\"name\":\"\",\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "field \"name\": \"\" is not a valid name" },
	{ "name with slash", "{\"name\":\"a/b\",\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "\"a/b\" is not a valid name" },
	{ "name starting with dot", "{\"name\":\"..\",\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "not a valid name" },
	{ "name starting with dash", "{\"name\":\"-rf\",\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "not a valid name" },
	{ "name with space", "{\"name\":\"a b\",\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "not a valid name" },
	{ "name with NUL", "{\"name\":\"a\\u0000b\",\"image\":\"p.elf\"}", 0, NULL, -EINVAL, "field \"name\": contains a NUL byte" },
	{ "name 64 chars", NULL, 0, gen_long_name, -EINVAL, "not a valid name (1..63" },
	{ "empty image", "{\"name\":\"p\",\"image\":\"\"}", 0, NULL, -EINVAL, "field \"image\": must not be empty" },
	{ "image with NUL", "{\"name\":\"p\",\"image\":\"a\\u0000b\"}", 0, NULL, -EINVAL, "field \"image\": contains a NUL byte" },
	{ "image 4096 bytes", NULL, 0, gen_long_image, -EINVAL, "field \"image\": 4096 bytes, at most 4095" },

	/* Memory. */
	{ "memory 12X", "{" REQ ",\"memory\":\"12X\"}", 0, NULL, -EINVAL, "field \"memory\": \"12X\" is not a size (use bytes or K/M/G)" },
	{ "memory 16MB", "{" REQ ",\"memory\":\"16MB\"}", 0, NULL, -EINVAL, "\"16MB\" is not a size" },
	{ "memory 0x10M", "{" REQ ",\"memory\":\"0x10M\"}", 0, NULL, -EINVAL, "\"0x10M\" is not a size" },
	{ "memory -16M", "{" REQ ",\"memory\":\"-16M\"}", 0, NULL, -EINVAL, "is not a size" },
	{ "memory empty string", "{" REQ ",\"memory\":\"\"}", 0, NULL, -EINVAL, "\"\" is not a size" },
	{ "memory with space", "{" REQ ",\"memory\":\"16 M\"}", 0, NULL, -EINVAL, "is not a size" },
	{ "memory with NUL", "{" REQ ",\"memory\":\"16M\\u0000junk\"}", 0, NULL, -EINVAL, "field \"memory\": contains a NUL byte" },
	{ "memory negative integer", "{" REQ ",\"memory\":-16777216}", 0, NULL, -EINVAL, "-16777216 is not a positive number of bytes" },
	{ "memory zero", "{" REQ ",\"memory\":0}", 0, NULL, -EINVAL, "0 is not a positive number" },
	{ "memory 2^64 bytes", "{" REQ ",\"memory\":\"18446744073709551616\"}", 0, NULL, -EINVAL, "is too large (at most 1G)" },
	{ "memory 2^64 via G", "{" REQ ",\"memory\":\"17179869184G\"}", 0, NULL, -EINVAL, "\"17179869184G\" is too large" },
	{ "memory integer over int64", "{" REQ ",\"memory\":99999999999999999999}", 0, NULL, -EINVAL, "invalid JSON" },
	{ "memory INT64_MAX", "{" REQ ",\"memory\":9223372036854775807}", 0, NULL, -EINVAL, "is out of range (4M..1G)" },
	{ "memory below minimum", "{" REQ ",\"memory\":\"2M\"}", 0, NULL, -EINVAL, "field \"memory\": 2M is out of range (4M..1G)" },
	{ "memory above maximum", "{" REQ ",\"memory\":\"1026M\"}", 0, NULL, -EINVAL, "1026M is out of range" },
	{ "memory not 2 MiB aligned", "{" REQ ",\"memory\":\"5M\"}", 0, NULL, -EINVAL, "5M is not a multiple of 2M" },
	{ "memory odd bytes", "{" REQ ",\"memory\":16777217}", 0, NULL, -EINVAL, "16777217 is not a multiple of 2M" },

	/* vCPUs. */
	{ "vcpus zero", "{" REQ ",\"vcpus\":0}", 0, NULL, -EINVAL, "field \"vcpus\": 0 is out of range (1..8)" },
	{ "vcpus nine", "{" REQ ",\"vcpus\":9}", 0, NULL, -EINVAL, "9 is out of range (1..8)" },
	{ "vcpus negative", "{" REQ ",\"vcpus\":-1}", 0, NULL, -EINVAL, "-1 is out of range" },
	{ "vcpus huge", "{" REQ ",\"vcpus\":4294967297}", 0, NULL, -EINVAL, "4294967297 is out of range" },

	/* Config files. */
	{ "too many config entries", NULL, 0, gen_many_config, -EINVAL, "field \"config\": 33 entries, at most 32" },
	{ "config entry missing path", "{" REQ ",\"config\":[{\"name\":\"a\"}]}", 0, NULL, -EINVAL, "config[0]: missing field \"path\"" },
	{ "config entry missing name", "{" REQ ",\"config\":[{\"path\":\"a\"}]}", 0, NULL, -EINVAL, "config[0]: missing field \"name\"" },
	{ "config entry empty", "{" REQ ",\"config\":[{}]}", 0, NULL, -EINVAL, "config[0]: missing field" },
	{ "duplicate config name", "{" REQ ",\"config\":[{\"name\":\"motd\",\"path\":\"a\"},{\"name\":\"motd\",\"path\":\"b\"}]}", 0, NULL, -EINVAL, "config[1].name: duplicate \"motd\"" },
	{ "config name with slash", "{" REQ ",\"config\":[{\"name\":\"etc/motd\",\"path\":\"a\"}]}", 0, NULL, -EINVAL, "config[0].name: \"etc/motd\" contains '/'" },
	{ "config name empty", "{" REQ ",\"config\":[{\"name\":\"\",\"path\":\"a\"}]}", 0, NULL, -EINVAL, "config[0].name: 0 bytes, must be 1..63" },
	{ "config name 64 bytes", "{" REQ ",\"config\":[{\"name\":\"0123456789012345678901234567890123456789012345678901234567890123\",\"path\":\"a\"}]}", 0, NULL, -EINVAL, "64 bytes, must be 1..63" },
	{ "config name with tab", "{" REQ ",\"config\":[{\"name\":\"a\\tb\",\"path\":\"a\"}]}", 0, NULL, -EINVAL, "byte 0x09 at offset 1 is not printable ASCII" },
	{ "config name non-ASCII", "{" REQ ",\"config\":[{\"name\":\"\xc3\xa9\",\"path\":\"a\"}]}", 0, NULL, -EINVAL, "byte 0xc3 at offset 0" },
	{ "config name with NUL", "{" REQ ",\"config\":[{\"name\":\"a\\u0000\",\"path\":\"a\"}]}", 0, NULL, -EINVAL, "config[0].name: contains a NUL byte" },
	{ "config path empty", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"\"}]}", 0, NULL, -EINVAL, "config[0].path: must not be empty" },
	{ "config path with NUL", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"x\\u0000/etc/shadow\"}]}", 0, NULL, -EINVAL, "config[0].path: contains a NUL byte" },
	{ "second entry bad", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"x\"},{\"name\":\"b\",\"path\":1}]}", 0, NULL, -EINVAL, "config[1].path: expected a string" },

	/* Paths: relative, no "..", refused naming the field (issue 8). */
	{ "image /etc/passwd", "{\"name\":\"p\",\"image\":\"/etc/passwd\"}", 0, NULL, -EINVAL, "field \"image\": \"/etc/passwd\" is an absolute path" },
	{ "image ../x", "{\"name\":\"p\",\"image\":\"../x\"}", 0, NULL, -EINVAL, "field \"image\": \"../x\" has a \"..\" component" },
	{ "image ..", "{\"name\":\"p\",\"image\":\"..\"}", 0, NULL, -EINVAL, "field \"image\": \"..\" has a \"..\" component" },
	{ "image a/../../x", "{\"name\":\"p\",\"image\":\"a/../../x\"}", 0, NULL, -EINVAL, "has a \"..\" component" },
	{ "image a/..", "{\"name\":\"p\",\"image\":\"a/..\"}", 0, NULL, -EINVAL, "has a \"..\" component" },
	{ "image //x", "{\"name\":\"p\",\"image\":\"//x\"}", 0, NULL, -EINVAL, "is an absolute path" },
	{ "config path /etc/passwd", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"/etc/passwd\"}]}", 0, NULL, -EINVAL, "config[0].path: \"/etc/passwd\" is an absolute path" },
	{ "config path ../x", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"x\"},{\"name\":\"b\",\"path\":\"../x\"}]}", 0, NULL, -EINVAL, "config[1].path: \"../x\" has a \"..\" component" },
	{ "config path x/../../host.key", "{" REQ ",\"config\":[{\"name\":\"a\",\"path\":\"x/../../host.key\"}]}", 0, NULL, -EINVAL, "config[0].path: \"x/../../host.key\" has a \"..\" component" },

	/* Command line. */
	{ "cmdline newline", "{" REQ ",\"cmdline\":\"a\\nb\"}", 0, NULL, -EINVAL, "field \"cmdline\": byte 0x0a at offset 1 is not printable ASCII" },
	{ "capabilities not an array", "{" REQ ",\"capabilities\":\"update\"}", 0, NULL, -EINVAL, "field \"capabilities\": expected an array of at most 8 names" },
	{ "capability unknown", "{" REQ ",\"capabilities\":[\"root\"]}", 0, NULL, -EINVAL, "capabilities[0]: unknown capability \"root\"" },
	{ "capability twice", "{" REQ ",\"capabilities\":[\"update\",\"update\"]}", 0, NULL, -EINVAL, "capabilities[1]: \"update\" twice" },
	{ "capability not a string", "{" REQ ",\"capabilities\":[1]}", 0, NULL, -EINVAL, "capabilities[0]" },
	{ "cmdline escape", "{" REQ ",\"cmdline\":\"\\u001b[2J\"}", 0, NULL, -EINVAL, "byte 0x1b at offset 0" },
	{ "cmdline DEL", "{" REQ ",\"cmdline\":\"x\\u007f\"}", 0, NULL, -EINVAL, "byte 0x7f at offset 1" },
	{ "cmdline with NUL", "{" REQ ",\"cmdline\":\"exit=0\\u0000rm\"}", 0, NULL, -EINVAL, "field \"cmdline\": contains a NUL byte" },
	{ "cmdline 1024 bytes", NULL, 0, gen_long_cmdline, -EINVAL, "field \"cmdline\": 1024 bytes, at most 1023" },

	/* Disks. */
	{ "disks not an array", "{" REQ ",\"disks\":{}}", 0, NULL, -EINVAL, "field \"disks\": expected an array" },
	{ "disk not an object", "{" REQ ",\"disks\":[1]}", 0, NULL, -EINVAL, "disks[0]: expected an object" },
	{ "disk unknown field", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":512,\"mode\":1}]}", 0, NULL, -EINVAL, "disks[0]: unknown field \"mode\"" },
	{ "disk without name", "{" REQ ",\"disks\":[{\"path\":\"d.img\",\"size\":512}]}", 0, NULL, -EINVAL, "disks[0].name: missing" },
	{ "disk name with slash", "{" REQ ",\"disks\":[{\"name\":\"a/b\",\"path\":\"d.img\",\"size\":512}]}", 0, NULL, -EINVAL, "disks[0].name: must be 1..31" },
	{ "disk name twice", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"a.img\",\"size\":512},{\"name\":\"d\",\"path\":\"b.img\",\"size\":512}]}", 0, NULL, -EINVAL, "disks[1].name: \"d\" twice" },
	{ "disk file twice", "{" REQ ",\"disks\":[{\"name\":\"a\",\"path\":\"d.img\",\"size\":512},{\"name\":\"b\",\"path\":\"d.img\",\"size\":512}]}", 0, NULL, -EINVAL, "disks[1].path: the file of disks[0] too" },
	{ "disk path escapes", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"../etc/shadow\",\"size\":512}]}", 0, NULL, -EINVAL, "disks[0].path: \"../etc/shadow\" has a \"..\" component" },
	{ "disk path absolute", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"/dev/sda\",\"size\":512}]}", 0, NULL, -EINVAL, "disks[0].path" },
	{ "disk without size", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\"}]}", 0, NULL, -EINVAL, "disks[0].size: missing" },
	{ "disk size not sectors", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":1000}]}", 0, NULL, -EINVAL, "disks[0].size: 1000 bytes, must be a multiple of 512" },
	{ "disk size negative", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":-512}]}", 0, NULL, -EINVAL, "disks[0].size: not a positive number" },
	{ "disk size 2T", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":\"2048G\"}]}", 0, NULL, -EINVAL, "disks[0].size" },
	{ "disk size word", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":\"big\"}]}", 0, NULL, -EINVAL, "disks[0].size: \"big\" is not a size" },
	{ "disk sector size 1024", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":4096,\"sector_size\":1024}]}", 0, NULL, -EINVAL, "disks[0].sector_size: must be 512 or 4096" },
	{ "disk read_only string", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":512,\"read_only\":\"yes\"}]}", 0, NULL, -EINVAL, "disks[0].read_only: expected true or false" },
	{ "disk cipher unknown", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":512,\"encryption\":{\"cipher\":\"rot13\",\"key\":\"k\"}}]}", 0, NULL, -EINVAL, "disks[0].encryption.cipher: \"rot13\" is not supported" },
	{ "disk key empty", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":512,\"encryption\":{\"cipher\":\"aes-xts-plain64\",\"key\":\"\"}}]}", 0, NULL, -EINVAL, "disks[0].encryption.key: 0 bytes" },
	{ "disk key escapes", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":512,\"encryption\":{\"cipher\":\"aes-xts-plain64\",\"key\":\"../k\"}}]}", 0, NULL, -EINVAL, "disks[0].encryption.key" },
	{ "disk encryption unknown field", "{" REQ ",\"disks\":[{\"name\":\"d\",\"path\":\"d.img\",\"size\":512,\"encryption\":{\"cipher\":\"aes-xts-plain64\",\"key\":\"k\",\"iv\":1}}]}", 0, NULL, -EINVAL, "disks[0].encryption: unknown field \"iv\"" },
	{ "nine disks", "{" REQ ",\"disks\":[{\"name\":\"d0\",\"path\":\"d0\",\"size\":512},{\"name\":\"d1\",\"path\":\"d1\",\"size\":512},{\"name\":\"d2\",\"path\":\"d2\",\"size\":512},{\"name\":\"d3\",\"path\":\"d3\",\"size\":512},{\"name\":\"d4\",\"path\":\"d4\",\"size\":512},{\"name\":\"d5\",\"path\":\"d5\",\"size\":512},{\"name\":\"d6\",\"path\":\"d6\",\"size\":512},{\"name\":\"d7\",\"path\":\"d7\",\"size\":512},{\"name\":\"d8\",\"path\":\"d8\",\"size\":512}]}", 0, NULL, -EINVAL, "field \"disks\": 9 entries, at most 8" },
};

Test(spec, hostile_inputs)
{
	cr_assert_geq(sizeof(bad_cases) / sizeof(bad_cases[0]), 25);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = c->len;
		char *made = NULL;
		const char *json = c->json;
		if (c->make)
			json = made = c->make(&len);
		else if (!len)
			len = strlen(json);

		struct part_spec s;
		struct parley_err e = { 0 };
		memset(&s, 0xa5, sizeof(s)); /* garbage in, zeroes out */
		int rc = spec_parse(json, len, "/base", &s, &e);
		cr_expect_eq(rc, c->rc, "%s: rc %d, want %d (%s)", c->what, rc,
			     c->rc, e.msg);
		cr_expect_eq(e.code, rc, "%s: err.code %d", c->what, e.code);
		cr_expect_not_null(strstr(e.msg, c->msg),
				   "%s: message \"%s\" lacks \"%s\"", c->what,
				   e.msg, c->msg);
		expect_zeroed(&s, c->what);
		spec_free(&s);
		/* err is optional: the same input with none must fail alike. */
		cr_expect_eq(spec_parse(json, len, NULL, &s, NULL), c->rc,
			     "%s: without err", c->what);
		free(made);
	}
	expect_no_leaks();
}

Test(spec, parse_size_valid)
{
	static const struct {
		const char *s;
		uint64_t v;
	} cases[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "4096", 4096 },
		{ "0016M", 16ull << 20 },
		{ "1K", 1024 },
		{ "1KiB", 1024 },
		{ "16M", 16ull << 20 },
		{ "16MiB", 16ull << 20 },
		{ "1G", 1ull << 30 },
		{ "3GiB", 3ull << 30 },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183G", 17179869183ull << 30 },
		{ "00000000000000000000000000000001", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 42;
		int rc = parse_size(cases[i].s, &v);
		cr_expect_eq(rc, 0, "\"%s\": rc %d", cases[i].s, rc);
		cr_expect_eq(v, cases[i].v, "\"%s\": %llu", cases[i].s,
			     (unsigned long long)v);
	}
	expect_no_leaks();
}

Test(spec, parse_size_invalid)
{
	static const struct {
		const char *s;
		int rc;
	} cases[] = {
		{ "", -EINVAL },
		{ "M", -EINVAL },
		{ "-1", -EINVAL },
		{ "+1", -EINVAL },
		{ " 1", -EINVAL },
		{ "1 ", -EINVAL },
		{ "16MB", -EINVAL },
		{ "16m", -EINVAL },
		{ "16Mi", -EINVAL },
		{ "16KIB", -EINVAL },
		{ "1T", -EINVAL },
		{ "0x10", -EINVAL },
		{ "0x10M", -EINVAL },
		{ "1.5G", -EINVAL },
		{ "1e9", -EINVAL },
		{ "99999999999999999999X", -EINVAL },
		{ "18446744073709551616", -ERANGE },
		{ "99999999999999999999", -ERANGE },
		{ "17179869184G", -ERANGE },
		{ "18014398509481984K", -ERANGE },
		{ "17592186044416MiB", -ERANGE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 42;
		int rc = parse_size(cases[i].s, &v);
		cr_expect_eq(rc, cases[i].rc, "\"%s\": rc %d, want %d",
			     cases[i].s, rc, cases[i].rc);
		cr_expect_eq(v, 42, "\"%s\": out written on error", cases[i].s);
	}
	uint64_t v;
	cr_expect_eq(parse_size(NULL, &v), -EINVAL);
	expect_no_leaks();
}

/* A scratch directory for spec_load; Criterion runs each test in its own
 * process, but we still clean up after ourselves. */
struct tmpdir {
	char path[64];
};

static void tmpdir_make(struct tmpdir *t)
{
	snprintf(t->path, sizeof(t->path), "/tmp/parley-spec-XXXXXX");
	cr_assert_not_null(mkdtemp(t->path));
}

static void write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(text, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static const char load_spec[] =
	"{\"name\":\"t\",\"image\":\"t.elf\",\"config\":["
	"{\"name\":\"motd\",\"path\":\"motd.txt\"},"
	"{\"name\":\"dot\",\"path\":\"./etc/parley/abs.conf\"},"
	"{\"name\":\"deep\",\"path\":\"sub/dir/x.conf\"}]}";

Test(spec, load_resolves_paths)
{
	struct tmpdir t;
	char file[128], want[160];
	tmpdir_make(&t);
	snprintf(file, sizeof(file), "%s/spec.json", t.path);
	write_file(file, load_spec, strlen(load_spec));

	struct part_spec s;
	struct parley_err e = { 0 };
	int rc = spec_load(file, &s, &e);
	cr_assert_eq(rc, 0, "%d %s", rc, e.msg);
	cr_expect_str_eq(s.base_dir, t.path);
	/* left as written, for the agent to open beneath base_dir */
	cr_expect_str_eq(s.image, "t.elf");
	cr_expect_str_eq(s.config[0].path, "motd.txt");
	cr_expect_str_eq(s.config[1].path, "./etc/parley/abs.conf");
	cr_expect_str_eq(s.config[2].path, "sub/dir/x.conf");
	(void)want;
	spec_free(&s);
	unlink(file);
	rmdir(t.path);
	expect_no_leaks();
}

Test(spec, load_relative_to_cwd)
{
	struct tmpdir t;
	char old[PATH_MAX];
	tmpdir_make(&t);
	cr_assert_not_null(getcwd(old, sizeof(old)));
	cr_assert_eq(chdir(t.path), 0);
	write_file("spec.json", load_spec, strlen(load_spec));

	struct part_spec s;
	struct parley_err e = { 0 };
	int rc = spec_load("spec.json", &s, &e);
	cr_expect_eq(rc, 0, "%d %s", rc, e.msg);
	if (!rc) {
		cr_expect_str_eq(s.base_dir, ".");
		cr_expect_str_eq(s.config[0].path, "motd.txt");
		cr_expect_str_eq(s.config[1].path, "./etc/parley/abs.conf");
	}
	spec_free(&s);
	unlink("spec.json");
	cr_assert_eq(chdir(old), 0);
	rmdir(t.path);
	expect_no_leaks();
}

Test(spec, load_errors_name_the_file)
{
	struct tmpdir t;
	char file[128];
	struct part_spec s;
	struct parley_err e = { 0 };
	tmpdir_make(&t);

	snprintf(file, sizeof(file), "%s/missing.json", t.path);
	cr_expect_eq(spec_load(file, &s, &e), -ENOENT);
	cr_expect_not_null(strstr(e.msg, file), "%s", e.msg);
	expect_zeroed(&s, "missing file");

	snprintf(file, sizeof(file), "%s/bad.json", t.path);
	static const char bad[] = "{\"name\":\"t\",\"image\":\"t.elf\",\"vcpus\":0}";
	write_file(file, bad, strlen(bad));
	memset(&e, 0, sizeof(e));
	cr_expect_eq(spec_load(file, &s, &e), -EINVAL);
	char want[256];
	snprintf(want, sizeof(want), "%s: field \"vcpus\": 0 is out of range",
		 file);
	cr_expect_not_null(strstr(e.msg, want), "%s", e.msg);
	expect_zeroed(&s, "bad file");
	unlink(file);

	/* Over the cap: refused before reading, by size. */
	snprintf(file, sizeof(file), "%s/big.json", t.path);
	char *big = malloc(SPEC_FILE_MAX + 1);
	cr_assert_not_null(big);
	memset(big, ' ', SPEC_FILE_MAX + 1);
	write_file(file, big, SPEC_FILE_MAX + 1);
	free(big);
	memset(&e, 0, sizeof(e));
	cr_expect_eq(spec_load(file, &s, &e), -EFBIG, "%s", e.msg);
	unlink(file);

	/* A directory is not a spec. */
	memset(&e, 0, sizeof(e));
	cr_expect_eq(spec_load(t.path, &s, &e), -EINVAL, "%s", e.msg);
	cr_expect_not_null(strstr(e.msg, t.path), "%s", e.msg);
	rmdir(t.path);
	expect_no_leaks();
}

/* The example shipped for the demo and the docs must load, and the config
 * files it names must exist beside it. */
Test(spec, example_hello)
{
	struct part_spec s;
	struct parley_err e = { 0 };
	int rc = spec_load(PARLEY_SOURCE_DIR "/examples/hello.json", &s, &e);
	cr_assert_eq(rc, 0, "%s", e.msg);
	cr_expect_str_eq(s.name, "hello");
	cr_expect_str_eq(s.image, "hello.elf");
	cr_expect_eq(s.mem_bytes, 16ull << 20);
	cr_expect_eq(s.vcpus, 1);
	cr_expect_str_eq(s.cmdline, "exit=0");
	cr_assert_eq(s.nconfig, 2);
	cr_expect_str_eq(s.config[0].name, "motd");
	cr_expect_str_eq(s.config[1].name, "app.conf");
	for (unsigned i = 0; i < s.nconfig; i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", s.base_dir, s.config[i].path);
		cr_expect_eq(access(p, R_OK), 0, "%s", p);
	}
	spec_free(&s);
	expect_no_leaks();
}

/* ---- paths opened beneath the allowed directories (agent/beneath.h) ---- */

#include "agent/beneath.h"
#include "agent/partition.h"
#include "tests/helpers/testutil.h"

/* Create a partition from spec text in dir (paused, then destroyed);
 * the return code, the error in *e. */
static int create_in(const char *dir, const char *json,
		     const char *const *config_dirs, bool daemon,
		     struct parley_err *e)
{
	struct part_spec s;
	int rc = daemon ? spec_parse_daemon(json, strlen(json), &s, e)
			: spec_parse(json, strlen(json), dir, &s, e);
	cr_assert_eq(rc, 0, "%s", e->msg);
	struct t_console out = { 0 };
	struct part_opts o = t_opts(&out);
	uint32_t b[T_BACKENDS_MAX];
	t_backends(b);
	o.backend = b[0];
	o.config_dirs = config_dirs;
	o.start_paused = true;
	struct partition *p = NULL;
	rc = partition_create(&s, &o, &p, e);
	partition_destroy(p);
	spec_free(&s);
	t_console_free(&out);
	return rc;
}

/* A symlink beside the spec, to the very image the image dir holds: the
 * kernel refuses to follow it, and the error names the field. */
Test(spec_paths, symlinked_image_refused)
{
	char *dir = t_tmpdir(), *link;
	cr_assert(asprintf(&link, "%s/hello.elf", dir) > 0);
	cr_assert_eq(symlink(T_IMAGE("hello.elf"), link), 0);
	struct parley_err e = { 0 };
	int rc = create_in(dir, "{\"name\":\"p\",\"image\":\"hello.elf\"}",
			   NULL, false, &e);
	cr_expect_eq(rc, -EPERM, "%d %s", rc, e.msg);
	cr_expect(strstr(e.msg, "field \"image\": \"hello.elf\" in "),
		  "%s", e.msg);
	cr_expect(strstr(e.msg, "goes through a symbolic link, refused"),
		  "%s", e.msg);
	free(link);
	t_rmtree(dir);
	free(dir);
}

/* Config files: a symlink out of the directory (to /etc/passwd), and a
 * path through a symlinked directory, both refused naming the field. */
Test(spec_paths, symlinked_config_refused)
{
	char *dir = t_tmpdir(), *l1, *l2;
	cr_assert(asprintf(&l1, "%s/motd", dir) > 0);
	cr_assert(asprintf(&l2, "%s/etc", dir) > 0);
	cr_assert_eq(symlink("/etc/passwd", l1), 0);
	cr_assert_eq(symlink("/etc", l2), 0);
	struct parley_err e = { 0 };
	int rc = create_in(dir, "{\"name\":\"p\",\"image\":\"hello.elf\","
			   "\"config\":[{\"name\":\"m\",\"path\":\"motd\"}]}",
			   NULL, false, &e);
	cr_expect_eq(rc, -EPERM, "%d %s", rc, e.msg);
	cr_expect(strstr(e.msg, "config[0].path: \"motd\" in "), "%s", e.msg);
	cr_expect(strstr(e.msg, "symbolic link"), "%s", e.msg);
	memset(&e, 0, sizeof(e));
	rc = create_in(dir, "{\"name\":\"p\",\"image\":\"hello.elf\","
		       "\"config\":[{\"name\":\"m\",\"path\":\"etc/passwd\"}]}",
		       NULL, false, &e);
	cr_expect_eq(rc, -EPERM, "%d %s", rc, e.msg);
	cr_expect(strstr(e.msg, "config[0].path: \"etc/passwd\""), "%s",
		  e.msg);
	free(l1);
	free(l2);
	t_rmtree(dir);
	free(dir);
}

/* Config files come from beside the spec or a --config-dir; a spec from
 * the daemon has no directory of its own, so a file that lies only beside
 * where it would have been (the state dir, say) is not found. */
Test(spec_paths, config_dirs_and_daemon_specs, .timeout = 30)
{
	char *dir = t_tmpdir(), *cdir = t_tmpdir();
	free(t_write(cdir, "motd", "hi\n", 3));
	const char *const cdirs[] = { cdir, NULL };
	const char *json = "{\"name\":\"p\",\"image\":\"hello.elf\","
			   "\"config\":[{\"name\":\"m\",\"path\":\"motd\"}]}";
	struct parley_err e = { 0 };
	cr_expect_eq(create_in(dir, json, cdirs, false, &e), 0, "%s", e.msg);
	cr_expect_eq(create_in(dir, json, cdirs, true, &e), 0, "%s", e.msg);
	memset(&e, 0, sizeof(e));
	int rc = create_in(cdir, json, NULL, true, &e);
	cr_expect_eq(rc, -ENOENT, "%d %s", rc, e.msg);
	cr_expect(strstr(e.msg, "config[0].path: \"motd\" not found"), "%s",
		  e.msg);
	t_rmtree(dir);
	t_rmtree(cdir);
	free(dir);
	free(cdir);
}

/* `parley-agent run` with a spec naming /etc/passwd or ../x: exit 2, the
 * message names the spec and the field. */
Test(spec_paths, agent_run_refuses_paths_out, .timeout = 30)
{
	char *dir = t_tmpdir();
	const struct {
		const char *json, *want;
	} c[] = {
		{ "{\"name\":\"p\",\"image\":\"/etc/passwd\"}",
		  "field \"image\": \"/etc/passwd\" is an absolute path" },
		{ "{\"name\":\"p\",\"image\":\"hello.elf\",\"config\":[{\"name\""
		  ":\"a\",\"path\":\"../x\"}]}",
		  "config[0].path: \"../x\" has a \"..\" component" },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *spec = t_write(dir, "s.json", c[i].json,
				     strlen(c[i].json)), *out;
		char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
				 PARLEY_BUILD_DIR "/guest", spec, NULL };
		int rc = t_run(argv, &out, 20);
		cr_expect_eq(rc, 2, "exit %d: %s", rc, out);
		cr_expect(strstr(out, spec), "%s", out);
		cr_expect(strstr(out, c[i].want), "%s", out);
		free(out);
		free(spec);
	}
	t_rmtree(dir);
	free(dir);
}
