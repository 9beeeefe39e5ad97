/*
 * The grant model: which channels exist, between which two partitions, in
 * which direction, with how big a ring, and whether both ends must match
 * their integrity baselines. One definition for the agent's local policy
 * file and the bundles the daemon will push.
 *
 *   {
 *     "grants": [
 *       { "channel": "telemetry", "endpoint_a": "ping", "endpoint_b": "pong",
 *         "direction": "a_to_b", "ring_bytes": "64K",
 *         "require_integrity": true }
 *     ],
 *     "services": [
 *       { "source": "client", "target": "auth", "service": "auth",
 *         "action": "allow" }
 *     ]
 *   }
 *
 * Segment sets (optional, "segsets"): the data set of common/segset.h,
 * inline; members are checked against `known` like endpoints.
 *
 * Services (optional): who may call which partition's named service. A
 * call no rule names is denied; the first rule naming (source, target,
 * service) decides.
 *
 * Capabilities (optional): [ { "partition": "updater", "capability":
 * "update" } ]. A partition's spec asks for a capability; when the policy
 * in force has this list, the partition has it only if listed here too
 * (the policy narrows what specs ask for; without the list, specs alone
 * decide).
 */
#ifndef PARLEY_COMMON_GRANT_H
#define PARLEY_COMMON_GRANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "common/segset.h"

#define GRANT_NAME_MAX 64
#define GRANTS_MAX 1024
#define GRANT_FILE_MAX (1024 * 1024)

enum grant_dir { GRANT_A_TO_B, GRANT_B_TO_A, GRANT_BOTH };

struct grant {
	char channel[GRANT_NAME_MAX];
	char a[GRANT_NAME_MAX], b[GRANT_NAME_MAX];
	enum grant_dir dir;
	uint64_t ring_bytes;        /* power of two, 4 KiB..16 MiB */
	bool require_integrity;     /* default true */
};

#define SVC_RULES_MAX 1024

struct svc_rule {
	char source[GRANT_NAME_MAX], target[GRANT_NAME_MAX];
	char service[GRANT_NAME_MAX];
	bool allow;
};

#define CAP_RULES_MAX 1024

struct cap_rule {
	char partition[GRANT_NAME_MAX];
	char capability[GRANT_NAME_MAX];  /* "update" */
};

struct grant_set {
	unsigned n;
	struct grant *g;
	unsigned nsvc;
	struct svc_rule *svc;
	struct segset_doc seg;      /* "segsets", as in common/segset.h */
	bool has_caps;              /* "capabilities" present */
	unsigned ncap;
	struct cap_rule *cap;
};

/* Does the policy let `partition` have `capability` (which its spec asks
 * for)? True when the policy has no "capabilities" list. */
bool grant_cap_allows(const struct grant_set *s, const char *partition,
		      const char *capability);

/* The rule for a call of `service` from `source` to `target`, or NULL
 * (default deny). */
const struct svc_rule *svc_rule_find(const struct grant_set *s,
				     const char *source, const char *target,
				     const char *service);

/* Parse and validate a policy document. `known` (NULL-terminated, or NULL
 * to skip the check) lists the partitions that exist: a grant naming any
 * other is refused. Errors name the grant and field:
 * "grants[2] (\"telemetry\").ring_bytes: 3000 is not a power of two". */
int grant_set_parse(const char *json, size_t len, const char *const *known,
		    struct grant_set *out, struct parley_err *err);
int grant_set_load(const char *path, const char *const *known,
		   struct grant_set *out, struct parley_err *err);
void grant_set_free(struct grant_set *s);
/* A deep copy (grants, service rules, segment sets): 0 or -ENOMEM (dst
 * then empty). */
int grant_set_copy(struct grant_set *dst, const struct grant_set *src);

/* One grant from a jansson object (the API's POST /v1/grants), checked as
 * in a policy document; messages name it "grant (\"chan\").field".
 * Whether the endpoints exist is the caller's question. */
struct json_t;
int grant_from_json(struct json_t *o, struct grant *g,
		    struct parley_err *err);

/* One service rule from a jansson object (the API's POST /v1/services:
 * {source, target, service, action}), checked as in a policy document;
 * messages name it "service.field". Whether the partitions exist is the
 * caller's question. */
int svc_rule_from_json(struct json_t *o, struct svc_rule *r,
		       struct parley_err *err);

/* The grant of `channel` that has `partition` as an endpoint, or NULL. */
const struct grant *grant_find(const struct grant_set *s, const char *channel,
			       const char *partition);

const char *grant_dir_name(enum grant_dir d);

#endif
