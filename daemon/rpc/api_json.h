/*
 * JSON reply text written straight into a buffer, for the answers that are
 * large and frequent (partition lists): building a jansson tree of every
 * row, its spec parsed into a tree again, then dumping and freeing it all
 * cost most of a request's time (daemon/rpc/README.md, "Cost of a
 * request"). What comes out is the text jansson would have written.
 */
#ifndef PARLEY_DAEMON_API_JSON_H
#define PARLEY_DAEMON_API_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* A growing text; after an allocation failure `oom` is set and appends do
 * nothing (the caller answers 500 once, at the end). */
struct api_jbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

void api_jb_raw(struct api_jbuf *b, const char *s, size_t n);
void api_jb_lit(struct api_jbuf *b, const char *s);
/* s as a JSON string, escaped as jansson does (", \, control bytes);
 * bytes that are not UTF-8 become U+FFFD, so the text stays JSON. */
void api_jb_str(struct api_jbuf *b, const char *s);
/* The same, or null when s is NULL or empty. */
void api_jb_str_or_null(struct api_jbuf *b, const char *s);
void api_jb_free(struct api_jbuf *b);

/*
 * Stored JSON (a partition's spec) copied into a reply: only if in[0..n)
 * is exactly one JSON object (RFC 8259, with what jansson's loader also
 * refuses: invalid UTF-8, \u0000, unpaired surrogates, more than 2048
 * levels), appended without the whitespace between tokens; strings and
 * numbers are copied as written. Otherwise nothing is appended and false
 * is returned: a store edited behind parleyd's back must not put arbitrary
 * bytes into an answer.
 */
bool api_jb_object(struct api_jbuf *b, const char *in, size_t n);

#endif
