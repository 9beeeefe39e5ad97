/* Hypercall dispatch, and the hypercalls a vmm process serves without
 * asking the grant manager (console, clock, exit, halt).
 *
 * One table, indexed by number, says for each hypercall its handler, the
 * size of its argument struct, where its OUT fields start and which IN
 * bytes are reserved. vmx_hypercall() checks everything the table says in
 * one place before a handler runs: the struct must lie 8-byte aligned in
 * memory the partition itself may write (gmem_guest_rw: never system
 * tables, boot info, config region, read-only image or a channel window),
 * is copied once into private memory, and its reserved bytes must be zero.
 * The handler works on the copy only and fills in its OUT fields; the
 * dispatcher alone writes back, and only those. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static bool hc_console(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_console_write *a = arg;
	uint64_t len = a->len < PARLEY_CONSOLE_MAX ? a->len : PARLEY_CONSOLE_MAX;
	/* The whole claimed length must be the partition's even though we
	 * take at most PARLEY_CONSOLE_MAX of it: a lie about a buffer is
	 * malice. Its own read-only image (strings in rodata) is admitted:
	 * we only read it. */
	enum gmem_refusal why;
	const char *buf = gmem_guest_r(&c->vm->gm, a->buf, a->len, 1, &why);
	if (!buf) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, a->buf,
			       "console write: buffer 0x%llx + %llu bytes is %s",
			       (unsigned long long)a->buf,
			       (unsigned long long)a->len,
			       gmem_refusal_str(why));
		return false;
	}
	if (c->vm->sink.console && len)
		c->vm->sink.console(c->vm->sink.ctx, c->index, buf, len);
	a->ret = (int64_t)len;
	return true;
}

static bool hc_clock(struct vmx_vcpu *c, void *arg)
{
	struct parley_hc_clock *a = arg;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	a->monotonic_ns = mono_now_ns() - c->vm->t0_ns;
	a->realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull +
			 (uint64_t)ts.tv_nsec;
	a->ret = PARLEY_OK;
	return true;
}

static bool hc_exit(struct vmx_vcpu *c, void *arg)
{
	const struct parley_hc_exit *a = arg;
	struct ctl_finished f = { .reason = VMX_STOP_EXIT, .vcpu = c->index,
				  .code = a->code };
	snprintf(f.detail, sizeof(f.detail), "exit code %lld",
		 (long long)a->code);
	vmx_vm_finish(c->vm, &f);
	return false;
}

static bool hc_halt(struct vmx_vcpu *c, void *arg)
{
	(void)arg; /* reserved only, checked by the dispatcher */
	vmx_vcpu_halt(c);
	return true; /* the gate parks this vCPU */
}

struct hc_desc {
	bool (*fn)(struct vmx_vcpu *c, void *arg);
	const char *name;
	uint16_t size;    /* of the argument struct */
	uint16_t out;     /* its OUT fields are [out, size): all written back */
	uint16_t rsv;     /* IN bytes [rsv, rsv + nrsv) must be zero */
	uint16_t nrsv;
};

#define HC_(fn_, name_, T, out_) \
	.fn = fn_, .name = name_, .size = sizeof(T), .out = out_
#define HC_OUT(fn_, name_, T, first_out) \
	{ HC_(fn_, name_, T, offsetof(T, first_out)) }
#define HC_IN(fn_, name_, T) { HC_(fn_, name_, T, sizeof(T)) }
#define HC_RSV(fn_, name_, T, out_, f)                                \
	{ HC_(fn_, name_, T, out_), .rsv = offsetof(T, f),            \
	  .nrsv = sizeof(((T *)0)->f) }

/* OUT fields follow every IN field: the write-back span holds no IN byte. */
_Static_assert(offsetof(struct parley_hc_console_write, ret) >=
	       offsetof(struct parley_hc_console_write, len) + 8, "console");
_Static_assert(offsetof(struct parley_hc_chan_open, handle) >=
	       PARLEY_CHAN_NAME_MAX, "open: name before OUT fields");
_Static_assert(offsetof(struct parley_hc_chan_open, detail) + 64 ==
	       sizeof(struct parley_hc_chan_open), "open: detail is last");
_Static_assert(offsetof(struct parley_hc_chan_notify, ret) >= 8, "notify");
_Static_assert(offsetof(struct parley_hc_chan_wait, ready) >=
	       offsetof(struct parley_hc_chan_wait, timeout_ns) + 8, "wait");
_Static_assert(offsetof(struct parley_hc_chan_close, ret) >= 8, "close");
_Static_assert(offsetof(struct parley_hc_update_write, ret) >=
	       offsetof(struct parley_hc_update_write, len) + 8, "upd write");
_Static_assert(offsetof(struct parley_hc_seg_attach, handle) >=
	       PARLEY_CHAN_NAME_MAX, "seg attach: name before OUT fields");
_Static_assert(offsetof(struct parley_hc_blk_info, sectors) == 8 &&
	       offsetof(struct parley_hc_blk_io, ret) == 32 &&
	       offsetof(struct parley_hc_blk_flush, ret) == 8 &&
	       offsetof(struct parley_hc_blk_submit, ret) == 16 &&
	       sizeof(struct parley_blk_desc) == 40, "blk: OUT after IN");
_Static_assert(offsetof(struct parley_hc_seg_detach, ret) >=
	       PARLEY_CHAN_NAME_MAX, "seg detach: name before OUT fields");

static const struct hc_desc hc_table[PARLEY_HC_MAX + 1] = {
	[PARLEY_HC_CONSOLE_WRITE] = HC_OUT(hc_console, "console write",
		struct parley_hc_console_write, ret),
	[PARLEY_HC_CLOCK] = HC_OUT(hc_clock, "clock", struct parley_hc_clock,
				   monotonic_ns),
	[PARLEY_HC_EXIT] = HC_IN(hc_exit, "exit", struct parley_hc_exit),
	[PARLEY_HC_HALT] = HC_RSV(hc_halt, "halt", struct parley_hc_halt,
				  sizeof(struct parley_hc_halt), reserved),
	[PARLEY_HC_CHAN_OPEN] = HC_OUT(vmx_hc_chan_open, "chan open",
		struct parley_hc_chan_open, handle),
	[PARLEY_HC_CHAN_NOTIFY] = HC_OUT(vmx_hc_chan_notify, "chan notify",
		struct parley_hc_chan_notify, ret),
	[PARLEY_HC_CHAN_WAIT] = HC_RSV(vmx_hc_chan_wait, "chan wait",
		struct parley_hc_chan_wait,
		offsetof(struct parley_hc_chan_wait, ready), reserved),
	[PARLEY_HC_CHAN_CLOSE] = HC_OUT(vmx_hc_chan_close, "chan close",
		struct parley_hc_chan_close, ret),
	[PARLEY_HC_SEG_ATTACH] = HC_OUT(vmx_hc_seg_attach, "seg attach",
		struct parley_hc_seg_attach, handle),
	[PARLEY_HC_SEG_DETACH] = HC_OUT(vmx_hc_seg_detach, "seg detach",
		struct parley_hc_seg_detach, ret),
	/* 11, 12 are not served here: unknown, the partition is stopped. */
	[PARLEY_HC_SVC_OFFER] = HC_OUT(vmx_hc_svc_offer, "svc offer",
		struct parley_hc_svc_offer, ret),
	[PARLEY_HC_SVC_CALL] = HC_OUT(vmx_hc_svc_call, "svc call",
		struct parley_hc_svc_call, handle),
	[PARLEY_HC_SVC_ACCEPT] = HC_OUT(vmx_hc_svc_accept, "svc accept",
		struct parley_hc_svc_accept, handle),
	[PARLEY_HC_UPDATE_BEGIN] = HC_OUT(vmx_hc_update_begin, "update begin",
		struct parley_hc_update_begin, ret),
	[PARLEY_HC_UPDATE_WRITE] = HC_OUT(vmx_hc_update_write, "update write",
		struct parley_hc_update_write, ret),
	[PARLEY_HC_UPDATE_COMMIT] = HC_RSV(vmx_hc_update_commit,
		"update commit", struct parley_hc_update_commit,
		offsetof(struct parley_hc_update_commit, ret), reserved),
	[PARLEY_HC_UPDATE_STATUS] = HC_OUT(vmx_hc_update_status,
		"update status", struct parley_hc_update_status, state),
	[PARLEY_HC_BLK_INFO] = HC_RSV(vmx_hc_blk_info, "blk info",
		struct parley_hc_blk_info,
		offsetof(struct parley_hc_blk_info, sectors), reserved),
	[PARLEY_HC_BLK_READ] = HC_RSV(vmx_hc_blk_read, "blk read",
		struct parley_hc_blk_io,
		offsetof(struct parley_hc_blk_io, ret), reserved),
	[PARLEY_HC_BLK_WRITE] = HC_RSV(vmx_hc_blk_write, "blk write",
		struct parley_hc_blk_io,
		offsetof(struct parley_hc_blk_io, ret), reserved),
	[PARLEY_HC_BLK_FLUSH] = HC_RSV(vmx_hc_blk_flush, "blk flush",
		struct parley_hc_blk_flush,
		offsetof(struct parley_hc_blk_flush, ret), reserved),
	[PARLEY_HC_BLK_SUBMIT] = HC_RSV(vmx_hc_blk_submit, "blk submit",
		struct parley_hc_blk_submit,
		offsetof(struct parley_hc_blk_submit, ret), reserved),
};

/* The private copy a handler works on: room for the largest struct (every
 * table entry's size is that of one member). */
union hc_arg {
	struct parley_hc_console_write console;
	struct parley_hc_clock clock;
	struct parley_hc_exit exit;
	struct parley_hc_halt halt;
	struct parley_hc_chan_open open;
	struct parley_hc_chan_notify notify;
	struct parley_hc_chan_wait wait;
	struct parley_hc_chan_close close;
	struct parley_hc_svc_offer svc_offer;
	struct parley_hc_svc_call svc_call;
	struct parley_hc_svc_accept svc_accept;
	struct parley_hc_update_begin update_begin;
	struct parley_hc_update_write update_write;
	struct parley_hc_update_commit update_commit;
	struct parley_hc_update_status update_status;
	struct parley_hc_seg_attach seg_attach;
	struct parley_hc_seg_detach seg_detach;
	struct parley_hc_blk_info blk_info;
	struct parley_hc_blk_io blk_io;
	struct parley_hc_blk_flush blk_flush;
	struct parley_hc_blk_submit blk_submit;
};

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t any = 0;
	for (size_t i = 0; i < n; i++)
		any |= p[i];
	return any == 0;
}

/* Find the argument struct: NULL (the partition stopped) if the
 * partition may not write it. */
static void *hc_arg(struct vmx_vcpu *c, unsigned nr, const struct hc_desc *d,
		    uint32_t gpa)
{
	const struct gmem *gm = &c->vm->gm;
	enum gmem_refusal why;
	void *g = gmem_guest_rw(gm, gpa, d->size, 8, &why);
	if (!g)
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, gpa,
			       "hypercall %u (%s): argument struct at 0x%x "
			       "(%u bytes) is %s", nr, d->name, gpa, d->size,
			       why == GMEM_UNALIGNED ? "not 8-byte aligned"
			       : gmem_refusal_str(why));
	return g;
}

bool vmx_hypercall(struct vmx_vcpu *c, unsigned nr, uint32_t gpa)
{
	const struct hc_desc *d = nr <= PARLEY_HC_MAX ? &hc_table[nr] : NULL;
	if (!d || !d->fn) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, nr,
			       "unknown hypercall number %u", nr);
		return false;
	}
	uint8_t *g = hc_arg(c, nr, d, gpa);
	if (!g)
		return false;
	union hc_arg a;
	memcpy(&a, g, d->size);
	if (!all_zero((const uint8_t *)&a + d->rsv, d->nrsv)) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, gpa,
			       "hypercall %u (%s): reserved field is not 0",
			       nr, d->name);
		return false;
	}
	if (!d->fn(c, &a))
		return false;
	memcpy(g + d->out, (const uint8_t *)&a + d->out, d->size - d->out);
	return true;
}

int vmx_hcall_init(struct vmx_vm *vm, const struct ctl_launch *l,
		   struct parley_err *err)
{
	_Static_assert(GMEM_RO_MAX == CTL_RO_RANGES_MAX,
		       "every read-only range the launch names is kept");
	if (gmem_guest_init(&vm->gm, l->ram_size) < 0)
		return perr(err, -EINVAL, "RAM size 0x%llx",
			    (unsigned long long)l->ram_size);
	for (uint32_t i = 0; i < l->nro; i++)
		if (gmem_guest_ro(&vm->gm, l->ro[i].gpa, l->ro[i].size) < 0)
			return perr(err, -EINVAL, "read-only range %u", i);
	return 0;
}
