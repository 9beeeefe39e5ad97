/*
 * JSON reply text without jansson trees (api_json.h).
 */
#include "daemon/rpc/api_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* jansson's JSON_PARSER_MAX_DEPTH: what it loads, this accepts. */
#define DEPTH_MAX 2048

/* Room for n more bytes; false (and oom) if there is none. */
static bool reserve(struct api_jbuf *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->cap - b->len >= n)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void api_jb_raw(struct api_jbuf *b, const char *s, size_t n)
{
	if (reserve(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

void api_jb_lit(struct api_jbuf *b, const char *s)
{
	api_jb_raw(b, s, strlen(s));
}

void api_jb_free(struct api_jbuf *b)
{
	free(b->p);
	*b = (struct api_jbuf){ 0 };
}

/* Length of the well-formed UTF-8 sequence at p[0..n) (lead byte >= 0x80),
 * or 0: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

void api_jb_str(struct api_jbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF"; /* as jansson */
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	/* At worst 6 bytes out for each byte in, and the quotes. */
	if (n > (SIZE_MAX - 2) / 6 || !reserve(b, 6 * n + 2)) {
		b->oom = true;
		return;
	}
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20) {
			const char *e = c == '\b' ? "b" : c == '\f' ? "f"
				      : c == '\n' ? "n" : c == '\r' ? "r"
				      : c == '\t' ? "t" : NULL;
			*o++ = '\\';
			if (e) {
				*o++ = e[0];
			} else {
				memcpy(o, "u00", 3);
				o += 3;
				*o++ = hex[c >> 4];
				*o++ = hex[c & 15];
			}
		} else if (c < 0x80) {
			*o++ = (char)c;
		} else {
			size_t k = utf8_len(p + i, n - i);
			if (k) {
				memcpy(o, p + i, k);
				o += k;
				i += k - 1;
			} else {
				memcpy(o, "\\ufffd", 6);
				o += 6;
			}
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
}

void api_jb_str_or_null(struct api_jbuf *b, const char *s)
{
	if (s && s[0])
		api_jb_str(b, s);
	else
		api_jb_lit(b, "null");
}

/* ---- stored JSON, checked and compacted ---- */

struct scan {
	const unsigned char *p, *end;
	char *o;               /* the reply's buffer, room reserved */
	unsigned depth;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
				 *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static void put(struct scan *s, const unsigned char *from, size_t n)
{
	memmove(s->o, from, n);
	s->o += n;
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* A \u escape at p (after the backslash): its length (5, or 11 for a
 * surrogate pair), or 0 if jansson would refuse it. */
static size_t uescape(const unsigned char *p, const unsigned char *end)
{
	if (end - p < 5)
		return 0;
	int v = hex4(p + 1);
	if (v <= 0 || (v >= 0xdc00 && v <= 0xdfff))
		return 0; /* \u0000, or a low surrogate first */
	if (v < 0xd800 || v > 0xdbff)
		return 5;
	if (end - p < 11 || p[5] != '\\' || p[6] != 'u')
		return 0;
	int w = hex4(p + 7);
	return w >= 0xdc00 && w <= 0xdfff ? 11 : 0;
}

static bool string(struct scan *s)
{
	const unsigned char *start = s->p;
	if (s->p >= s->end || *s->p != '"')
		return false;
	s->p++;
	while (s->p < s->end) {
		unsigned char c = *s->p;
		if (c == '"') {
			s->p++;
			put(s, start, (size_t)(s->p - start));
			return true;
		}
		size_t k;
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (s->end - s->p < 2)
				return false;
			unsigned char e = s->p[1];
			if (e == 'u')
				k = uescape(s->p + 1, s->end);
			else
				k = strchr("\"\\/bfnrt", e) && e ? 1 : 0;
			if (!k)
				return false;
			s->p += 1 + k;
		} else if (c >= 0x80) {
			if (!(k = utf8_len(s->p, (size_t)(s->end - s->p))))
				return false;
			s->p += k;
		} else {
			s->p++;
		}
	}
	return false;
}

static bool digits(struct scan *s)
{
	const unsigned char *from = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > from;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool number(struct scan *s)
{
	const unsigned char *start = s->p;
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (!digits(s))
		return false;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!digits(s))
			return false;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!digits(s))
			return false;
	}
	put(s, start, (size_t)(s->p - start));
	return true;
}

static bool literal(struct scan *s, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n))
		return false;
	put(s, s->p, n);
	s->p += n;
	return true;
}

static bool value(struct scan *s);

/* An object or an array: open, members separated by ',', close. */
static bool container(struct scan *s, bool object)
{
	if (++s->depth > DEPTH_MAX)
		return false;
	*s->o++ = (char)*s->p++;
	ws(s);
	char close = object ? '}' : ']';
	if (s->p < s->end && *s->p == close) {
		s->p++;
		*s->o++ = close;
		s->depth--;
		return true;
	}
	for (;;) {
		if (object) {
			if (!string(s))
				return false;
			ws(s);
			if (s->p >= s->end || *s->p != ':')
				return false;
			*s->o++ = (char)*s->p++;
			ws(s);
		}
		if (!value(s))
			return false;
		ws(s);
		if (s->p >= s->end)
			return false;
		unsigned char c = *s->p++;
		*s->o++ = (char)c;
		if (c == close)
			break;
		if (c != ',')
			return false;
		ws(s);
	}
	s->depth--;
	return true;
}

static bool value(struct scan *s)
{
	if (s->p >= s->end)
		return false;
	switch (*s->p) {
	case '{': return container(s, true);
	case '[': return container(s, false);
	case '"': return string(s);
	case 't': return literal(s, "true");
	case 'f': return literal(s, "false");
	case 'n': return literal(s, "null");
	default: return number(s);
	}
}

bool api_jb_object(struct api_jbuf *b, const char *in, size_t n)
{
	/* The compact text is never longer than the stored one. */
	if (!reserve(b, n))
		return false;
	struct scan s = { .p = (const unsigned char *)in,
			  .end = (const unsigned char *)in + n,
			  .o = b->p + b->len };
	ws(&s);
	if (s.p >= s.end || *s.p != '{' || !container(&s, true))
		return false;
	ws(&s);
	if (s.p != s.end)
		return false;
	b->len = (size_t)(s.o - b->p);
	return true;
}
