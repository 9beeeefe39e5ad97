/*
 * Standalone supervision (`parley-agent run`): several partitions at once,
 * each console streamed line by line with the partition's name in front,
 * and a summary when all have stopped. No daemon involved.
 */
#ifndef PARLEY_AGENT_SUPERVISOR_H
#define PARLEY_AGENT_SUPERVISOR_H

#include <stdbool.h>
#include <stdio.h>
#include "agent/partition.h"

/* As many as the channel manager knows (CM_PARTS_MAX; main.c checks they
 * agree): 128, so that a hand-over can be measured with 100 running. */
#define SUP_MAX 128
#define SUP_LINE_MAX 4096

struct sup_entry {
	struct partition *p;
	char line[SUP_LINE_MAX];
	size_t len;
	bool reported;
};

struct supervisor {
	FILE *out;
	unsigned n;
	struct sup_entry e[SUP_MAX];
	const char *snapshot_dir;  /* where SIGUSR2 suspends to, or NULL */
	void *owner;               /* for the hooks below */
	void (*on_gone)(struct partition *p, void *owner);
	void (*on_reload)(void *owner);  /* SIGHUP */
	bool (*on_tick)(void *owner);    /* every tick_ms while running */
	int tick_ms;
	uint64_t last_tick_ns;
	/* SIGUSR1: called from sup_run between rounds (never inside one),
	 * so that it may run rounds itself (agent/update_commit.c). */
	void (*on_upgrade)(void *owner);
	bool upgrade_requested;
	/* Endpoints served in the same loop that are not partitions (the
	 * VMs of `run`, agent/vm/vmrun.h): their descriptors join the poll
	 * (extra_fds, at most cap), extra_serve is called every round
	 * (non-blocking), the loop goes on while extra_live says some run,
	 * and SIGINT/SIGTERM call extra_stop. All NULL: none. */
	unsigned (*extra_fds)(void *owner, int *fds, unsigned cap);
	void (*extra_serve)(void *owner);
	unsigned (*extra_live)(void *owner);
	void (*extra_stop)(void *owner);
};
#define SUP_EXTRA_FDS_MAX 64

/* Console callback for part_opts.on_console with ctx = the supervisor. */
void sup_console(struct partition *p, const char *buf, size_t len, void *ctx);

/* Take ownership of a started partition. */
int sup_add(struct supervisor *s, struct partition *p);

/* Give a partition back (not destroyed: the caller does that), its
 * console line flushed; its entry is free for the next sup_add. Nothing
 * if it is not here. */
void sup_remove(struct supervisor *s, struct partition *p);

/* Run until every partition has stopped. SIGINT/SIGTERM stop them all;
 * SIGUSR2 suspends each to snapshot_dir/NAME.snap and stops it; SIGHUP
 * calls on_reload; SIGUSR1 on_upgrade. Prints a
 * summary; returns 0 if every partition exited with code 0. */
int sup_run(struct supervisor *s);

/* One round of sup_run: wait up to max_ms (-1: the tick, or for ever) for
 * messages and handle them; sfd is a signalfd or -1. Returns how many
 * partitions are still running (0: all done). For tests and tools that
 * act between rounds. */
int sup_step(struct supervisor *s, int sfd, int max_ms);

void sup_free(struct supervisor *s);

/* Block the signals sup_run() handles, before partitions start, so that one
 * arriving early is handled rather than killing the agent. */
void sup_block_signals(void);

#endif
