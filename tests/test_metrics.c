/*
 * /metrics of a real parleyd passes `promtool check metrics` (Prometheus's
 * own linter: HELP and TYPE on every family, base units, _total counters,
 * histogram shape) without a warning, after requests of several status
 * classes and audit events with reasons have filled its series.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"

#define PROMTOOL "/usr/bin/promtool"

TestSuite(metrics, .timeout = 60);

static void audit_event(struct store *s, const char *reason)
{
	struct store_audit_in ev = { .host = "h1", .event = "open_denied",
				     .partition = "a", .reason = reason };
	struct parley_err err = { 0 };
	cr_assert_eq(store_audit_append(s, &ev, 1, NULL, &err), 0, "%s",
		     perr_msg(&err));
}

Test(metrics, promtool_check_metrics_is_clean)
{
	cr_assert_eq(access(PROMTOOL, X_OK), 0, PROMTOOL " is missing: "
		     "./dev deps installs the prometheus package for it");
	struct api_client c;
	ac_start(&c);
	struct store *s = fd_store(&c.f);
	audit_event(s, "NO_GRANT");
	audit_event(s, "INTEGRITY");
	store_close(s);
	struct ac_resp r;
	ac_call(&c, "GET", "/healthz", NULL, NULL, &r);       /* 2xx */
	ac_free(&r);
	ac_call(&c, "GET", "/v1/hosts", NULL, NULL, &r);      /* 4xx */
	ac_free(&r);
	ac_call(&c, "GET", "/metrics", c.admin, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_expect(strstr(r.body, "parley_api_request_duration_seconds_bucket"
			 "{le=\"0.001\"}"), "%s", r.body);
	cr_expect(strstr(r.body, "parley_audit_events_total{reason=\"NO_GRANT\""
			 "} 1"), "%s", r.body);
	cr_expect(strstr(r.body, "# HELP parley_link_refusals_total "),
		  "%s", r.body);
	cr_expect_null(strstr(r.body, "_ms"), "%s", r.body);
	char *argv[] = { PROMTOOL, "check", "metrics", NULL };
	char *out, *err;
	int rc = t_exec(argv, r.body, &out, &err);
	cr_expect_eq(rc, 0, "promtool: exit %d:\n%s%s\n---\n%s", rc, out, err,
		     r.body);
	cr_expect_str_empty(out, "promtool: %s", out);
	cr_expect_str_empty(err, "promtool: %s", err);
	free(out), free(err);
	ac_free(&r);
	ac_stop(&c);
}

/* The linter itself must see what is wrong with the old exposition (no
 * HELP, a unit abbreviation): otherwise the test above proves nothing. */
Test(metrics, promtool_flags_the_old_names)
{
	cr_assert_eq(access(PROMTOOL, X_OK), 0, PROMTOOL " is missing");
	const char *old =
		"# TYPE parley_api_request_duration_ms histogram\n"
		"parley_api_request_duration_ms_bucket{le=\"1\"} 0\n"
		"parley_api_request_duration_ms_bucket{le=\"+Inf\"} 0\n"
		"parley_api_request_duration_ms_sum 0\n"
		"parley_api_request_duration_ms_count 0\n";
	char *argv[] = { PROMTOOL, "check", "metrics", NULL };
	char *out, *err;
	int rc = t_exec(argv, old, &out, &err);
	cr_expect_neq(rc, 0);
	cr_expect(strstr(out, "no help text") || strstr(err, "no help text"),
		  "%s%s", out, err);
	free(out), free(err);
}
