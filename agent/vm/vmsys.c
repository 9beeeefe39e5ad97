/*
 * The agent's VMs under a system libvirtd (vmhost.h: vmhost_system_check):
 * what such a daemon does differently from the embedded driver the agent
 * configures itself, learnt from the daemon at the agent's start.
 *
 * Tried (tests/test_vm_system.c, libvirt 9.0, libvirt's stock settings):
 * stdio through virtlogd (the console file is virtlogd's, QEMU writes a
 * pipe), dynamic ownership on (our domains' relabel='no' keeps it off the
 * agent's files), QEMU in a mount namespace with a private /dev (the
 * agent's paths — STATE/vm, boot copies — are outside /dev), cgroups
 * through cgroupfs (machine/qemu-N-NAME.libvirt-qemu, removed with the
 * domain), <qemu:commandline> allowed (the domain tainted). All of that
 * works as it is. What would not keep the agent's promises is refused
 * here, at the agent's start, naming the qemu.conf setting: QEMU with
 * capabilities or without its seccomp sandbox, or a daemon that refuses
 * the unconfined domains the agent asks for where SELinux or AppArmor
 * stack. A daemon that does not run as root (a session daemon behind a
 * socket) cannot give each VM's QEMU a uid of its own: refused too.
 */
#include "agent/vm/vmhost.h"
#include "agent/vm/vmxml.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <linux/openat2.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/log.h"

/* The daemon's socket: the URI's socket= (vmhost_uri_check let nothing
 * but printable ASCII through), else where a system daemon listens. */
static void daemon_sock(const char *uri, char *out, size_t cap)
{
	const char *s = strstr(uri, "?socket=");
	if (!s)
		s = strstr(uri, "&socket=");
	if (s) {
		s += 8;
		snprintf(out, cap, "%.*s", (int)strcspn(s, "&"), s);
		return;
	}
	/* libvirt 9's client: the modular daemon's socket where there is
	 * one, else libvirtd's */
	snprintf(out, cap, "%s", access("/run/libvirt/virtqemud-sock", F_OK)
		 == 0 ? "/run/libvirt/virtqemud-sock"
		      : "/run/libvirt/libvirt-sock");
}

/* The daemon behind sock: its pid and uid (SO_PEERCRED), and a pidfd of
 * it (*pidfd, the caller's to close) to tell later whether that pid is
 * still the daemon. */
static int daemon_cred(const char *sock, struct ucred *uc, int *pidfd,
		       struct parley_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(sock) >= sizeof(sa.sun_path))
		return perr(err, -ENAMETOOLONG, "%s: too long for a socket",
			    sock);
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return perr(err, -errno, "socket: %s", strerror(errno));
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno
									: 0;
	if (!rc && (*pidfd = vmhost_peer_pidfd(fd, uc)) < 0)
		rc = *pidfd;
	close(fd);
	if (rc == -ESRCH)
		return perr(err, rc, "libvirt's socket %s: the process that "
			    "listened there (pid %d) is gone", sock,
			    (int)uc->pid);
	if (rc == -EPERM || rc == -ENOSYS)
		return perr(err, rc, "libvirt's socket %s: no pidfd of the "
			    "daemon (%s: pidfd_open needs Linux 5.3 and a "
			    "seccomp filter that lets it through)", sock,
			    strerror(-rc));
	return rc ? perr(err, rc, "libvirt's socket %s: %s", sock,
			 strerror(-rc)) : 0;
}

/* The daemon's /etc/libvirt/qemu.conf, read where the daemon sees it
 * (/proc/PID/root: a daemon in a container or a namespace of its own
 * reads its own); "" when it has none (libvirt's built-in defaults, what
 * the file libvirt-daemon-system installs says too: all of it comments).
 * Resolved by the kernel inside that root (RESOLVE_IN_ROOT): a symbolic
 * link there — /etc/libvirt -> /srv/conf, absolute — means the daemon's
 * /srv/conf, never the agent's. */
static int read_conf(pid_t pid, int pidfd, char *path, size_t pcap,
		     char **text, struct parley_err *err)
{
	char root[64];
	snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	snprintf(path, pcap, "%s/etc/libvirt/qemu.conf", root);
	*text = NULL;
	int dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return perr(err, -errno, "%s: %s", root, strerror(errno));
	/* That root is the daemon's only if the pid still is: a daemon that
	 * exited since its credentials were read (its pid free for another
	 * process, whose root would be read instead) is refused. */
	struct pollfd pp = { .fd = pidfd, .events = POLLIN };
	if (poll(&pp, 1, 0) != 0) {
		close(dfd);
		return perr(err, -ESRCH, "the libvirt daemon (pid %d) exited "
			    "while the agent read its settings", (int)pid);
	}
	/* O_NONBLOCK: a FIFO there cannot block the agent's start */
	struct open_how how = {
		.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	/* (EAGAIN: a rename or mount in that tree raced the lookup, which
	 * the kernel then refuses to vouch for; asked again) */
	int fd, tries = 0;
	do
		fd = (int)syscall(SYS_openat2, dfd, "etc/libvirt/qemu.conf",
				  &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && ++tries < 16);
	int rc = fd < 0 ? -errno : 0;
	close(dfd);
	if (rc == -ENOENT) {
		*text = strdup("");
		return *text ? 0 : perr(err, -ENOMEM, "out of memory");
	}
	if (rc)
		return perr(err, rc, "%s: %s%s", path, strerror(-rc),
			    rc == -ENOSYS ? " (openat2: Linux 5.6 or later, "
			    "and a seccomp filter that lets it through)" : "");
	uint8_t *b = NULL;
	size_t n = 0;
	/* Debian's is 37 KiB; a larger one is refused whole (-EFBIG), never
	 * read in part: a setting past a cut would go unseen */
	rc = fd_read_all(fd, path, 1 << 20, &b, &n, err);
	close(fd);
	*text = (char *)b;
	return rc;
}

/* The last `key = N` of a libvirt config file (lines; `#` comments; the
 * number's sign and digits), or dflt. Nothing else of the file matters
 * here, and a line this does not understand is not one of ours. */
long vmhost_conf_int(const char *text, const char *key, long dflt)
{
	long v = dflt;
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *p = l;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, key, kl))
			continue;
		p += kl;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p++ != '=')
			continue;
		while (*p == ' ' || *p == '\t')
			p++;
		char *e;
		long x = strtol(p, &e, 10);
		if (e != p && (*e == 0 || strchr(" \t\r\n#", *e)))
			v = x;
	}
	return v;
}

/* Can the daemon's QEMU user (its DAC base label "+UID:+GID", with that
 * user's groups) open /dev/kvm? Asked of the kernel in a child with
 * those ids, as libvirt asks it. */
static bool kvm_for(const char *caps, unsigned *uid, unsigned *gid)
{
	if (!vmxml_kvm_label(caps, uid, gid))
		return true; /* nothing to say */
	gid_t groups[64];
	int ng = 64;
	struct passwd *pw = getpwuid(*uid);
	if (!pw || getgrouplist(pw->pw_name, *gid, groups, &ng) < 0)
		ng = 0;
	pid_t pid = fork();
	if (pid < 0)
		return true;
	if (pid == 0)
		/* system calls only: the agent has threads */
		_exit(syscall(SYS_setgroups, ng, groups) == 0 &&
		      syscall(SYS_setresgid, *gid, *gid, *gid) == 0 &&
		      syscall(SYS_setresuid, *uid, *uid, *uid) == 0 &&
		      access("/dev/kvm", R_OK | W_OK) == 0 ? 0 : 1);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return true;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int vmhost_daemon_conf(const char *sock, pid_t *pid, char **conf,
		       struct parley_err *err)
{
	struct ucred uc;
	char path[64];
	int pidfd = -1;
	*conf = NULL;
	int rc = daemon_cred(sock, &uc, &pidfd, err);
	if (rc)
		return rc;
	*pid = uc.pid;
	if (uc.uid != 0)
		rc = perr(err, -EPERM, "the libvirt daemon at %s runs as uid "
			  "%u, not root: it cannot run each VM's QEMU as a "
			  "uid of its own (a system libvirtd runs as root)",
			  sock, (unsigned)uc.uid);
	else
		rc = read_conf(uc.pid, pidfd, path, sizeof(path), conf, err);
	close(pidfd);
	return rc;
}

int vmhost_system_check(struct vmhost *vh, struct parley_err *err)
{
	char *caps = virConnectGetCapabilities(vh->conn);
	if (!caps) {
		const char *m = virGetLastErrorMessage();
		return perr(err, -EIO, "%s: capabilities: %s", vh->uri,
			    m ? m : "libvirt error");
	}
	vh->unconfine = vmxml_sec_models(caps);
	/* Slow, not wrong: a daemon whose qemu.conf user cannot open
	 * /dev/kvm on a host that has it probes QEMU's capabilities again
	 * at every lookup (tens of seconds per VM start). Said, once. */
	unsigned ku, kg;
	if (access("/dev/kvm", F_OK) == 0 && !kvm_for(caps, &ku, &kg))
		log_warn("libvirt %s: its QEMU user (uid %u, gid %u) cannot "
			 "open /dev/kvm: libvirt probes QEMU again at every "
			 "start of a VM (tens of seconds each); give it "
			 "/dev/kvm (Debian's libvirt-daemon-system puts "
			 "libvirt-qemu in group kvm)", vh->uri, ku, kg);
	free(caps);
	char sock[512];
	struct ucred uc;
	daemon_sock(vh->uri, sock, sizeof(sock));
	char *conf = NULL;
	int rc = vmhost_daemon_conf(sock, &uc.pid, &conf, err);
	if (rc)
		return rc;
	/* What the embedded driver's qemu.conf says and the agent's
	 * promises rest on (agent/vm/README.md): QEMU without capabilities,
	 * under its seccomp sandbox; our domains unconfined by SELinux or
	 * AppArmor (DAC keeps each its own uid) — which a daemon that
	 * requires confinement refuses at every start. Stock: 1, -1 (on
	 * where QEMU has it: every QEMU libvirt 9 supports), 0. */
	char bad[512] = "";
	size_t bl = 0;
	if (vmhost_conf_int(conf, "clear_emulator_capabilities", 1) == 0)
		bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				       "%sclear_emulator_capabilities = 0 "
				       "(QEMU would keep capabilities)",
				       bl ? "; " : "");
	if (vmhost_conf_int(conf, "seccomp_sandbox", -1) == 0)
		bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				       "%sseccomp_sandbox = 0 (QEMU without its "
				       "seccomp sandbox)", bl ? "; " : "");
	if (vh->unconfine &&
	    vmhost_conf_int(conf, "security_require_confined", 0) == 1)
		bl += (size_t)snprintf(bad + bl, sizeof(bad) - bl,
				       "%ssecurity_require_confined = 1 (the "
				       "agent's domains are not confined by %s: "
				       "their monitor socket and boot copies "
				       "are none of the XML's devices)",
				       bl ? "; " : "",
				       vh->unconfine & VMHOST_SEC_SELINUX
				       ? "SELinux" : "AppArmor");
	free(conf);
	if (bl)
		return perr(err, -EPERM, "the libvirt daemon at %s (pid %d): "
			    "its /etc/libvirt/qemu.conf has %s; the agent's "
			    "VMs need the stock settings there", sock,
			    (int)uc.pid, bad);
	log_info("libvirt %s: a system daemon (pid %d)%s%s", vh->uri,
		 (int)uc.pid, vh->unconfine ? "; our domains unconfined by " : "",
		 vh->unconfine & VMHOST_SEC_SELINUX ? "SELinux"
		 : vh->unconfine ? "AppArmor" : "");
	return 0;
}
