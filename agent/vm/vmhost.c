/* The agent's libvirt VMs (vmhost.h). */
#include "agent/vm/vmhost.h"
#include "agent/vm/vmxml.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <parley/vmctl.h>

#include "common/jsonv.h"
#include "common/log.h"
#include "agent/vmm_jail.h"

static int lv_err(struct parley_err *err, const char *what, const char *name)
{
	const char *m = virGetLastErrorMessage();
	return perr(err, -EIO, "%s %s: %s", what, name ? name : "",
		    m ? m : "libvirt error");
}

/* libvirt prints its errors to stderr by default; they reach the caller
 * through virGetLastError instead. */
static void quiet(void *ud, virErrorPtr e)
{
	(void)ud;
	(void)e;
}

/* The embedded driver needs an event loop registered and running (it
 * watches QEMU's monitor through it). libvirt's default one, on a thread
 * of its own for the life of the process: the agent's libevent loop never
 * blocks on it, nor it on the agent. */
static int loop_rc;
static void *loop_main(void *arg)
{
	(void)arg;
	for (;;)
		virEventRunDefaultImpl();
	return NULL;
}
static void loop_start(void)
{
	pthread_t t;
	loop_rc = virEventRegisterDefaultImpl() < 0 ? -EIO
		: -pthread_create(&t, NULL, loop_main, NULL);
	if (!loop_rc)
		pthread_detach(t);
}

static int mkdir_one(const char *p)
{
	return mkdir(p, 0700) == 0 || errno == EEXIST ? 0 : -errno;
}

/* A directory QEMU (group gid) must pass through on its way to the files
 * it opens. One of the agent's own (STATE/vm, the libvirt root): group
 * gid, search permission only (0710). The state directory the operator
 * (or a test) made keeps its owner, group and mode, plus search
 * permission for others: additive, and it lists nothing. */
static int share_dir(const char *p, gid_t gid, bool own)
{
	struct stat st;
	if (stat(p, &st) < 0)
		return -errno;
	if (own)
		return chown(p, (uid_t)-1, gid) < 0 || chmod(p, 0710) < 0
			? -errno : 0;
	if ((st.st_mode & 001) || (st.st_gid == gid && (st.st_mode & 010)))
		return 0;
	return chmod(p, (st.st_mode & 07777) | 001) < 0 ? -errno : 0;
}

/* Every directory above the state directory must let QEMU pass (search
 * permission for its group or for others: no per-VM uid owns any of
 * them): the agent does not change directories it does not own, so one
 * that does not is an error naming it, rather than QEMU failing later on
 * a file it cannot reach. */
static int parents_passable(const char *state_dir, gid_t gid,
			    struct parley_err *err)
{
	char p[PATH_MAX];
	if (!realpath(state_dir, p))
		return perr(err, -errno, "%s: %s", state_dir, strerror(errno));
	for (char *slash = strrchr(p, '/'); slash; slash = strrchr(p, '/')) {
		*slash = 0;
		const char *d = p[0] ? p : "/";
		struct stat st;
		if (stat(d, &st) < 0)
			return perr(err, -errno, "%s: %s", d, strerror(errno));
		bool ok = st.st_gid == gid ? (st.st_mode & 0010) :
			  (st.st_mode & 0001);
		if (!ok)
			return perr(err, -EACCES, "%s (mode %04o): QEMU (its "
				    "per-VM uids, group " VMHOST_QEMU_USER ") "
				    "cannot pass through it to the state "
				    "directory %s; give it search permission "
				    "(chmod o+x) or use a state directory QEMU "
				    "can reach", d,
				    (unsigned)(st.st_mode & 07777), state_dir);
		if (!p[0])
			break;
	}
	return 0;
}

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; Debian 12's headers predate it */
#endif

int vmhost_peer_pidfd(int sock, struct ucred *uc)
{
	socklen_t l = sizeof(*uc);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, uc, &l) < 0)
		return -errno;
	int pfd = -1;
	l = sizeof(pfd);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pfd, &l) == 0)
		return pfd;
	/* (EINVAL or ENODATA from 6.5 on: the peer is gone) */
	if (errno != ENOPROTOOPT)
		return errno == EINVAL || errno == ENODATA ? -ESRCH : -errno;
	if (uc->pid <= 0)
		return -ESRCH;
	pfd = (int)syscall(SYS_pidfd_open, uc->pid, 0);
	if (pfd < 0)
		return -errno;
	/* Still the peer (not a pid reused after it died meanwhile). */
	struct ucred again;
	l = sizeof(again);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &again, &l) < 0 ||
	    again.pid != uc->pid || kill(uc->pid, 0) < 0) {
		close(pfd);
		return -ESRCH;
	}
	return pfd;
}

int vmhost_mon_check(struct vmhost *vh, const char *name, int fd,
		     struct parley_err *err)
{
	if (vh->qemu_gid == (gid_t)-1)
		return 0;
	uid_t want;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int rc = vmhost_vm_uid(vh, name, false, &want, err);
	if (rc)
		return rc;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return perr(err, -errno, "VM %s: monitor's peer: %s", name,
			    strerror(errno));
	if (cr.uid != want)
		return perr(err, -EPERM, "VM %s: the process behind its monitor "
			    "socket runs as uid %u, not its QEMU's %u", name,
			    (unsigned)cr.uid, (unsigned)want);
	return 0;
}

/* Can a process of uid and gid (no other groups: the DAC seclabel sets
 * none) open /dev/kvm for reading and writing? Asked of the kernel in a
 * child with those ids (ACLs count). */
static bool kvm_usable_as(uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		/* system calls only: the agent has threads */
		_exit(syscall(SYS_setgroups, 0, NULL) == 0 &&
		      syscall(SYS_setresgid, gid, gid, gid) == 0 &&
		      syscall(SYS_setresuid, uid, uid, uid) == 0 &&
		      access("/dev/kvm", R_OK | W_OK) == 0 ? 0 : 1);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return false;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	int ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -EIO;
}

/* The embedded driver's qemu.conf. No SELinux or AppArmor labels; as
 * root libvirt still stacks its DAC driver (QEMU's uid and gid: each
 * domain's own static seclabel, see vmhost_xml), but without dynamic
 * ownership it chowns none of the agent's files (nor remembers owners in
 * xattrs) — only the directories it makes for the domain (its master key
 * in them), to the domain's uid: QEMU gets what it may use by descriptor
 * (console, control socket: libvirt passes them; channel sections: the
 * agent) or as copies in a directory of its uid. QEMU without
 * capabilities and under its seccomp sandbox (no spawning, no privilege
 * elevation). As root, the default user is VMHOST_QEMU_USER (no domain
 * of ours runs as it: it owns libvirt's shared directories) and the
 * default group root, so that those directories (some group-writable)
 * are nothing QEMU's group may write. */
static const char conf_common[] =
	"security_driver = \"none\"\n"
	"dynamic_ownership = 0\n"
	"remember_owner = 0\n"
	"stdio_handler = \"file\"\n"
	"clear_emulator_capabilities = 1\n"
	"seccomp_sandbox = 1\n";

/* The URIs the agent takes besides its embedded default: a system
 * libvirtd on this host (qemu:///system, or qemu+unix:///system with its
 * socket named). Not another host's (the agent hands QEMU paths and
 * descriptors of its own host), not a session daemon (it runs QEMU as its
 * own user: no uid per VM), not an embedded root of the operator's (the
 * agent's own is STATE/libvirt: leave the option out). */
int vmhost_uri_check(const char *uri, struct parley_err *err)
{
	const char *rest = NULL;
	if (!strncmp(uri, "qemu:///system", 14))
		rest = uri + 14;
	else if (!strncmp(uri, "qemu+unix:///system", 19))
		rest = uri + 19;
	if (!rest || (*rest && *rest != '?'))
		return perr(err, -EINVAL, "libvirt URI \"%.200s\": the agent "
			    "takes qemu:///system or qemu+unix:///system"
			    "[?socket=PATH] (a system libvirtd on this host; "
			    "no other host, no session daemon; without the "
			    "option, its embedded driver)", uri);
	for (const char *c = uri; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f)
			return perr(err, -EINVAL, "libvirt URI: a blank or "
				    "control character in it");
	if (strlen(uri) >= sizeof(((struct vmhost *)0)->uri))
		return perr(err, -ENAMETOOLONG, "libvirt URI too long");
	return 0;
}

/* Root (any URI): each VM's QEMU runs as a uid of its own with
 * VMHOST_QEMU_USER's group; the uid range checked again (the host may
 * have users in it now), the directories QEMU passes through on the way
 * to its files made passable for that group, the uid records' directory
 * made. *quid: that user's uid (the embedded driver's default user). */
static int root_prepare(struct vmhost *vh, const char *state_dir,
			const char *root, uid_t *quid, struct parley_err *err)
{
	struct passwd *pw = getpwnam(VMHOST_QEMU_USER);
	if (!pw || pw->pw_uid == 0 || pw->pw_gid == 0)
		return perr(err, -ENOENT, "no user " VMHOST_QEMU_USER " (not "
			    "root) whose group QEMU runs with: ./dev deps or "
			    "the parley-agent package creates it");
	*quid = pw->pw_uid;
	vh->qemu_gid = pw->pw_gid;
	int rc = vmuid_range_take(&vh->uid_first, &vh->uid_last, err);
	if (rc)
		return rc;
	/* QEMU reaches its boot copies in STATE/vm/NAME.boot (and, embedded,
	 * libvirt's per-domain files under ROOT): search (not read)
	 * permission on the way, for its group. */
	if ((rc = parents_passable(state_dir, vh->qemu_gid, err)))
		return rc;
	char uids[PATH_MAX + 16];
	snprintf(uids, sizeof(uids), "%s/uids", vh->dir);
	if ((rc = share_dir(state_dir, vh->qemu_gid, false)) ||
	    (rc = share_dir(vh->dir, vh->qemu_gid, true)) ||
	    (root && (rc = share_dir(root, vh->qemu_gid, true))) ||
	    (rc = mkdir_one(uids)))
		return perr(err, rc, "%s: %s", state_dir, strerror(-rc));
	return 0;
}

int vmhost_open(struct vmhost *vh, const char *state_dir, const char *uri,
		struct parley_err *err)
{
	char root[PATH_MAX], etc[PATH_MAX], conf[PATH_MAX];
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	memset(vh, 0, sizeof(*vh));
	vh->qemu_gid = (gid_t)-1;
	int rc = uri ? vmhost_uri_check(uri, err) : 0;
	if (rc)
		return rc;
	/* Each VM's QEMU as a uid of its own needs a root agent; a system
	 * libvirtd without that would run them all as its qemu.conf user,
	 * which the agent's files are not given to. */
	if (uri && geteuid() != 0)
		return perr(err, -EPERM, "libvirt URI %s: a system libvirtd "
			    "needs the agent to run as root (each VM's QEMU "
			    "as a uid of its own)", uri);
	/* The embedded driver logs to stderr at its default level (every
	 * domain "tainted: custom-monitor", every lookup of a VM that does
	 * not run): none of it, unless the operator set
	 * LIBVIRT_LOG_OUTPUTS; errors reach the caller through
	 * virGetLastError. (Read when libvirt initialises: before the first
	 * call into it.) */
	setenv("LIBVIRT_LOG_OUTPUTS", "4:file:/dev/null", 0);
	virSetErrorFunc(NULL, quiet);
	pthread_once(&once, loop_start);
	if (loop_rc)
		return perr(err, loop_rc, "libvirt's event loop: %s",
			    strerror(-loop_rc));
	if (snprintf(vh->dir, sizeof(vh->dir), "%s/vm", state_dir) >=
		    (int)sizeof(vh->dir) ||
	    snprintf(root, sizeof(root), "%s/libvirt", state_dir) >=
		    (int)sizeof(root))
		return perr(err, -ENAMETOOLONG, "state directory too long");
	rc = mkdir_one(vh->dir);
	if (rc)
		return perr(err, rc, "%s: %s", vh->dir, strerror(-rc));
	/* STATE/vm as an absolute path: in QEMU's options and in our
	 * domains' metadata, this agent's mark (owned_name) */
	char abs[PATH_MAX];
	if (!realpath(vh->dir, abs))
		return perr(err, -errno, "%s: %s", vh->dir, strerror(errno));
	snprintf(vh->dir, sizeof(vh->dir), "%s", abs);
	vh->system = uri != NULL;
	uid_t quid = 0;
	if (!uri) {
		snprintf(etc, sizeof(etc), "%s/etc", root);
		if ((rc = mkdir_one(root)) || (rc = mkdir_one(etc)))
			return perr(err, rc, "%s: %s", etc, strerror(-rc));
	}
	if (geteuid() == 0 &&
	    (rc = root_prepare(vh, state_dir, uri ? NULL : root, &quid, err)))
		return rc;
	if (uri) {
		snprintf(vh->uri, sizeof(vh->uri), "%s", uri);
	} else {
		/* The embedded driver reads ROOT/etc/qemu.conf. */
		char text[1024];
		snprintf(conf, sizeof(conf), "%s/qemu.conf", etc);
		if (geteuid() == 0)
			snprintf(text, sizeof(text), "%suser = \"+%u\"\n"
				 "group = \"+0\"\n", conf_common,
				 (unsigned)quid);
		else
			snprintf(text, sizeof(text), "%s", conf_common);
		if ((rc = write_file(conf, text)))
			return perr(err, rc, "%s: %s", conf, strerror(-rc));
		snprintf(vh->uri, sizeof(vh->uri), "qemu:///embed?root=%s", root);
	}
	vh->conn = virConnectOpen(vh->uri);
	if (!vh->conn)
		return lv_err(err, "cannot connect to", vh->uri);
	if (uri && (rc = vmhost_system_check(vh, err))) {
		vmhost_close(vh);
		return rc;
	}
	return 0;
}

void vmhost_close(struct vmhost *vh)
{
	if (vh->conn)
		virConnectClose(vh->conn);
	vh->conn = NULL;
}

static void sock_path_ext(const struct vmhost *vh, const char *name,
			  const char *ext, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s.%s", vh->dir, name, ext);
}

static void sock_path(const struct vmhost *vh, const char *name, char *out,
		      size_t cap)
{
	sock_path_ext(vh, name, "ctl", out, cap);
}

void vmhost_mon_path(const struct vmhost *vh, const char *name, char *out,
		     size_t cap)
{
	snprintf(out, cap, "%s/%s.mon/qmp", vh->dir, name);
}

void vmhost_console_path(const struct vmhost *vh, const char *name, char *out,
			 size_t cap)
{
	snprintf(out, cap, "%s/%s.console", vh->dir, name);
}

/* Paths go into XML attributes and elements as written: only the bytes
 * that need no escaping, and absolute. */
static bool xml_path_ok(const char *p)
{
	if (p[0] != '/')
		return false;
	for (; *p; p++)
		if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&' ||
		    *p == '\'' || *p == '"' || *p == 0x7f)
			return false;
	return true;
}

int vmhost_xml(const struct vmhost *vh, const struct vm_spec *s, uid_t uid,
	       char *out, size_t cap, struct parley_err *err)
{
	char sock[PATH_MAX + 64], con[PATH_MAX + 64], echo[PATH_MAX + 64],
		mon[PATH_MAX + 64], fw[2048] = "";
	size_t fl = 0;
	if (!jv_name_valid(s->name, strlen(s->name), sizeof(s->name)))
		return perr(err, -EINVAL, "VM name '%s' not allowed", s->name);
	if (!xml_path_ok(s->kernel) || !xml_path_ok(s->initrd))
		return perr(err, -EINVAL, "VM %s: kernel and initrd must be "
			    "absolute paths without quotes or <>&", s->name);
	if (s->ncfg > VMHOST_CFG_MAX)
		return perr(err, -EINVAL, "VM %s: too many config files",
			    s->name);
	for (unsigned i = 0; i < s->ncfg; i++) {
		if (!jv_name_valid(s->cfg[i].name, strlen(s->cfg[i].name),
				   sizeof(s->cfg[i].name)) ||
		    !xml_path_ok(s->cfg[i].path))
			return perr(err, -EINVAL, "VM %s: config file %u: bad "
				    "name or path", s->name, i);
		int n = snprintf(fw + fl, sizeof(fw) - fl,
				 "<entry name='opt/parley/%s' file='%s'/>",
				 s->cfg[i].name, s->cfg[i].path);
		if (n < 0 || (size_t)n >= sizeof(fw) - fl)
			return perr(err, -ENOSPC, "VM %s: config too long",
				    s->name);
		fl += (size_t)n;
	}
	for (const char *c = s->cmdline_extra; *c; c++)
		if (*c < 0x20 || *c > 0x7e || strchr("<>&'\"", *c))
			return perr(err, -EINVAL, "VM %s: kernel parameters "
				    "must be printable, without quotes or <>&",
				    s->name);
	sock_path(vh, s->name, sock, sizeof(sock));
	sock_path_ext(vh, s->name, "echo", echo, sizeof(echo));
	vmhost_console_path(vh, s->name, con, sizeof(con));
	vmhost_mon_path(vh, s->name, mon, sizeof(mon));
	/* The monitor's path goes into a QEMU option: commas would split
	 * it (QEMU's escape, ",,", is not worth the risk). */
	if (!xml_path_ok(sock) || strchr(mon, ','))
		return perr(err, -EINVAL, "state directory %s cannot go into "
			    "XML or a QEMU option as written", vh->dir);
	/* The VM's QEMU as its own uid, with QEMU's group and no other:
	 * libvirt's DAC driver (stacked as root whatever security_driver
	 * says) sets them when it starts QEMU, and gives the directories it
	 * makes for the domain to them; relabel='no': it chowns nothing else
	 * (the agent's files stay as they are). */
	char seclabel[320] = "";
	if (uid != (uid_t)-1)
		snprintf(seclabel, sizeof(seclabel), "<seclabel type='static' "
			 "model='dac' relabel='no'><label>+%u:+%u</label>"
			 "</seclabel>%s%s", (unsigned)uid, (unsigned)vh->qemu_gid,
			 /* a system libvirtd's confining drivers: none for
			  * our domains (vmhost.h: unconfine) */
			 vh->unconfine & VMHOST_SEC_SELINUX ?
			 "<seclabel type='none' model='selinux'/>" : "",
			 vh->unconfine & VMHOST_SEC_APPARMOR ?
			 "<seclabel type='none' model='apparmor'/>" : "");
	/* auto: KVM where QEMU itself may open /dev/kvm — as its own uid it
	 * is in no group that /dev/kvm's mode names (root:kvm 0660 on
	 * Debian) unless the host gave QEMU's group access (an ACL). */
	bool kvm = s->accel == VM_ACCEL_KVM || (s->accel == VM_ACCEL_AUTO &&
		    access("/dev/kvm", R_OK | W_OK) == 0 &&
		    (uid == (uid_t)-1 || kvm_usable_as(uid, vh->qemu_gid)));
	int n = snprintf(out, cap,
		"<domain type='%s' xmlns:qemu='http://libvirt.org/schemas/"
		"domain/qemu/1.0'>"
		"<name>" VMHOST_PREFIX "%s</name>"
		"<metadata><parley:vm xmlns:parley='" VMHOST_NS "' "
		"name='%s' agent='%s'/></metadata>"
		/* At least 2 possible vCPUs: TCG translates the guest's
		 * fences and locked instructions into the host's only when
		 * the machine may run more than one vCPU (CF_PARALLEL), and
		 * channel memory is shared with other host processes (thin
		 * partitions) whose flag/index handshake needs them. */
		"<memory unit='MiB'>%u</memory><vcpu current='%u'>%u</vcpu>"
		/* The host's CPU under KVM, everything TCG can do under TCG:
		 * without it QEMU's qemu64 (SSE2 only) — the guest's memcpy
		 * of a channel message took a third longer under TCG. */
		"%s"
		"<os><type arch='x86_64' machine='pc'>hvm</type>"
		"<kernel>%s</kernel><initrd>%s</initrd>"
		/* no_timer_check: under TCG on a busy host the kernel's
		 * IO-APIC timer check can fail and panic the boot */
		"<cmdline>console=ttyS0 quiet panic=-1 no_timer_check %s"
		"</cmdline></os>"
		"%s%s%s"
		/* acpi: the embedded driver needs it, and the guest's
		 * acpiphp is what sees hot-plugged channel devices */
		"<features><acpi/></features>"
		"<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>"
		"<on_crash>destroy</on_crash>"
		"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
		"<controller type='virtio-serial' index='0'/>"
		"<channel type='unix'><source mode='bind' path='%s'/>"
		"<target type='virtio' name='" PARLEY_VMCTL_PORT "'/></channel>"
		"%s%s%s"
		"<serial type='file'><source path='%s'/><target port='0'/></serial>"
		"<memballoon model='none'/></devices>%s"
		/* the agent's own QMP monitor (agent/vm/qmp.h) */
		"<qemu:commandline><qemu:arg value='-chardev'/>"
		"<qemu:arg value='socket,id=parleymon,path=%s,server=on,"
		"wait=off'/><qemu:arg value='-mon'/>"
		"<qemu:arg value='chardev=parleymon,mode=control'/>"
		"</qemu:commandline></domain>",
		kvm ? "kvm" : "qemu",
		s->name, s->name, vh->dir, s->mem_mib ? s->mem_mib : 192,
		s->vcpus ? s->vcpus : 1,
		s->vcpus > 2 ? s->vcpus : 2,
		kvm ? "<cpu mode='host-passthrough' check='none'/>"
		    : "<cpu mode='maximum' check='none'/>", s->kernel,
		s->initrd, s->cmdline_extra, fl ? "<sysinfo type='fwcfg'>" : "", fw,
		fl ? "</sysinfo>" : "", sock,
		s->echo_port ? "<channel type='unix'><source mode='bind' path='" : "",
		s->echo_port ? echo : "",
		s->echo_port ? "'/><target type='virtio' name='org.parley.echo.0'/>"
			       "</channel>" : "",
		con, seclabel, mon);
	if (n < 0 || (size_t)n >= cap)
		return perr(err, -ENOSPC, "VM %s: domain XML too long", s->name);
	return 0;
}

int vm_accel_parse(const char *s)
{
	if (!strcmp(s, "auto"))
		return VM_ACCEL_AUTO;
	if (!strcmp(s, "kvm"))
		return VM_ACCEL_KVM;
	if (!strcmp(s, "tcg"))
		return VM_ACCEL_TCG;
	return -EINVAL;
}

static char *owned_name(const struct vmhost *vh, virDomainPtr d);

/* VM name's domain, if it is this agent's (owned_name: under a system
 * libvirtd a domain of that name may be another agent's). */
static virDomainPtr lookup(struct vmhost *vh, const char *name)
{
	char dn[128];
	snprintf(dn, sizeof(dn), VMHOST_PREFIX "%s", name);
	virDomainPtr d = virDomainLookupByName(vh->conn, dn);
	char *own = d ? owned_name(vh, d) : NULL;
	if (d && (!own || strcmp(own, name))) {
		/* (starting ours under that name then fails: libvirt says
		 * the domain exists) */
		virDomainFree(d);
		d = NULL;
	}
	free(own);
	return d;
}

/* One file QEMU opens itself, copied to dst readable by its group only
 * (0640): the agent's own files stay where they are, with their modes. */
static int copy_for_qemu(const char *src, const char *dst, gid_t gid)
{
	/* A regular file only: a FIFO put in the place of one would hold
	 * the start's thread in open() or read() */
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (in < 0)
		return -errno;
	struct stat st;
	int e = fstat(in, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
	if (e) {
		close(in);
		return e;
	}
	unlink(dst);
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	int rc = out < 0 ? -errno : 0;
	char buf[65536];
	ssize_t n;
	while (!rc && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			rc = errno == EINTR ? 0 : -errno;
			continue;
		}
		for (ssize_t off = 0; !rc && off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno != EINTR)
				rc = -errno;
			else if (w > 0)
				off += w;
		}
	}
	if (!rc && (fchown(out, (uid_t)-1, gid) < 0 || fchmod(out, 0640) < 0))
		rc = -errno;
	if (out >= 0 && close(out) < 0 && !rc)
		rc = -errno;
	close(in);
	return rc;
}

/* QEMU runs as another user: the files it opens by path (kernel, initrd,
 * fw_cfg entries) as copies in STATE/vm/NAME.boot, and the spec QEMU is
 * started with names those. The directory is the VM's uid's (0500): its
 * QEMU reads the copies (group QEMU's, 0640), no other VM's QEMU gets in.
 * Its QEMU may change what is in it (it owns it): the copies are made
 * anew each start (unlinked, created O_EXCL|O_NOFOLLOW), and the
 * directory itself, an entry of STATE/vm (root's), stays where it is. */
static int boot_copies(const struct vmhost *vh, struct vm_spec *s, uid_t uid,
		       struct parley_err *err)
{
	char dir[PATH_MAX + 64], dst[PATH_MAX + 128];
	snprintf(dir, sizeof(dir), "%s/%s.boot", vh->dir, s->name);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return perr(err, -errno, "%s: %s", dir, strerror(errno));
	if (chown(dir, uid, vh->qemu_gid) < 0 || chmod(dir, 0500) < 0)
		return perr(err, -errno, "%s: %s", dir, strerror(errno));
	struct boot_file { char *path; const char *as; } f[2 + VMHOST_CFG_MAX] = {
		{ s->kernel, "kernel" }, { s->initrd, "initrd" } };
	unsigned n = 2;
	for (unsigned i = 0; i < s->ncfg && i < VMHOST_CFG_MAX; i++)
		f[n++] = (struct boot_file){ s->cfg[i].path, s->cfg[i].name };
	for (unsigned i = 0; i < n; i++) {
		/* cfg names are jv_name_valid (vmhost_xml checks again) */
		if (snprintf(dst, sizeof(dst), "%s/%s%s", dir, i < 2 ? "" : "cfg-",
			     f[i].as) >= (int)sizeof(dst) ||
		    strlen(dst) >= PATH_MAX)
			return perr(err, -ENAMETOOLONG, "%s: too long", dir);
		int rc = copy_for_qemu(f[i].path, dst, vh->qemu_gid);
		if (rc)
			return perr(err, rc, "VM %s: copying %s for QEMU: %s",
				    s->name, f[i].path, strerror(-rc));
		snprintf(f[i].path, PATH_MAX, "%s", dst);
	}
	return 0;
}

void vmhost_boot_cfg_path(const struct vmhost *vh, const struct vm_spec *s,
			  unsigned i, char *out, size_t cap)
{
	if (vh->qemu_gid == (gid_t)-1)
		snprintf(out, cap, "%s", s->cfg[i].path);
	else
		snprintf(out, cap, "%s/%s.boot/cfg-%s", vh->dir, s->name,
			 s->cfg[i].name);
}

int vmhost_start(struct vmhost *vh, const struct vm_spec *spec,
		 struct parley_err *err)
{
	/* Per call (41 KiB of stack): starts run on worker threads
	 * (vmstart.h), several at once. */
	char xml[16384];
	struct vm_spec s;
	char sock[PATH_MAX + 64], con[PATH_MAX + 64];
	s = *spec;
	if (!jv_name_valid(s.name, strlen(s.name), sizeof(s.name)))
		return perr(err, -EINVAL, "VM name '%s' not allowed", s.name);
	for (unsigned i = 0; i < s.ncfg && i < VMHOST_CFG_MAX; i++)
		if (!jv_name_valid(s.cfg[i].name, strlen(s.cfg[i].name),
				   sizeof(s.cfg[i].name)))
			return perr(err, -EINVAL, "VM %s: config file %u: bad "
				    "name", s.name, i);
	uid_t uid = (uid_t)-1;
	int rc = vh->qemu_gid != (gid_t)-1 ? vmhost_vm_uid(vh, s.name, true,
							   &uid, err) : 0;
	if (rc || (vh->qemu_gid != (gid_t)-1 &&
		   (rc = boot_copies(vh, &s, uid, err))) ||
	    (rc = vmhost_xml(vh, &s, uid, xml, sizeof(xml), err)))
		return rc;
	/* QEMU makes its monitor socket in a directory of its own (the
	 * VM's uid's, 0700: no other VM's QEMU gets in; the agent, root,
	 * does anyway). */
	char mdir[PATH_MAX + 64];
	snprintf(mdir, sizeof(mdir), "%s/%s.mon", vh->dir, s.name);
	vmhost_mon_path(vh, s.name, sock, sizeof(sock));
	unlink(sock);
	if ((mkdir(mdir, 0700) < 0 && errno != EEXIST) ||
	    (uid != (uid_t)-1 && chown(mdir, uid, vh->qemu_gid) < 0) ||
	    chmod(mdir, 0700) < 0)
		return perr(err, -errno, "%s: %s", mdir, strerror(errno));
	/* A socket or console of an earlier run of the same VM. */
	sock_path(vh, s.name, sock, sizeof(sock));
	vmhost_console_path(vh, s.name, con, sizeof(con));
	unlink(sock);
	unlink(con);
	/* and the console's rotated copies (virtlogd's, under a system
	 * libvirtd: NAME.console.0 ... .2 by default) */
	for (int i = 0; i < 10; i++) {
		char old[PATH_MAX + 80];
		snprintf(old, sizeof(old), "%s.%d", con, i);
		unlink(old);
	}
	virDomainPtr d = virDomainCreateXML(vh->conn, xml, 0);
	if (!d)
		return lv_err(err, "cannot start VM", s.name);
	virDomainFree(d);
	return 0;
}

int vmhost_running(struct vmhost *vh, const char *name)
{
	virDomainPtr d = lookup(vh, name);
	if (!d)
		return 0;
	int r = virDomainIsActive(d);
	virDomainFree(d);
	return r < 0 ? -EIO : r;
}

/* Destroyed, or gone by itself meanwhile (it powered off, or the driver's
 * reconnection found it dead): either way no VM is left. */
static int destroy_dom(virDomainPtr d)
{
	if (virDomainDestroy(d) == 0)
		return 0;
	return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ||
		       virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID
		       ? 0 : -1;
}

int vmhost_destroy(struct vmhost *vh, const char *name, struct parley_err *err)
{
	virDomainPtr d = lookup(vh, name);
	if (!d)
		return perr(err, -ENOENT, "no VM %s", name);
	int rc = destroy_dom(d) < 0 ? lv_err(err, "cannot destroy VM", name) : 0;
	virDomainFree(d);
	return rc;
}

static int connect_ext(struct vmhost *vh, const char *name, const char *ext,
		       int timeout_ms, struct parley_err *err);

int vmhost_ctl_connect(struct vmhost *vh, const char *name, int timeout_ms,
		       struct parley_err *err)
{
	return connect_ext(vh, name, "ctl", timeout_ms, err);
}

int vmhost_echo_connect(struct vmhost *vh, const char *name, int timeout_ms,
			struct parley_err *err)
{
	return connect_ext(vh, name, "echo", timeout_ms, err);
}

static int connect_ext(struct vmhost *vh, const char *name, const char *ext,
		       int timeout_ms, struct parley_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char p[PATH_MAX + 64];
	sock_path_ext(vh, name, ext, p, sizeof(p));
	if (strlen(p) >= sizeof(sa.sun_path))
		return perr(err, -ENAMETOOLONG, "%s: too long for a socket", p);
	memcpy(sa.sun_path, p, strlen(p) + 1);
	for (int t = 0;; t += 10) {
		/* Non-blocking: QEMU listens, and one that never accepts
		 * (its backlog full) must not hang the agent in connect();
		 * a full backlog is EAGAIN here, tried again until the
		 * limit. The agent reads and writes the port without
		 * waiting anyway. */
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
				SOCK_NONBLOCK, 0);
		if (fd < 0)
			return perr(err, -errno, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (t >= timeout_ms)
			return perr(err, -e, "VM %s control port %s: %s", name, p,
				    strerror(e));
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
}

int vmhost_qmp(struct vmhost *vh, const char *name, const char *cmd,
	       const int *fds, unsigned nfds, char **reply,
	       struct parley_err *err)
{
	char *r = NULL;
	virDomainPtr d = lookup(vh, name);
	if (reply)
		*reply = NULL;
	if (!d)
		return perr(err, -ENOENT, "no VM %s", name);
	int rc = virDomainQemuMonitorCommandWithFiles(d, cmd, nfds,
			(int *)fds, NULL, NULL, &r, 0) < 0
		? lv_err(err, "monitor command failed on VM", name) : 0;
	virDomainFree(d);
	/* QEMU answers {"return": ...} or {"error": {"class": ...,
	 * "desc": "..."}} */
	if (!rc && (!r || strncmp(r, "{\"return\"", 9)))
		rc = perr(err, -EIO, "VM %s: %.120s: %.200s", name, cmd,
			  r ? r : "no answer");
	if (reply)
		*reply = r;
	else
		free(r);
	return rc;
}

/* Our VM's name if the domain carries our metadata and is this agent's,
 * else NULL. Under a system libvirtd other agents (their own state
 * directories) may have domains of the same kind, never adopted nor
 * destroyed by us: this agent's say agent='STATE/vm' (ours, absolute).
 * Under the embedded driver the root is this state directory's alone:
 * every domain with the element is ours (one of an agent before the
 * attribute, or of this state directory under an earlier path). */
static char *owned_name(const struct vmhost *vh, virDomainPtr d)
{
	char *md = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT,
					VMHOST_NS, 0);
	if (!md)
		return NULL;
	char name[48], *agent = malloc(PATH_MAX);
	int rc = agent ? vmxml_md_attrs(md, name, sizeof(name), agent,
					PATH_MAX) : -ENOMEM;
	free(md);
	/* and the domain is called what our domains of that name are: the
	 * metadata alone does not rename one (reconcile, destroy) */
	const char *dn = virDomainGetName(d);
	if (rc == 0 && (!jv_name_valid(name, strlen(name), sizeof(name)) ||
			(vh->system && strcmp(agent, vh->dir)) || !dn ||
			strncmp(dn, VMHOST_PREFIX, strlen(VMHOST_PREFIX)) ||
			strcmp(dn + strlen(VMHOST_PREFIX), name)))
		rc = -EPERM;
	free(agent);
	return rc ? NULL : strdup(name);
}

int vmhost_reconcile(struct vmhost *vh, bool (*keep)(const char *name, void *ctx),
		     void *ctx, unsigned *adopted, unsigned *destroyed,
		     struct parley_err *err)
{
	virDomainPtr *doms = NULL;
	*adopted = *destroyed = 0;
	int n = virConnectListAllDomains(vh->conn, &doms,
					 VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0)
		return lv_err(err, "cannot list domains of", vh->uri);
	int rc = 0;
	for (int i = 0; i < n; i++) {
		char *name = owned_name(vh, doms[i]);
		if (name && keep(name, ctx)) {
			(*adopted)++;
			log_info("VM %s: ours, with a spec here: kept", name);
		} else if (name) {
			if (destroy_dom(doms[i]) < 0) {
				rc = lv_err(err, "cannot destroy VM", name);
			} else {
				(*destroyed)++;
				log_info("VM %s: destroyed (no spec for it any "
					 "more)", name);
			}
		}
		free(name);
		virDomainFree(doms[i]);
	}
	free(doms);
	return rc;
}
