/*
 * The conventions every parley program keeps (issue 10, item 9): --help
 * prints the usage on stdout and exits 0, --version prints "PROG VERSION"
 * and exits 0, an unknown option is a message on stderr and exit 2; each
 * has a man page in dist/man/ that groff renders without a warning and
 * that names every option its --help prints; dist/bash-completion/parleyctl
 * completes nouns, verbs, options and their values, and knows every noun
 * and verb `parleyctl --help` lists.
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/testutil.h"

#define BIN(p) PARLEY_BUILD_DIR "/bin/" p
#define MAN(p) PARLEY_SOURCE_DIR "/dist/man/" p
#define COMPLETION PARLEY_SOURCE_DIR "/dist/bash-completion/parleyctl"

struct prog {
	const char *name, *man;
};

static const struct prog progs[] = {
	{ "parleyd", MAN("parleyd.8") },
	{ "parley-agent", MAN("parley-agent.8") },
	{ "parleyctl", MAN("parleyctl.1") },
	{ "parley-pki", MAN("parley-pki.1") },
	{ "parley-pkg", MAN("parley-pkg.1") },
	{ "parley-smcp", MAN("parley-smcp.1") },
	{ "parley-vmm", NULL },           /* started by the agent only */
	{ "parley-vmm-stub", NULL },      /* started by the vmm only */
};
#define NPROGS (sizeof(progs) / sizeof(progs[0]))

TestSuite(conventions, .timeout = 60);

static int run(const char *prog, const char *a1, const char *a2, char **out,
	       char **err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/bin/%s", PARLEY_BUILD_DIR, prog);
	char *argv[] = { path, (char *)a1, (char *)a2, NULL };
	return t_exec(argv, NULL, out, err);
}

Test(conventions, help_and_version_on_stdout_exit_0)
{
	for (size_t i = 0; i < NPROGS; i++) {
		const char *p = progs[i].name;
		char *out, *err;
		int rc = run(p, "--help", NULL, &out, &err);
		cr_expect_eq(rc, 0, "%s --help: exit %d", p, rc);
		cr_expect(!strncmp(out, "usage: ", 7), "%s --help: %s", p, out);
		cr_expect_str_empty(err, "%s --help wrote to stderr: %s", p, err);
		free(out), free(err);
		rc = run(p, "--version", NULL, &out, &err);
		cr_expect_eq(rc, 0, "%s --version: exit %d", p, rc);
		char want[64];
		snprintf(want, sizeof(want), "%s %d.", p, 0);
		cr_expect(!strncmp(out, want, strlen(want)) && strchr(out, '\n'),
			  "%s --version: \"%s\"", p, out);
		cr_expect_str_empty(err, "%s --version: %s", p, err);
		free(out), free(err);
	}
}

Test(conventions, unknown_option_on_stderr_exit_2)
{
	/* parleyd's and parley-agent's subcommands parse options too. */
	static const char *const lines[][2] = {
		{ "parleyd", "--no-such-option" },
		{ "parley-agent", "--no-such-option" },
		{ "parleyctl", "--no-such-option" },
		{ "parley-pki", "--no-such-option" },
		{ "parley-pkg", "--no-such-option" },
		{ "parley-smcp", "--no-such-option" },
		{ "parley-vmm", "--no-such-option" },
		{ "parley-vmm-stub", "--no-such-option" },
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		char *out, *err;
		int rc = run(lines[i][0], lines[i][1], NULL, &out, &err);
		cr_expect_eq(rc, 2, "%s %s: exit %d", lines[i][0], lines[i][1],
			     rc);
		cr_expect_str_empty(out, "%s: stdout: %s", lines[i][0], out);
		cr_expect(strlen(err) > 0, "%s: nothing on stderr", lines[i][0]);
		free(out), free(err);
	}
	char *out, *err;
	int rc = run("parley-agent", "run", "--no-such-option", &out, &err);
	cr_expect_eq(rc, 2, "parley-agent run --no-such-option: exit %d", rc);
	cr_expect(strstr(err, "no-such-option"), "%s", err);
	free(out), free(err);
}

/* The man page as plain text on one very long line per paragraph and
 * without hyphenation, so an option is never split. */
static char *man_text(const char *page, char **warn)
{
	char *argv[] = { "/usr/bin/groff", "-man", "-ww", "-Tascii", "-P-cbou",
			 "-rLL=1000n", "-rHY=0", (char *)page, NULL };
	char *out;
	int rc = t_exec(argv, NULL, &out, warn);
	cr_assert_eq(rc, 0, "groff %s: exit %d (./dev deps installs "
		     "groff-base): %s", page, rc, *warn);
	return out;
}

Test(conventions, man_pages_render_without_warnings)
{
	for (size_t i = 0; i < NPROGS; i++) {
		if (!progs[i].man)
			continue;
		char *argv[] = { "/usr/bin/groff", "-man", "-ww", "-z",
				 (char *)progs[i].man, NULL };
		char *out, *err;
		int rc = t_exec(argv, NULL, &out, &err);
		cr_expect_eq(rc, 0, "%s: exit %d", progs[i].man, rc);
		cr_expect_str_empty(err, "%s: %s", progs[i].man, err);
		free(out), free(err);
	}
}

static bool optch(char c)
{
	return isalnum((unsigned char)c) || c == '-';
}

/* `opt` in `text` as a whole word. */
static bool has_word(const char *text, const char *opt)
{
	size_t n = strlen(opt);
	for (const char *p = text; (p = strstr(p, opt)); p++)
		if ((p == text || !optch(p[-1])) && !optch(p[n]))
			return true;
	return false;
}

/* Every --option in `help` must be in `man`; returns how many were. */
static unsigned check_options(const char *prog, const char *help,
			      const char *man)
{
	unsigned n = 0;
	for (const char *p = help; (p = strstr(p, "--"));) {
		if (p > help && optch(p[-1])) {
			p += 2;
			continue;
		}
		size_t len = 2;
		while (optch(p[len]))
			len++;
		char opt[64];
		snprintf(opt, sizeof(opt), "%.*s", (int)len, p);
		p += len;
		if (len == 2)
			continue;           /* "--" alone */
		cr_expect(has_word(man, opt), "%s: %s is in --help but not in "
			  "its man page", prog, opt);
		n++;
	}
	return n;
}

Test(conventions, man_pages_name_every_option_of_help)
{
	static const char *const nouns[] = { "host", "partition", "grant",
		"baseline", "audit", "policy", "token", "health" };
	for (size_t i = 0; i < NPROGS; i++) {
		if (!progs[i].man)
			continue;
		char *warn, *man = man_text(progs[i].man, &warn);
		char *help, *err;
		run(progs[i].name, "--help", NULL, &help, &err);
		cr_expect_gt(check_options(progs[i].name, help, man), 0,
			     "%s --help names no option", progs[i].name);
		free(help), free(err);
		/* parleyctl: each noun's usage as well. */
		for (size_t k = 0; !strcmp(progs[i].name, "parleyctl") &&
				   k < sizeof(nouns) / sizeof(*nouns); k++) {
			cr_expect_eq(run("parleyctl", nouns[k], "--help", &help,
					 &err), 0, "parleyctl %s --help",
				     nouns[k]);
			check_options("parleyctl", help, man);
			free(help), free(err);
		}
		free(man), free(warn);
	}
}

/* ---- bash completion ---------------------------------------------------- */

/* The completions bash offers for `words` (space-separated; the last one
 * is completed, "" for an empty word), one per line. */
static char *complete(const char *const *words, unsigned n)
{
	char script[2048];
	int len = snprintf(script, sizeof(script),
			   "source '%s' || exit 99; COMP_WORDS=(", COMPLETION);
	for (unsigned i = 0; i < n; i++)
		len += snprintf(script + len, sizeof(script) - (size_t)len,
				"'%s' ", words[i]);
	snprintf(script + len, sizeof(script) - (size_t)len,
		 "); COMP_CWORD=%u; _parleyctl; printf '%%s\\n' "
		 "\"${COMPREPLY[@]}\"", n - 1);
	char *argv[] = { "/bin/bash", "--norc", "--noprofile", "-c", script,
			 NULL };
	char *out, *err;
	int rc = t_exec(argv, NULL, &out, &err);
	cr_assert_eq(rc, 0, "bash: exit %d: %s", rc, err);
	cr_expect_str_empty(err, "%s", err);
	free(err);
	return out;
}

#define COMPLETE(...)                                                     \
	complete((const char *const[]){ __VA_ARGS__ },                    \
		 sizeof((const char *const[]){ __VA_ARGS__ }) /              \
			 sizeof(const char *))

static void expect_lines(char *got, const char *want)
{
	cr_expect_str_eq(got, want);
	free(got);
}

Test(conventions, completion_completes_lines)
{
	expect_lines(COMPLETE("parleyctl", "par"), "partition\n");
	expect_lines(COMPLETE("parleyctl", "partition", "st"), "start\nstop\n");
	/* global options anywhere, and their values skipped */
	expect_lines(COMPLETE("parleyctl", "-o", "json", "grant", "r"),
		     "remove\n");
	expect_lines(COMPLETE("parleyctl", "grant", "add", "--dir"),
		     "--direction\n");
	expect_lines(COMPLETE("parleyctl", "grant", "add", "--direction", ""),
		     "both\na_to_b\nb_to_a\n");
	expect_lines(COMPLETE("parleyctl", "--output", "t"), "table\n");
	expect_lines(COMPLETE("parleyctl", "token", "create", "--scope", "a"),
		     "admin\n");
	expect_lines(COMPLETE("parleyctl", "audit", "list", "--p"),
		     "--partition\n");
}

/* Does the completion of `parleyctl [noun] ""` offer `word`? */
static bool offers(const char *noun, const char *word)
{
	char *got = noun ? COMPLETE("parleyctl", noun, "")
			 : COMPLETE("parleyctl", "");
	char line[80];
	snprintf(line, sizeof(line), "%s\n", word);
	char nl[82];                      /* as a whole line */
	snprintf(nl, sizeof(nl), "\n%s", line);
	bool ok = !strncmp(got, line, strlen(line)) || strstr(got, nl);
	free(got);
	return ok;
}

/* Every noun of `parleyctl --help` and every verb of `parleyctl NOUN
 * --help` is offered: the completion cannot fall behind cli/. */
Test(conventions, completion_knows_every_noun_and_verb)
{
	char *help, *err;
	cr_assert_eq(run("parleyctl", "--help", NULL, &help, &err), 0);
	free(err);
	unsigned nouns = 0;
	/* The noun lines: two spaces, a lower-case word, spaces. */
	for (char *l = help; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l) {
		if (strncmp(l, "  ", 2) || !islower((unsigned char)l[2]))
			continue;
		char noun[32];
		if (sscanf(l + 2, "%31[a-z]", noun) != 1)
			continue;
		nouns++;
		cr_expect(offers(NULL, noun), "noun %s not completed", noun);
		char *nh;
		run("parleyctl", noun, "--help", &nh, &err);
		free(err);
		/* "parleyctl NOUN VERB|VERB ..." on each usage line */
		char pre[48];
		snprintf(pre, sizeof(pre), "parleyctl %s ", noun);
		for (char *p = nh; (p = strstr(p, pre)); ) {
			p += strlen(pre);
			char verbs[64];
			if (sscanf(p, "%63[a-z|]", verbs) != 1)
				continue;
			for (char *v = strtok(verbs, "|"); v;
			     v = strtok(NULL, "|"))
				cr_expect(offers(noun, v), "%s %s not "
					  "completed", noun, v);
		}
		free(nh);
	}
	cr_expect_geq(nouns, 8, "%s", help);
	free(help);
}
