/*
 * The plugin set an agent hands its vmms (`--plugin-dir DIR`: plugins in
 * DIR, their manifests in DIR/manifests). Without the option: the
 * directory beside the binaries (../plugins from parley-agent: the build
 * tree's build/plugins), else PLUGIN_DIR_DEFAULT (the package's); when
 * neither exists, or the agent is not root (an unprivileged agent's vmms
 * cannot be given plugins), no set and the vmms' built-in devices. A directory
 * that exists must verify, whichever way it was found: a plugin whose
 * hash differs from its manifest stops the agent from starting.
 */
#ifndef PARLEY_AGENT_PLUGIN_AGENTSET_H
#define PARLEY_AGENT_PLUGIN_AGENTSET_H

#include <stdbool.h>
#include "agent/ipc/audit.h"
#include "agent/plugin/plugdir.h"

#define PLUGIN_DIR_DEFAULT "/usr/lib/parley/plugins"

/* 0 with *have saying whether s holds a set, or -errno (err says). */
int plugin_set_for_agent(const char *given, struct plugin_set *s,
			 bool *have, struct parley_err *err);

/* A device's lifecycle state as an audit event "device_state": detail
 * "device D (plugin P): STATE[: reason]". */
void plugin_audit_state(struct audit *a, const char *partition,
			const char *device, const char *plugin,
			const char *state, const char *detail);

#endif
