/*
 * The console's files under /ui/ (API.md, "Console"): the one part of the
 * listener that answers without a token and with something other than
 * JSON, so it is kept narrow. Only GET; only /ui (redirected) and
 * /ui/NAME with NAME one path segment of [a-z0-9._-] not starting with a
 * dot, with an extension of the table below; only regular files directly
 * in the console directory (no symbolic links followed), at most
 * UI_FILE_MAX bytes. The files are static: no data of the store is in
 * them; the page asks the API for everything with the token the
 * operator typed. Every answer carries a Content-Security-Policy that
 * allows scripts, styles and connections from this origin only.
 */
#include "daemon/rpc/api_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UI_FILE_MAX (4 * 1024 * 1024)
#define UI_NAME_MAX 64

const char api_ui_csp[] =
	"default-src 'none'; script-src 'self'; style-src 'self'; "
	"img-src 'self'; connect-src 'self'; base-uri 'none'; "
	"form-action 'none'; frame-ancestors 'none'";

static const struct {
	const char *ext, *ctype;
} types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
	{ ".json", "application/json" },
};

static const char *ctype_of(const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
		size_t e = strlen(types[i].ext);
		if (n > e && !strcmp(name + n - e, types[i].ext))
			return types[i].ctype;
	}
	return NULL;
}

/* One segment of [a-z0-9._-], not starting with a dot (so neither "."
 * nor ".." nor a hidden file). */
static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > UI_NAME_MAX || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("._-", s[i])))
			return false;
	return true;
}

static void not_found(struct api_req *q)
{
	api_error(q, 404, "NOT_FOUND", "no such console file");
}

/* The whole of a regular file (not a link) in the console's directory,
 * or NULL with errno set. */
static char *slurp(int dirfd, const char *name, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
				     O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > UI_FILE_MAX) {
		errno = ENOENT;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto out;
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0) {
			/* Shrunk while read, or an error: not served. */
			free(buf);
			buf = NULL;
			errno = n < 0 ? errno : EIO;
			goto out;
		}
		got += (size_t)n;
	}
	*len = got;
out:
	close(fd);
	return buf;
}

void api_ui(struct api_req *q, const char *rest)
{
	q->csp = api_ui_csp;
	if (evhttp_request_get_command(q->r) != EVHTTP_REQ_GET) {
		api_error(q, 405, "METHOD_NOT_ALLOWED", "the console's files "
			  "are only read (GET)");
		return;
	}
	if (!rest) {
		/* "/ui": relative links in the page need the slash. */
		api_reply(q, 308, json_pack("{s:s}", "location", "/ui/"));
		q->location = "/ui/";
		return;
	}
	const char *name = rest[0] ? rest : "index.html";
	const char *ctype = ctype_of(name);
	const char *dir = q->a->ui_dir;
	if (!name_ok(name) || !ctype) {
		not_found(q);
		return;
	}
	if (!dir || !dir[0]) {
		api_error(q, 404, "NOT_FOUND", "the console's files are not "
			  "installed (parleyd --ui-dir)");
		return;
	}
	size_t len = 0;
	char *body = slurp(q->a->ui_fd, name, &len);
	if (!body) {
		if (errno == ENOMEM)
			api_error(q, 500, "INTERNAL", "out of memory");
		else
			not_found(q);
		return;
	}
	free(q->body);
	q->status = 200;
	q->ctype = ctype;
	q->body = body;
	q->body_len = len;
}

/* GET /v1/openapi.json: the document kept in the repository, built in so
 * that it is the one of this very build. */
void api_openapi(struct api_req *q)
{
	char *body = malloc(api_openapi_len);
	if (!body) {
		api_error(q, 500, "INTERNAL", "out of memory");
		return;
	}
	memcpy(body, api_openapi_doc, api_openapi_len);
	free(q->body);
	q->status = 200;
	q->ctype = "application/json";
	q->body = body;
	q->body_len = api_openapi_len;
}
