/* Running chanbench partitions the way `parley-agent run` does (agent/
 * main.c, agent/supervisor.c): all created paused, each added to the grant
 * manager, all resumed, then one poll loop over the control links that
 * honours requests deferred while the agent waited on a vmm. The console
 * is parsed here rather than printed. */
#include "bench/chan_bench.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 100

static int series_add(struct cb_series *s, uint64_t v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		uint64_t *nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
	return 0;
}

static struct cb_series *series_of(struct cb_out *o, const char *key)
{
	for (unsigned i = 0; i < o->nseries; i++)
		if (!strcmp(o->s[i].key, key))
			return &o->s[i];
	if (o->nseries == CB_SERIES_MAX || strlen(key) >= sizeof(o->s[0].key))
		return NULL;
	struct cb_series *s = &o->s[o->nseries++];
	snprintf(s->key, sizeof(s->key), "%s", key);
	return s;
}

/* `<key> <n>...` with at least one number: stored. Anything else is the
 * partition talking to people: passed on to stderr. */
static void parse_line(struct cb_out *o, const char *name, const char *line)
{
	char copy[CB_LINE_MAX];
	uint64_t v[64];
	unsigned n = 0;
	snprintf(copy, sizeof(copy), "%s", line);
	char *save, *key = strtok_r(copy, " ", &save), *tok;
	bool numbers = key != NULL;
	while (numbers && (tok = strtok_r(NULL, " ", &save))) {
		char *end;
		errno = 0;
		numbers = n < 64;
		if (numbers)
			v[n++] = strtoull(tok, &end, 10);
		numbers = numbers && !*end && !errno;
	}
	if (!numbers || !n) {
		bench_note("%s| %s", name, line);
		return;
	}
	struct cb_series *s = series_of(o, key);
	for (unsigned i = 0; i < n && s; i++)
		if (series_add(s, v[i]) < 0)
			s = NULL;
	if (!s)
		o->overflow = true;
}

static int index_of(const struct cb_run *r, const struct partition *p)
{
	for (unsigned i = 0; i < r->n; i++)
		if (r->p[i] == p)
			return (int)i;
	return -1;
}

/* Console bytes as the vmm sends them: split into lines here. */
static void on_console(struct partition *p, const char *buf, size_t len,
		       void *ctx)
{
	struct cb_run *r = ctx;
	int i = index_of(r, p);
	if (i < 0)
		return;
	struct cb_out *o = &r->out[i];
	for (size_t k = 0; k < len; k++) {
		if (buf[k] != '\n' && o->len + 1 < sizeof(o->line)) {
			o->line[o->len++] = buf[k];
			continue;
		}
		o->line[o->len] = 0;
		parse_line(o, p->name, o->line);
		o->len = 0;
	}
}

/* The grant manager's decision, timed: what CHAN_OPEN costs in here,
 * beside what the partition sees. */
static void on_request(struct partition *p, const struct ctl_msg *m,
		       void *ctx)
{
	struct cb_run *r = ctx;
	uint64_t t0 = mono_now_ns();
	chanmgr_on_request(p, m, &r->cm);
	if (m->type == CTL_OPEN_REQ)
		series_add(&r->open_ns, mono_now_ns() - t0);
}

static int spec_of(const struct cb_part *d, struct part_spec *s,
		   struct parley_err *err)
{
	char json[8192], cfg[PATH_MAX + 64] = "", dir[PATH_MAX] = ".";
	/* A spec names files relative to its directory: the config file's. */
	const char *base = d->config ? strrchr(d->config, '/') : NULL;
	if (base)
		snprintf(dir, sizeof(dir), "%.*s", (int)(base - d->config),
			 d->config);
	if (d->config)
		snprintf(cfg, sizeof(cfg), ",\"config\":[{\"name\":\"cfg\","
			 "\"path\":\"%s\"}]", base ? base + 1 : d->config);
	int n = snprintf(json, sizeof(json),
			 "{\"name\":\"%s\",\"image\":\"%s\","
			 "\"memory\":\"16M\",\"cmdline\":\"%s\"%s}",
			 d->name, d->image ? d->image : "chanbench.elf",
			 d->cmdline, cfg);
	if (n < 0 || (size_t)n >= sizeof(json))
		return perr(err, -ENAMETOOLONG, "spec of %s too long", d->name);
	return spec_parse(json, (size_t)n, dir, s, err);
}

static int grants_of(struct cb_run *r, const char *json,
		     struct parley_err *err)
{
	const char *names[CB_PARTS_MAX + 2] = { 0 };
	for (unsigned i = 0; i < r->n; i++)
		names[i] = r->def[i].name;
	names[r->n] = r->extra_name; /* NULL, or an endpoint that is no
				      * partition here (the vm suite's VM) */
	struct grant_set g;
	int rc = grant_set_parse(json, strlen(json), names, &g, err);
	if (rc == 0)
		chanmgr_set_grants(&r->cm, &g);
	return rc;
}

static int create_one(struct cb_run *r, const struct bench_env *e,
		      unsigned i, struct parley_err *err)
{
	struct part_spec s;
	int rc = spec_of(&r->def[i], &s, err);
	if (rc < 0)
		return rc;
	struct part_opts o = bench_opts(e, on_console, r);
	o.on_request = on_request;
	o.start_paused = true;
	rc = partition_create(&s, &o, &r->p[i], err);
	spec_free(&s);
	if (rc == 0)
		rc = chanmgr_add(&r->cm, r->p[i]);
	return rc < 0 && !err->msg[0] ? perr(err, rc, "chanmgr_add") : rc;
}

int cb_start(struct cb_run *r, const struct bench_env *e,
	     const char *grants_json, const struct cb_part *parts, unsigned n,
	     struct parley_err *err)
{
	if (n > CB_PARTS_MAX)
		return perr(err, -EINVAL, "at most %d partitions", CB_PARTS_MAX);
	chanmgr_init(&r->cm, &r->audit);
	r->n = n;
	memcpy(r->def, parts, n * sizeof(*parts));
	int rc = grants_of(r, grants_json, err);
	for (unsigned i = 0; rc == 0 && i < n; i++)
		rc = create_one(r, e, i, err);
	if (rc == 0 && r->before_resume)
		rc = r->before_resume(r, err);
	for (unsigned i = 0; rc == 0 && i < n; i++)
		rc = partition_resume(r->p[i], err);
	return rc;
}

static bool primaries_done(const struct cb_run *r)
{
	for (unsigned i = 0; i < r->n; i++)
		if (!r->def[i].peer_only && !r->p[i]->finished)
			return false;
	return true;
}

static bool exited_ok(const struct partition *p)
{
	return p->fin.reason == VMX_STOP_EXIT && p->fin.code == 0;
}

/* A partition that failed takes its channels with it now, so that a peer
 * waiting on one sees CLOSED instead of waiting for the deadline. Those
 * that exited cleanly keep theirs until all are done: revoking the ring
 * under a consumer still reading it would stop the consumer. */
static void reap_finished(struct cb_run *r, bool all)
{
	for (unsigned i = 0; i < r->n; i++) {
		struct partition *p = r->p[i];
		if (!p->finished || r->gone[i] || (!all && exited_ok(p)))
			continue;
		r->gone[i] = true;
		chanmgr_gone(&r->cm, p);
	}
}

void cb_serve_once(struct cb_run *r, int timeout_ms)
{
	cb_serve_once_with(r, timeout_ms, NULL, 0);
}

void cb_serve_once_with(struct cb_run *r, int timeout_ms, const int *extra,
			unsigned nextra)
{
	struct pollfd pf[CB_PARTS_MAX + CB_EXTRA_MAX];
	unsigned map[CB_PARTS_MAX], n = 0;
	int timeout = timeout_ms;
	for (unsigned i = 0; i < r->n; i++) {
		if (r->p[i]->finished)
			continue;
		map[n] = i;
		pf[n++] = (struct pollfd){ .fd = r->p[i]->ctl, .events = POLLIN };
		if (partition_has_deferred(r->p[i]))
			timeout = 0;
	}
	if (nextra > CB_EXTRA_MAX)
		nextra = CB_EXTRA_MAX;
	for (unsigned k = 0; k < nextra; k++)
		pf[n + k] = (struct pollfd){ .fd = extra[k], .events = POLLIN };
	if (poll(pf, n + nextra, timeout) < 0 && errno != EINTR)
		return;
	for (unsigned k = 0; k < n; k++) {
		struct partition *p = r->p[map[k]];
		if (pf[k].revents || partition_has_deferred(p))
			partition_handle(p);
	}
	chanmgr_tick(&r->cm);
	reap_finished(r, false);
}

static int check_exits(const struct cb_run *r, struct parley_err *err)
{
	for (unsigned i = 0; i < r->n; i++) {
		const struct partition *p = r->p[i];
		if (r->def[i].peer_only || exited_ok(p))
			continue;
		if (p->fin.reason == VMX_STOP_EXIT)
			return perr(err, -EPROTO, "%s exited with code %lld",
				    p->name, (long long)p->fin.code);
		return perr(err, -EPROTO, "%s stopped: %s (%s)", p->name,
			    vmx_stop_name(p->fin.reason), p->fin.detail);
	}
	return 0;
}

int cb_wait(struct cb_run *r, int timeout_ms, struct parley_err *err)
{
	uint64_t deadline = mono_now_ns() + (uint64_t)timeout_ms * 1000000;
	while (!primaries_done(r) && mono_now_ns() < deadline)
		cb_serve_once(r, TICK_MS);
	bool late = !primaries_done(r);
	for (unsigned i = 0; i < r->n; i++)
		partition_stop(r->p[i]);
	reap_finished(r, true);
	if (late)
		return perr(err, -ETIMEDOUT, "partitions did not finish in "
			    "%d ms", timeout_ms);
	return check_exits(r, err);
}

static void out_free(struct cb_out *o)
{
	for (unsigned i = 0; i < o->nseries; i++)
		free(o->s[i].v);
	memset(o, 0, sizeof(*o));
}

void cb_free(struct cb_run *r)
{
	for (unsigned i = 0; i < r->n; i++) {
		partition_destroy(r->p[i]);
		out_free(&r->out[i]);
	}
	chanmgr_free(&r->cm);
	free(r->open_ns.v);
	r->n = 0;
}

const struct cb_series *cb_get(const struct cb_run *r, unsigned i,
			       const char *key)
{
	const struct cb_out *o = &r->out[i];
	for (unsigned k = 0; k < o->nseries; k++)
		if (!strcmp(o->s[k].key, key))
			return &o->s[k];
	return NULL;
}

uint64_t cb_tsc_khz(const struct cb_run *r, unsigned i)
{
	const struct cb_series *s = cb_get(r, i, "K");
	return s && s->n ? s->v[0] : 0;
}

size_t cb_cycles_to(const struct cb_series *s, uint64_t khz, double per_s,
		    double *out)
{
	size_t n = 0;
	for (size_t i = 0; s && khz && i < s->n; i++)
		out[n++] = (double)s->v[i] / ((double)khz * 1e3) * per_s;
	return n;
}

void cb_note_tsc(const struct cb_run *r, unsigned i)
{
	const struct cb_series *s = cb_get(r, i, "tsccheck");
	uint64_t khz = cb_tsc_khz(r, i);
	if (!s || s->n != 2 || !khz || !s->v[1])
		return;
	double tsc_ns = (double)s->v[0] / ((double)khz * 1e3) * 1e9;
	bench_note("%s: TSC at %llu kHz vs the CLOCK hypercall over %.0f ms: "
		   "%+.2f%%", r->p[i]->name, (unsigned long long)khz,
		   (double)s->v[1] / 1e6, (tsc_ns / (double)s->v[1] - 1) * 100);
}

int cb_median_us(const struct cb_run *r, unsigned i, const char *key,
		 size_t want, const char *label, double *med,
		 struct parley_err *err)
{
	const struct cb_series *s = cb_get(r, i, key);
	uint64_t khz = cb_tsc_khz(r, i);
	if (!s || s->n != want || !khz)
		return perr(err, -EPROTO, "%s reported no %s samples",
			    r->def[i].name, key);
	double *v = calloc(s->n, sizeof(double));
	if (!v)
		return perr(err, -ENOMEM, "out of memory");
	size_t n = cb_cycles_to(s, khz, 1e6, v);
	*med = bench_summary(label, v, n, 1, "us");
	free(v);
	return 0;
}
