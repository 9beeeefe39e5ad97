/* Every fuzz target in regression mode (fuzz/replay_main.c) over the inputs
 * kept in the repository (fuzz/seeds/NAME, the corpus fuzz/corpus-NAME that
 * ./dev fuzz keeps, and what else fits: the example specs and policies, the
 * built partition images): an input that once broke
 * a parser keeps being tried, under the sanitizers, on every ./dev test. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/helpers/testutil.h"

struct target {
	const char *name;
	const char *extra;  /* another input directory, or NULL */
	int no_seeds;       /* its inputs are only what `extra` holds */
};

/* Criterion hands parameters to a test process of their own: indexes into
 * this table, never pointers. */
static const struct target targets[] = {
	{ "agent_dispatch", NULL },
	{ "api", NULL },
	{ "api_grant", NULL },
	{ "api_gate", NULL },
	{ "api_json", NULL },
	{ "baseline", NULL },
	{ "beneath", NULL },
	{ "blk", NULL },
	{ "bundle", NULL },
	{ "ctl", NULL },
	{ "diskkeys", NULL },
	{ "elf", PARLEY_BUILD_DIR "/guest", 1 },
	{ "frame", NULL },
	{ "keyd", NULL },
	{ "grant", PARLEY_SOURCE_DIR "/examples" },
	{ "guest_ctl", NULL },
	{ "handover", NULL },
	{ "join_csr", NULL },
	{ "outbox", NULL },
	{ "plugin_manifest", NULL },
	{ "ring", NULL },
	{ "segset", PARLEY_SOURCE_DIR "/examples" },
	{ "segtab", NULL },
	{ "snapshot", NULL },
	{ "spec", PARLEY_SOURCE_DIR "/examples", 1 },
	{ "store_audit", NULL },
	{ "svc", NULL },
	{ "update_pkg", NULL },
	{ "qmp", NULL },
	{ "vmctl", NULL },
	{ "vmspec", PARLEY_SOURCE_DIR "/examples", 1 },
	{ "vmxml", NULL },
};

#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

ParameterizedTestParameters(fuzz_replay, stored_inputs_pass)
{
	static unsigned idx[NTARGETS];
	for (unsigned i = 0; i < NTARGETS; i++)
		idx[i] = i;
	return cr_make_param_array(unsigned, idx, NTARGETS);
}

ParameterizedTest(unsigned *i, fuzz_replay, stored_inputs_pass,
		  .timeout = 300)
{
	const struct target *t = &targets[*i];
	char bin[512], seeds[512];
	snprintf(bin, sizeof(bin), PARLEY_BUILD_DIR "/fuzz/replay_fuzz_%s",
		 t->name);
	snprintf(seeds, sizeof(seeds), PARLEY_SOURCE_DIR "/fuzz/seeds/%s",
		 t->name);
	/* The corpus ./dev fuzz keeps (fuzz/corpus-NAME), when there is
	 * one: every input that once added coverage is replayed too. */
	char corpus[512];
	snprintf(corpus, sizeof(corpus), PARLEY_SOURCE_DIR "/fuzz/corpus-%s",
		 t->name);
	struct stat st;
	bool has_corpus = stat(corpus, &st) == 0 && S_ISDIR(st.st_mode);
	char *argv[5] = { bin };
	int na = 1;
	if (!t->no_seeds)
		argv[na++] = seeds;
	if (t->extra)
		argv[na++] = (char *)t->extra;
	if (has_corpus)
		argv[na++] = corpus;
	argv[na] = NULL;
	char *out;
	int rc = t_run(argv, &out, 280);
	cr_assert_eq(rc, 0, "%s: exit %d:\n%.4000s", t->name, rc, out);
	unsigned long n = 0;
	const char *r = strstr(out, "replayed ");
	cr_assert(r && sscanf(r, "replayed %lu", &n) == 1 && n > 0,
		  "%s replayed nothing:\n%.2000s", t->name, out);
	cr_log_info("%s: %lu inputs", t->name, n);
	free(out);
}

/* Every target in fuzz/ has its line above: a target left out would never
 * be replayed, and nothing else would say so. */
Test(fuzz_replay, every_target_is_in_the_table)
{
	DIR *d = opendir(PARLEY_SOURCE_DIR "/fuzz");
	cr_assert(d);
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (strncmp(de->d_name, "fuzz_", 5) || len < 8 ||
		    strcmp(de->d_name + len - 2, ".c"))
			continue;
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)(len - 7),
			 de->d_name + 5);
		bool found = false;
		for (unsigned i = 0; i < NTARGETS; i++)
			found |= !strcmp(targets[i].name, name);
		cr_expect(found, "fuzz/%s has no line in test_fuzz_replay.c's "
			  "table", de->d_name);
		n++;
	}
	closedir(d);
	cr_assert_eq(n, NTARGETS, "%u targets in fuzz/, %zu in the table", n,
		     NTARGETS);
}
