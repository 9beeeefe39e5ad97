/*
 * The VMs of `parley-agent run` (vmrun.h).
 */
#include "agent/vm/vmrun.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int vmrun_start(struct vmrun *r, const char *state_dir, const char *uri,
		struct chanmgr *cm,
		struct audit *audit, struct baseline_db *db,
		const struct vm_spec *specs, unsigned n, FILE *out,
		struct parley_err *err)
{
	memset(r, 0, sizeof(*r));
	r->out = out;
	if (n > VMMGR_MAX)
		return perr(err, -E2BIG, "%u VMs given, at most %d", n,
			    VMMGR_MAX);
	int rc = vmmgr_init(&r->m, state_dir, uri, cm, audit, err);
	if (rc)
		return rc;
	vmmgr_set_baselines(&r->m, db);
	r->on = true;
	for (unsigned i = 0; i < n; i++) {
		r->con[i].rc = -1;
		rc = vmmgr_add(&r->m, &specs[i], err);
		if (rc) {
			struct parley_err e2 = { 0 };
			perr_prefix(err, "VM %s", specs[i].name);
			/* It may have started before the failure. */
			vmhost_destroy(&r->m.host, specs[i].name, &e2);
			vmrun_free(r);
			return rc;
		}
		r->n++;
	}
	unsigned adopted = 0, destroyed = 0;
	rc = vmmgr_reconcile(&r->m, &adopted, &destroyed, err);
	if (rc) {
		vmrun_free(r);
		return rc;
	}
	/* An adopted VM's console was streamed by the agent before us (a
	 * hand-over's old agent printed it up to its commit): from its end. */
	for (unsigned i = 0; i < r->n; i++) {
		char path[PATH_MAX + 64];
		struct stat st;
		vmhost_console_path(&r->m.host, specs[i].name, path,
				    sizeof(path));
		if (r->m.vm[i].adopted && stat(path, &st) == 0)
			r->con[i].off = (long)st.st_size;
	}
	for (unsigned i = 0; i < r->n; i++)
		fprintf(out, "%s| (VM %s, %u MiB, %s)\n", specs[i].name,
			r->m.vm[i].adopted ? "adopted" : "started",
			specs[i].mem_mib ? specs[i].mem_mib : 192,
			specs[i].accel == VM_ACCEL_TCG ? "tcg"
			: specs[i].accel == VM_ACCEL_KVM ? "kvm" : "auto");
	if (destroyed)
		fprintf(out, "parley-agent: destroyed %u VM(s) of an earlier "
			"run without a spec here\n", destroyed);
	fflush(out);
	return 0;
}

unsigned vmrun_fds(struct vmrun *r, int *fds, unsigned cap)
{
	unsigned n = 0;
	for (unsigned i = 0; r->on && i < r->n && n < cap; i++)
		n += vmmgr_fds(&r->m, i, fds + n, cap - n);
	return n;
}

/* One byte of a guest's console line as the agent prints it: the guest
 * is hostile, so no terminal escape or control byte reaches the
 * operator's terminal or log. */
static char printable(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
}

/* New whole lines of VM i's console, prefixed with its name; the init's
 * `PARLEY-GUEST done rc=N` kept as the result. A guest writes its console
 * as fast as it likes (QEMU appends to the file): each call reads at most
 * VMRUN_CON_READ bytes, skips past a backlog over VMRUN_CON_BACKLOG
 * (saying how much it dropped), and gives back the disk space of what it
 * has read, so neither the agent's loop nor the state directory's
 * filesystem is the guest's to fill. */
/* What fd (at c->off) holds, up to VMRUN_CON_READ bytes, as lines. */
static void con_read(int fd, const struct stat *st, struct vmrun_con *c,
		     const char *name, FILE *out)
{
	if (st->st_size - c->off > VMRUN_CON_BACKLOG) {
		long skip = (long)st->st_size - c->off - VMRUN_CON_BACKLOG / 2;
		fprintf(out, "%s| (console: %ld bytes dropped, written faster "
			"than read)\n", name, skip);
		c->off += skip;
		c->len = 0;
	}
	static char buf[VMRUN_CON_READ];
	ssize_t n = pread(fd, buf, sizeof(buf), c->off);
	for (ssize_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)buf[i];
		c->off++;
		if (ch == '\r')
			continue;
		if (ch != '\n' && c->len < sizeof(c->line) - 1) {
			c->line[c->len++] = printable(ch);
			continue;
		}
		if (ch != '\n')
			continue; /* over-long: the rest dropped */
		c->line[c->len] = 0;
		int rc;
		if (sscanf(c->line, "PARLEY-GUEST done rc=%d", &rc) == 1)
			c->rc = rc;
		fprintf(out, "%s| %s\n", name, c->line);
		c->len = 0;
	}
}

/* The console file at path, O_NOFOLLOW, a regular file: fd or -1. */
static int con_open(const char *path, struct stat *st)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -1;
	}
	return fd;
}

void vmrun_console(struct vmhost *h, const char *name, struct vmrun_con *c,
		   FILE *out)
{
	char path[PATH_MAX + 64], old[PATH_MAX + 80];
	vmhost_console_path(h, name, path, sizeof(path));
	struct stat st, ost;
	int fd = con_open(path, &st);
	if (fd < 0)
		return;
	/* rotated (virtlogd): the rest of the file we were reading, now
	 * NAME.console.0, then the new one from its start. A new file may
	 * get the inode number of one freed meanwhile: shorter than what we
	 * read of ours, it is a new one too. */
	if (c->ino && (st.st_ino != c->ino || st.st_size < c->off)) {
		snprintf(old, sizeof(old), "%s.0", path);
		int ofd = con_open(old, &ost);
		if (ofd >= 0 && ost.st_ino == c->ino)
			for (int k = 0; k < 64 && c->off < ost.st_size; k++)
				con_read(ofd, &ost, c, name, out);
		if (ofd >= 0)
			close(ofd);
		c->off = c->punched = 0;
	}
	c->ino = st.st_ino;
	con_read(fd, &st, c, name, out);
	/* Past the first MiB (a boot's and a script's lines stay whole for
	 * whoever reads the file), what was read takes no disk any more
	 * (the file keeps its size: QEMU's offset and ours stay). */
	long done = c->off & ~4095L;
	if (done > (1L << 20) && done > c->punched &&
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      done) == 0)
		c->punched = done;
	close(fd);
	fflush(out);
}

static void console(struct vmrun *r, unsigned i)
{
	vmrun_console(&r->m.host, r->m.vm[i].spec.name, &r->con[i], r->out);
}

void vmrun_console_all(struct vmrun *r)
{
	for (unsigned i = 0; r->on && i < r->n; i++)
		if (!r->con[i].stopped)
			console(r, i);
}

void vmrun_serve(struct vmrun *r)
{
	for (unsigned i = 0; r->on && i < r->n; i++) {
		if (r->con[i].stopped)
			continue;
		int rc;
		/* Drain: each call handles what one recv brought. */
		for (int k = 0; k < 64 && (rc = vmmgr_serve(&r->m, i)) == 0; k++)
			;
		console(r, i);
		if (rc == -EPROTO) {
			/* No control port any more (vm_ctl_violation
			 * audited): a run cannot serve it, nor wait for it. */
			struct parley_err err = { 0 };
			vmhost_destroy(&r->m.host, r->m.vm[i].spec.name, &err);
		}
		if ((rc == -EPIPE || rc == -EPROTO) && vmmgr_reap(&r->m, i)) {
			r->con[i].stopped = true;
			console(r, i);
		}
	}
}

unsigned vmrun_live(const struct vmrun *r)
{
	unsigned n = 0;
	for (unsigned i = 0; r->on && i < r->n; i++)
		n += !r->con[i].stopped;
	return n;
}

void vmrun_stop(struct vmrun *r)
{
	struct parley_err err = { 0 };
	for (unsigned i = 0; r->on && i < r->n; i++)
		if (!r->con[i].stopped)
			vmhost_destroy(&r->m.host, r->m.vm[i].spec.name, &err);
}

int vmrun_summary(struct vmrun *r)
{
	int bad = 0;
	for (unsigned i = 0; r->on && i < r->n; i++) {
		const struct vm_part *v = &r->m.vm[i];
		const struct vmrun_con *c = &r->con[i];
		if (v->late)
			fprintf(r->out, "  %-20s %-8s revoked-access\n",
				v->spec.name, "vm");
		else if (c->rc >= 0)
			fprintf(r->out, "  %-20s %-8s exit %d\n", v->spec.name,
				"vm", c->rc);
		else
			fprintf(r->out, "  %-20s %-8s %s\n", v->spec.name, "vm",
				c->stopped ? "stopped (no result)" : "running");
		bad |= v->late || c->rc != 0;
	}
	fflush(r->out);
	return bad;
}

void vmrun_free(struct vmrun *r)
{
	if (!r->on)
		return;
	vmrun_stop(r);
	vmmgr_free(&r->m);
	r->on = false;
}
