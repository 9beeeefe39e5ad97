/*
 * The daemon replicas an agent may connect to: `--server A,B,C` and the
 * state directory's "servers" file (one HOST:PORT a line), which `join`
 * writes from the daemon's answer (JoinResponse.servers). The link fails
 * over between them (agent/link.h).
 */
#ifndef PARLEY_AGENT_SERVERS_H
#define PARLEY_AGENT_SERVERS_H

#include <stddef.h>
#include "common/err.h"

struct agent_link;

/* The file's largest size; more entries than the link keeps are refused. */
#define AGENT_SERVERS_FILE_MAX 4096

/* The first server to try: the list's first entry, else the file's first
 * line. -ENOENT if neither names one; -EINVAL for a malformed entry. */
int agent_servers_first(const char *list, const char *state_dir, char *host,
			size_t cap, int *port, struct parley_err *err);
/* Every entry of the list and of the file, in that order, added to l's
 * servers (duplicates ignored). */
int agent_servers_add(struct agent_link *l, const char *list,
		      const char *state_dir, struct parley_err *err);
/* Write the file (n entries, each checked as HOST:PORT), replacing it
 * atomically; n == 0 removes nothing and writes nothing. */
int agent_servers_save(const char *state_dir, char *const *servers, size_t n,
		       struct parley_err *err);

/* Servers a daemon named (ServerList, after its welcome) into l's list;
 * if any was new, the whole list into the state directory's file. A full
 * list keeps what it has. */
int agent_servers_take(struct agent_link *l, char *const *servers, size_t n,
		       struct parley_err *err);

#endif
