/* Device plugins in the vmm (plugdev.h). */
#include "agent/vmx/plugdev.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const names[] = {
	[PLUGDEV_NONE] = "none",
	[PLUGDEV_INITIALISING] = "initialising",
	[PLUGDEV_POWERING_UP] = "powering-up",
	[PLUGDEV_LOADING_STATE] = "loading-state",
	[PLUGDEV_RUNNING] = "running",
	[PLUGDEV_SAVING_STATE] = "saving-state",
	[PLUGDEV_POWERING_DOWN] = "powering-down",
	[PLUGDEV_TORN_DOWN] = "torn-down",
	[PLUGDEV_FAILED] = "failed",
};

const char *plugdev_state_name(enum plugdev_state s)
{
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static bool class_ops(const struct parley_plugin *p)
{
	switch (p->plugin_class) {
	case PARLEY_PLUGIN_BLOCK:
		return p->u.block.read && p->u.block.write && p->u.block.flush;
	case PARLEY_PLUGIN_TRANSFORM:
		return p->u.transform.encrypt && p->u.transform.decrypt;
	case PARLEY_PLUGIN_CONSOLE:
		return p->u.console.write;
	}
	return false;
}

int plugin_lib_open(const char *path, const char *name,
		    uint32_t plugin_class, struct plugin_lib *lib,
		    struct parley_err *err)
{
	memset(lib, 0, sizeof(*lib));
	/* RTLD_LOCAL: two plugins' symbols never resolve to each other;
	 * RTLD_NOW: an unresolved symbol fails here, before the sandbox,
	 * not in the middle of a request. */
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return perr(err, -ENOEXEC, "plugin %s: %s", name, dlerror());
	const struct parley_plugin *p = dlsym(h, PARLEY_PLUGIN_SYMBOL);
	int rc = 0;
	if (!p)
		rc = perr(err, -ENOEXEC, "plugin %s: no symbol %s", name,
			  PARLEY_PLUGIN_SYMBOL);
	else if (p->abi != PARLEY_PLUGIN_ABI ||
		 p->size < sizeof(struct parley_plugin))
		rc = perr(err, -ENOTSUP, "plugin %s: built for ABI %u (%u "
			  "bytes), this vmm loads ABI %u", name, p->abi,
			  p->size, PARLEY_PLUGIN_ABI);
	else if (p->plugin_class != plugin_class)
		rc = perr(err, -EINVAL, "plugin %s: its class is %u, the "
			  "manifest says %u", name, p->plugin_class,
			  plugin_class);
	else if (!p->name || strcmp(p->name, name))
		rc = perr(err, -EINVAL, "plugin %s: it calls itself \"%.31s\"",
			  name, p->name ? p->name : "");
	else if (!p->ops.init || !p->ops.power_up || !p->ops.load_state ||
		 !p->ops.run || !p->ops.save_state || !p->ops.power_down ||
		 !p->ops.teardown || !class_ops(p))
		rc = perr(err, -EINVAL, "plugin %s: an operation is missing",
			  name);
	if (rc < 0) {
		dlclose(h);
		return rc;
	}
	lib->handle = h;
	lib->p = p;
	return 0;
}

void plugin_lib_close(struct plugin_lib *lib)
{
	if (lib->handle)
		dlclose(lib->handle);
	memset(lib, 0, sizeof(*lib));
}

static void enter(struct plugdev *d, enum plugdev_state s)
{
	d->state = s;
	if (d->on_state)
		d->on_state(d->ctx, d);
}

/* The plugin's answer to op: on a refusal the device has failed. */
static int answer(struct plugdev *d, const char *op, int rc,
		  const char *why, struct parley_err *err)
{
	if (rc == 0)
		return 0;
	char safe[128];
	size_t i = 0;
	/* The plugin's text goes into stop reasons and audit: printable. */
	for (; why[i] && i < sizeof(safe) - 1; i++)
		safe[i] = why[i] >= 0x20 && why[i] < 0x7f ? why[i] : '?';
	safe[i] = 0;
	snprintf(d->why, sizeof(d->why), "device %s (plugin %s) refused %s: "
		 "%s", d->device, d->p->name, op,
		 safe[0] ? safe : "no reason given");
	enter(d, PLUGDEV_FAILED);
	return perr(err, rc < 0 ? rc : -EIO, "%s", d->why);
}

static int order(const struct plugdev *d, const char *op,
		 enum plugdev_state want, struct parley_err *err)
{
	if (d->state == want)
		return 0;
	return perr(err, -EPROTO, "device %s (plugin %s): %s while %s",
		    d->device, d->p ? d->p->name : "?", op,
		    plugdev_state_name(d->state));
}

int plugdev_create(struct plugdev *d, const struct parley_plugin *p,
		   const struct parley_plugin_config *c,
		   struct parley_err *err)
{
	d->p = p;
	d->dev = NULL;
	d->why[0] = 0;
	snprintf(d->device, sizeof(d->device), "%s",
		 c->device ? c->device : "");
	int rc = order(d, "init", PLUGDEV_NONE, err);
	if (rc < 0)
		return rc;
	char why[128] = "";
	enter(d, PLUGDEV_INITIALISING);
	rc = answer(d, "init", p->ops.init(c, &d->dev, why, sizeof(why)),
		    why, err);
	if (rc < 0)
		return rc;
	enter(d, PLUGDEV_POWERING_UP);
	return answer(d, "power_up", p->ops.power_up(d->dev, why, sizeof(why)),
		      why, err);
}

int plugdev_load(struct plugdev *d, const void *state, size_t len,
		 uint32_t version, struct parley_err *err)
{
	int rc = order(d, "load_state", PLUGDEV_POWERING_UP, err);
	if (rc < 0)
		return rc;
	char why[128] = "";
	enter(d, PLUGDEV_LOADING_STATE);
	return answer(d, "load_state",
		      d->p->ops.load_state(d->dev, state, len, version, why,
					   sizeof(why)), why, err);
}

int plugdev_run(struct plugdev *d, struct parley_err *err)
{
	if (d->state != PLUGDEV_LOADING_STATE) {
		int rc = order(d, "run", PLUGDEV_POWERING_UP, err);
		if (rc < 0)
			return rc;
	}
	char why[128] = "";
	int rc = answer(d, "run", d->p->ops.run(d->dev, why, sizeof(why)), why,
			err);
	if (rc == 0)
		enter(d, PLUGDEV_RUNNING);
	return rc;
}

int plugdev_save(struct plugdev *d, void *buf, size_t cap, size_t *len,
		 uint32_t *version, struct parley_err *err)
{
	int rc = order(d, "save_state", PLUGDEV_RUNNING, err);
	if (rc < 0)
		return rc;
	char why[128] = "";
	*len = 0;
	*version = 0;
	enter(d, PLUGDEV_SAVING_STATE);
	rc = answer(d, "save_state",
		    d->p->ops.save_state(d->dev, buf, cap, len, version, why,
					 sizeof(why)), why, err);
	if (rc == 0 && *len > cap)
		rc = answer(d, "save_state", -EOVERFLOW,
			    "wrote past the buffer's end", err);
	if (rc == 0)
		enter(d, PLUGDEV_RUNNING);
	return rc;
}

int plugdev_stop(struct plugdev *d, struct parley_err *err)
{
	int rc = 0;
	if (d->state == PLUGDEV_NONE || d->state == PLUGDEV_TORN_DOWN)
		return 0;
	if (d->state == PLUGDEV_RUNNING) {
		char why[128] = "";
		enter(d, PLUGDEV_POWERING_DOWN);
		rc = answer(d, "power_down",
			    d->p->ops.power_down(d->dev, why, sizeof(why)),
			    why, err);
	}
	/* init's failure leaves nothing for teardown to free. */
	if (d->dev)
		d->p->ops.teardown(d->dev);
	d->dev = NULL;
	enter(d, PLUGDEV_TORN_DOWN);
	return rc;
}
