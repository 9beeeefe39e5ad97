/*
 * parley-smcp: the stand-alone Shared Memory Configuration Program.
 *
 *   parley-smcp [--known NAME,...] [--out DIR] DATASET
 *
 * Reads a segment-set data set (common/segset.h), checks it — against the
 * partitions that exist when --known lists them — and compiles every set
 * into its definition/allocation table (include/parley/segset.h). With
 * --out, DIR/SET.table gets each table's bytes (what the agent copies into
 * segment 0). On stdout, as JSON: per set its size and the grants it
 * implies, i.e. per member the segments it maps and how ("rw" for the one
 * it writes, "ro" for those it reads; the table and the other members'
 * position pages are read-only to all).
 *
 * Exit status 0, 1 when the data set is refused (the message names the
 * entry and field) or a file cannot be written, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/segset.h"
#include "common/version.h"

static const char usage_text[] =
	"usage: parley-smcp [--known NAME,...] [--out DIR] DATASET\n"
	"       parley-smcp --help | --version\n"
	"\n"
	"  DATASET          the segment-set data set (JSON)\n"
	"  --known NAMES    the partitions that exist, comma-separated; a\n"
	"                   member not among them is refused\n"
	"  --out DIR        write DIR/SET.table, each set's table\n"
	"  --help           this text\n"
	"  --version        the version\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

#define KNOWN_MAX 1024

/* Split NAMES at commas into a NULL-terminated list (in place). */
static int split_known(char *s, const char **known)
{
	unsigned n = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (n == KNOWN_MAX ||
		    !jv_name_valid(tok, strlen(tok), PARLEY_SEGSET_NAME_MAX))
			return -1;
		known[n++] = tok;
	}
	known[n] = NULL;
	return n ? 0 : -1;
}

static int write_table(const char *dir, const char *set, const uint8_t *t,
		       size_t len)
{
	char path[4096];
	char file[PARLEY_SEGSET_NAME_MAX + 8];
	snprintf(file, sizeof(file), "%s.table", set);
	if (path_join(path, sizeof(path), dir, file) < 0)
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = fd_write_all(fd, t, len);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* The grants one compiled table implies, per member. */
static json_t *grants_of(const uint8_t *t)
{
	const struct parley_segset_hdr *h = (const void *)t;
	const struct parley_segset_member *m = (const void *)(t + h->member_off);
	const struct parley_segset_seg *g = (const void *)(t + h->seg_off);
	json_t *arr = json_array();
	for (uint32_t i = 0; i < h->nmembers; i++) {
		json_t *segs = json_array();
		for (uint32_t s = 0; s < h->nsegs; s++) {
			char a = segset_access(&g[s], i);
			if (!a)
				continue;
			json_array_append_new(segs, json_pack(
				"{s:s, s:I, s:s, s:s, s:I, s:I}",
				"segment", g[s].name, "number", (json_int_t)s,
				"kind", segset_kind_name(g[s].kind),
				"access", a == 'w' ? "rw" : "ro",
				"offset", (json_int_t)g[s].offset,
				"size", (json_int_t)g[s].size));
		}
		json_array_append_new(arr, json_pack("{s:s, s:I, s:o}",
			"member", m[i].name, "id", (json_int_t)i,
			"segments", segs));
	}
	return arr;
}

int main(int argc, char **argv)
{
	if (parley_help_or_version(argc, argv, "parley-smcp", usage_text))
		return 0;
	const char *out = NULL, *path = NULL;
	static const char *known_buf[KNOWN_MAX + 1];
	const char *const *known = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--known") && i + 1 < argc) {
			if (split_known(argv[++i], known_buf) < 0) {
				fprintf(stderr, "parley-smcp: --known: a "
					"comma-separated list of partition "
					"names\n");
				return 2;
			}
			known = known_buf;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else if (argv[i][0] == '-' || path) {
			fprintf(stderr, "parley-smcp: unexpected \"%s\"\n",
				argv[i]);
			return usage();
		} else {
			path = argv[i];
		}
	}
	if (!path)
		return usage();
	/* --out DIR is made when missing (its parent must exist) */
	if (out && mkdir(out, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "parley-smcp: --out %s: cannot make it: %s\n",
			out, strerror(errno));
		return 1;
	}
	struct parley_err err = { 0 };
	struct segset_doc doc;
	if (segset_doc_load(path, known, &doc, &err) < 0) {
		fprintf(stderr, "parley-smcp: %s\n", err.msg);
		return 1;
	}
	json_t *sets = json_array();
	int status = 0;
	for (unsigned i = 0; i < doc.n && status == 0; i++) {
		uint8_t *t;
		size_t len;
		if (segset_compile(&doc.s[i], &t, &len, &err) < 0) {
			fprintf(stderr, "parley-smcp: %s\n", err.msg);
			status = 1;
			break;
		}
		const struct parley_segset_hdr *h = (const void *)t;
		int rc = out ? write_table(out, doc.s[i].name, t, len) : 0;
		if (rc < 0) {
			fprintf(stderr, "parley-smcp: %s/%s.table: %s\n", out,
				doc.s[i].name, strerror(-rc));
			status = 1;
		} else {
			json_array_append_new(sets, json_pack(
				"{s:s, s:I, s:I, s:I, s:o}",
				"name", doc.s[i].name,
				"table_bytes", (json_int_t)h->table_size,
				"window_bytes", (json_int_t)h->window_size,
				"segments", (json_int_t)h->nsegs,
				"grants", grants_of(t)));
		}
		free(t);
	}
	if (status == 0) {
		json_t *root = json_pack("{s:o}", "segsets", sets);
		json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
	} else {
		json_decref(sets);
	}
	segset_doc_free(&doc);
	return status;
}
