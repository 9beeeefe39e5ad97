/*
 * parley-agent's command line (run, restore, serve): the options into a
 * struct agent_cli, each value checked where it is read — a bad one is a
 * message naming the option and exit status 2, never a default taken in
 * its place. main.c acts on them; join has its own (agent/join.c).
 */
#ifndef PARLEY_AGENT_CLI_H
#define PARLEY_AGENT_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "agent/ipc/baseline.h"

#define IMAGE_DIRS_MAX 8
/* --rehash-interval: a day at most (0: off) */
#define REHASH_S_MAX 86400.0

struct agent_cli {
	const char *image_dirs[IMAGE_DIRS_MAX + 1];
	unsigned nimage_dirs;
	const char *config_dirs[IMAGE_DIRS_MAX + 1];
	unsigned nconfig_dirs;
	const char *disk_dirs[IMAGE_DIRS_MAX + 1];
	unsigned ndisk_dirs;
	const char *vmm;
	const char *snapshot_dir;
	const char *policy;
	const char *baselines;
	enum baseline_mode mode;
	const char *audit;
	double rehash_s;
	const char *state_dir;
	const char *server;
	const char *snapshot_key;
	uint32_t backend;          /* enum ctl_backend or BACKEND_AUTO */
	const char *name;          /* restore: the name the operator asks */
	const char *spec;          /* restore: the spec whose disks it re-opens */
	const char *update_stage;  /* SIGUSR1 commits what is staged here */
	double update_timeout_s;
	const char *plugin_dir;    /* NULL: agent/plugin/agentset.h */
	const char *libvirt_uri;   /* NULL: the embedded driver
				    * (agent/vm/vmhost.h) */
	int audit_refusals;        /* a second, per partition; 0: the
				    * default; -1: all (ipc/audit.h) */
};

/* argv[0] is the command (run, restore, serve); returns the index of the
 * first operand, or -1 after saying what was wrong on stderr. */
int agent_cli_parse(int argc, char **argv, struct agent_cli *c);
void agent_cli_usage(FILE *f);
extern const char agent_cli_usage_text[];

#endif
