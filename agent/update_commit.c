/*
 * The running agent's half of the hand-over (agent/update_commit.h).
 */
#include "agent/update_commit.h"
#include "agent/handover.h"
#include "agent/partition.h"
#include "agent/ctl/clock.h"
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define NEW_FD 3                   /* the socket's number in the new one */

struct commit {
	struct update_host *a;
	pid_t pid;
	int pidfd, sock;
	uint64_t deadline, t_stop;
	bool stopped;              /* the old one stopped serving */
	char stage_vmm[PATH_MAX];
	char vmm_version[64];
	struct handover h;
	int *fds;
	unsigned nfds;
};

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = mono_now_ns();
	return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

/* ---- the stage ----------------------------------------------------------- */

/* The package's version, for the record; the package was verified by
 * whoever staged it (its signature and hashes are not ours to check). */
static void stage_version(const char *stage, char *out, size_t cap)
{
	char path[PATH_MAX];
	snprintf(out, cap, "unknown");
	if (path_join(path, sizeof(path), stage, "manifest.json") < 0)
		return;
	json_error_t je;
	json_t *m = json_load_file(path, 0, &je);
	const char *v = json_string_value(json_object_get(m, "version"));
	if (v && strlen(v) < cap && strlen(v) > 0)
		snprintf(out, cap, "%s", v);
	json_decref(m);
}

static int check_stage(struct commit *c, const char *stage,
		       char *agent, size_t cap, struct parley_err *err)
{
	char manifest[PATH_MAX];
	if (path_join(agent, cap, stage, "parley-agent") < 0 ||
	    path_join(c->stage_vmm, sizeof(c->stage_vmm), stage,
		      "parley-vmm") < 0 ||
	    path_join(manifest, sizeof(manifest), stage, "manifest.json") < 0)
		return perr(err, -ENAMETOOLONG, "stage path too long");
	if (access(agent, X_OK) < 0 || access(c->stage_vmm, X_OK) < 0 ||
	    access(manifest, R_OK) < 0)
		return perr(err, -ENOENT, "stage %s lacks parley-agent, "
			    "parley-vmm or manifest.json", stage);
	stage_version(stage, c->vmm_version, sizeof(c->vmm_version));
	return 0;
}

/* ---- start the new one ---------------------------------------------------- */

static int spawn_new(struct commit *c, const char *agent,
		     struct parley_err *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return perr(err, -errno, "socketpair: %s", strerror(errno));
	int argc = 0;
	while (c->a->argv[argc])
		argc++;
	char **argv = calloc((size_t)argc + 1, sizeof(*argv));
	int nenv = 0;
	while (environ[nenv])
		nenv++;
	char **envp = calloc((size_t)nenv + 2, sizeof(*envp));
	char fdvar[64];
	snprintf(fdvar, sizeof(fdvar), UPD_ENV_FD "=%d", NEW_FD);
	int rc = 0;
	if (!argv || !envp) {
		rc = perr(err, -ENOMEM, "out of memory");
		goto out;
	}
	argv[0] = (char *)agent;
	for (int i = 1; i < argc; i++)
		argv[i] = c->a->argv[i];
	int k = 0;
	for (int i = 0; i < nenv; i++)
		if (strncmp(environ[i], UPD_ENV_FD "=", sizeof(UPD_ENV_FD)))
			envp[k++] = environ[i];
	envp[k++] = fdvar;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	/* dup2 onto NEW_FD clears close-on-exec there: the one descriptor
	 * the new binary inherits beyond stdio. */
	posix_spawn_file_actions_adddup2(&fa, sv[1], NEW_FD);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	int e = posix_spawn(&c->pid, agent, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (e) {
		rc = perr(err, -e, "starting %s: %s", agent, strerror(e));
		goto out;
	}
	c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	c->sock = sv[0];
	sv[0] = -1;
out:
	free(argv);
	free(envp);
	if (sv[0] >= 0)
		close(sv[0]);
	close(sv[1]);
	return rc;
}

/* The new one ended: how. */
static int reap_new(struct commit *c, struct parley_err *err,
		    const char *when)
{
	int st = 0;
	/* Its end of the socket closed, or its pidfd readable: it has exited
	 * (then this kill changes nothing) or is about to be made to. */
	if (c->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
	pid_t r = waitpid(c->pid, &st, 0);
	c->pid = 0;
	if (r < 0)
		return perr(err, -ECHILD, "the new agent ended %s", when);
	if (WIFSIGNALED(st))
		return perr(err, -ECHILD, "the new agent was killed by signal "
			    "%d (%s) %s", WTERMSIG(st), strsignal(WTERMSIG(st)),
			    when);
	return perr(err, -ECHILD, "the new agent exited with status %d %s",
		    WEXITSTATUS(st), when);
}

/* Wait for one message from the new agent until the deadline; the old one
 * serves meanwhile unless it has stopped. 1 with the message, 0 on
 * timeout, negative when the new one ended or spoke nonsense. */
static int await_new(struct commit *c, uint8_t *type, char *buf, size_t cap,
		     struct parley_err *err, const char *when)
{
	for (;;) {
		int left = remaining_ms(c->deadline);
		if (!left)
			return 0;
		if (!c->stopped && c->a->serve)
			c->a->serve(c->a->ctx, left < 5 ? left : 5);
		struct pollfd pf[2] = { { .fd = c->sock, .events = POLLIN },
					{ .fd = c->pidfd, .events = POLLIN } };
		int n = poll(pf, 2, c->stopped ? remaining_ms(c->deadline) : 0);
		if (n < 0 && errno != EINTR)
			return perr(err, -errno, "poll: %s", strerror(errno));
		if (n <= 0)
			continue;
		if (pf[0].revents) {
			unsigned nfds = 0;
			int fds[1];
			int len = upd_recv(c->sock, type, buf, cap - 1, fds, 0,
					   &nfds);
			if (len > 0 || (len == 0 && *type)) {
				buf[len] = 0;
				return 1;
			}
			if (len < 0 && len != -EAGAIN)
				return perr(err, -EPROTO, "malformed message "
					    "from the new agent %s", when);
		}
		/* End of stream or the process gone: it ended. */
		if (pf[1].revents || pf[0].revents)
			return reap_new(c, err, when);
	}
}

/* ---- the state ----------------------------------------------------------- */

static int add_fd(struct commit *c, int fd)
{
	if (c->nfds == HO_FDS_MAX || fd < 0)
		return -EBADF;
	c->fds[c->nfds++] = fd;
	return 0;
}

static int part_index(const struct commit *c, const struct cm_part *cp)
{
	for (unsigned i = 0; cp && i < c->h.npart; i++)
		if (!strcmp(c->h.part[i].name, cp->p->name))
			return (int)i;
	return -1;
}

static int gather_part(struct commit *c, const struct cm_part *cp)
{
	const struct partition *p = cp->p;
	struct ho_part *hp = &c->h.part[c->h.npart++];
	snprintf(hp->name, sizeof(hp->name), "%s", p->name);
	hp->state = p->state;
	hp->pid = p->pid;
	hp->vmm_uid = p->vmm_uid;
	hp->vcpus = p->vcpus;
	hp->backend = p->backend;
	hp->caps = p->caps;
	hp->ram_size = p->ram_size;
	hp->cfg_size = p->cfg_size;
	hp->entry = p->entry;
	hp->image_hi = p->image_hi;
	hp->open_pending = p->open_pending;
	hp->nrange = p->nrange;
	memcpy(hp->range, p->range, sizeof(hp->range));
	snprintf(hp->vmm_version, sizeof(hp->vmm_version), "%s",
		 p->vmm_version);
	hp->quarantined = cp->quarantined;
	memcpy(hp->gen, cp->gen, sizeof(hp->gen));
	hp->win_cursor = cp->win_cursor;
	snprintf(hp->blame, sizeof(hp->blame), "%s", cp->blame);
	hp->measure = p->measure; /* borrowed: arrays not freed by us */
	if (add_fd(c, p->ctl) < 0 || add_fd(c, p->pidfd) < 0 ||
	    add_fd(c, p->mem_fd) < 0)
		return -EBADF;
	return 0;
}

static int gather_chan(struct commit *c, const struct cm_chan *ch)
{
	struct ho_chan *hc = &c->h.chan[c->h.nchan++];
	uint64_t now = mono_now_ns();
	hc->id = ch->id;
	hc->g = ch->g;
	hc->svc = ch->svc;
	hc->revoking = ch->revoking;
	hc->peer_gone = ch->peer_gone;
	hc->revoke_left_ms = ch->revoking && ch->revoke_deadline_ns > now
		? (uint32_t)((ch->revoke_deadline_ns - now) / 1000000) : 0;
	hc->nsec = ch->nsec;
	for (int s = 0; s < 2; s++) {
		const struct cm_end *e = &ch->end[s];
		struct ho_end *he = &hc->end[s];
		he->part = part_index(c, e->ep);
		/* An end whose partition has finished holds nothing. */
		he->mapped = he->part >= 0 && e->mapped;
		he->unmapping = he->mapped && e->unmapping;
		he->slot = he->mapped ? e->slot : 0;
		he->handle = he->mapped ? e->handle : 0;
		he->gpa = he->mapped ? e->gpa : 0;
	}
	if (add_fd(c, ch->bell[0]) < 0 || add_fd(c, ch->bell[1]) < 0)
		return -EBADF;
	for (unsigned i = 0; i < ch->nsec; i++)
		if (add_fd(c, ch->mem[i]) < 0)
			return -EBADF;
	for (unsigned i = 0; i < ch->nsec; i++)
		if (add_fd(c, ch->mem_ro[i]) < 0)
			return -EBADF;
	return 0;
}

/* A channel whose every end still mapped is a VM's: nothing of it is
 * handed over (see gather). */
static bool vm_only(const struct cm_chan *ch)
{
	bool vm = false;
	for (int s = 0; s < 2; s++) {
		const struct cm_end *e = &ch->end[s];
		if (!e->ep || !e->mapped || e->ep->p->finished)
			continue;
		if (!e->ep->ext)
			return false;
		vm = true;
	}
	return vm;
}

/* Requests read but not yet handled live only in our memory: handled now,
 * so that none is lost with us (a few passes: handling one may defer
 * more). -EBUSY if some remain. */
static int drain_deferred(struct chanmgr *cm)
{
	for (int pass = 0; pass < 8; pass++) {
		bool any = false;
		for (unsigned i = 0; i < cm->nparts; i++) {
			struct partition *p = cm->parts[i].p;
			while (p && partition_has_deferred(p)) {
				partition_handle(p);
				any = true;
			}
		}
		if (!any)
			return 0;
	}
	return -EBUSY;
}

static int gather(struct commit *c, struct parley_err *err)
{
	struct chanmgr *cm = c->a->cm;
	struct handover *h = &c->h;
	if (drain_deferred(cm) < 0)
		return perr(err, -EBUSY, "requests kept arriving while the "
			    "hand-over waited for them to be handled");
	c->fds = calloc(HO_FDS_MAX, sizeof(int));
	h->part = calloc(CM_PARTS_MAX, sizeof(*h->part));
	h->chan = calloc(CM_CHANS_MAX, sizeof(*h->chan));
	h->offer = calloc(CM_OFFERS_MAX, sizeof(*h->offer));
	h->pending = calloc(CM_CHANS_MAX, sizeof(*h->pending));
	if (!c->fds || !h->part || !h->chan || !h->offer || !h->pending)
		return perr(err, -ENOMEM, "out of memory");
	snprintf(h->old_version, sizeof(h->old_version), "%s", c->a->version);
	ssize_t n = readlink("/proc/self/exe", h->old_exe,
			     sizeof(h->old_exe) - 1);
	h->old_exe[n > 0 ? n : 0] = 0;
	snprintf(h->vmm_path, sizeof(h->vmm_path), "%s", c->stage_vmm);
	snprintf(h->vmm_version, sizeof(h->vmm_version), "%s",
		 c->vmm_version);
	h->pause_ns = c->t_stop;
	h->next_chan_id = cm->next_id;
	h->policy = (uint8_t *)c->a->policy;
	h->policy_len = (uint32_t)c->a->policy_len;
	/* A Linux VM (an external endpoint, agent/vm/vmmgr.c) is not
	 * passed: its QEMU outlives us and the new agent adopts it from
	 * libvirt once we have gone. Its channel ends go as closed ones
	 * (part -1, not mapped: what chanmgr has after the VM closes a
	 * handle), so its thin peers keep theirs and the guest re-joins the
	 * same channel; a channel only a VM held is not passed at all (its
	 * memory goes with us, its devices with the new agent's unplug of
	 * them). */
	c->a->vms = 0;
	for (unsigned i = 0; i < cm->nparts; i++) {
		const struct cm_part *cp = &cm->parts[i];
		if (cp->ext && cp->p && !cp->p->finished)
			c->a->vms++;
		if (cp->p && !cp->p->finished && !cp->ext &&
		    gather_part(c, cp) < 0)
			return perr(err, -EBADF, "a partition without its "
				    "descriptors");
	}
	int *at = calloc(cm->nchans ? cm->nchans : 1, sizeof(int));
	if (!at)
		return perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < cm->nchans; i++) {
		at[i] = -1;
		if (vm_only(cm->chans[i]))
			continue;
		at[i] = (int)c->h.nchan;
		if (gather_chan(c, cm->chans[i]) < 0) {
			free(at);
			return perr(err, -EBADF, "a channel without its "
				    "descriptors");
		}
	}
	for (unsigned i = 0; i < cm->noffers; i++) {
		int k = part_index(c, cm->offers[i].cp);
		if (k < 0)
			continue;
		h->offer[h->noffer].part = (uint32_t)k;
		snprintf(h->offer[h->noffer++].name, PARLEY_SVC_NAME_MAX, "%s",
			 cm->offers[i].name);
	}
	for (unsigned i = 0; i < cm->npending; i++)
		for (unsigned k = 0; k < cm->nchans; k++)
			if (cm->chans[k] == cm->pending[i].ch && at[k] >= 0)
				h->pending[h->npending++] = (uint32_t)at[k];
	free(at);
	h->nfds = c->nfds;
	return 0;
}

/* The message into a sealed memfd, then the descriptors in batches. */
static int send_state(struct commit *c, struct parley_err *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = handover_encode(&c->h, &buf, &len, err);
	if (rc < 0)
		return rc;
	int mfd = memfd_create("parley-handover", MFD_CLOEXEC |
				MFD_ALLOW_SEALING);
	if (mfd < 0 || fd_write_all(mfd, buf, len) < 0 ||
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
				    F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		rc = perr(err, -errno, "hand-over memfd: %s", strerror(errno));
	free(buf);
	uint32_t n = c->nfds;
	if (rc == 0 && upd_send(c->sock, UPD_STATE, &n, sizeof(n), &mfd, 1) < 0)
		rc = perr(err, -EPIPE, "the new agent went away");
	for (unsigned i = 0; rc == 0 && i < c->nfds; i += UPD_FDS_PER_MSG) {
		unsigned k = c->nfds - i < UPD_FDS_PER_MSG ? c->nfds - i
							    : UPD_FDS_PER_MSG;
		if (upd_send(c->sock, UPD_FDS, NULL, 0, c->fds + i, k) < 0)
			rc = perr(err, -EPIPE, "the new agent went away");
	}
	if (mfd >= 0)
		close(mfd);
	return rc;
}

/* ---- the whole ------------------------------------------------------------ */

static int run(struct commit *c, const char *stage, struct parley_err *err)
{
	char agent[PATH_MAX], buf[UPD_MSG_MAX + 1];
	uint8_t type = 0;
	int rc = check_stage(c, stage, agent, sizeof(agent), err);
	if (rc == 0)
		rc = spawn_new(c, agent, err);
	if (rc < 0)
		return rc;
	rc = await_new(c, &type, buf, sizeof(buf), err, "at start");
	if (rc == 0)
		return perr(err, -ETIMEDOUT, "the new agent did not start "
			    "within the deadline");
	if (rc < 0)
		return rc;
	if (type != UPD_HELLO)
		return perr(err, -EPROTO, "the new agent said '%c' at start",
			    type);
	/* From here the grant manager does not answer until the new one
	 * commits or we roll back. */
	c->stopped = true;
	c->t_stop = mono_now_ns();
	rc = gather(c, err);
	if (rc == 0)
		rc = send_state(c, err);
	if (rc < 0)
		return rc;
	rc = await_new(c, &type, buf, sizeof(buf), err,
		       "while adopting the partitions");
	if (rc == 0)
		return perr(err, -ETIMEDOUT, "the new agent did not confirm "
			    "within the deadline");
	if (rc < 0)
		return rc;
	if (type == UPD_NACK)
		return perr(err, -ECANCELED, "the new agent refused: %s", buf);
	if (type != UPD_READY)
		return perr(err, -EPROTO, "the new agent said '%c' instead of "
			    "ready", type);
	if (c->a->before_commit)
		c->a->before_commit(c->a->ctx);
	if (upd_send(c->sock, UPD_COMMIT, NULL, 0, NULL, 0) < 0)
		return perr(err, -EPIPE, "the new agent went away at commit");
	return 0;
}

/* Under systemd (NOTIFY_SOCKET set, the unit's NotifyAccess=main): the
 * new agent is the service's main process from now on, so that our exit
 * does not end the service and take its processes with it. Best effort:
 * without a service manager there is nobody to tell. */
static void tell_service_manager(pid_t pid)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = path ? strlen(path) : 0;
	if (!n || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
		return;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = 0; /* abstract */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	char msg[64];
	int len = snprintf(msg, sizeof(msg), "MAINPID=%d\n", (int)pid);
	if (sendto(fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		fprintf(stderr, "parley-agent: telling the service manager the "
				"new main pid: %s\n", strerror(errno));
	close(fd);
}

/* The new one is killed and forgotten; what it may have changed is
 * nothing (it changes nothing before the commit). */
static void roll_back(struct commit *c)
{
	if (c->sock >= 0)
		upd_send(c->sock, UPD_ABORT, NULL, 0, NULL, 0);
	if (c->pid > 0) {
		if (c->pidfd >= 0)
			syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
		else
			kill(c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
	}
}

int update_commit(struct update_host *a, const char *stage_dir,
		  struct parley_err *err)
{
	struct commit c = { .a = a, .pidfd = -1, .sock = -1 };
	int timeout = a->timeout_ms > 0 ? a->timeout_ms : 10000;
	c.deadline = mono_now_ns() + (uint64_t)timeout * 1000000;
	a->new_pid = 0;
	a->pause_ns = 0;
	int rc = run(&c, stage_dir, err);
	a->new_pid = c.pid;
	if (rc < 0) {
		roll_back(&c);
		struct audit_event e = { .event = "update_rollback",
					 .detail = perr_msg(err) };
		audit_emit(a->cm->audit, &e);
	} else {
		tell_service_manager(c.pid);
		if (a->out) {
			fprintf(a->out, "parley-agent: handed over to pid %d "
				"(%s)\n", (int)c.pid, c.vmm_version);
			if (a->vms)
				fprintf(a->out, "parley-agent: %u VM(s) left "
					"running for pid %d to adopt\n",
					a->vms, (int)c.pid);
			fflush(a->out);
		}
	}
	if (c.stopped)
		a->pause_ns = mono_now_ns() - c.t_stop;
	if (c.sock >= 0)
		close(c.sock);
	if (c.pidfd >= 0)
		close(c.pidfd);
	free(c.fds);
	free(c.h.part);
	free(c.h.chan);
	free(c.h.offer);
	free(c.h.pending);
	return rc;
}

void update_leave(void)
{
	fflush(NULL);
	_exit(0);
}
