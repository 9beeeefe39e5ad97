/*
 * What every parleyctl command shares: the connection settings, one call
 * to the API with the error mapping of daemon/rpc/API.md, list paging, and
 * the two output forms (-o table / -o json). Each command family lives in
 * its own cmd_<noun>.c and exports one cmd_<noun>() entry point.
 */
#ifndef PARLEY_CLI_CTL_H
#define PARLEY_CLI_CTL_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include "cli/http.h"

#define CTL_DEFAULT_SERVER "http://127.0.0.1:7421"

/* Exit codes; API.md "parleyctl exit codes". */
enum ctl_exit {
	CTL_OK = 0,
	CTL_ERR = 1,        /* anything else, incl. a response we cannot read */
	CTL_USAGE = 2,
	CTL_NOTFOUND = 3,   /* 404 */
	CTL_DENIED = 4,     /* 401, 403 */
	CTL_UNREACH = 5,    /* no connection or no answer */
	CTL_CONFLICT = 6,   /* 409 */
	CTL_BADREQ = 7,     /* 400, 413 */
};

struct ctl {
	struct http_url url;
	const char *token;  /* NULL: no Authorization header */
	bool json;          /* -o json */
};

struct ctl_verb {
	const char *name;
	int (*run)(struct ctl *c, int argc, char **argv);
};

struct ctl_col {
	const char *head;
	const char *key;    /* member of each item */
};

/* Command families; argv[0] is the noun. Return an exit code. */
int cmd_host(struct ctl *c, int argc, char **argv);
int cmd_partition(struct ctl *c, int argc, char **argv);
int cmd_grant(struct ctl *c, int argc, char **argv);
int cmd_segset(struct ctl *c, int argc, char **argv);
int cmd_disk(struct ctl *c, int argc, char **argv);
int cmd_service(struct ctl *c, int argc, char **argv);
int cmd_baseline(struct ctl *c, int argc, char **argv);
int cmd_audit(struct ctl *c, int argc, char **argv);
int cmd_policy(struct ctl *c, int argc, char **argv);
int cmd_token(struct ctl *c, int argc, char **argv);
int cmd_health(struct ctl *c, int argc, char **argv);

/* Print "parleyctl: CODE: message" to stderr; returns `rc`. */
int ctl_fail(int rc, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A usage error: the message, then a pointer at --help; returns 2. */
int ctl_usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Run the verb argv[1] of a family (argv[0]); --help prints usage. */
int ctl_dispatch(struct ctl *c, int argc, char **argv,
		 const struct ctl_verb *verbs, const char *usage);

/*
 * getopt_long over a verb's options (long names only). --help/-h prints
 * `usage` and exits 0. Returns the option's val, -1 at the end, or '?'
 * for an unknown option or missing argument (getopt said why).
 */
int ctl_opt(int argc, char **argv, const struct option *opts,
	    const char *usage);
/* After ctl_opt: exactly `n` positional arguments, else a usage error
 * (returns 2); 0 when right. */
int ctl_args(int argc, char **argv, int n, const char *usage);

/* For `VERB ARG` with no options but --help: the ARG, or NULL after a
 * usage error was printed. */
const char *ctl_one_arg(int argc, char **argv, const char *usage);
/* --limit N: 1.. ; 0, or a usage error (2). */
int ctl_limit(const char *s, long *out, const char *usage);

/* "base/<name percent-encoded>tail"; caller frees. */
char *ctl_path(const char *base, const char *name, const char *tail);
/* Append "&key=<val percent-encoded>" to q (cap bytes) when val != NULL;
 * -ENAMETOOLONG if it does not fit. */
int ctl_qadd(char *q, size_t cap, const char *key, const char *val);

/*
 * One API call. `body` (borrowed, may be NULL) is sent as JSON. On a 2xx
 * the body must be a JSON object (or empty, e.g. 204): *out gets it (NULL
 * when empty; caller decrefs). Otherwise the server's error is printed and
 * its exit code returned. `out` may be NULL.
 */
int ctl_call(struct ctl *c, const char *method, const char *path,
	     json_t *body, json_t **out);

/*
 * GET a paginated list: follows "next" until null or `limit` items
 * (0 = all). `query` is "" or "&k=v&..." (from ctl_qadd). *out gets
 * {"items":[...],"next":CURSOR|null} with next the cursor where we stopped.
 */
/* ctl_call with a body that is not JSON (a package upload). */
int ctl_call_bytes(struct ctl *c, const char *method, const char *path,
		   const void *body, size_t len, const char *ctype,
		   json_t **out);
int ctl_list(struct ctl *c, const char *path, const char *query, long limit,
	     json_t **out);

/* Print an object or list the way -o asks: JSON as the server sent it, or
 * a table of `cols` (lists) / "key: value" lines (objects). Takes `v`. */
int ctl_show_list(struct ctl *c, json_t *list, const struct ctl_col *cols);
int ctl_show_object(struct ctl *c, json_t *obj);

/* The policy version a change produced ("WHAT; policy version N"), or
 * the response as JSON with -o json. Takes r. */
int ctl_show_version(struct ctl *c, json_t *r, const char *what);

/* `NOUN list [--host H] [--limit N]`: GET path (?host=H), shown as
 * `cols`. Returns the exit code. */
int ctl_list_by_host(struct ctl *c, int argc, char **argv, const char *path,
		     const struct ctl_col *cols, const char *usage);

/* A value as table text: strings bare, null "-", others compact JSON.
 * Caller frees. */
char *ctl_text(const json_t *v);

/* Read a JSON document from a file (at most 64 KiB, API.md's body cap). */
int ctl_load_json(const char *path, json_t **out);

#endif
