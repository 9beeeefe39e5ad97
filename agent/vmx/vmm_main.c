/*
 * parley-vmm: one process per thin partition, forked and exec'd by the
 * agent. It owns that partition's VM and vCPU threads and nothing else:
 * it is handed a control socket (fd 3) and the guest-memory memfd (fd 4),
 * sets the VM up, drops into a seccomp allowlist, and only then lets guest
 * code run. Everything it reports goes over the control socket.
 */
#include "agent/ctl/ctl.h"
#include "agent/layout.h"
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"
#include "common/version.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

static const char *vmm_name = "?";

/* A diagnostic for the operator: to the agent as a console line (its
 * stderr is /dev/null in the jail, but for a test run's sanitizers), and
 * to stderr. */
static void diag(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	struct ctl_console m = { .len = (uint32_t)n };
	memcpy(m.buf, buf, (size_t)n);
	ctl_send(CTL_FD_SOCK, CTL_CONSOLE, &m,
		 (uint32_t)(offsetof(struct ctl_console, buf) + (size_t)n));
	(void)!write(2, buf, (size_t)n);
}

__attribute__((noreturn)) static void die(const char *what, const char *msg)
{
	diag("parley-vmm[%s]: %s: %s", vmm_name, what, msg);
	/* _exit: no atexit handlers, so nothing runs that the sandbox may
	 * not allow (a sanitizer's leak scan, for one). */
	_exit(2);
}

static void send_console(void *ctx, unsigned vcpu, const char *buf, size_t len)
{
	(void)ctx;
	struct ctl_console m = { .vcpu = vcpu, .len = (uint32_t)len };
	memcpy(m.buf, buf, len);
	ctl_send(CTL_FD_SOCK, CTL_CONSOLE, &m,
		 (uint32_t)(offsetof(struct ctl_console, buf) + len));
}

static int launch_check(const struct ctl_launch *l, struct parley_err *err)
{
	if (l->ram_size < PARLEY_MEM_MIN || l->ram_size > PARLEY_MEM_MAX ||
	    l->ram_size % 0x200000)
		return perr(err, -EINVAL, "RAM size 0x%llx", (unsigned long long)l->ram_size);
	if (l->cfg_size > PARLEY_CONFIG_MAX || l->cfg_size % PARLEY_PAGE_SIZE)
		return perr(err, -EINVAL, "config size 0x%llx", (unsigned long long)l->cfg_size);
	if (l->vcpus < 1 || l->vcpus > PARLEY_VCPUS_MAX)
		return perr(err, -EINVAL, "%u vCPUs", l->vcpus);
	if (l->entry < PARLEY_IMAGE_MIN || l->entry >= l->ram_size ||
	    l->boot_info != PARLEY_BOOT_INFO_GPA)
		return perr(err, -EINVAL, "entry 0x%llx or boot info 0x%llx",
			    (unsigned long long)l->entry,
			    (unsigned long long)l->boot_info);
	if (l->flags & ~(CTL_LAUNCH_RESTORE | CTL_LAUNCH_PAUSED))
		return perr(err, -EINVAL, "flags 0x%x", l->flags);
	if (l->backend != CTL_BACKEND_KVM && l->backend != CTL_BACKEND_PROCESS)
		return perr(err, -ENOTSUP, "backend %u", l->backend);
	if (l->ndisk > PARLEY_DISKS_MAX)
		return perr(err, -EINVAL, "%u disks", l->ndisk);
	if (l->nplugin > CTL_PLUGINS_MAX)
		return perr(err, -EINVAL, "%u plugins", l->nplugin);
	if (l->ndevload > CTL_DEVICES_MAX ||
	    (l->ndevload && !(l->flags & CTL_LAUNCH_RESTORE)))
		return perr(err, -EINVAL, "%u device states", l->ndevload);
	if (l->nro > CTL_RO_RANGES_MAX)
		return perr(err, -EINVAL, "%u read-only ranges", l->nro);
	for (uint32_t i = 0; i < l->nro; i++) {
		uint64_t end;
		if ((l->ro[i].gpa | l->ro[i].size) % PARLEY_PAGE_SIZE ||
		    __builtin_add_overflow(l->ro[i].gpa, l->ro[i].size, &end) ||
		    l->ro[i].gpa < PARLEY_IMAGE_MIN || end > l->ram_size)
			return perr(err, -EINVAL, "read-only range %u", i);
	}
	struct stat st;
	if (fstat(CTL_FD_MEM, &st) < 0 ||
	    (uint64_t)st.st_size != l->ram_size + l->cfg_size)
		return perr(err, -EINVAL, "guest memory is not %llu bytes",
			    (unsigned long long)(l->ram_size + l->cfg_size));
	return 0;
}

static void recv_exact(uint32_t want, void *buf, size_t len)
{
	uint32_t type;
	int n = ctl_recv(CTL_FD_SOCK, &type, buf, len);
	if (n < 0)
		die("control link", strerror(-n));
	if (type != want || (size_t)n != len)
		die("control link", "unexpected message during set-up");
}

static void restore_vcpus(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct ctl_vcpu_state s;
		struct parley_err err = { 0 };
		recv_exact(CTL_VCPU_STATE, &s, sizeof(s));
		if (s.index != i)
			die("restore", "vCPU states out of order");
		if (vmx_vcpu_restore(&vm->vcpu[i], &s, &err) < 0)
			die("restore", perr_msg(&err));
	}
}

/* A device plugin refused or failed during set-up: the partition stops
 * with the reason naming it (the agent is waiting for CTL_READY and takes
 * this in its place). */
__attribute__((noreturn)) static void plugin_failed(const char *msg)
{
	struct ctl_finished f = { .reason = VMX_STOP_PLUGIN };
	snprintf(f.detail, sizeof(f.detail), "%s", msg);
	ctl_send(CTL_FD_SOCK, CTL_FINISHED, &f, sizeof(f));
	die("plugin", msg);
}

/* One set-up message of type want, with its descriptor. */
static struct ctl_msg *recv_fd_msg(uint32_t want)
{
	static struct ctl_msg m;
	int rc = ctl_read(CTL_FD_SOCK, CTL_FROM_AGENT, &m);
	if (rc < 0)
		die("control link", strerror(-rc));
	if (m.type != want) {
		for (unsigned k = 0; k < m.nfds; k++)
			close(m.fds[k]);
		die("control link", "unexpected message during set-up");
	}
	return &m;
}

/* The verified plugins, loaded now: before the sandbox, which would not
 * let new code be mapped. */
static void recv_plugins(struct vmx_vm *vm, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct parley_err err = { 0 };
		struct ctl_msg *m = recv_fd_msg(CTL_PLUGIN);
		if (vmx_plugin_add(vm, &m->u.plugin, m->fds[0], &err) < 0)
			plugin_failed(perr_msg(&err));
	}
}

/* The disks, each a CTL_DISK with its descriptor, checked by ctl_read;
 * a key is in memory only from here to the disk's cipher context. */
static void recv_disks(struct vmx_vm *vm, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct parley_err err = { 0 };
		struct ctl_msg *m = recv_fd_msg(CTL_DISK);
		int rc = vmx_disk_add(vm, &m->u.disk, m->fds[0], &err);
		OPENSSL_cleanse(m->u.disk.key, sizeof(m->u.disk.key));
		if (rc < 0 && vm->plugins.n)
			plugin_failed(perr_msg(&err));
		if (rc < 0)
			die("disk", perr_msg(&err));
	}
}

static void send_state(struct vmx_vm *vm)
{
	if (atomic_load(&vm->state) != VMX_PAUSE) {
		struct ctl_refused r = { .type = CTL_GET_STATE, .code = -EBUSY };
		ctl_send(CTL_FD_SOCK, CTL_REFUSED, &r, sizeof(r));
		return;
	}
	vmx_vm_pause(vm); /* already paused: waits until every vCPU parked */
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct ctl_vcpu_state s;
		if (vmx_vcpu_save(&vm->vcpu[i], &s) < 0)
			die("save", "reading vCPU state failed");
		ctl_send(CTL_FD_SOCK, CTL_VCPU_STATE, &s, sizeof(s));
	}
	/* A device that refuses fails the snapshot (its state, failed with
	 * the reason, has gone to the agent already). */
	struct parley_err err = { 0 };
	if (vmx_devices_save(vm, &err) < 0) {
		struct ctl_refused r = { .type = CTL_GET_STATE,
					 .code = -ECANCELED };
		ctl_send(CTL_FD_SOCK, CTL_REFUSED, &r, sizeof(r));
		return;
	}
	ctl_send(CTL_FD_SOCK, CTL_STATE_DONE, NULL, 0);
}

static void kill_partition(struct vmx_vm *vm, const char *why)
{
	struct ctl_finished f = { .reason = VMX_STOP_KILLED };
	snprintf(f.detail, sizeof(f.detail), "%s", why);
	vmx_vm_finish(vm, &f);
}

static void do_map(struct vmx_vm *vm, const struct ctl_map *m, int *fds)
{
	struct parley_err err = { 0 };
	struct ctl_chan_ref ref = { .chan = m->chan, .handle = m->handle };
	ref.status = win_map(vm, m, fds, &err);
	if (ref.status < 0)
		diag("parley-vmm[%s]: %s", vmm_name, perr_msg(&err));
	ctl_send(CTL_FD_SOCK, CTL_MAPPED, &ref, sizeof(ref));
	/* The signal a service provider waits for: a new caller's window
	 * (it then asks SVC_ACCEPT). */
	if (ref.status == 0)
		vmx_vm_wake_waiters(vm);
}

static void do_unmap(struct vmx_vm *vm, const struct ctl_chan_ref *r)
{
	struct ctl_chan_ref ref = { .chan = r->chan };
	ref.status = win_revoke(vm, r->chan, &ref.handle);
	ctl_send(CTL_FD_SOCK, CTL_UNMAPPED, &ref, sizeof(ref));
}

/* One request from the grant manager; anything malformed ends the VM. */
static void handle_request(struct vmx_vm *vm)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type;
	int fds[CTL_FDS_MAX];
	unsigned nfds = 0;
	int n = ctl_recv_fds(CTL_FD_SOCK, &type, buf, sizeof(buf), fds, &nfds);
	if (n == -EAGAIN)
		return;
	if (n < 0) {
		kill_partition(vm, n == -EPIPE ? "agent went away"
					       : "protocol error from agent");
		return;
	}
	switch (type) {
	case CTL_PAUSE:
		vmx_vm_pause(vm);
		ctl_send(CTL_FD_SOCK, CTL_PAUSED, NULL, 0);
		break;
	case CTL_RESUME:
		vmx_vm_resume(vm);
		ctl_send(CTL_FD_SOCK, CTL_RESUMED, NULL, 0);
		break;
	case CTL_GET_STATE:
		send_state(vm);
		break;
	case CTL_STOP:
		kill_partition(vm, "stopped by the agent");
		break;
	case CTL_OPEN_REPLY:
		vmx_vcpu_reply(vm, (const struct ctl_open_reply *)buf);
		break;
	case CTL_UPDATE_REPLY:
		vmx_vcpu_update_reply(vm, (const struct ctl_update_reply *)buf);
		break;
	case CTL_MAP:
		do_map(vm, (const struct ctl_map *)buf, fds);
		break;
	case CTL_UNMAP:
		do_unmap(vm, (const struct ctl_chan_ref *)buf);
		break;
	case CTL_PEER_GONE:
		/* The window may already be gone (closed meanwhile): fine. */
		win_peer_gone(vm, ((const struct ctl_chan_ref *)buf)->chan);
		break;
	case CTL_PING: {
		/* An agent taking over asks whether this link answers. */
		struct ctl_ping pong = { .nonce = ((const struct ctl_ping *)buf)->nonce };
		ctl_send(CTL_FD_SOCK, CTL_PONG, &pong, sizeof(pong));
		break;
	}
	case CTL_DIRTY_REQ:
		if (vmx_send_dirty(vm) < 0)
			kill_partition(vm, "reading the dirty log failed");
		break;
	default:
		kill_partition(vm, "unexpected request from agent");
	}
}

static void main_loop(struct vmx_vm *vm)
{
	struct pollfd pf[2] = {
		{ .fd = CTL_FD_SOCK, .events = POLLIN },
		{ .fd = vm->stop_efd, .events = POLLIN },
	};
	for (;;) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll", strerror(errno));
		}
		if (pf[1].revents)
			return;
		if (pf[0].revents)
			handle_request(vm);
	}
}

/* The sandbox lets read and write reach stderr and descriptors above the
 * control socket only: a stdin or stdout we were started without must not
 * become a doorbell or eventfd later. A spare eventfd holds the number. */
static void hold_stdio(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int e = eventfd(0, EFD_CLOEXEC);
		if (e >= 0 && e != fd) {
			dup3(e, fd, O_CLOEXEC);
			close(e);
		}
	}
}

int main(int argc, char **argv)
{
	/* Partition names never start with '-': these cannot be one. */
	if (argc == 2 && (!strcmp(argv[1], "--help") ||
			  !strcmp(argv[1], "-h"))) {
		fputs("usage: parley-vmm NAME  (started by parley-agent with "
		      "its control socket as fd 3\n"
		      "       and the guest memory as fd 4; not for use by "
		      "hand)\n"
		      "       parley-vmm --help | --version\n", stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		parley_print_version("parley-vmm");
		return 0;
	}
	if (argc > 1 && argv[1][0] == '-') {
		fprintf(stderr, "parley-vmm: unknown option %s (parley-vmm "
			"--help)\n", argv[1]);
		return 2;
	}
	if (argc > 1)
		vmm_name = argv[1];
	hold_stdio();
	struct ctl_launch l;
	struct parley_err err = { 0 };
	recv_exact(CTL_LAUNCH, &l, sizeof(l));
	if (launch_check(&l, &err) < 0)
		die("launch", perr_msg(&err));
	static struct vmx_vm vm;
	if (vmx_vm_create(&vm, CTL_FD_BACKEND, CTL_FD_MEM, CTL_FD_MEM_RO, &l,
			  &err) < 0)
		die("create", perr_msg(&err));
	if (vmx_hcall_init(&vm, &l, &err) < 0)
		die("launch", perr_msg(&err));
	/* The mapping keeps the memory; the process backend's children have
	 * their own copies of both fds until they are set up. */
	close(CTL_FD_MEM);
	close(CTL_FD_MEM_RO);
	if (l.flags & CTL_LAUNCH_RESTORE) {
		restore_vcpus(&vm);
	} else {
		struct parley_boot_info *bi = gmem_ptr(&vm.gm, l.boot_info,
						       sizeof(*bi), 8);
		bi->tsc_khz = vm.tsc_khz;
	}
	/* Devices report their states from their first one on. */
	vm.ctl_fd = CTL_FD_SOCK;
	vm.sink.console = send_console;
	recv_plugins(&vm, l.nplugin);
	recv_disks(&vm, l.ndisk);
	if (vmx_console_device(&vm, &err) < 0)
		plugin_failed(perr_msg(&err));
	/* A restore: each device's saved state, before it runs. */
	for (uint32_t i = 0; i < l.ndevload; i++) {
		struct ctl_msg *m = recv_fd_msg(CTL_DEVICE_LOAD);
		if (vmx_device_load(&vm, &m->u.device_blob, &err) < 0)
			plugin_failed(perr_msg(&err));
	}
	vmx_plugin_guard(&vm);
	/* vCPU threads start parked: no guest instruction before the filter. */
	atomic_store(&vm.state, VMX_PAUSE);
	if (vmx_vm_start(&vm) < 0)
		die("start", "could not start vCPU threads");
	/* Wait until every thread has parked: past libc's thread start-up
	 * (rseq, robust lists), which the filter does not allow. */
	vmx_vm_pause(&vm);
	if (vmx_sandbox_enter(&vm, &err) < 0)
		die("sandbox", perr_msg(&err));
	/* Devices run before the first guest instruction, inside the
	 * filter: what they do from here on it allows, or they fail. */
	if (vmx_devices_run(&vm, &err) < 0)
		plugin_failed(perr_msg(&err));
	ctl_send(CTL_FD_SOCK, CTL_READY, NULL, 0);
	if (!(l.flags & CTL_LAUNCH_PAUSED))
		vmx_vm_resume(&vm);
	main_loop(&vm);
	vmx_vm_join(&vm);
	/* A refusal to power down is reported (CTL_DEVICE_STATE, failed,
	 * with the reason); the partition has stopped either way. */
	vmx_devices_stop(&vm, NULL);
	vmx_disks_wipe(&vm);
	ctl_send(CTL_FD_SOCK, CTL_FINISHED, &vm.fin, sizeof(vm.fin));
	_exit(0);
}
