#include "agent/vmx/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define HANDLE_SLOT(h) ((unsigned)((h) & 0xffff))

void win_init(struct vmx_windows *ws)
{
	memset(ws, 0, sizeof(*ws));
	pthread_mutex_init(&ws->gone_lock, NULL);
	for (unsigned i = 0; i < WIN_SLOTS; i++)
		ws->w[i].bell_own = ws->w[i].bell_peer = -1;
}

static int check_map(const struct ctl_map *m, struct parley_err *err)
{
	uint64_t end;
	if (m->slot >= WIN_SLOTS || HANDLE_SLOT(m->handle) != m->slot ||
	    (m->handle >> 16) == 0 || m->handle > 0xffffffffull)
		return perr(err, -EINVAL, "map: bad slot %llu / handle 0x%llx",
			    (unsigned long long)m->slot,
			    (unsigned long long)m->handle);
	if (m->nseg < 1 || m->nseg > CTL_MAP_SEGS_MAX || m->size == 0 ||
	    (m->gpa | m->size) % PARLEY_PAGE_SIZE ||
	    __builtin_add_overflow(m->gpa, m->size, &end) ||
	    m->gpa < PARLEY_CHAN_BASE || end > PARLEY_CHAN_BASE + PARLEY_CHAN_SIZE)
		return perr(err, -EINVAL, "map: window 0x%llx+0x%llx",
			    (unsigned long long)m->gpa,
			    (unsigned long long)m->size);
	uint64_t at = 0;
	for (unsigned i = 0; i < m->nseg; i++) {
		if (m->seg[i].off != at || m->seg[i].len == 0 ||
		    m->seg[i].len % PARLEY_PAGE_SIZE ||
		    m->seg[i].len > m->size - at)
			return perr(err, -EINVAL, "map: segment %u", i);
		at += m->seg[i].len;
	}
	if (at != m->size)
		return perr(err, -EINVAL, "map: segments do not cover the window");
	for (unsigned i = 0; i < m->nseg; i++)
		if (m->seg[i].mem >= m->nmem ||
		    m->seg[i].file_off % PARLEY_PAGE_SIZE ||
		    m->seg[i].file_off > UINT64_MAX - m->seg[i].len ||
		    m->seg[i].readonly > 1)
			return perr(err, -EINVAL, "map: segment %u memory", i);
	return 0;
}

/* Give the slot's doorbell numbers the new eventfds: dup2 replaces a
 * descriptor atomically, so a vCPU holding the old number writes at worst
 * a spurious wake-up, never into an unrelated file. */
static int adopt_fd(int *slot_fd, int fd)
{
	if (*slot_fd < 0) {
		*slot_fd = fd;
		return 0;
	}
	int rc = dup3(fd, *slot_fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int win_map(struct vmx_vm *vm, const struct ctl_map *m, const int *fds,
	    struct parley_err *err)
{
	int rc = check_map(m, err);
	pthread_mutex_lock(&vm->win_lock);
	struct vmx_window *w = rc == 0 ? &vm->win.w[m->slot] : NULL;
	if (w && atomic_load(&w->handle))
		rc = perr(err, -EBUSY, "map: slot %llu in use",
			  (unsigned long long)m->slot);
	if (rc == 0)
		rc = vm->eng->win_map(vm, (unsigned)m->slot, w, m, fds + 2);
	for (unsigned i = 2; i < 2 + m->nmem; i++)
		close(fds[i]); /* the mapping keeps the memory */
	if (rc == 0)
		rc = adopt_fd(&w->bell_own, fds[0]);
	else
		close(fds[0]);
	if (rc == 0)
		rc = adopt_fd(&w->bell_peer, fds[1]);
	else
		close(fds[1]);
	if (rc == 0)
		rc = vm->eng->doorbell(vm, w, m->handle, true);
	if (rc == 0) {
		w->chan = m->chan;
		for (unsigned i = 0; i < m->nseg; i++) {
			w->seg_off[i] = m->seg[i].off;
			w->seg_len[i] = m->seg[i].len;
		}
		atomic_store(&w->revoked_handle, 0);
		atomic_store(&w->peer_gone, false);
		atomic_store(&w->handle, m->handle);
	} else if (w && w->nseg) {
		vm->eng->win_unmap(vm, (unsigned)m->slot, w);
	}
	pthread_mutex_unlock(&vm->win_lock);
	if (rc < 0 && err && !err->msg[0])
		perr(err, rc, "map: %s", strerror(-rc));
	return rc;
}

static void remember_gone(struct vmx_vm *vm, const struct vmx_window *w,
			  bool revoked)
{
	pthread_mutex_lock(&vm->win.gone_lock);
	struct vmx_gone g = { w->gpa, w->size, revoked };
	if (vm->win.ngone < WIN_GONE_MAX)
		vm->win.gone[vm->win.ngone++] = g;
	else /* forget the oldest */
		memmove(vm->win.gone, vm->win.gone + 1,
			(WIN_GONE_MAX - 1) * sizeof(g)),
			vm->win.gone[WIN_GONE_MAX - 1] = g;
	pthread_mutex_unlock(&vm->win.gone_lock);
}

/* Take a window down; called with win_lock held. */
static void take_down(struct vmx_vm *vm, unsigned wi, struct vmx_window *w,
		      bool revoked)
{
	/* Memory first: a vCPU told CLOSED must find the window gone. Then
	 * revoked before invalid: one that finds the handle gone must also
	 * find it revoked, or it reports BAD_HANDLE for CLOSED. */
	uint64_t h = atomic_load(&w->handle);
	vm->eng->doorbell(vm, w, h, false);
	remember_gone(vm, w, revoked);
	vm->eng->win_unmap(vm, wi, w);
	atomic_store(&w->revoked_handle, revoked ? h : 0);
	atomic_store(&w->handle, 0);
	/* Wake whoever waits on it: CHAN_WAIT then reports CLOSED. */
	uint64_t one = 1;
	if (write(w->bell_own, &one, sizeof(one)) < 0) {
		/* an eventfd write only fails on overflow: already awake */
	}
}

int win_revoke(struct vmx_vm *vm, uint32_t chan, uint64_t *handle)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&vm->win_lock);
	for (unsigned i = 0; i < WIN_SLOTS; i++) {
		struct vmx_window *w = &vm->win.w[i];
		uint64_t h = atomic_load(&w->handle);
		if (h && w->chan == chan) {
			*handle = h;
			take_down(vm, i, w, true);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&vm->win_lock);
	if (rc == 0)
		vm->eng->win_settle(vm);
	return rc;
}

int win_peer_gone(struct vmx_vm *vm, uint32_t chan)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&vm->win_lock);
	for (unsigned i = 0; i < WIN_SLOTS; i++) {
		struct vmx_window *w = &vm->win.w[i];
		if (atomic_load(&w->handle) && w->chan == chan) {
			atomic_store(&w->peer_gone, true);
			uint64_t one = 1;
			if (write(w->bell_own, &one, sizeof(one)) < 0) {
				/* only on overflow: already awake */
			}
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&vm->win_lock);
	return rc;
}

int win_close(struct vmx_vm *vm, uint64_t handle, uint32_t *chan)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&vm->win_lock);
	struct vmx_window *w = win_lookup(vm, handle);
	if (w) {
		*chan = w->chan;
		take_down(vm, HANDLE_SLOT(handle), w, false);
		rc = 0;
	} else if (win_was_revoked(vm, handle)) {
		/* Closing a revoked handle acknowledges it. */
		atomic_store(&vm->win.w[HANDLE_SLOT(handle)].revoked_handle, 0);
		rc = -ESTALE;
	}
	pthread_mutex_unlock(&vm->win_lock);
	if (rc == 0)
		vm->eng->win_settle(vm);
	return rc;
}

struct vmx_window *win_lookup(struct vmx_vm *vm, uint64_t handle)
{
	unsigned slot = HANDLE_SLOT(handle);
	if (!handle || slot >= WIN_SLOTS || handle > 0xffffffffull)
		return NULL;
	struct vmx_window *w = &vm->win.w[slot];
	return atomic_load(&w->handle) == handle ? w : NULL;
}

bool win_was_revoked(struct vmx_vm *vm, uint64_t handle)
{
	unsigned slot = HANDLE_SLOT(handle);
	return handle && slot < WIN_SLOTS && handle <= 0xffffffffull &&
	       atomic_load(&vm->win.w[slot].revoked_handle) == handle;
}

/* An exit inside a live window: a write to a section this side may only
 * read, or else memory that is no longer there (truncated by the agent,
 * or by the writer of that section). */
static int live_kind(const struct vmx_window *w, uint64_t off, bool write)
{
	for (unsigned i = 0; i < w->nseg && i < CTL_MAP_SEGS_MAX; i++)
		if (off >= w->seg_off[i] && off - w->seg_off[i] < w->seg_len[i])
			return write && w->ro[i] ? 3 : 1;
	return 1;
}

int win_classify(struct vmx_vm *vm, uint64_t gpa, bool write)
{
	int kind = 0;
	pthread_mutex_lock(&vm->win_lock);
	for (unsigned i = 0; i < WIN_SLOTS && !kind; i++) {
		struct vmx_window *w = &vm->win.w[i];
		if (atomic_load(&w->handle) && gpa >= w->gpa &&
		    gpa < w->gpa + w->size)
			kind = live_kind(w, gpa - w->gpa, write);
	}
	pthread_mutex_unlock(&vm->win_lock);
	if (kind)
		return kind;
	pthread_mutex_lock(&vm->win.gone_lock);
	for (unsigned i = vm->win.ngone; i-- > 0 && !kind;) {
		const struct vmx_gone *g = &vm->win.gone[i];
		if (gpa >= g->gpa && gpa < g->gpa + g->size)
			kind = g->revoked ? 1 : 2;
	}
	pthread_mutex_unlock(&vm->win.gone_lock);
	return kind;
}

bool win_fault(struct vmx_vcpu *c, uint64_t gpa, int kind, const char *rw)
{
	unsigned long long a = (unsigned long long)gpa;
	switch (kind) {
	case 1:
		vmx_vcpu_fault(c, VMX_STOP_REVOKED_ACCESS, gpa, "%s at 0x%llx "
			       "in a channel window that was revoked", rw, a);
		return true;
	case 2:
		vmx_vcpu_fault(c, VMX_STOP_BAD_ACCESS, gpa, "%s at 0x%llx in a "
			       "channel window the partition closed", rw, a);
		return true;
	case 3:
		vmx_vcpu_fault(c, VMX_STOP_READONLY_WRITE, gpa, "write at "
			       "0x%llx to a channel page this partition may "
			       "only read", a);
		return true;
	default:
		return false;
	}
}
