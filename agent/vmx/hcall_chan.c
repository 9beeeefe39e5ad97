/* Channel hypercalls as the vmm process serves them. CHAN_OPEN needs a
 * decision, so the vCPU asks the grant manager and waits; NOTIFY, WAIT and
 * CLOSE need none and are served here, on the handle table alone. Each
 * handler gets the checked private copy of its argument struct from the
 * dispatcher (hcall.c) and fills in its OUT fields; nothing here touches
 * guest memory. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"
#include <parley/segset.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Wait for the grant manager's answer; false if the partition stopped. */
static bool await_reply(struct vmx_vcpu *c, struct ctl_open_reply *r)
{
	struct vmx_vm *vm = c->vm;
	pthread_mutex_lock(&vm->lock);
	while (!c->replied && atomic_load(&vm->state) != VMX_STOP)
		pthread_cond_wait(&vm->cond, &vm->lock);
	bool ok = c->replied;
	*r = c->reply;
	c->replied = false;
	c->awaiting = false;
	vm->nparked--;
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

/* Ask the grant manager (a CTL_OPEN_REQ or CTL_UPDATE_REQ) and wait for
 * its answer. false: the partition stopped meanwhile. No agent link (a
 * bare vmm): NOSYS. */
bool vmx_ask_agent(struct vmx_vcpu *c, uint32_t type, const void *req,
		   uint32_t len, struct ctl_open_reply *r)
{
	/* Counted as parked while it waits, so a pause need not wait for
	 * the grant manager; the answer is written after the pause. */
	pthread_mutex_lock(&c->vm->lock);
	c->awaiting = true;
	c->vm->nparked++;
	pthread_cond_broadcast(&c->vm->cond);
	pthread_mutex_unlock(&c->vm->lock);
	if (c->vm->ctl_fd < 0 || ctl_send(c->vm->ctl_fd, type, req, len) < 0) {
		*r = (struct ctl_open_reply){ .status = PARLEY_E_NOSYS };
		pthread_mutex_lock(&c->vm->lock);
		c->awaiting = false;
		c->vm->nparked--;
		pthread_mutex_unlock(&c->vm->lock);
		return true;
	}
	return await_reply(c, r);
}

static bool ask_agent(struct vmx_vcpu *c, const struct ctl_open_req *req,
		      struct ctl_open_reply *r)
{
	return vmx_ask_agent(c, CTL_OPEN_REQ, req, sizeof(*req), r);
}

/* The channel an answer names, into the OUT fields of a hypercall struct
 * (chan_open's, svc_call's and svc_accept's have the same names). */
#define CHAN_OUT(a, r)                                                     \
	do {                                                               \
		(a)->handle = (r)->handle;                                 \
		(a)->gpa = (r)->gpa;                                       \
		(a)->size = (r)->size;                                     \
		(a)->tx = (r)->tx;                                         \
		(a)->rx = (r)->rx;                                         \
		(a)->ret = (r)->status;                                    \
	} while (0)

/* A name the partition passed: NUL-terminated within its field and not
 * empty; copied into out (same size). */
static bool name_in(const char *name, size_t cap, char *out)
{
	size_t len = strnlen(name, cap);
	if (len == 0 || len == cap)
		return false;
	memcpy(out, name, len + 1);
	return true;
}

/* A request named by the partition: its names checked (target only for a
 * call), then the grant manager asked. 1: answered (*r); 0: a bad name
 * (nothing asked); -1: the partition stopped meanwhile. */
static int ask_named(struct vmx_vcpu *c, uint32_t op, const char *name,
		     const char *target, size_t cap, struct ctl_open_reply *r)
{
	struct ctl_open_req req = { .vcpu = c->index, .op = op };
	if (!name_in(name, cap, req.name) ||
	    (target && !name_in(target, cap, req.target)))
		return 0;
	return ask_agent(c, &req, r) ? 1 : -1;
}

bool vmx_hc_chan_open(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_chan_open *a = arg;
	struct ctl_open_reply r;
	int k = ask_named(c, CTL_OP_CHAN_OPEN, a->name, NULL, sizeof(a->name),
			  &r);
	if (k <= 0) {
		a->ret = PARLEY_E_INVAL;
		return k == 0;
	}
	CHAN_OUT(a, &r);
	VMX_DETAIL_OUT(a->detail, &r);
	return true;
}

_Static_assert(PARLEY_SVC_NAME_MAX == PARLEY_CHAN_NAME_MAX,
	       "service names travel in the open request's name field");

bool vmx_hc_svc_offer(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_svc_offer *a = arg;
	struct ctl_open_reply r;
	int k = ask_named(c, CTL_OP_SVC_OFFER, a->name, NULL, sizeof(a->name),
			  &r);
	a->ret = k > 0 ? r.status : PARLEY_E_INVAL;
	return k >= 0;
}

bool vmx_hc_svc_call(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_svc_call *a = arg;
	struct ctl_open_reply r;
	_Static_assert(sizeof(a->target) == sizeof(a->name), "target");
	int k = ask_named(c, CTL_OP_SVC_CALL, a->name, a->target,
			  sizeof(a->name), &r);
	if (k <= 0) {
		a->ret = PARLEY_E_INVAL;
		return k == 0;
	}
	CHAN_OUT(a, &r);
	VMX_DETAIL_OUT(a->detail, &r);
	return true;
}

bool vmx_hc_svc_accept(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_svc_accept *a = arg;
	struct ctl_open_reply r;
	int k = ask_named(c, CTL_OP_SVC_ACCEPT, a->name, NULL, sizeof(a->name),
			  &r);
	if (k <= 0) {
		a->ret = PARLEY_E_INVAL;
		return k == 0;
	}
	CHAN_OUT(a, &r);
	VMX_DETAIL_OUT(a->caller, &r);
	return true;
}

_Static_assert(PARLEY_SEGSET_NAME_MAX == PARLEY_CHAN_NAME_MAX,
	       "set names travel in the open request's name field");

bool vmx_hc_seg_attach(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_seg_attach *a = arg;
	struct ctl_open_reply r;
	int k = ask_named(c, CTL_OP_SEG_ATTACH, a->name, NULL, sizeof(a->name),
			  &r);
	a->reserved = 0;
	if (k <= 0) {
		a->ret = PARLEY_E_INVAL;
		return k == 0;
	}
	a->handle = r.handle;
	a->gpa = r.gpa;
	a->size = r.size;
	a->member = r.tx;
	a->ret = r.status;
	VMX_DETAIL_OUT(a->detail, &r);
	return true;
}

bool vmx_hc_seg_detach(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_seg_detach *a = arg;
	struct ctl_open_reply r;
	int k = ask_named(c, CTL_OP_SEG_DETACH, a->name, NULL, sizeof(a->name),
			  &r);
	a->ret = k > 0 ? r.status : PARLEY_E_INVAL;
	return k >= 0;
}

static void ring(int fd)
{
	uint64_t one = 1;
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
		/* overflow of the counter: the peer is awake anyway */
	}
}

static int64_t handle_status(struct vmx_vcpu *c, uint64_t h)
{
	return win_was_revoked(c->vm, h) ? PARLEY_E_CLOSED : PARLEY_E_BAD_HANDLE;
}

bool vmx_hc_chan_notify(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_chan_notify *a = arg;
	struct vmx_window *w = win_lookup(c->vm, a->handle);
	if (w && atomic_load(&w->peer_gone)) {
		a->ret = PARLEY_E_PEER_DOWN;
		return true;
	}
	if (w)
		ring(w->bell_peer);
	a->ret = w ? PARLEY_OK : handle_status(c, a->handle);
	return true;
}

static int64_t wait_fill(struct vmx_vcpu *c, const struct parley_hc_chan_wait *a,
			 struct pollfd *pf, uint64_t *ready)
{
	for (uint32_t i = 0; i < a->n; i++) {
		struct vmx_window *w = win_lookup(c->vm, a->handles[i]);
		if (!w) {
			if (win_was_revoked(c->vm, a->handles[i])) {
				*ready |= 1ull << i;
				return PARLEY_E_CLOSED;
			}
			return PARLEY_E_BAD_HANDLE;
		}
		/* Nothing more will come; what came can still be read. */
		if (atomic_load(&w->peer_gone)) {
			*ready |= 1ull << i;
			return PARLEY_E_PEER_DOWN;
		}
		pf[i] = (struct pollfd){ .fd = w->bell_own, .events = POLLIN };
	}
	pf[a->n] = (struct pollfd){ .fd = c->kick_fd, .events = POLLIN };
	return PARLEY_OK;
}

static int wait_timeout_ms(uint64_t ns)
{
	if (ns == UINT64_MAX)
		return -1;
	uint64_t ms = (ns + 999999) / 1000000;
	return ms > 60000 ? 60000 : (int)ms; /* longer: returns early, OK */
}

static int64_t wait_collect(struct vmx_vcpu *c,
			    const struct parley_hc_chan_wait *a,
			    struct pollfd *pf, uint64_t *ready)
{
	int64_t ret = PARLEY_OK;
	for (uint32_t i = 0; i < a->n; i++) {
		if (!(pf[i].revents & POLLIN))
			continue;
		uint64_t v;
		if (read(pf[i].fd, &v, sizeof(v)) < 0) {
			/* raced with another reader: nothing to drain */
		}
		*ready |= 1ull << i;
		struct vmx_window *w = win_lookup(c->vm, a->handles[i]);
		if (!w)
			ret = PARLEY_E_CLOSED;
		else if (atomic_load(&w->peer_gone) && ret == PARLEY_OK)
			ret = PARLEY_E_PEER_DOWN;
	}
	if (pf[a->n].revents & POLLIN) {
		uint64_t v;
		if (read(c->kick_fd, &v, sizeof(v)) < 0) {
			/* drained already */
		}
	}
	return ret;
}

/* Look without sleeping for a short while first: waking from poll() costs
 * about 15 us here, a busy look about 2 us, and a peer that answers within
 * that time is the common case under load. */
#define WAIT_SPIN_NS 20000ull

static int spin_poll(struct pollfd *pf, unsigned n, uint64_t timeout_ns)
{
	uint64_t end = mono_now_ns() +
		       (timeout_ns < WAIT_SPIN_NS ? timeout_ns : WAIT_SPIN_NS);
	int got;
	do
		got = poll(pf, n, 0);
	while (got == 0 && mono_now_ns() < end);
	return got < 0 ? 0 : got;
}

bool vmx_hc_chan_wait(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_chan_wait *a = arg;
	uint64_t ready = 0;
	int64_t ret;
	struct pollfd pf[PARLEY_WAIT_MAX + 1];
	if (a->n > PARLEY_WAIT_MAX)
		ret = PARLEY_E_INVAL;
	else
		ret = wait_fill(c, a, pf, &ready);
	if (ret == PARLEY_OK) {
		int n = spin_poll(pf, a->n + 1, a->timeout_ns);
		if (n == 0 && a->timeout_ns)
			n = poll(pf, a->n + 1, wait_timeout_ms(a->timeout_ns));
		if (n == 0 && a->timeout_ns != UINT64_MAX)
			ret = PARLEY_E_TIMEOUT;
		else if (n > 0)
			ret = wait_collect(c, a, pf, &ready);
	}
	a->ready = ready;
	a->ret = ret;
	return true;
}

bool vmx_hc_chan_close(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_chan_close *a = arg;
	uint32_t chan;
	int rc = win_close(c->vm, a->handle, &chan);
	if (rc == 0 && c->vm->ctl_fd >= 0) {
		struct ctl_chan_ref ref = { .chan = chan, .handle = a->handle };
		ctl_send(c->vm->ctl_fd, CTL_CLOSED, &ref, sizeof(ref));
	}
	a->ret = rc == 0 || rc == -ESTALE ? PARLEY_OK : PARLEY_E_BAD_HANDLE;
	return true;
}

/* A doorbell value that matched no ioeventfd: a stale or forged handle.
 * Nothing to ring; the partition learns through CHAN_NOTIFY if it asks. */
bool vmx_doorbell_slow(struct vmx_vcpu *c, uint32_t value)
{
	struct vmx_window *w = win_lookup(c->vm, value);
	if (w) /* registered a moment ago: ring it ourselves */
		ring(w->bell_peer);
	return true;
}
