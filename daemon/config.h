/*
 * parleyd's configuration: a JSON file (--config) and flags, flags winning.
 *
 *   { "listen": "127.0.0.1:7420", "api_listen": "127.0.0.1:7421",
 *     "state_dir": "/var/lib/parley",
 *     "ca": "ca.crt", "cert": "parleyd.crt", "key": "parleyd.key",
 *     "policy_key": "policy.key", "log_level": "info",
 *     "heartbeat_ms": 5000, "frame_max": 1048576,
 *     "replica_name": "east-1", "poll_ms": 200,
 *     "advertise": "10.0.0.5:7420" }
 *
 * Relative paths are taken from state_dir.
 */
#ifndef PARLEY_DAEMON_CONFIG_H
#define PARLEY_DAEMON_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "common/log.h"

struct daemon_config {
	char listen[128];          /* HOST:PORT, port 0 = any free one */
	/* The HTTP API (daemon/rpc/API.md), HOST:PORT, port 0 = any free
	 * one. api_listen_set: given in the file or a flag; only then is a
	 * busy address fatal (the default one may be taken by another
	 * parleyd on the same machine, e.g. in tests). */
	char api_listen[128];
	char api_cert[PATH_MAX], api_key[PATH_MAX]; /* both set: HTTPS */
	bool api_listen_set;
	char state_dir[PATH_MAX];
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	char policy_key[PATH_MAX];
	char store[PATH_MAX];      /* default state_dir/parley.db */
	/* The console's files (/ui/); "" = found beside the program,
	 * ../share/parley/console from its directory (main.c). */
	char ui_dir[PATH_MAX];
	enum log_level log_level;
	uint32_t heartbeat_ms;
	size_t frame_max;
	/* Replicas (several parleyd on one store): this one's name (a store
	 * name; "" = HOSTNAME-PORT of the link, main.c), how often the store
	 * is polled for changes other replicas made, and the HOST:PORT
	 * agents are told to reach this replica's link on ("" = the listen
	 * address, unless it is a wildcard). */
	char replica_name[64];
	uint32_t poll_ms;
	char advertise[128];
};

/* Defaults, then the file named by --config (if any), then flags. */
int daemon_config_parse(int argc, char **argv, struct daemon_config *c,
			struct parley_err *err);

#endif
