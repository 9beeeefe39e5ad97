#include "cli/ctl.h"
#include "common/jsonv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_PAGE_MAX 1000   /* API.md: limit 1..1000 */
#define CTL_BODY_FILE_MAX (64 * 1024)

int ctl_fail(int rc, const char *code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "parleyctl: %s: ", code);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return rc;
}

/* "parleyctl NOUN" from the first line of a usage text. */
static const char *usage_name(const char *usage)
{
	static char name[64];
	const char *s = strncmp(usage, "usage: ", 7) ? usage : usage + 7;
	size_t n = strcspn(s, " \n");
	if (s[n] == ' ' && s[n + 1] >= 'a' && s[n + 1] <= 'z')
		n += 1 + strcspn(s + n + 1, " \n");
	snprintf(name, sizeof(name), "%.*s", (int)n, s);
	return name;
}

int ctl_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "parleyctl: usage: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see: %s --help)\n", usage_name(usage));
	return CTL_USAGE;
}

static bool is_help(const char *s)
{
	return !strcmp(s, "--help") || !strcmp(s, "-h") || !strcmp(s, "help");
}

int ctl_dispatch(struct ctl *c, int argc, char **argv,
		 const struct ctl_verb *verbs, const char *usage)
{
	if (argc < 2)
		return ctl_usage_error(usage, "%s: which command?", argv[0]);
	if (is_help(argv[1])) {
		fputs(usage, stdout);
		return CTL_OK;
	}
	for (const struct ctl_verb *v = verbs; v->name; v++)
		if (!strcmp(v->name, argv[1]))
			return v->run(c, argc - 1, argv + 1);
	return ctl_usage_error(usage, "%s: unknown command \"%s\"", argv[0],
			       argv[1]);
}

int ctl_opt(int argc, char **argv, const struct option *opts,
	    const char *usage)
{
	int o = getopt_long(argc, argv, "h", opts, NULL);
	if (o == 'h') {
		fputs(usage, stdout);
		exit(CTL_OK);
	}
	return o;
}

int ctl_args(int argc, char **argv, int n, const char *usage)
{
	int have = argc - optind;
	if (have < n)
		return ctl_usage_error(usage, "%s: missing argument", argv[0]);
	if (have > n)
		return ctl_usage_error(usage, "%s: unexpected argument \"%s\"",
				       argv[0], argv[optind + n]);
	return 0;
}

const char *ctl_one_arg(int argc, char **argv, const char *usage)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	if (ctl_opt(argc, argv, opts, usage) != -1 ||
	    ctl_args(argc, argv, 1, usage))
		return NULL;
	return argv[optind];
}

int ctl_limit(const char *s, long *out, const char *usage)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1)
		return ctl_usage_error(usage, "--limit: \"%s\" is not a "
				       "positive number", s);
	*out = v;
	return 0;
}

static size_t enc(char *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (strchr("-._~", *p) || (*p >= '0' && *p <= '9') ||
		    ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
			if (out)
				out[n] = (char)*p;
			n++;
			continue;
		}
		if (out) {
			out[n] = '%';
			out[n + 1] = hex[*p >> 4];
			out[n + 2] = hex[*p & 15];
		}
		n += 3;
	}
	return n;
}

char *ctl_path(const char *base, const char *name, const char *tail)
{
	size_t bl = strlen(base), nl = enc(NULL, name), tl = strlen(tail);
	char *p = malloc(bl + 1 + nl + tl + 1);
	if (!p)
		abort();
	memcpy(p, base, bl);
	p[bl] = '/';
	enc(p + bl + 1, name);
	memcpy(p + bl + 1 + nl, tail, tl + 1);
	return p;
}

int ctl_qadd(char *q, size_t cap, const char *key, const char *val)
{
	if (!val)
		return 0;
	size_t have = strlen(q), kl = strlen(key), vl = enc(NULL, val);
	if (have + 1 + kl + 1 + vl + 1 > cap)
		return -ENAMETOOLONG;
	q[have] = '&';
	memcpy(q + have + 1, key, kl);
	q[have + 1 + kl] = '=';
	enc(q + have + 2 + kl, val);
	q[have + 2 + kl + vl] = 0;
	return 0;
}

static int map_status(int status)
{
	switch (status) {
	case 400:
	case 413:
	case 431:
		return CTL_BADREQ;
	case 401:
	case 403:
		return CTL_DENIED;
	case 404:
		return CTL_NOTFOUND;
	case 409:
		return CTL_CONFLICT;
	default:
		return CTL_ERR;
	}
}

static int take_error(const struct http_resp *r)
{
	json_t *j = json_loadb(r->body, r->len, 0, NULL);
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	/* The request id finds the daemon's log line of this request. */
	const char *id = json_string_value(json_object_get(e, "request_id"));
	int rc;
	if (!json_is_object(j) || !code || !msg)
		rc = ctl_fail(CTL_ERR, "HTTP", "status %d, and the body is "
			      "not a parley error object", r->status);
	else if (id && jv_name_valid(id, strlen(id), 64))
		rc = ctl_fail(map_status(r->status), code, "%s (request %s)",
			      msg, id);
	else
		rc = ctl_fail(map_status(r->status), code, "%s", msg);
	json_decref(j);
	return rc;
}

static int take_ok(const struct http_resp *r, const char *method,
		   const char *path, json_t **out)
{
	json_t *j = NULL;
	json_error_t je;
	if (r->len) {
		j = json_loadb(r->body, r->len, 0, &je);
		if (!json_is_object(j)) {
			json_decref(j);
			return ctl_fail(CTL_ERR, "BAD_RESPONSE", "%s %s: HTTP %d "
					"with a body that is not a JSON object",
					method, path, r->status);
		}
	}
	if (out)
		*out = j;
	else
		json_decref(j);
	return CTL_OK;
}

int ctl_call(struct ctl *c, const char *method, const char *path,
	     json_t *body, json_t **out)
{
	char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc = ctl_call_bytes(c, method, path, txt, txt ? strlen(txt) : 0,
				txt ? "application/json" : NULL, out);
	free(txt);
	return rc;
}

int ctl_call_bytes(struct ctl *c, const char *method, const char *path,
		   const void *body, size_t len, const char *ctype,
		   json_t **out)
{
	if (out)
		*out = NULL;
	struct http_resp r;
	struct parley_err err = { 0 };
	int rc = http_request_bytes(&c->url, c->token, method, path, body, len,
				    ctype, &r, &err);
	if (rc < 0 && http_unreachable(rc))
		return ctl_fail(CTL_UNREACH, "UNREACHABLE", "%s", perr_msg(&err));
	if (rc < 0)
		return ctl_fail(CTL_ERR, "HTTP", "%s", perr_msg(&err));
	if (r.status / 100 == 2)
		rc = take_ok(&r, method, path, out);
	else
		rc = take_error(&r);
	free(r.body);
	return rc;
}

/* The cursor as text ("next" may be a string or, for audit, an id). */
static int cursor_text(const json_t *next, char *buf, size_t cap)
{
	if (json_is_string(next))
		snprintf(buf, cap, "%s", json_string_value(next));
	else if (json_is_integer(next))
		snprintf(buf, cap, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(next));
	else
		return -EINVAL;
	return buf[0] ? 0 : -EINVAL;
}

static int get_page(struct ctl *c, const char *path, const char *query,
		    long want, const char *after, json_t **page)
{
	char lim[24], q[4096] = "";
	snprintf(lim, sizeof(lim), "%ld", want);
	if (ctl_qadd(q, sizeof(q), "limit", lim) < 0 ||
	    ctl_qadd(q, sizeof(q), "after", after) < 0 ||
	    strlen(q) + strlen(query) >= sizeof(q))
		return ctl_fail(CTL_USAGE, "usage", "query too long");
	strcat(q, query);
	q[0] = '?';
	char *full;
	if (asprintf(&full, "%s%s", path, q) < 0)
		abort();
	int rc = ctl_call(c, "GET", full, NULL, page);
	if (!rc && !json_is_array(json_object_get(*page, "items")))
		rc = ctl_fail(CTL_ERR, "BAD_RESPONSE", "GET %s: no \"items\" "
			      "list in the response", full);
	free(full);
	return rc;
}

/* Append page's items to all (at most `room`); *next = page's cursor. */
static void take_items(json_t *all, json_t *page, long room)
{
	json_t *items = json_object_get(page, "items"), *v;
	size_t i;
	json_array_foreach(items, i, v) {
		if (room > 0 && (long)i >= room)
			break;
		json_array_append(all, v);
	}
}

int ctl_list(struct ctl *c, const char *path, const char *query, long limit,
	     json_t **out)
{
	json_t *all = json_array(), *page = NULL, *next = json_null();
	char after[512] = "", prev[512] = "";
	int rc = 0;
	for (;;) {
		long have = (long)json_array_size(all);
		long room = limit ? limit - have : 0;
		long want = limit && room < CTL_PAGE_MAX ? room : CTL_PAGE_MAX;
		rc = get_page(c, path, query, want, after[0] ? after : NULL,
			      &page);
		if (rc)
			break;
		take_items(all, page, room);
		json_decref(next);
		next = json_incref(json_object_get(page, "next"));
		json_decref(page);
		if (!next || json_is_null(next) ||
		    (limit && (long)json_array_size(all) >= limit))
			break;
		snprintf(prev, sizeof(prev), "%s", after);
		if (cursor_text(next, after, sizeof(after)) < 0 ||
		    !strcmp(after, prev)) {
			rc = ctl_fail(CTL_ERR, "BAD_RESPONSE", "GET %s: bad or "
				      "repeated \"next\" cursor", path);
			break;
		}
	}
	if (rc) {
		json_decref(all);
		json_decref(next);
		return rc;
	}
	*out = json_pack("{s:o,s:o}", "items", all, "next",
			 next ? next : json_null());
	return 0;
}

char *ctl_text(const json_t *v)
{
	char *s;
	if (!v || json_is_null(v))
		s = strdup("-");
	else if (json_is_string(v))
		s = strdup(json_string_value(v));
	else
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s)
		abort();
	return s;
}

static void print_json(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

static void col_widths(const struct ctl_col *cols, json_t *items, int *w)
{
	json_t *it;
	size_t i;
	for (int k = 0; cols[k].head; k++)
		w[k] = (int)strlen(cols[k].head);
	json_array_foreach(items, i, it) {
		for (int k = 0; cols[k].head; k++) {
			char *s = ctl_text(json_object_get(it, cols[k].key));
			if ((int)strlen(s) > w[k])
				w[k] = (int)strlen(s);
			free(s);
		}
	}
}

static void print_row(const struct ctl_col *cols, const int *w, json_t *it)
{
	for (int k = 0; cols[k].head; k++) {
		char *s = it ? ctl_text(json_object_get(it, cols[k].key)) :
			       strdup(cols[k].head);
		printf("%-*s%s", cols[k + 1].head ? w[k] : 0, s,
		       cols[k + 1].head ? "  " : "\n");
		free(s);
	}
}

int ctl_show_list(struct ctl *c, json_t *list, const struct ctl_col *cols)
{
	if (c->json) {
		print_json(list);
		json_decref(list);
		return CTL_OK;
	}
	json_t *items = json_object_get(list, "items"), *it;
	int w[16];
	size_t i;
	col_widths(cols, items, w);
	print_row(cols, w, NULL);
	json_array_foreach(items, i, it)
		print_row(cols, w, it);
	json_decref(list);
	return CTL_OK;
}

int ctl_show_object(struct ctl *c, json_t *obj)
{
	if (c->json) {
		print_json(obj);
		json_decref(obj);
		return CTL_OK;
	}
	const char *k;
	json_t *v;
	int w = 0;
	json_object_foreach(obj, k, v)
		if ((int)strlen(k) > w)
			w = (int)strlen(k);
	json_object_foreach(obj, k, v) {
		char *s = ctl_text(v);
		printf("%s:%*s %s\n", k, w - (int)strlen(k), "", s);
		free(s);
	}
	json_decref(obj);
	return CTL_OK;
}

int ctl_load_json(const char *path, json_t **out)
{
	json_error_t je;
	*out = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!*out)
		return ctl_fail(CTL_USAGE, "usage", "%s:%d: %s", path, je.line,
				je.text);
	char *s = json_dumps(*out, JSON_COMPACT);
	size_t n = s ? strlen(s) : 0;
	free(s);
	if (n > CTL_BODY_FILE_MAX) {
		json_decref(*out);
		return ctl_fail(CTL_USAGE, "usage", "%s: larger than the API's "
				"64 KiB body limit", path);
	}
	return 0;
}

int ctl_show_version(struct ctl *c, json_t *r, const char *what)
{
	json_t *v = json_object_get(r, "policy_version");
	if (!json_is_integer(v)) {
		json_decref(r);
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "%s: no policy_version "
				"in the response", what);
	}
	if (c->json)
		return ctl_show_object(c, r);
	printf("%s; policy version %" JSON_INTEGER_FORMAT "\n", what,
	       json_integer_value(v));
	json_decref(r);
	return CTL_OK;
}

int ctl_list_by_host(struct ctl *c, int argc, char **argv, const char *path,
		     const struct ctl_col *cols, const char *usage)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *host = NULL;
	long limit = 0;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o == 'H')
			host = optarg;
		else if (o != 'l' || ctl_limit(optarg, &limit, usage))
			return CTL_USAGE;
	}
	if (ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	char q[512] = "";
	json_t *list;
	if (ctl_qadd(q, sizeof(q), "host", host) < 0)
		return ctl_usage_error(usage, "--host: too long");
	int rc = ctl_list(c, path, q, limit, &list);
	return rc ? rc : ctl_show_list(c, list, cols);
}
