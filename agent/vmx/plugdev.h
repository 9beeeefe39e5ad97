/*
 * Device plugins in the vmm: loading a verified plugin (the private copy
 * the agent made, agent/plugin/plugdir.h, bound into the jail) and
 * driving one device instance through its lifecycle.
 *
 *   create:   (none) -> initialising -> powering-up -> running
 *   snapshot: running -> saving-state -> running
 *   restore:  initialising -> powering-up -> loading-state -> running
 *   stop:     running -> powering-down -> torn-down
 *
 * Each transition calls the plugin's operation of the same name; a refusal
 * (non-zero) leaves the device in `failed`, and the error names the device,
 * the plugin and its reason ("device d (plugin xts) refused power_up:
 * ..."). An operation out of order is refused without calling the plugin.
 * on_state, if set, hears every state entered (status and audit).
 */
#ifndef PARLEY_VMX_PLUGDEV_H
#define PARLEY_VMX_PLUGDEV_H

#include <stdbool.h>
#include "agent/plugin/plugin.h"
#include "common/err.h"

enum plugdev_state {
	PLUGDEV_NONE = 0,
	PLUGDEV_INITIALISING,
	PLUGDEV_POWERING_UP,
	PLUGDEV_LOADING_STATE,
	PLUGDEV_RUNNING,
	PLUGDEV_SAVING_STATE,
	PLUGDEV_POWERING_DOWN,
	PLUGDEV_TORN_DOWN,
	PLUGDEV_FAILED,
};

struct plugin_lib {
	void *handle;                      /* dlopen's */
	const struct parley_plugin *p;
};

struct plugdev {
	const struct parley_plugin *p;
	char device[PARLEY_PLUGIN_NAME_MAX];
	void *dev;                         /* the plugin's instance */
	enum plugdev_state state;
	char why[160];                     /* failed: the refusal, named */
	void (*on_state)(void *ctx, const struct plugdev *d);
	void *ctx;
};

/* dlopen the plugin at path (the verified copy: in the vmm's jail its
 * bind, else /proc/self/fd/N), find its symbol and check it: ABI, struct
 * size, class and name as the manifest says, every operation of the
 * lifecycle and of its class present. 0 or -errno with err naming the
 * plugin. */
int plugin_lib_open(const char *path, const char *name,
		    uint32_t plugin_class, struct plugin_lib *lib,
		    struct parley_err *err);
void plugin_lib_close(struct plugin_lib *lib);

const char *plugdev_state_name(enum plugdev_state s);

/* create: init with c, then power_up; run with plugdev_run (or
 * plugdev_load then plugdev_run for a restore). */
int plugdev_create(struct plugdev *d, const struct parley_plugin *p,
		   const struct parley_plugin_config *c,
		   struct parley_err *err);
int plugdev_load(struct plugdev *d, const void *state, size_t len,
		 uint32_t version, struct parley_err *err);
int plugdev_run(struct plugdev *d, struct parley_err *err);
int plugdev_save(struct plugdev *d, void *buf, size_t cap, size_t *len,
		 uint32_t *version, struct parley_err *err);
/* power_down (from running; skipped from any other state), then
 * teardown, whatever power_down said: the device is torn down after. */
int plugdev_stop(struct plugdev *d, struct parley_err *err);

#endif
