/* Several real partitions under one grant manager, as `parley-agent run`
 * wires them, but driven step by step so a test can act in between. */
#ifndef PARLEY_TEST_FLEET_H
#define PARLEY_TEST_FLEET_H

#include <stdio.h>
#include "agent/ipc/audit.h"
#include "agent/ipc/baseline.h"
#include "agent/ipc/chanmgr.h"
#include "agent/supervisor.h"

struct t_fleet {
	struct supervisor sup;
	struct chanmgr cm;
	struct audit audit;
	FILE *outf, *audf;
	char *out, *aud;
	size_t outlen, audlen;
	struct baseline_db *db;     /* optional */
	const char *vmm;            /* default: the build's parley-vmm; read
				     * by each t_fleet_add */
	uint32_t backend;           /* enum ctl_backend, 0: the running
				     * test's; read by each t_fleet_add */
	int timeout_ms;             /* part_opts.timeout_ms, 0: 10000 */
	char *dir;                  /* for config files */
	uint32_t vcpus;             /* for t_fleet_add; 0: the spec's default */
	const char *disks;          /* for t_fleet_add: the "disks" array's
				     * entries (files in dir), or NULL */
};

/* grants: a policy document (JSON), or NULL for none. */
void t_fleet_init(struct t_fleet *f, const char *grants);
/* Start a partition paused: image in build/guest, config files given as
 * "name=content" strings (NULL-terminated array or NULL). Asserts success
 * unless expect_fail, then returns NULL and copies the error. */
struct partition *t_fleet_add(struct t_fleet *f, const char *name,
			      const char *image, const char *cmdline,
			      const char *const *config, bool expect_fail,
			      struct parley_err *err);
/* Resume every partition. */
void t_fleet_go(struct t_fleet *f);
/* Handle messages for up to ms; returns partitions still running. */
int t_fleet_run(struct t_fleet *f, int ms);
/* Console (prefixed "name| ") and audit lines so far. */
const char *t_fleet_out(struct t_fleet *f);
const char *t_fleet_audit(struct t_fleet *f);
void t_fleet_set_grants(struct t_fleet *f, const char *grants);
void t_fleet_free(struct t_fleet *f);

#endif
