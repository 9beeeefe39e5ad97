/*
 * The agent's Linux VMs (issue 11): libvirt domains it defines, starts,
 * adopts and destroys on its own host, by default through the embedded
 * QEMU driver (qemu:///embed?root=STATE/libvirt: no libvirtd), each with
 * a virtio-serial port PARLEY_VMCTL_PORT whose host end is a unix socket
 * in the agent's state directory (QEMU listens on it, the agent connects,
 * so an agent that restarts connects again to the same VM).
 *
 * The domains it owns carry the metadata element VMHOST_NS, naming the
 * VM and the agent (its STATE/vm: several agents, each with a state
 * directory of its own, may share a system libvirtd): at start-up
 * (vmhost_reconcile) an owned domain the agent still has a spec for is
 * adopted, any other owned one destroyed — QEMU outlives the agent, so a
 * VM nobody answers for would otherwise leak. Domains without the element
 * are not ours and are never touched.
 */
#ifndef PARLEY_AGENT_VM_VMHOST_H
#define PARLEY_AGENT_VM_VMHOST_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include "common/err.h"

#define VMHOST_NS "https://parley.invalid/ns/vm/1"
#define VMHOST_PREFIX "parley-vm-"   /* domain name: prefix + VM name */
#define VMHOST_CFG_MAX 4
/* When the agent runs as root, each VM's QEMU runs as a uid of its own
 * (one per VM name, kept in STATE/vm/uids/NAME so an agent that restarts
 * and adopts the VM knows it; never given to another VM) from the QEMU
 * uid range, and with the group of VMHOST_QEMU_USER (created by ./dev deps
 * and the parley-agent package; that user itself runs no QEMU: it owns
 * libvirt's shared directories and is qemu.conf's default). Not root: a
 * compromised QEMU cannot open the agent's descriptors through
 * /proc/AGENT/fd, nor re-open a read-only section writable; a uid of its
 * own: it cannot ptrace another VM's QEMU nor open its /proc/PID/mem.
 * The default range is clear of /etc/passwd's ids, systemd's dynamic users
 * and the vmm processes' default range (agent/vmm_jail.h). */
#define VMHOST_QEMU_USER "parley-qemu"
#define VMHOST_UID_FIRST 6100000u
#define VMHOST_UID_LAST 6165535u

struct vm_spec {
	char name[48];              /* jv_name_valid */
	char kernel[PATH_MAX];
	char initrd[PATH_MAX];
	/* Key configuration files, measured by the agent on the host and
	 * handed to the guest read-only as fw_cfg entries opt/parley/NAME
	 * (cfg[0] is `run`, the script init runs). */
	unsigned ncfg;
	struct { char name[32]; char path[PATH_MAX]; } cfg[VMHOST_CFG_MAX];
	unsigned mem_mib;           /* 0: 192 */
	unsigned vcpus;             /* 0: 1 */
	char cmdline_extra[128];    /* more kernel parameters (tests: a
				     * guest that ignores hot-unplug boots
				     * with acpiphp.disable=1) */
	/* VM_ACCEL_AUTO: KVM where /dev/kvm is usable, else TCG. A host's
	 * KVM may run parley's thin partitions and still not boot Linux
	 * (a nested KVM that refuses the MSRs Linux sets): say tcg there. */
	unsigned accel;
	/* A second virtio-serial port, org.parley.echo.0 (STATE/vm/NAME.echo):
	 * the bench's bare echo, the baseline of a notify round trip. */
	bool echo_port;
};

enum { VM_ACCEL_AUTO = 0, VM_ACCEL_KVM = 1, VM_ACCEL_TCG = 2 };

/* "auto", "kvm", "tcg" -> VM_ACCEL_*, or -EINVAL. */
int vm_accel_parse(const char *s);

struct vmhost {
	void *conn;                 /* virConnectPtr */
	char uri[PATH_MAX + 64];
	char dir[PATH_MAX];         /* STATE/vm: sockets, consoles */
	/* QEMU's group when each VM's QEMU runs as a uid of its own (the
	 * agent is root: VMHOST_QEMU_USER's group); else -1 (QEMU runs as the
	 * agent's user). Files QEMU opens itself (kernel, initrd, config
	 * files: copied into STATE/vm/NAME.boot, a directory of the VM's uid)
	 * and read-only sections it re-opens are made readable to this group,
	 * nothing writable; the per-VM directories keep other VMs' QEMUs out. */
	gid_t qemu_gid;
	uint32_t uid_first, uid_last;   /* the per-VM uids (qemu_gid != -1) */
	/* A system libvirtd (uri given): the security drivers it stacks
	 * besides DAC that confine QEMU to the files its domain XML names
	 * (VMHOST_SEC_*): each domain of ours says type='none' for them
	 * (the agent's own monitor socket and boot copies are not in the
	 * XML's devices; QEMU keeps its own uid, no capabilities, seccomp). */
	unsigned unconfine;
	bool system;                /* a system libvirtd (uri given) */
};

enum { VMHOST_SEC_SELINUX = 1, VMHOST_SEC_APPARMOR = 2 };

/* A URI the agent takes (--libvirt-uri): qemu:///system or
 * qemu+unix:///system[?...] — a system libvirtd on this host. -EINVAL
 * naming what it takes otherwise. */
int vmhost_uri_check(const char *uri, struct parley_err *err);

/* A connected system libvirtd (vmhost_open with a uri): what it does
 * differently from the embedded driver, learnt from it and refused at
 * once (naming the qemu.conf setting) when the agent's VMs cannot work
 * under it. */
int vmhost_system_check(struct vmhost *vh, struct parley_err *err);
/* Its part that asks the daemon behind the socket sock: root, or -EPERM;
 * its /etc/libvirt/qemu.conf as the daemon sees it (*conf, malloc'd, ""
 * for none) while that pid is still the daemon (-ESRCH, -ENOENT: it went
 * meanwhile, or the process that listened there is gone); *pid its pid. */
int vmhost_daemon_conf(const char *sock, pid_t *pid, char **conf,
		       struct parley_err *err);
/* A pidfd of the process behind the connected socket sock (its
 * credentials in *uc): the socket's own (SO_PEERPIDFD, that process
 * whatever became of its pid), else — a kernel before 6.5 — one opened
 * by pid and checked against the socket again. -ESRCH for a peer that
 * is gone (never looked up by a pid that may be another's by now), or
 * another -errno. */
int vmhost_peer_pidfd(int sock, struct ucred *uc);
/* The last `key = N` of a libvirt config file's text (a daemon's
 * qemu.conf: hostile bytes), or dflt: lines, `#` comments, the key whole,
 * a decimal number ended by a blank, a comment or the line's end; any
 * other line is not one of ours. */
long vmhost_conf_int(const char *text, const char *key, long dflt);

/* vmhost_open's copy of the range (vmuid.c): checked again (a range set
 * before the host's users changed). */
int vmuid_range_take(uint32_t *first, uint32_t *last, struct parley_err *err);
/* The uids each VM's QEMU may take (the agent is root): "FIRST-LAST" as
 * numbers, 0 < FIRST <= LAST < 2^32-1. Refused (-EINVAL, -EEXIST, the
 * error naming why) when it holds root, a user the host knows (passwd,
 * through NSS) or a uid of the vmm processes' range. Default
 * VMHOST_UID_FIRST..LAST; vmhost_open checks the range again. */
int vmhost_parse_uid_range(const char *s, uint32_t *first, uint32_t *last);
int vmhost_set_uid_range(uint32_t first, uint32_t last,
			 struct parley_err *err);

/* Connect: uri, or NULL for qemu:///embed?root=STATE/libvirt (its
 * qemu.conf written first: no security driver, stdio to files, QEMU's
 * capabilities cleared, its seccomp sandbox on). When the agent runs as
 * root each VM's QEMU runs as a uid of its own (vmhost_vm_uid) with
 * VMHOST_QEMU_USER's group — an error if that user is missing or the uid
 * range holds a host user — under either. A uri (vmhost_uri_check: a
 * system libvirtd of this host) needs root, and a daemon that passes
 * vmhost_system_check. */
int vmhost_open(struct vmhost *vh, const char *state_dir, const char *uri,
		struct parley_err *err);
void vmhost_close(struct vmhost *vh);

/* The uid VM name's QEMU runs as (the agent is root): its record
 * STATE/vm/uids/NAME, made at the VM's first start when alloc (the lowest
 * uid of the range no record holds and no host user has). -ENOENT without
 * a record and !alloc, -EAGAIN when the range is used up, -EEXIST when
 * the host has since given the uid to a user, -ENOTSUP when QEMU runs as
 * the agent's user. */
int vmhost_vm_uid(struct vmhost *vh, const char *name, bool alloc, uid_t *uid,
		  struct parley_err *err);

/* fd, connected to VM name's monitor (vmhost_mon_path): is the peer that
 * VM's QEMU (its uid, SO_PEERCRED)? The monitor's directory is the VM's
 * own, so its QEMU could put a symbolic link there in place of its socket
 * (to another VM's monitor): 0, or -EPERM naming the uid found. 0 when
 * QEMU runs as the agent's user (nothing to tell apart). */
int vmhost_mon_check(struct vmhost *vh, const char *name, int fd,
		     struct parley_err *err);

/* The domain XML for s (for the tests and the log), its QEMU as uid
 * (a static DAC seclabel with the group qemu_gid; none when uid is -1).
 * -ENOSPC if cap is too small, -EINVAL for a path XML cannot carry as
 * written. */
int vmhost_xml(const struct vmhost *vh, const struct vm_spec *s, uid_t uid,
	       char *out, size_t cap, struct parley_err *err);

/* The file QEMU serves as VM s's config file i: its copy in
 * STATE/vm/NAME.boot when QEMU runs as another user (vmhost_start makes
 * it), else the spec's own path. What the VM boots with is measured
 * there: the spec's file may change between the agent's measurement and
 * the copy. */
void vmhost_boot_cfg_path(const struct vmhost *vh, const struct vm_spec *s,
			  unsigned i, char *out, size_t cap);

/* Start s as a transient domain (gone once it stops: nothing to clean in
 * libvirt's definitions). */
int vmhost_start(struct vmhost *vh, const struct vm_spec *s,
		 struct parley_err *err);

/* Is s->name's domain running? 1, 0, or -errno. */
int vmhost_running(struct vmhost *vh, const char *name);

/* Destroy (kill) the domain: 0, -ENOENT if there is none. */
int vmhost_destroy(struct vmhost *vh, const char *name, struct parley_err *err);

/* Connect to the host end of the VM's control port, waiting up to
 * timeout_ms for QEMU to listen. The fd (O_CLOEXEC, blocking), or -errno. */
int vmhost_ctl_connect(struct vmhost *vh, const char *name, int timeout_ms,
		       struct parley_err *err);

/* The same for the echo port (spec.echo_port). */
int vmhost_echo_connect(struct vmhost *vh, const char *name, int timeout_ms,
			struct parley_err *err);

/* The agent's own QMP monitor socket of the VM (STATE/vm/NAME.mon/qmp,
 * QEMU listening: agent/vm/qmp.h; the directory the VM's uid's, 0700). */
void vmhost_mon_path(const struct vmhost *vh, const char *name, char *out,
		     size_t cap);

/* The VM's serial console log (STATE/vm/NAME.console). */
void vmhost_console_path(const struct vmhost *vh, const char *name, char *out,
			 size_t cap);

/* One QMP command (JSON text) through the QEMU monitor, with nfds
 * descriptors passed along (SCM_RIGHTS: virDomainQemuMonitorCommandWithFiles,
 * for getfd and add-fd). *reply (malloc'd, may be NULL) is QEMU's JSON
 * answer as it came; a QMP error ({"error": ...}) is -EIO with its text
 * in err. */
int vmhost_qmp(struct vmhost *vh, const char *name, const char *cmd,
	       const int *fds, unsigned nfds, char **reply,
	       struct parley_err *err);

/* Start-up: every running domain carrying our metadata is adopted if
 * keep(name) says so (its name without VMHOST_PREFIX), else destroyed.
 * Counts in *adopted and *destroyed. */
int vmhost_reconcile(struct vmhost *vh, bool (*keep)(const char *name, void *ctx),
		     void *ctx, unsigned *adopted, unsigned *destroyed,
		     struct parley_err *err);

#endif
