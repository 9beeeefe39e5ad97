/*
 * `parley-agent serve`: the agent under a daemon. Partitions, the grant
 * manager and the daemon link on one libevent loop; runs until SIGTERM or
 * SIGINT.
 */
#ifndef PARLEY_AGENT_SERVE_H
#define PARLEY_AGENT_SERVE_H

#include <stdint.h>

struct serve_opts {
	const char *state_dir;
	const char *server;        /* HOST:PORT[,HOST:PORT...], or NULL:
				    * the state dir's servers file */
	const char *vmm;
	const char *const *image_dirs;  /* the only places images of */
	const char *const *config_dirs; /* daemon-sent specs come from */
	const char *const *disk_dirs;   /* disks' backing files (NULL: none) */
	const char *audit;         /* JSON lines file, or NULL */
	double rehash_s;
	int audit_refusals;        /* --audit-refusals: 0 the default, -1
				    * all (agent/ipc/audit.h) */
	uint32_t backend;          /* BACKEND_AUTO (0) unless --backend */
	char **specs;
	int nspecs;
	/* Updating by hand-over (agent/update_commit.h): SIGUSR1 commits
	 * what update_stage holds; argv is ours, for the new binary. */
	const char *update_stage;
	int update_timeout_ms;
	char **argv;
	const char *version;
	int handover_fd;           /* >= 0: we are the new binary */
	int fault;                 /* enum update_fault; test builds only */
	const char *plugin_dir;    /* --plugin-dir, or NULL (agentset.h) */
	const char *libvirt_uri;   /* --libvirt-uri, or NULL: the embedded
				    * driver (agent/vm/vmhost.h) */
};

int serve_main(const struct serve_opts *o);

#endif
