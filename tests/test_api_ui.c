/* The console's files under /ui/ (daemon/rpc/api_ui.c) against a real
 * parleyd: served without a token with a strict Content-Security-Policy,
 * found beside the program (build tree's share/parley/console), every
 * other name, a link, a FIFO, a directory, a huge file and every other
 * method refused as JSON; and the files themselves: no inline script, no
 * inline handler, nothing from another origin. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers/apiclient.h"

static const char csp[] = "Content-Security-Policy: default-src 'none'; "
	"script-src 'self'; style-src 'self'; img-src 'self'; "
	"connect-src 'self'; base-uri 'none'; form-action 'none'; "
	"frame-ancestors 'none'\r\n";

static void get(const struct api_client *c, const char *method,
		const char *target, const char *token, struct ac_resp *r)
{
	char req[1024];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n"
			 "Connection: close\r\n%s%s%s\r\n", method, target,
			 token ? "Authorization: Bearer " : "",
			 token ? token : "", token ? "\r\n" : "");
	ac_raw(c->port, req, (size_t)n, r);
}

static void expect_file(const struct api_client *c, const char *target,
			const char *ctype, const char *contains)
{
	struct ac_resp r;
	get(c, "GET", target, NULL, &r);
	cr_expect_eq(r.status, 200, "%s: %.300s", target, r.raw);
	char want[128];
	snprintf(want, sizeof(want), "\r\nContent-Type: %s\r\n", ctype);
	cr_expect(strcasestr(r.raw, want), "%s: %.400s", target, r.raw);
	cr_expect(strstr(r.raw, csp), "%s: no strict CSP: %.600s", target,
		  r.raw);
	cr_expect(strcasestr(r.raw, "X-Content-Type-Options: nosniff"));
	cr_expect(strcasestr(r.raw, "Referrer-Policy: no-referrer"));
	cr_expect(strstr(r.body ? r.body : "", contains), "%s", target);
	ac_free(&r);
}

static void expect_refused(const struct api_client *c, const char *method,
			   const char *target, int status)
{
	struct ac_resp r;
	get(c, method, target, NULL, &r);
	cr_expect_eq(r.status, status, "%s %s: %.300s", method, target,
		     r.raw);
	cr_expect(strcasestr(r.raw, "Content-Type: application/json"),
		  "%s %s: %.300s", method, target, r.raw);
	cr_expect(!strstr(r.body ? r.body : "", "<html"), "%s", target);
	ac_free(&r);
}

Test(api_ui, console_served_without_token_with_strict_csp)
{
	struct api_client c;
	ac_start(&c);
	expect_file(&c, "/ui/", "text/html; charset=utf-8",
		    "<script src=\"console.js\" defer></script>");
	expect_file(&c, "/ui/index.html", "text/html; charset=utf-8",
		    "<!doctype html>");
	expect_file(&c, "/ui/console.js", "text/javascript; charset=utf-8",
		    "'use strict';");
	expect_file(&c, "/ui/console.css", "text/css; charset=utf-8", ":root");

	struct ac_resp r;
	get(&c, "GET", "/ui", NULL, &r);
	cr_expect_eq(r.status, 308, "%s", r.raw);
	cr_expect(strcasestr(r.raw, "\r\nLocation: /ui/\r\n"), "%s", r.raw);
	ac_free(&r);
	/* A query a bookmark or a browser adds changes nothing. */
	get(&c, "GET", "/ui?x", NULL, &r);
	cr_expect_eq(r.status, 308, "%s", r.raw);
	ac_free(&r);
	expect_file(&c, "/ui/?v=1&x", "text/html; charset=utf-8",
		    "<!doctype html>");
	/* The exception is the files only: the API still wants a token,
	 * and its JSON answers carry a policy that runs nothing. */
	get(&c, "GET", "/v1/hosts", NULL, &r);
	cr_expect_eq(r.status, 401);
	cr_expect(strstr(r.raw, "Content-Security-Policy: default-src "
			 "'none'; frame-ancestors 'none'\r\n"), "%s", r.raw);
	ac_free(&r);
	get(&c, "GET", "/v1/hosts", c.admin, &r);
	cr_expect_eq(r.status, 200);
	ac_free(&r);
	ac_stop(&c);
}

Test(api_ui, hostile_names_and_methods_refused)
{
	struct api_client c;
	ac_start(&c);
	static const char *const names[] = {
		"/ui/../parley.db", "/ui/%2e%2e/parley.db", "/ui/..",
		"/ui/.", "/ui/.hidden.html", "/ui/a/b.html", "/ui//index.html",
		"/ui/index.html/", "/ui/INDEX.HTML", "/ui/index.html%00.js",
		"/ui/index.htm", "/ui/index", "/ui/admin.token",
		"/ui/parley.db", "/ui/..%2fparley.db", "/ui/%69ndex.html",
		"/ui/no-such.js", "/ui/index.html.bak",
		"/ui/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaa.html", "/uix/index.html", "/ui\\index.html",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		struct ac_resp r;
		get(&c, "GET", names[i], NULL, &r);
		cr_expect(r.status == 404 || r.status == 400 ||
			  r.status == 401, "%s: %.300s", names[i], r.raw);
		cr_expect(strcasestr(r.raw, "Content-Type: application/json"),
			  "%s: %.300s", names[i], r.raw);
		ac_free(&r);
	}
	static const char *const methods[] = { "POST", "PUT", "DELETE",
					       "HEAD", "OPTIONS", "PATCH" };
	for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++)
		if (strcmp(methods[i], "HEAD"))
			expect_refused(&c, methods[i], "/ui/index.html", 405);
	/* HEAD has no body to check: the status alone. */
	struct ac_resp r;
	get(&c, "HEAD", "/ui/index.html", NULL, &r);
	cr_expect_eq(r.status, 405, "%s", r.raw);
	ac_free(&r);
	ac_stop(&c);
}

/* A directory of our own with things that are not plain files. */
Test(api_ui, only_regular_files_of_the_directory)
{
	char *outer = strdup("/tmp/parley-ui-XXXXXX");
	cr_assert(mkdtemp(outer));
	/* Beneath a directory only root may search (mkdtemp's 0700), as a
	 * clone of the source under a private directory is: parleyd opened
	 * the console's directory before it dropped to its user. */
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/ui", outer);
	cr_assert_eq(mkdir(dir, 0755), 0);
	char p[512], q[512];
	snprintf(p, sizeof(p), "%s/index.html", dir);
	FILE *f = fopen(p, "w");
	fputs("<!doctype html><title>mine</title>\n", f);
	fclose(f);
	cr_assert_eq(chmod(p, 0644), 0);
	snprintf(p, sizeof(p), "%s/leak.html", dir);
	cr_assert_eq(symlink("/etc/passwd", p), 0);
	snprintf(p, sizeof(p), "%s/fifo.html", dir);
	cr_assert_eq(mkfifo(p, 0644), 0);
	snprintf(p, sizeof(p), "%s/sub.html", dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/huge.js", dir);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(ftruncate(fd, 5 * 1024 * 1024), 0);
	close(fd);
	snprintf(q, sizeof(q), "%s", dir);
	const char *const extra[] = { "--ui-dir", q, NULL };
	struct api_client c;
	ac_start_args(&c, extra);
	expect_file(&c, "/ui/", "text/html; charset=utf-8", "mine");
	expect_refused(&c, "GET", "/ui/leak.html", 404);
	expect_refused(&c, "GET", "/ui/fifo.html", 404);
	expect_refused(&c, "GET", "/ui/sub.html", 404);
	expect_refused(&c, "GET", "/ui/huge.js", 404);
	/* The daemon is still there after the FIFO (not blocked on it). */
	struct ac_resp r;
	get(&c, "GET", "/healthz", NULL, &r);
	cr_expect_eq(r.status, 200);
	ac_free(&r);
	ac_stop(&c);

	/* A directory without the console: 404 that says so. */
	const char *const none[] = { "--ui-dir", "/nonexistent-parley-ui",
				     NULL };
	ac_start_args(&c, none);
	get(&c, "GET", "/ui/", NULL, &r);
	cr_expect_eq(r.status, 404, "%s", r.raw);
	cr_expect(strstr(r.body ? r.body : "", "--ui-dir"), "%s", r.raw);
	ac_free(&r);
	ac_stop(&c);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", outer);
	cr_expect_eq(system(cmd), 0);
	free(outer);
}

/* The files as committed: a policy of 'self' only holds if they need
 * nothing else. */
Test(api_ui, console_files_have_no_inline_script_or_other_origin)
{
	const char *dir = PARLEY_SOURCE_DIR "/dist/console";
	DIR *d = opendir(dir);
	cr_assert(d, "%s", dir);
	struct dirent *e;
	unsigned files = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[1024];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		FILE *f = fopen(p, "r");
		cr_assert(f, "%s", p);
		static char buf[1 << 20];
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		files++;
		/* Any URL with a scheme but the SVG namespace, which names,
		 * not fetches. */
		for (const char *u = strstr(buf, "://"); u;
		     u = strstr(u + 3, "://"))
			cr_expect(!strncmp(u - 4, "http://www.w3.org/2000/svg",
					   26), "%s: a URL: %.60s", p, u - 8);
		cr_expect(!strstr(buf, "@import"), "%s", p);
		if (!strstr(e->d_name, ".html"))
			continue;
		/* Every <script has a src; no on...= handler, no
		 * javascript: URL, no style attribute or element. */
		for (const char *s = strcasestr(buf, "<script"); s;
		     s = strcasestr(s + 1, "<script"))
			cr_expect(!strncmp(s, "<script src=\"", 13), "%s: %.60s",
				  p, s);
		for (const char *s = buf; (s = strcasestr(s, " on"));
		     s += 3) {
			size_t k = strspn(s + 3, "abcdefghijklmnopqrstuvwxyz");
			cr_expect(s[3 + k] != '=', "%s: handler %.30s", p, s);
		}
		cr_expect(!strcasestr(buf, "javascript:"), "%s", p);
		cr_expect(!strcasestr(buf, "style="), "%s", p);
		cr_expect(!strcasestr(buf, "<style"), "%s", p);
	}
	closedir(d);
	cr_expect_geq(files, 3);
}
