/*
 * Segment sets, the data set and the table (issue 14): common/segset.c's
 * parser and compiler, parley-smcp refusing bad data sets with the entry
 * and field named, and the SDK's table reader refusing every corrupted
 * field. The memory, pipes and queues are in test_segset_mem.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/segset.h"
#include "tests/helpers/testutil.h"
#include <parley/segsdk.h>

TestSuite(segset, .timeout = 120);

static const char example[] =
	"{\"segsets\":[{\"name\":\"bus\",\"members\":[\"hub\",\"left\","
	"\"right\",\"mon\"],\"segments\":["
	"{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"hub\",\"size\":\"64K\"},"
	"{\"name\":\"ev.left\",\"kind\":\"queue\",\"queue\":\"events\","
	"\"writer\":\"left\",\"size\":\"16K\",\"readers\":[\"hub\",\"mon\"]},"
	"{\"name\":\"ev.right\",\"kind\":\"queue\",\"queue\":\"events\","
	"\"writer\":\"right\",\"size\":\"16K\",\"readers\":[\"hub\",\"mon\"]},"
	"{\"name\":\"status\",\"kind\":\"area\",\"writer\":\"agent\","
	"\"size\":8192}]}]}";

static void compile_example(uint8_t **t, size_t *len)
{
	struct segset_doc d;
	struct parley_err err = { 0 };
	cr_assert_eq(segset_doc_parse(example, strlen(example), NULL, &d,
				      &err), 0, "%s", err.msg);
	cr_assert_eq(d.n, 1);
	cr_assert_eq(segset_compile(&d.s[0], t, len, &err), 0, "%s", err.msg);
	segset_doc_free(&d);
}

Test(segset, example_compiles_to_a_checked_table)
{
	uint8_t *t;
	size_t len;
	compile_example(&t, &len);
	struct parley_segtab tab;
	cr_assert_eq(parley_segtab_read(t, len, &tab), PARLEY_SEG_OK);
	cr_assert_str_eq(tab.hdr.name, "bus");
	cr_assert_eq(tab.hdr.nmembers, 4);
	cr_assert_eq(tab.hdr.ndecl, 4);
	cr_assert_eq(tab.hdr.nsegs, 1 + 4 + 4);
	/* segment 0: the table, the agent's, read by all */
	cr_assert_eq(tab.seg[0].kind, PARLEY_SEG_TABLE);
	cr_assert_eq(tab.seg[0].writer, PARLEY_SEG_WRITER_AGENT);
	cr_assert_eq(tab.seg[0].readers, 0xf);
	int cmd = parley_segtab_find(&tab, "cmd");
	cr_assert_eq(cmd, 1);
	cr_assert_eq(tab.seg[cmd].writer, 0);
	cr_assert_eq(tab.seg[cmd].readers, 0xe, "every member but the writer");
	cr_assert_eq(tab.seg[cmd].size, 64 * 1024 + 4096, "ring + header page");
	int evl = parley_segtab_find(&tab, "ev.left");
	cr_assert_eq(tab.seg[evl].readers, (1u << 0) | (1u << 3));
	cr_assert_str_eq(tab.seg[evl].queue, "events");
	int st = parley_segtab_find(&tab, "status");
	cr_assert_eq(tab.seg[st].writer, PARLEY_SEG_WRITER_AGENT);
	cr_assert_eq(tab.seg[st].size, 8192);
	/* one position page per member, its own */
	for (uint32_t m = 0; m < 4; m++) {
		const struct parley_segset_seg *p =
			&tab.seg[tab.member[m].pos_seg];
		cr_assert_eq(p->kind, PARLEY_SEG_POS);
		cr_assert_eq(p->writer, m);
		cr_assert_eq(tab.member[m].state, PARLEY_MEMBER_ABSENT);
	}
	cr_assert_eq(parley_segtab_member(&tab, "right"), 2);
	cr_assert_eq(parley_segtab_member(&tab, "nobody"), PARLEY_SEG_NOENT);
	/* the implied grants: rw only for the own segment */
	cr_assert_eq(segset_access(&tab.seg[cmd], 0), 'w');
	cr_assert_eq(segset_access(&tab.seg[cmd], 1), 'r');
	cr_assert_eq(segset_access(&tab.seg[evl], 2), 0);
	free(t);
}

/* A data set with one segment field replaced, and what the error says. */
struct bad {
	const char *doc;
	const char *want;
};

#define SET(members, segs)                                                 \
	"{\"segsets\":[{\"name\":\"bus\",\"members\":[" members "],"      \
	"\"segments\":[" segs "]}]}"
#define M4 "\"hub\",\"left\",\"right\",\"mon\""
#define PIPE "{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"hub\",\"size\":\"64K\"}"

static const struct bad bads[] = {
	{ SET(M4, "{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"zed\","
		  "\"size\":\"64K\"}"),
	  "segsets[0] (\"bus\").segments[0] (\"cmd\").writer: \"zed\" is "
	  "not a member of the set" },
	{ SET(M4, "{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"hub\","
		  "\"size\":3000}"),
	  "segsets[0] (\"bus\").segments[0] (\"cmd\").size: 3000 is not a "
	  "power of two" },
	{ SET(M4, "{\"name\":\"a\",\"kind\":\"area\",\"writer\":\"hub\","
		  "\"size\":100}"),
	  "segsets[0] (\"bus\").segments[0] (\"a\").size: 100 is not a whole "
	  "number of 4K pages" },
	{ SET("\"hub\"", PIPE),
	  "segsets[0] (\"bus\").members: 1 members, a set has 2..64" },
	{ SET("\"hub\",\"hub\"", PIPE),
	  "segsets[0] (\"bus\").members[1]: \"hub\" is listed twice" },
	{ SET(M4, "{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"hub\","
		  "\"size\":\"64K\",\"colour\":1}"),
	  "segsets[0] (\"bus\").segments[0]: unknown field \"colour\"" },
	{ SET(M4, "{\"name\":\"cmd\",\"kind\":\"tube\",\"writer\":\"hub\","
		  "\"size\":\"64K\"}"),
	  "segsets[0] (\"bus\").segments[0] (\"cmd\").kind: \"tube\" is not "
	  "pipe, queue or area" },
	{ SET(M4, "{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"hub\","
		  "\"size\":\"64K\",\"readers\":[\"hub\"]}"),
	  "segsets[0] (\"bus\").segments[0] (\"cmd\").readers[0]: \"hub\" is "
	  "the writer" },
	{ SET(M4, "{\"name\":\"q1\",\"kind\":\"queue\",\"queue\":\"ev\","
		  "\"writer\":\"left\",\"size\":\"4K\"},"
		  "{\"name\":\"q2\",\"kind\":\"queue\",\"queue\":\"ev\","
		  "\"writer\":\"left\",\"size\":\"4K\"}"),
	  "segsets[0] (\"bus\").segments[1] (\"q2\").writer: queue \"ev\" "
	  "already has a segment written by \"left\"" },
	{ SET(M4, "{\"name\":\"q1\",\"kind\":\"queue\",\"writer\":\"left\","
		  "\"size\":\"4K\"}"),
	  "segsets[0] (\"bus\").segments[0] (\"q1\").queue: missing" },
	{ SET(M4, "{\"name\":\"p\",\"kind\":\"pipe\",\"queue\":\"x\","
		  "\"writer\":\"left\",\"size\":\"4K\"}"),
	  "segsets[0] (\"bus\").segments[0] (\"p\").queue: only a queue "
	  "segment names a queue" },
	{ SET(M4, PIPE "," PIPE),
	  "segsets[0] (\"bus\").segments[1] (\"cmd\").name: duplicate "
	  "segment" },
	{ SET(M4, "{\"name\":\"b\\u001b[2J\",\"kind\":\"pipe\","
		  "\"writer\":\"hub\",\"size\":\"4K\"}"),
	  "segsets[0] (\"bus\").segments[0].name: \"b\\x1b[2J\" is not a "
	  "valid name" },
	{ SET(M4, ""), "segsets[0] (\"bus\").segments: 0 segments, a set has "
		       "1..63" },
	{ "{\"segsets\":[{\"name\":\"bus\",\"members\":[" M4 "]}]}",
	  "segsets[0] (\"bus\").segments: missing" },
	{ "{\"segsets\":[3]}", "segsets[0]: expected an object" },
	{ "{\"segsets\":[{\"name\":\"a\",\"members\":[" M4 "],\"segments\":["
	  PIPE "]},{\"name\":\"a\",\"members\":[" M4 "],\"segments\":[" PIPE
	  "]}]}",
	  "segsets[1] (\"a\").name: duplicate set (also segsets[0])" },
	{ SET(M4, "{\"name\":\"big\",\"kind\":\"area\",\"writer\":\"hub\","
		  "\"size\":\"64M\"},{\"name\":\"big2\",\"kind\":\"area\","
		  "\"writer\":\"hub\",\"size\":\"64M\"},{\"name\":\"big3\","
		  "\"kind\":\"area\",\"writer\":\"hub\",\"size\":\"64M\"},"
		  "{\"name\":\"big4\",\"kind\":\"area\",\"writer\":\"hub\","
		  "\"size\":\"64M\"}"),
	  "segsets[0] (\"bus\").segments: " },
	{ "{\"segsets\": [", "invalid JSON at line" },
};

Test(segset, parser_names_entry_and_field)
{
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct segset_doc d;
		struct parley_err err = { 0 };
		int rc = segset_doc_parse(bads[i].doc, strlen(bads[i].doc),
					  NULL, &d, &err);
		cr_expect_lt(rc, 0, "bad[%zu] accepted", i);
		cr_expect(strstr(err.msg, bads[i].want), "bad[%zu]: \"%s\", "
			  "want \"%s\"", i, err.msg, bads[i].want);
		cr_expect_eq(d.n, 0);
		cr_expect_null(d.s);
	}
}

Test(segset, unknown_partition_refused_with_known_list)
{
	static const char *const known[] = { "hub", "left", "right", NULL };
	struct segset_doc d;
	struct parley_err err = { 0 };
	int rc = segset_doc_parse(example, strlen(example), known, &d, &err);
	cr_assert_eq(rc, -ENOENT);
	cr_assert(strstr(err.msg, "segsets[0] (\"bus\").members[3]: unknown "
			 "partition \"mon\""), "%s", err.msg);
}

static int smcp(const char *arg1, const char *arg2, const char *arg3,
		const char *arg4, char **out, char **err)
{
	char *argv[] = { PARLEY_BUILD_DIR "/bin/parley-smcp", (char *)arg1,
			 (char *)arg2, (char *)arg3, (char *)arg4, NULL };
	return t_exec(argv, NULL, out, err);
}

Test(segset, smcp_refuses_bad_data_sets_naming_entry_and_field)
{
	char *dir = t_tmpdir();
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		char *p = t_write(dir, "bad.json", bads[i].doc,
				  strlen(bads[i].doc));
		char *out, *err;
		int rc = smcp(p, NULL, NULL, NULL, &out, &err);
		cr_expect_eq(rc, 1, "bad[%zu]: exit %d", i, rc);
		cr_expect_str_empty(out, "bad[%zu]: stdout %s", i, out);
		cr_expect(strstr(err, bads[i].want), "bad[%zu]: %s", i, err);
		cr_expect(strstr(err, "bad.json"), "names the file: %s", err);
		free(out), free(err), free(p);
	}
	char *p = t_write(dir, "ok.json", example, strlen(example));
	char *out, *err;
	int rc = smcp("--known", "hub,left,right", p, NULL, &out, &err);
	cr_expect_eq(rc, 1);
	cr_expect(strstr(err, "members[3]: unknown partition \"mon\""), "%s",
		  err);
	free(out), free(err);
	rc = smcp("--bogus", p, NULL, NULL, &out, &err);
	cr_expect_eq(rc, 2);
	free(out), free(err);
	free(p);
	t_rmtree(dir);
	free(dir);
}

Test(segset, smcp_writes_the_table_and_the_implied_grants)
{
	char *dir = t_tmpdir();
	char *p = t_write(dir, "ok.json", example, strlen(example));
	char *out, *err;
	int rc = smcp("--known", "hub,left,right,mon", "--out", dir, &out,
		      &err);
	/* four arguments: the data set comes last */
	cr_assert_eq(rc, 2, "no data set given: usage (%s)", err);
	free(out), free(err);
	/* --out names a directory not made yet: it is made */
	char sets[4096];
	snprintf(sets, sizeof(sets), "%s/sets", dir);
	char *argv[] = { PARLEY_BUILD_DIR "/bin/parley-smcp", "--known",
			 "hub,left,right,mon", "--out", sets, p, NULL };
	rc = t_exec(argv, NULL, &out, &err);
	cr_assert_eq(rc, 0, "%s", err);
	/* the table file is what segset_compile makes */
	char path[4096];
	snprintf(path, sizeof(path), "%s/bus.table", sets);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	uint8_t buf[65536];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	uint8_t *t;
	size_t len;
	compile_example(&t, &len);
	cr_assert_eq(n, len);
	cr_assert_eq(memcmp(buf, t, len), 0);
	free(t);
	/* the implied grants: each member writes its own segments only */
	unsigned rw = 0;
	for (const char *q = out; (q = strstr(q, "\"access\": \"rw\"")); q++)
		rw++;
	cr_assert_eq(rw, 3 + 4, "cmd, ev.left, ev.right, 4 position pages: %s",
		     out);
	cr_assert(strstr(out, "\"member\": \"hub\""), "%s", out);
	cr_assert(strstr(out, "\"window_bytes\": "), "%s", out);
	free(out), free(err), free(p);
	t_rmtree(dir);
	free(dir);
}

/* ---- the SDK's table reader against a hostile table ------------------- */

struct mut {
	const char *what;
	void (*f)(uint8_t *t);
	int want;
};

#define HDR(t) ((struct parley_segset_hdr *)(t))
#define MEM(t) ((struct parley_segset_member *)((t) + HDR(t)->member_off))
#define SEG(t) ((struct parley_segset_seg *)((t) + HDR(t)->seg_off))

static void m_magic(uint8_t *t) { HDR(t)->magic ^= 1; }
static void m_version(uint8_t *t) { HDR(t)->version = 2; }
static void m_hdr_size(uint8_t *t) { HDR(t)->hdr_size += 8; }
static void m_epoch_odd(uint8_t *t) { HDR(t)->epoch = 3; }
static void m_nmembers_1(uint8_t *t) { HDR(t)->nmembers = 1; }
static void m_nmembers_big(uint8_t *t) { HDR(t)->nmembers = 1000; }
static void m_nsegs(uint8_t *t) { HDR(t)->nsegs += 1; }
static void m_ndecl(uint8_t *t) { HDR(t)->ndecl = 0; }
static void m_member_off(uint8_t *t) { HDR(t)->member_off += 8; }
static void m_seg_off(uint8_t *t) { HDR(t)->seg_off = 100000; }
static void m_table_size(uint8_t *t) { HDR(t)->table_size += 4096; }
static void m_window(uint8_t *t) { HDR(t)->window_size += 4096; }
static void m_name_nul(uint8_t *t) { memset(HDR(t)->name, 'a', 64); }
static void m_name_ctl(uint8_t *t) { HDR(t)->name[1] = '\n'; }
static void m_name_tail(uint8_t *t) { HDR(t)->name[10] = 'x'; }
static void m_reserved(uint8_t *t) { HDR(t)->reserved[7] = 1; }
static void m_mem_name(uint8_t *t) { MEM(t)[1].name[0] = '.'; }
static void m_mem_dup(uint8_t *t) { strcpy(MEM(t)[2].name, "hub"); }
static void m_mem_id(uint8_t *t) { MEM(t)[2].id = 3; }
static void m_mem_state(uint8_t *t) { MEM(t)[0].state = 7; }
static void m_mem_pos(uint8_t *t) { MEM(t)[3].pos_seg = 1; }
static void m_mem_res(uint8_t *t) { MEM(t)[3].reserved = 1; }
static void m_seg_number(uint8_t *t) { SEG(t)[2].number = 3; }
static void m_seg_offset(uint8_t *t) { SEG(t)[2].offset += 4096; }
static void m_seg_size(uint8_t *t) { SEG(t)[4].size = 100; }
static void m_seg_ring(uint8_t *t) { SEG(t)[1].size += 4096; }
static void m_seg_writer(uint8_t *t) { SEG(t)[1].writer = 4; }
static void m_seg_readers(uint8_t *t) { SEG(t)[1].readers |= 1ull << 9; }
static void m_seg_self(uint8_t *t) { SEG(t)[1].readers |= 1; }
static void m_seg_kind(uint8_t *t) { SEG(t)[1].kind = 9; }
static void m_seg_pos_kind(uint8_t *t) { SEG(t)[1].kind = PARLEY_SEG_POS; }
static void m_seg_state(uint8_t *t) { SEG(t)[3].state = 0; }
static void m_seg_queue(uint8_t *t) { strcpy(SEG(t)[1].queue, "q"); }
static void m_seg_noqueue(uint8_t *t) { SEG(t)[2].queue[0] = 0; }
static void m_seg_dup(uint8_t *t) { strcpy(SEG(t)[2].name, "cmd"); }
static void m_seg_table(uint8_t *t) { SEG(t)[0].writer = 0; }
static void m_seg_res(uint8_t *t) { SEG(t)[5].reserved = 1; }
static void m_pos_writer(uint8_t *t) { SEG(t)[6].writer = 2; }
static void m_agent_queue(uint8_t *t)
{
	SEG(t)[2].writer = PARLEY_SEG_WRITER_AGENT;
}

static const struct mut muts[] = {
	{ "magic", m_magic, PARLEY_SEG_CORRUPT },
	{ "version", m_version, PARLEY_SEG_CORRUPT },
	{ "hdr_size", m_hdr_size, PARLEY_SEG_CORRUPT },
	{ "epoch odd", m_epoch_odd, PARLEY_SEG_AGAIN },
	{ "nmembers 1", m_nmembers_1, PARLEY_SEG_CORRUPT },
	{ "nmembers 1000", m_nmembers_big, PARLEY_SEG_CORRUPT },
	{ "nsegs", m_nsegs, PARLEY_SEG_CORRUPT },
	{ "ndecl", m_ndecl, PARLEY_SEG_CORRUPT },
	{ "member_off", m_member_off, PARLEY_SEG_CORRUPT },
	{ "seg_off", m_seg_off, PARLEY_SEG_CORRUPT },
	{ "table_size", m_table_size, PARLEY_SEG_CORRUPT },
	{ "window_size", m_window, PARLEY_SEG_CORRUPT },
	{ "name without NUL", m_name_nul, PARLEY_SEG_CORRUPT },
	{ "name with a control byte", m_name_ctl, PARLEY_SEG_CORRUPT },
	{ "bytes after the name", m_name_tail, PARLEY_SEG_CORRUPT },
	{ "reserved", m_reserved, PARLEY_SEG_CORRUPT },
	{ "member name", m_mem_name, PARLEY_SEG_CORRUPT },
	{ "member name twice", m_mem_dup, PARLEY_SEG_CORRUPT },
	{ "member id", m_mem_id, PARLEY_SEG_CORRUPT },
	{ "member state", m_mem_state, PARLEY_SEG_CORRUPT },
	{ "member pos_seg", m_mem_pos, PARLEY_SEG_CORRUPT },
	{ "member reserved", m_mem_res, PARLEY_SEG_CORRUPT },
	{ "segment number", m_seg_number, PARLEY_SEG_CORRUPT },
	{ "segment offset", m_seg_offset, PARLEY_SEG_CORRUPT },
	{ "segment size", m_seg_size, PARLEY_SEG_CORRUPT },
	{ "pipe ring not a power of two", m_seg_ring, PARLEY_SEG_CORRUPT },
	{ "writer out of range", m_seg_writer, PARLEY_SEG_CORRUPT },
	{ "reader out of range", m_seg_readers, PARLEY_SEG_CORRUPT },
	{ "writer among readers", m_seg_self, PARLEY_SEG_CORRUPT },
	{ "kind", m_seg_kind, PARLEY_SEG_CORRUPT },
	{ "declared segment of kind pos", m_seg_pos_kind, PARLEY_SEG_CORRUPT },
	{ "segment state", m_seg_state, PARLEY_SEG_CORRUPT },
	{ "queue name on a pipe", m_seg_queue, PARLEY_SEG_CORRUPT },
	{ "queue without a name", m_seg_noqueue, PARLEY_SEG_CORRUPT },
	{ "segment name twice", m_seg_dup, PARLEY_SEG_CORRUPT },
	{ "table written by a member", m_seg_table, PARLEY_SEG_CORRUPT },
	{ "segment reserved", m_seg_res, PARLEY_SEG_CORRUPT },
	{ "position page of another member", m_pos_writer,
	  PARLEY_SEG_CORRUPT },
	{ "queue written by the agent", m_agent_queue, PARLEY_SEG_CORRUPT },
};

Test(segset, table_reader_refuses_every_corrupted_field)
{
	uint8_t *t;
	size_t len;
	compile_example(&t, &len);
	uint8_t *c = malloc(len);
	struct parley_segtab *tab = malloc(sizeof(*tab));
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		memcpy(c, t, len);
		muts[i].f(c);
		cr_expect_eq(parley_segtab_read(c, len, tab), muts[i].want,
			     "%s", muts[i].what);
	}
	/* too short a mapping for the table it claims */
	cr_expect_eq(parley_segtab_read(t, 100, tab), PARLEY_SEG_CORRUPT);
	cr_expect_eq(parley_segtab_read(t, len, tab), PARLEY_SEG_OK);
	free(tab);
	free(c);
	free(t);
}
