/*
 * Device plugins in the vmm process: the plugins the agent verified
 * (CTL_PLUGIN, each the agent's private copy, bound into the jail at
 * /plugins/<i>, loaded before the sandbox so the filter never has to
 * allow mapping new code), the devices made from
 * them, their lifecycle states reported to the agent (CTL_DEVICE_STATE),
 * and the crash guard: a fatal signal inside a plugin's operation ends
 * this partition's vmm with a report naming the plugin, and nothing else.
 */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "agent/vmm_jail.h"

int vmx_plugin_add(struct vmx_vm *vm, const struct ctl_plugin *m, int fd,
		   struct parley_err *err)
{
	struct vmx_plugins *ps = &vm->plugins;
	int rc = 0;
	if (m->index != ps->n || ps->n >= CTL_PLUGINS_MAX)
		rc = perr(err, -EPROTO, "plugin %u out of order", m->index);
	/* The jail has no /proc: the copy is bound at /plugins/<i>; that it
	 * is the very file we were handed is checked (device and inode). */
	char path[64];
	snprintf(path, sizeof(path), VMM_JAIL_PLUGIN_DIR "/%02u", m->index);
	struct stat a, b;
	if (rc == 0 && stat(path, &b) < 0)
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	else if (rc == 0 && (fstat(fd, &a) < 0 || a.st_dev != b.st_dev ||
			     a.st_ino != b.st_ino))
		rc = perr(err, -EPERM, "plugin %s: %s is not the file the "
			  "agent verified", m->name, path);
	if (rc == 0)
		rc = plugin_lib_open(path, m->name, m->plugin_class,
				     &ps->lib[ps->n], err);
	/* Mapped now: the descriptor is not needed any more. */
	close(fd);
	if (rc == 0)
		ps->n++;
	return rc;
}

const struct parley_plugin *vmx_plugin_find(struct vmx_vm *vm,
					    const char *name)
{
	for (unsigned i = 0; i < vm->plugins.n; i++)
		if (!strcmp(vm->plugins.lib[i].p->name, name))
			return vm->plugins.lib[i].p;
	return NULL;
}

static void report(void *ctx, const struct plugdev *d)
{
	struct vmx_vm *vm = ctx;
	if (vm->ctl_fd < 0)
		return;
	struct ctl_device_state m = { .state = d->state };
	snprintf(m.device, sizeof(m.device), "%s", d->device);
	snprintf(m.plugin, sizeof(m.plugin), "%s", d->p->name);
	if (d->state == PLUGDEV_FAILED)
		snprintf(m.detail, sizeof(m.detail), "%s", d->why);
	ctl_send(vm->ctl_fd, CTL_DEVICE_STATE, &m, sizeof(m));
}

int vmx_device_create(struct vmx_vm *vm, struct plugdev *d,
		      const struct parley_plugin *p,
		      const struct parley_plugin_config *c,
		      struct parley_err *err)
{
	*d = (struct plugdev){ .on_state = report, .ctx = vm };
	return plugdev_create(d, p, c, err);
}

static void console_emit(void *ctx, unsigned vcpu, const char *buf,
			 size_t len)
{
	struct vmx_vm *vm = ctx;
	if (vm->plugins.out.console)
		vm->plugins.out.console(vm->plugins.out.ctx, vcpu, buf, len);
}

static void via_plugin(void *ctx, unsigned vcpu, const char *buf, size_t len)
{
	struct vmx_vm *vm = ctx;
	struct plugdev *d = &vm->plugins.console;
	vmx_plugin_enter(d->p->name, "write");
	d->p->u.console.write(d->dev, vcpu, buf, len);
	vmx_plugin_leave();
}

int vmx_console_device(struct vmx_vm *vm, struct parley_err *err)
{
	if (!vm->plugins.n)
		return 0;
	const struct parley_plugin *p = vmx_plugin_find(vm, "console");
	if (!p || p->plugin_class != PARLEY_PLUGIN_CONSOLE)
		return perr(err, -ENOENT, "no console plugin \"console\"");
	struct parley_plugin_config c = { .device = "console", .fd = -1,
					  .emit = console_emit,
					  .emit_ctx = vm };
	int rc = vmx_device_create(vm, &vm->plugins.console, p, &c, err);
	if (rc == 0) {
		vm->plugins.out = vm->sink;
		vm->sink.console = via_plugin;
		vm->sink.ctx = vm;
	}
	return rc;
}

/* Each device of the vm, console first. */
#define EACH_DEVICE(vm, d, body)                                          \
	do {                                                              \
		struct plugdev *d = &(vm)->plugins.console;               \
		if (d->p) { body; }                                       \
		for (unsigned i_ = 0; i_ < (vm)->disks.n; i_++) {         \
			struct vmx_disk *k_ = &(vm)->disks.d[i_];         \
			if (!k_->plug)                                    \
				continue;                                 \
			d = &k_->blk;                                     \
			{ body; }                                         \
			d = &k_->xf;                                      \
			if (d->p) { body; }                               \
		}                                                         \
	} while (0)

int vmx_devices_run(struct vmx_vm *vm, struct parley_err *err)
{
	int rc = 0;
	EACH_DEVICE(vm, d, if (rc == 0) {
		vmx_plugin_enter(d->p->name, "run");
		rc = plugdev_run(d, err);
		vmx_plugin_leave();
	});
	return rc;
}

int vmx_devices_save(struct vmx_vm *vm, struct parley_err *err)
{
	int rc = 0;
	static struct ctl_device_blob b;
	EACH_DEVICE(vm, d, if (rc == 0) {
		memset(&b, 0, sizeof(b));
		snprintf(b.device, sizeof(b.device), "%s", d->device);
		snprintf(b.plugin, sizeof(b.plugin), "%s", d->p->name);
		size_t len = 0;
		vmx_plugin_enter(d->p->name, "save_state");
		rc = plugdev_save(d, b.data, sizeof(b.data), &len, &b.version,
				  err);
		vmx_plugin_leave();
		b.len = (uint32_t)len;
		if (rc == 0)
			ctl_send(vm->ctl_fd, CTL_DEVICE_SAVED, &b, sizeof(b));
	});
	return rc;
}

int vmx_device_load(struct vmx_vm *vm, const struct ctl_device_blob *b,
		    struct parley_err *err)
{
	int rc = -ENOENT;
	EACH_DEVICE(vm, d, if (rc == -ENOENT && !strcmp(d->device, b->device) &&
			       !strcmp(d->p->name, b->plugin) &&
			       d->state == PLUGDEV_POWERING_UP) {
		vmx_plugin_enter(d->p->name, "load_state");
		rc = plugdev_load(d, b->data, b->len, b->version, err);
		vmx_plugin_leave();
	});
	if (rc == -ENOENT)
		return perr(err, -ENOENT, "the snapshot holds the state of "
			    "device %s (plugin %s), which this partition does "
			    "not have", b->device, b->plugin);
	return rc;
}

int vmx_devices_stop(struct vmx_vm *vm, struct parley_err *err)
{
	int rc = 0;
	EACH_DEVICE(vm, d, {
		struct parley_err e = { 0 };
		vmx_plugin_enter(d->p->name, "power_down");
		int r = plugdev_stop(d, &e);
		vmx_plugin_leave();
		if (r < 0 && rc == 0) {
			rc = r;
			if (err)
				*err = e;
		}
	});
	return rc;
}

/* ---- the crash guard ---- */

static _Thread_local const char *now_plugin, *now_op;
static int guard_fd = -1;

void vmx_plugin_enter(const char *plugin, const char *op)
{
	now_plugin = plugin;
	now_op = op;
}

void vmx_plugin_leave(void)
{
	now_plugin = NULL;
}

/* Async-signal-safe: no stdio, only our own copying. */
static size_t put(char *d, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		d[at++] = *s++;
	d[at] = 0;
	return at;
}

static void on_fatal(int sig)
{
	if (!now_plugin || guard_fd < 0) {
		/* Not in a plugin: the ordinary death (the agent reports
		 * vmm-died). */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	struct ctl_finished f = { .reason = VMX_STOP_PLUGIN };
	char num[4] = { (char)('0' + sig / 10 % 10), (char)('0' + sig % 10),
			0 };
	size_t at = put(f.detail, 0, sizeof(f.detail), "plugin ");
	at = put(f.detail, at, sizeof(f.detail), now_plugin);
	at = put(f.detail, at, sizeof(f.detail), " crashed (signal ");
	at = put(f.detail, at, sizeof(f.detail), sig < 10 ? num + 1 : num);
	at = put(f.detail, at, sizeof(f.detail), ") in ");
	put(f.detail, at, sizeof(f.detail), now_op ? now_op : "?");
	ctl_send(guard_fd, CTL_FINISHED, &f, sizeof(f));
	_exit(3);
}

void vmx_plugin_guard(struct vmx_vm *vm)
{
	if (!vm->plugins.n)
		return;
	guard_fd = vm->ctl_fd;
	struct sigaction sa = { .sa_handler = on_fatal };
	sigemptyset(&sa.sa_mask);
	/* On the vCPU thread's own stack: fine for a plugin's fault, which
	 * is not a stack overflow of ours. */
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}
