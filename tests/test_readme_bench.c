/* The README's benchmark table agrees with the records it names
 * (bench/results/, written by `./dev bench --runs N`): every row with a
 * range is a figure of a cited record, its median, min and max as the
 * record has them (to the digits shown), and its mark follows the rule
 * the README states: ✓ only when the whole range meets the target, ✗
 * when some run misses it. A row without a range (one run, in no record)
 * may not claim ✓. A hand edit of the table that drifts from its record
 * fails here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

#define MAX_FILES 32
#define EN_DASH "\xe2\x80\x93"
#define CHECK "\xe2\x9c\x93"
#define CROSS "\xe2\x9c\x97"
#define LE "\xe2\x89\xa4"
#define GE "\xe2\x89\xa5"
#define FOOT_A "\xe1\xb5\x83"   /* ᵃ */

static char *slurp(const char *path)
{
	uint8_t *buf;
	size_t len;
	struct parley_err err = { 0 };
	cr_assert_eq(file_read_all(path, 4u << 20, &buf, &len, &err), 0, "%s",
		     perr_msg(&err));
	char *s = realloc(buf, len + 1);
	cr_assert(s);
	s[len] = 0;
	return s;
}

struct rec_file {
	char name[128];
	char *text;
};

/* The record's "BENCH name median unit min=… max=… runs=N" line. */
static bool recorded(const struct rec_file *f, const char *name, double *med,
		     double *min, double *max)
{
	char pat[160];
	snprintf(pat, sizeof(pat), "\nBENCH %s ", name);
	const char *p = strstr(f->text, pat);
	if (!p)
		return false;
	p += strlen(pat);
	char unit[32];
	return sscanf(p, "%lf %31s min=%lf max=%lf", med, unit, min, max) == 4;
}

/* A number as the table shows it: "13,391", "0.068", "4.14"; *places gets
 * its decimals. Returns past it, or NULL. */
static const char *number(const char *s, double *v, int *places)
{
	char buf[64];
	size_t n = 0;
	int dec = -1;
	while (*s == ' ')
		s++;
	for (; (*s >= '0' && *s <= '9') || *s == ',' || *s == '.'; s++) {
		if (*s == ',')
			continue;
		if (*s == '.')
			dec = 0;
		else if (dec >= 0)
			dec++;
		if (n + 1 < sizeof(buf))
			buf[n++] = *s;
	}
	if (!n)
		return NULL;
	buf[n] = 0;
	*v = strtod(buf, NULL);
	*places = dec < 0 ? 0 : dec;
	return s;
}

/* " M" as in "4.14 M/s" (millions), not "MiB/s" (a unit). */
static bool millions(const char *p)
{
	return !strncmp(p, " M", 2) && !(p[2] >= 'a' && p[2] <= 'z') &&
	       !(p[2] >= 'A' && p[2] <= 'Z');
}

/* Shown and recorded agree to the digits shown. */
static bool agrees(double shown, int places, double scale, double rec)
{
	double tol = 0.5 * scale, d = shown * scale - rec;
	for (int i = 0; i < places; i++)
		tol /= 10;
	return (d < 0 ? -d : d) <= tol * 1.001 + 1e-12;
}

static void cell(const char *row, int i, char *out, size_t cap)
{
	const char *p = row;
	for (int k = 0; k <= i; k++) {
		p = strstr(p, "| ");
		cr_assert(p, "row has no cell %d: %s", i, row);
		p += 2;
	}
	const char *end = strstr(p, " |");
	cr_assert(end, "%s", row);
	size_t n = (size_t)(end - p) < cap - 1 ? (size_t)(end - p) : cap - 1;
	memcpy(out, p, n);
	out[n] = 0;
}

/* ✓/✗ against the target over the whole range. */
static void check_mark(const char *name, const char *target, bool ranged,
		       double lo, double hi)
{
	bool ok = strstr(target, CHECK) != NULL, bad = strstr(target, CROSS);
	if (!ok && !bad)
		return; /* no target */
	cr_assert(ranged || !ok, "%s: ✓ from one figure; a target is met only "
		  "when a recorded range meets it", name);
	if (!ranged)
		return;
	const char *p = target;
	int op = 0; /* 0 =, 1 ≤, 2 ≥, 3 <, 4 > */
	if (!strncmp(p, LE, 3))
		op = 1, p += 3;
	else if (!strncmp(p, GE, 3))
		op = 2, p += 3;
	else if (*p == '<')
		op = 3, p++;
	else if (*p == '>')
		op = 4, p++;
	double t;
	int places;
	cr_assert(number(p, &t, &places), "%s: target \"%s\"", name, target);
	bool met;
	switch (op) {
	case 1: met = hi <= t; break;
	case 2: met = lo >= t; break;
	case 3: met = hi < t; break;
	case 4: met = lo > t; break;
	default: met = lo == t && hi == t;
	}
	cr_assert(met == ok, "%s: marked %s, but the range %g–%g %s \"%s\"",
		  name, ok ? "met" : "missed", lo, hi,
		  met ? "meets" : "does not meet", target);
}

Test(readme, benchmark_table_agrees_with_its_records)
{
	char *readme = slurp(PARLEY_SOURCE_DIR "/README.md");
	char *sec = strstr(readme, "\n## Benchmarks\n");
	cr_assert(sec, "README.md has no Benchmarks section");
	char *next = strstr(sec + 1, "\n## ");
	if (next)
		*next = 0;
	/* The records cited before the table; the footnote's. */
	struct rec_file files[MAX_FILES];
	int nfiles = 0, foot = -1;
	char *table = strstr(sec, "\n| suite |");
	cr_assert(table, "no table");
	for (char *p = sec; (p = strstr(p, "](bench/results/"));) {
		p += 2;
		char *end = strchr(p, ')');
		cr_assert(end && nfiles < MAX_FILES);
		struct rec_file *f = &files[nfiles];
		snprintf(f->name, sizeof(f->name), "%.*s", (int)(end - p), p);
		char path[512];
		snprintf(path, sizeof(path), PARLEY_SOURCE_DIR "/%s", f->name);
		f->text = slurp(path);
		if (p > table)
			foot = nfiles;
		nfiles++;
		p = end;
	}
	cr_assert(nfiles > 0, "the table cites no record");
	unsigned rows = 0, checked = 0;
	for (char *line = table + 1; line && *line == '|';) {
		char *eol = strchr(line, '\n');
		if (eol)
			*eol = 0;
		if (strncmp(line, "| suite", 7) && strncmp(line, "| ---", 5)) {
			rows++;
			char fig[512], val[128], target[128], name[96];
			cell(line, 1, fig, sizeof(fig));
			cell(line, 2, val, sizeof(val));
			cell(line, 3, target, sizeof(target));
			const char *b = strchr(fig, '`'), *e = b ? strchr(b + 1, '`')
							    : NULL;
			cr_assert(b && e, "no figure name: %s", line);
			snprintf(name, sizeof(name), "%.*s", (int)(e - b - 1), b + 1);
			double med, lo = 0, hi = 0;
			int pm, pl = 0, ph = 0;
			const char *p = number(val, &med, &pm);
			cr_assert(p, "%s: no median in \"%s\"", name, val);
			double mscale = millions(p) ? 1e6 : 1;
			const char *open = strchr(p, '(');
			bool ranged = open != NULL;
			if (ranged) {
				const char *q = number(open + 1, &lo, &pl);
				cr_assert(q && !strncmp(q, EN_DASH, 3),
					  "%s: range \"%s\"", name, val);
				q = number(q + 3, &hi, &ph);
				cr_assert(q, "%s: range \"%s\"", name, val);
				double rscale = millions(q) ? 1e6 : 1;
				/* Which record: the footnote's for a row
				 * marked so, else the first that has it. */
				double rm, rl, rh;
				bool found = false;
				const struct rec_file *f = NULL;
				if (strstr(fig, FOOT_A) && foot >= 0) {
					f = &files[foot];
					found = recorded(f, name, &rm, &rl, &rh);
				} else {
					for (int i = 0; i < nfiles && !found; i++)
						if (i != foot &&
						    recorded(&files[i], name, &rm,
							     &rl, &rh))
							f = &files[i], found = true;
				}
				cr_assert(found, "%s is in no cited record",
					  name);
				cr_assert(agrees(med, pm, mscale, rm) &&
					  agrees(lo, pl, rscale, rl) &&
					  agrees(hi, ph, rscale, rh),
					  "%s: the table says %s, %s records "
					  "%g (%g–%g)", name, val, f->name, rm,
					  rl, rh);
				lo = rl;
				hi = rh;
				checked++;
			}
			check_mark(name, target, ranged, lo, hi);
		}
		line = eol ? eol + 1 : NULL;
	}
	cr_assert_gt(checked, 30, "only %u of %u rows checked", checked, rows);
	cr_log_info("%u rows, %u checked against %d records", rows, checked,
		    nfiles);
	for (int i = 0; i < nfiles; i++)
		free(files[i].text);
	free(readme);
}
