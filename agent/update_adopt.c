/*
 * The new agent's half of the hand-over (agent/update_adopt.h).
 */
#include "agent/update_adopt.h"
#include "agent/update_commit.h"
#include "agent/handover.h"
#include "agent/ipc/chanmem.h"
#include "agent/ctl/clock.h"
#include "common/grant.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct adopt {
	struct update_adopt *u;
	int sock;
	uint64_t deadline;
	struct handover h;
	int *fds;
	unsigned nfds;
	struct partition **parts;  /* by index of h.part */
};

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = mono_now_ns();
	return now >= deadline ? 0 : (int)((deadline - now) / 1000000 + 1);
}

/* Leave without touching anything: the old agent still holds every
 * descriptor we hold, so dropping ours changes nothing for any vmm. */
static __attribute__((noreturn)) void leave(struct adopt *a, int status,
					    const char *why)
{
	if (why) {
		fprintf(stderr, "parley-agent: hand-over failed: %s\n", why);
		upd_send(a->sock, UPD_NACK, why, strlen(why), NULL, 0);
	}
	fflush(NULL);
	_exit(status);
}

/* One message from the old agent within the deadline. */
static int recv_old(struct adopt *a, uint8_t *type, void *buf, size_t cap,
		    int *fds, unsigned maxfds, unsigned *nfds,
		    struct parley_err *err)
{
	struct pollfd pf = { .fd = a->sock, .events = POLLIN };
	int n;
	do
		n = poll(&pf, 1, remaining_ms(a->deadline));
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return perr(err, -ETIMEDOUT, "no state from the old agent in "
			    "time");
	int len = upd_recv(a->sock, type, buf, cap, fds, maxfds, nfds);
	if (len < 0)
		return perr(err, len, "malformed message from the old agent");
	return len;
}

/* The state: its memfd, then every descriptor it implies. */
static int receive(struct adopt *a, struct parley_err *err)
{
	uint8_t type;
	uint32_t want = 0;
	int mfd = -1;
	unsigned n = 0;
	int len = recv_old(a, &type, &want, sizeof(want), &mfd, 1, &n, err);
	if (len < 0)
		return len;
	if (type != UPD_STATE || len != sizeof(want) || n != 1 ||
	    want > HO_FDS_MAX) {
		if (n)
			close(mfd);
		return perr(err, -EPROTO, "the old agent sent no state");
	}
	a->fds = calloc(want ? want : 1, sizeof(int));
	if (!a->fds) {
		close(mfd);
		return perr(err, -ENOMEM, "out of memory");
	}
	while (a->nfds < want) {
		char none[1];
		len = recv_old(a, &type, none, 0, a->fds + a->nfds,
			       want - a->nfds < UPD_FDS_PER_MSG
				       ? want - a->nfds : UPD_FDS_PER_MSG,
			       &n, err);
		if (len < 0 || type != UPD_FDS || n == 0) {
			close(mfd);
			return len < 0 ? len : perr(err, -EPROTO, "descriptors "
						    "missing from the state");
		}
		a->nfds += n;
	}
	struct stat st;
	uint8_t *buf = NULL;
	int rc = 0;
	if (fstat(mfd, &st) < 0 || st.st_size < 0 ||
	    (uint64_t)st.st_size > HO_BYTES_MAX ||
	    !(buf = malloc((size_t)st.st_size + 1)) ||
	    pread(mfd, buf, (size_t)st.st_size, 0) != st.st_size)
		rc = perr(err, -EIO, "reading the state");
	close(mfd);
	if (rc == 0)
		rc = handover_parse(buf, (size_t)st.st_size, a->nfds, &a->h,
				    err);
	free(buf);
	return rc;
}

static int adopt_parts(struct adopt *a, struct parley_err *err)
{
	struct update_adopt *u = a->u;
	a->parts = calloc(a->h.npart ? a->h.npart : 1, sizeof(*a->parts));
	if (!a->parts)
		return perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < a->h.npart; i++) {
		const struct ho_part *hp = &a->h.part[i];
		int fds[3];
		memcpy(fds, a->fds + hp->fd, sizeof(fds));
		for (int k = 0; k < 3; k++)
			a->fds[hp->fd + k] = -1; /* partition_adopt's now */
		if (u->fault == UPDATE_FAULT_ADOPT && i + 1 == a->h.npart)
			return perr(err, -EIO, "%s: not adopted (a fault of "
				    "this test build)", hp->name);
		int rc = partition_adopt(hp, fds, &u->popts, &a->parts[i], err);
		if (rc < 0)
			return rc;
		struct partition *p = a->parts[i];
		if (chanmgr_add(u->cm, p) < 0)
			return perr(err, -ENOSPC, "too many partitions");
		struct cm_part *cp = ((struct cm_part *)(p)->owner);
		cp->quarantined = hp->quarantined;
		memcpy(cp->gen, hp->gen, sizeof(cp->gen));
		cp->win_cursor = hp->win_cursor;
		snprintf(cp->blame, sizeof(cp->blame), "%s", hp->blame);
		if (u->add && u->add(u->ctx, p) < 0)
			return perr(err, -ENOSPC, "too many partitions");
		u->nadopted++;
	}
	return 0;
}

/* A section as the message's layout says: a memfd no longer than made
 * (shorter is a writer's truncation, which chanmgr_tick finds). */
static int check_section(int fd, uint64_t size)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
			       (uint64_t)st.st_size <= size ? 0 : -1;
}

static int adopt_chan(struct adopt *a, const struct ho_chan *hc,
		      struct parley_err *err)
{
	struct chanmgr *cm = a->u->cm;
	struct cm_chan *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < CM_SECTIONS_MAX; i++)
		ch->mem[i] = ch->mem_ro[i] = -1;
	ch->id = hc->id;
	ch->g = hc->g;
	chanmem_layout(ch);
	const int *f = a->fds + hc->fd;
	ch->bell[0] = f[0];
	ch->bell[1] = f[1];
	for (unsigned i = 0; i < ch->nsec; i++) {
		ch->mem[i] = f[2 + i];
		ch->mem_ro[i] = f[2 + ch->nsec + i];
	}
	for (unsigned i = 0; i < 2 + 2 * ch->nsec; i++)
		a->fds[hc->fd + i] = -1;
	cm->chans[cm->nchans++] = ch; /* freed with cm from here */
	if (ch->nsec != hc->nsec)
		return perr(err, -EBADMSG, "channel %s: sections", hc->g.channel);
	for (unsigned i = 0; i < ch->nsec; i++)
		if (check_section(ch->mem[i], ch->sec_size[i]) < 0 ||
		    check_section(ch->mem_ro[i], ch->sec_size[i]) < 0)
			return perr(err, -EBADF, "channel %s: section %u is not "
				    "its memory", hc->g.channel, i);
	/* An agent before issue 11 made each producer's section PAGE +
	 * ring_bytes, not 2 * ring_bytes: keep the size it was made with,
	 * or chanmgr_tick would take the difference for its writer's
	 * truncation. A section shorter than a thin window needs is still
	 * refused (the window maps PAGE + ring_bytes of it). */
	for (unsigned i = 1; i < ch->nsec; i += 2) {
		struct stat st;
		if (fstat(ch->mem[i], &st) == 0 &&
		    (uint64_t)st.st_size == PARLEY_PAGE_SIZE + ch->g.ring_bytes)
			ch->sec_size[i] = (uint64_t)st.st_size;
	}
	ch->svc = hc->svc;
	ch->revoking = hc->revoking;
	ch->revoke_deadline_ns = mono_now_ns() +
				 (uint64_t)hc->revoke_left_ms * 1000000;
	ch->peer_gone = hc->peer_gone;
	for (int s = 0; s < 2; s++) {
		const struct ho_end *he = &hc->end[s];
		struct cm_end *e = &ch->end[s];
		e->ep = he->part >= 0 ? a->parts[he->part]->owner : NULL;
		e->mapped = he->mapped;
		e->unmapping = he->unmapping;
		e->slot = he->slot;
		e->handle = he->handle;
		e->gpa = he->gpa;
		if (e->mapped)
			e->ep->slot[e->slot] = ch;
	}
	return 0;
}

static int adopt_chans(struct adopt *a, struct parley_err *err)
{
	struct chanmgr *cm = a->u->cm;
	struct grant_set g;
	int rc = 0;
	/* No policy document: the agent under a daemon, whose policy is the
	 * bundle it persisted (its link loads it after the commit). */
	if (a->h.policy_len) {
		rc = grant_set_parse((const char *)a->h.policy,
				     a->h.policy_len, NULL, &g, err);
		if (rc < 0)
			return perr_prefix(err, "the policy in force"), rc;
		chanmgr_set_grants(cm, &g); /* no channel yet: none revoked */
	}
	cm->next_id = a->h.next_chan_id;
	for (unsigned i = 0; i < a->h.nchan; i++)
		if ((rc = adopt_chan(a, &a->h.chan[i], err)) < 0)
			return rc;
	for (unsigned i = 0; i < a->h.noffer; i++) {
		struct cm_offer *o = &cm->offers[cm->noffers++];
		o->cp = a->parts[a->h.offer[i].part]->owner;
		snprintf(o->name, sizeof(o->name), "%s", a->h.offer[i].name);
	}
	for (unsigned i = 0; i < a->h.npending; i++)
		cm->pending[cm->npending++].ch = cm->chans[a->h.pending[i]];
	return 0;
}

/* Every vmm answers on the link we now hold, or the hand-over fails. */
static int ping_all(struct adopt *a, struct parley_err *err)
{
	uint64_t nonce;
	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
		nonce = mono_now_ns();
	unsigned n = a->h.npart, left = 0;
	bool *done = calloc(n ? n : 1, sizeof(bool));
	struct pollfd *pf = calloc(n ? n : 1, sizeof(*pf));
	int rc = 0;
	if (!done || !pf)
		rc = perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (partition_ping(a->parts[i], nonce) < 0)
			rc = perr(err, -EPIPE, "%s: its vmm does not take a "
				  "ping", a->parts[i]->name);
		left++;
	}
	if (rc == 0 && a->u->fault == UPDATE_FAULT_PING_DIE)
		leave(a, 3, NULL);
	while (rc == 0 && left) {
		for (unsigned i = 0; i < n; i++)
			pf[i] = (struct pollfd){ .fd = done[i] ? -1
							: a->parts[i]->ctl,
						 .events = POLLIN };
		int r = poll(pf, n, remaining_ms(a->deadline));
		if (r == 0) {
			for (unsigned i = 0; i < n; i++)
				if (!done[i]) {
					rc = perr(err, -ETIMEDOUT, "%s: its vmm "
						  "did not answer a ping in "
						  "time", a->parts[i]->name);
					break;
				}
		}
		for (unsigned i = 0; rc == 0 && r > 0 && i < n; i++) {
			if (done[i] || !pf[i].revents)
				continue;
			int k = partition_read_held(a->parts[i], nonce, err);
			if (k < 0)
				rc = k;
			else if (k == 1) {
				done[i] = true;
				left--;
			}
		}
	}
	free(done);
	free(pf);
	return rc;
}

int update_adopt(int sock, struct update_adopt *u, struct parley_err *err)
{
	struct adopt a = { .u = u, .sock = sock };
	/* Our parent is the old agent (update_commit started us); it waits
	 * for our hello, so the pid is still its. */
	u->old_pidfd = (int)syscall(SYS_pidfd_open, getppid(), 0);
	int timeout = u->timeout_ms > 0 ? u->timeout_ms : 5000;
	a.deadline = mono_now_ns() + (uint64_t)timeout * 1000000;
	if (upd_send(sock, UPD_HELLO, u->version, strlen(u->version), NULL,
		     0) < 0)
		leave(&a, 75, NULL);
	int rc = receive(&a, err);
	u->t_state_ns = mono_now_ns();
	if (rc == 0)
		rc = adopt_parts(&a, err);
	if (rc == 0)
		rc = adopt_chans(&a, err);
	u->t_adopted_ns = mono_now_ns();
	if (rc == 0)
		rc = ping_all(&a, err);
	u->t_pinged_ns = mono_now_ns();
	if (rc < 0)
		leave(&a, 75, perr_msg(err));
	if (u->fault == UPDATE_FAULT_NO_CONFIRM)
		for (;;)
			pause(); /* the old agent's deadline ends this */
	if (upd_send(sock, UPD_READY, NULL, 0, NULL, 0) < 0)
		leave(&a, 75, NULL);
	uint8_t type = 0;
	unsigned n = 0;
	char none[1];
	struct pollfd pf = { .fd = sock, .events = POLLIN };
	/* The old one answers at once; no deadline of ours: if it dies now,
	 * the end of stream says so. */
	while (poll(&pf, 1, -1) < 0 && errno == EINTR)
		;
	int len = upd_recv(sock, &type, none, 0, NULL, 0, &n);
	if (len == 0 && type == UPD_ABORT)
		leave(&a, 0, NULL);
	if (len < 0 || (type != UPD_COMMIT && type != 0))
		leave(&a, 75, NULL);
	/* Committed (or the old one vanished after our ready: then we are
	 * the only one left to serve). */
	u->t_commit_ns = mono_now_ns();
	close(sock);
	snprintf(u->old_version, sizeof(u->old_version), "%s",
		 a.h.old_version);
	snprintf(u->vmm_path, sizeof(u->vmm_path), "%s", a.h.vmm_path);
	snprintf(u->vmm_version, sizeof(u->vmm_version), "%s",
		 a.h.vmm_version);
	u->pause_ns = a.h.pause_ns;
	u->policy = a.h.policy;
	u->policy_len = a.h.policy_len;
	a.h.policy = NULL;
	for (unsigned i = 0; i < a.nfds; i++)
		if (a.fds[i] >= 0)
			close(a.fds[i]);
	free(a.fds);
	free(a.parts);
	handover_free(&a.h);
	return 0;
}

int update_old_gone(struct update_adopt *u, int timeout_ms)
{
	int rc = 0;
	if (u->old_pidfd >= 0) {
		struct pollfd pf = { .fd = u->old_pidfd, .events = POLLIN };
		uint64_t deadline = mono_now_ns() +
				    (uint64_t)timeout_ms * 1000000;
		int n;
		do
			n = poll(&pf, 1, remaining_ms(deadline));
		while (n < 0 && errno == EINTR);
		rc = n > 0 ? 0 : -ETIMEDOUT;
		close(u->old_pidfd);
	}
	u->old_pidfd = -1;
	return rc;
}
