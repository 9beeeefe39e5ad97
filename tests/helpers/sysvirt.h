/* A private system libvirtd for a test (suite vm_system): libvirtd and
 * virtlogd as root, privileged, in a mount namespace of their own where
 * /etc, /var and /run are overlays whose changes go to a tmpfs of the
 * test's (a privileged libvirtd's directories — /etc/libvirt,
 * /run/libvirt, /var/{lib,log,cache}/libvirt — are fixed when libvirt is
 * built: no option or variable moves them). So nothing of the host
 * changes, two tests (or two engineers) never share a daemon's state, and
 * a test may give the daemon a qemu.conf. Its sockets (libvirtd.conf's
 * unix_sock_dir) are in the test's directory: the agent connects with
 * qemu+unix:///system?socket=DIR/libvirt-sock. Both daemons are the
 * test's children (they die with it) and are stopped by their PIDs.
 * libvirtd's cache of QEMU's capabilities (/var/cache/libvirt) is the
 * build tree's sysvirt-cache/, kept across tests (libvirt checks it
 * against QEMU's binary and its own version). */
#ifndef PARLEY_TEST_SYSVIRT_H
#define PARLEY_TEST_SYSVIRT_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct t_sysvirt {
	char dir[PATH_MAX];         /* the test's directory: confs, sockets,
				     * logs, the namespace's tmpfs */
	char uri[PATH_MAX + 64];
	pid_t libvirtd, virtlogd;   /* 0: not running */
	pid_t ns;                   /* the namespace's first process: the
				     * test's child, the daemons' parent */
};

/* Start both daemons; qemu_conf: the text of /etc/libvirt/qemu.conf in
 * their namespace, or NULL for none (libvirt's built-in defaults, which
 * are what the qemu.conf libvirt-daemon-system installs says: every line
 * of it is a comment). 0, or -errno with why (their logs' last lines). */
int t_sysvirt_start(struct t_sysvirt *s, const char *qemu_conf, char *why,
		    size_t cap);
/* The same; linked: the text in /etc/libvirt/real-qemu.conf, and
 * qemu.conf an absolute symbolic link to it — in the daemons' namespace
 * only (the host's /etc/libvirt has no such file). */
int t_sysvirt_start_linked(struct t_sysvirt *s, const char *qemu_conf,
			   bool linked, char *why, size_t cap);

/* A file of the daemons' namespace (e.g. /var/log/libvirt/qemu/X.log),
 * through /proc/LIBVIRTD/root. */
void t_sysvirt_path(const struct t_sysvirt *s, const char *path, char *out,
		    size_t cap);

/* Stop both (SIGTERM, then SIGKILL after 10 s), wait, remove the
 * directory. Safe to call twice. */
void t_sysvirt_stop(struct t_sysvirt *s);

#endif
