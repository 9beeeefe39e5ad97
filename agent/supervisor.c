#include "agent/supervisor.h"
#include "agent/backend.h"
#include "agent/ctl/stop.h"
#include "common/fileio.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static struct sup_entry *entry_of(struct supervisor *s, struct partition *p)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->e[i].p == p)
			return &s->e[i];
	return NULL;
}

static void flush_line(struct supervisor *s, struct sup_entry *e)
{
	if (!e->len)
		return;
	fprintf(s->out, "%s| %.*s\n", e->p->name, (int)e->len, e->line);
	e->len = 0;
}

void sup_console(struct partition *p, const char *buf, size_t len, void *ctx)
{
	struct supervisor *s = ctx;
	struct sup_entry *e = entry_of(s, p);
	if (!e)
		return;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (c == '\n') {
			flush_line(s, e);
			continue;
		}
		/* Partitions are untrusted: no terminal control sequences
		 * (C0 controls and DEL; UTF-8 text passes). */
		if (((unsigned char)c < 0x20 && c != '\t') || c == 0x7f)
			c = '?';
		e->line[e->len++] = c;
		if (e->len == sizeof(e->line))
			flush_line(s, e);
	}
	fflush(s->out);
}

int sup_add(struct supervisor *s, struct partition *p)
{
	if (s->n >= SUP_MAX)
		return -ENOSPC;
	s->e[s->n++] = (struct sup_entry){ .p = p };
	return 0;
}

void sup_remove(struct supervisor *s, struct partition *p)
{
	struct sup_entry *e = entry_of(s, p);
	if (!e)
		return;
	flush_line(s, e); /* its last words, before its name can be reused */
	fflush(s->out);
	/* Entries are looked up by partition, never kept by address: the
	 * last one moves into the hole. */
	*e = s->e[--s->n];
}

static void report_finish(struct supervisor *s, struct sup_entry *e)
{
	flush_line(s, e);
	const struct ctl_finished *f = &e->p->fin;
	if (f->reason == VMX_STOP_EXIT)
		fprintf(s->out, "%s: exited with code %lld\n", e->p->name,
			(long long)f->code);
	else
		fprintf(s->out, "%s: stopped: %s: %s (vcpu %u, rip 0x%llx)\n",
			e->p->name, vmx_stop_name(f->reason), f->detail,
			f->vcpu, (unsigned long long)f->rip);
	fflush(s->out);
}

static void suspend_all(struct supervisor *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct partition *p = s->e[i].p;
		struct parley_err err = { 0 };
		char path[4096];
		if (p->finished)
			continue;
		char file[80];
		snprintf(file, sizeof(file), "%s.snap", p->name);
		if (path_join(path, sizeof(path), s->snapshot_dir, file) < 0)
			perr(&err, -ENAMETOOLONG, "snapshot path too long");
		else if (partition_pause(p, &err) == 0 &&
		    partition_save(p, path, &err) == 0)
			fprintf(s->out, "%s: saved to %s\n", p->name, path);
		else
			fprintf(s->out, "%s: save failed: %s\n", p->name,
				perr_msg(&err));
		partition_stop(p);
	}
}

static void on_signal(struct supervisor *s, int sig)
{
	if (sig == SIGUSR2 && s->snapshot_dir) {
		suspend_all(s);
		return;
	}
	if (sig == SIGHUP && s->on_reload) {
		s->on_reload(s->owner);
		return;
	}
	if (sig == SIGUSR1 && s->on_upgrade) {
		s->upgrade_requested = true;
		return;
	}
	if (sig == SIGINT || sig == SIGTERM) {
		for (unsigned i = 0; i < s->n; i++)
			partition_stop(s->e[i].p);
		if (s->extra_stop)
			s->extra_stop(s->owner);
	}
}

static int summary(struct supervisor *s)
{
	int rc = 0;
	fprintf(s->out, "summary:\n");
	for (unsigned i = 0; i < s->n; i++) {
		const struct partition *p = s->e[i].p;
		const struct ctl_finished *f = &p->fin;
		bool ok = f->reason == VMX_STOP_EXIT && f->code == 0;
		const char *b = backend_name(p->backend);
		if (f->reason == VMX_STOP_EXIT)
			fprintf(s->out, "  %-20s %-8s exit %lld\n", p->name, b,
				(long long)f->code);
		else
			fprintf(s->out, "  %-20s %-8s %s\n", p->name, b,
				vmx_stop_name(f->reason));
		if (!ok)
			rc = 1;
	}
	fflush(s->out);
	return rc;
}

static void sup_sigset(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGUSR2);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
}

void sup_block_signals(void)
{
	sigset_t set;
	sup_sigset(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static int signal_fd(void)
{
	sigset_t set;
	sup_sigset(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

static void report_new_finishes(struct supervisor *s)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->e[i].p->finished && !s->e[i].reported) {
			s->e[i].reported = true;
			report_finish(s, &s->e[i]);
			if (s->on_gone)
				s->on_gone(s->e[i].p, s->owner);
		}
}

static bool still_ready(const struct partition *p)
{
	if (p->finished)
		return true; /* partition_handle returns at once */
	struct pollfd pf = { .fd = p->ctl, .events = POLLIN };
	return poll(&pf, 1, 0) != 0;
}

int sup_step(struct supervisor *s, int sfd, int max_ms)
{
	struct pollfd pf[SUP_MAX + 1 + SUP_EXTRA_FDS_MAX];
	unsigned n = 0, map[SUP_MAX];
	/* vmm processes are killed, never waited for: reap what has ended. */
	for (unsigned i = 0; i < s->n; i++)
		if (s->e[i].p->finished)
			partition_reap(s->e[i].p);
	for (unsigned i = 0; i < s->n; i++) {
		if (s->e[i].p->finished)
			continue;
		map[n] = i;
		pf[n++] = (struct pollfd){ .fd = s->e[i].p->ctl, .events = POLLIN };
	}
	unsigned live = s->extra_live ? s->extra_live(s->owner) : 0;
	if (!n && !live)
		return 0;
	pf[n] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	int xfd[SUP_EXTRA_FDS_MAX];
	unsigned nx = s->extra_fds ? s->extra_fds(s->owner, xfd,
						  SUP_EXTRA_FDS_MAX) : 0;
	for (unsigned k = 0; k < nx; k++)
		pf[n + 1 + k] = (struct pollfd){ .fd = xfd[k], .events = POLLIN };
	int timeout = s->on_tick && (max_ms < 0 || s->tick_ms < max_ms)
			      ? s->tick_ms : max_ms;
	for (unsigned k = 0; k < n; k++)
		if (partition_has_deferred(s->e[map[k]].p))
			timeout = 0;
	int ready = poll(pf, n + 1 + nx, timeout);
	if (ready < 0 && errno != EINTR)
		return -errno;
	if (s->extra_serve)
		s->extra_serve(s->owner);

	for (unsigned k = 0; k < n; k++) {
		struct partition *p = s->e[map[k]].p;
		/* Handling one partition's request may have read another's
		 * socket empty since the poll (a re-measurement waits for
		 * that vmm's dirty report and takes its console output on
		 * the way): look again rather than block on it. */
		if (partition_has_deferred(p) ||
		    (ready > 0 && pf[k].revents && still_ready(p)))
			partition_handle(p);
	}
	uint64_t now = mono_now_ns();
	if (s->on_tick && now - s->last_tick_ns >= (uint64_t)s->tick_ms * 1000000) {
		s->on_tick(s->owner);
		s->last_tick_ns = mono_now_ns();
	}
	struct signalfd_siginfo si;
	if (sfd >= 0 && ready > 0 && pf[n].revents &&
	    read(sfd, &si, sizeof(si)) == sizeof(si))
		on_signal(s, (int)si.ssi_signo);
	/* Also those that finished inside a request (stop, save). */
	report_new_finishes(s);
	return (int)(n + live);
}

int sup_run(struct supervisor *s)
{
	int sfd = signal_fd();
	s->last_tick_ns = mono_now_ns();
	while (sup_step(s, sfd, -1) > 0)
		if (s->upgrade_requested) {
			s->upgrade_requested = false;
			s->on_upgrade(s->owner);
		}
	if (sfd >= 0)
		close(sfd);
	report_new_finishes(s);
	return summary(s);
}

void sup_free(struct supervisor *s)
{
	for (unsigned i = 0; i < s->n; i++)
		partition_destroy(s->e[i].p);
	s->n = 0;
}
