/*
 * parley-vmm's one private header: everything inside the vmm process (the
 * VM and its vCPU threads, channel windows, the sandbox). Nothing outside
 * agent/vmx/ includes it; the grant manager reaches the vmm only through
 * the control protocol (agent/ctl/ctl.h).
 */
#ifndef PARLEY_VMX_VMM_H
#define PARLEY_VMX_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>
#include <linux/kvm.h>
#include <parley/abi.h>
#include "agent/ctl/blkreq.h"
#include "agent/ctl/clock.h"
#include "agent/ctl/ctl.h"
#include "agent/ctl/gmem.h"
#include "agent/ctl/stop.h"
#include "agent/ctl/sysmap.h"
#include "agent/vmx/plugdev.h"
#include "common/err.h"

/* ---- channel windows (window.c) ---- */
/*
 * Channel windows as a vmm process holds them: memory the grant manager
 * hands over (a memfd per channel) mapped into the partition's
 * guest-physical channel area with per-section permissions, the handle the
 * partition uses for it, and its doorbells. Mechanism only: which channel
 * may be mapped, and when it must go, is decided by the grant manager.
 *
 * Handles are (generation << 16 | slot). Lookup compares one atomic word,
 * no lock; the doorbell descriptors of a slot are replaced in place (dup2)
 * on reuse, never closed under a vCPU that may be about to write them.
 */

#define WIN_SLOTS CTL_WIN_SLOTS
#define WIN_GONE_MAX 256   /* closed or revoked ranges remembered */

struct vmx_vm;

struct vmx_window {
	_Atomic uint64_t handle;   /* 0: free */
	_Atomic uint64_t revoked_handle; /* last handle the agent revoked */
	_Atomic bool peer_gone;    /* the other end stopped; memory stays */
	uint32_t chan;
	uint64_t gpa, size;
	uint8_t *host;             /* our mapping, for KVM only */
	int bell_own, bell_peer;   /* eventfds; -1 until first use */
	unsigned nseg;
	bool ro[CTL_MAP_SEGS_MAX];
	uint64_t seg_off[CTL_MAP_SEGS_MAX], seg_len[CTL_MAP_SEGS_MAX];
};

struct vmx_gone {
	uint64_t gpa, size;
	bool revoked;              /* by the agent (else closed by the guest) */
};

struct vmx_windows {
	struct vmx_window w[WIN_SLOTS];
	pthread_mutex_t gone_lock;
	unsigned ngone;
	struct vmx_gone gone[WIN_GONE_MAX];
};

void win_init(struct vmx_windows *ws);

/* Map a window as the agent asked (fds: own doorbell, peer's, then memory; all
 * consumed). Returns 0 or a negative errno; everything is checked first. */
int win_map(struct vmx_vm *vm, const struct ctl_map *m, const int *fds,
	    struct parley_err *err);

/* Unmap the window of channel `chan` (revoked) or of `handle` (closed by
 * the partition). Waiters on it are woken. */
int win_revoke(struct vmx_vm *vm, uint32_t chan, uint64_t *handle);
int win_close(struct vmx_vm *vm, uint64_t handle, uint32_t *chan);
/* The other end of channel `chan` stopped: the window stays mapped, so
 * what was already sent can still be read; waiters are woken and CHAN_WAIT
 * and CHAN_NOTIFY answer PEER_DOWN from now on. */
int win_peer_gone(struct vmx_vm *vm, uint32_t chan);

/* The open window a handle names, or NULL (lock-free). */
struct vmx_window *win_lookup(struct vmx_vm *vm, uint64_t handle);

/* Was this handle revoked (as opposed to never valid or closed)? */
bool win_was_revoked(struct vmx_vm *vm, uint64_t handle);

/* Classify a guest-physical address that exited as MMIO: 1 inside a
 * window the agent revoked, or a live one whose memory is gone (the agent
 * truncated it: an access to backed memory never exits), 2 inside one the
 * partition closed, 3 a write to a read-only section of a live window, 0
 * none of these. */
int win_classify(struct vmx_vm *vm, uint64_t gpa, bool write);
struct vmx_vcpu;
/* Stop the partition for an access in the channel area of `kind` (as
 * win_classify gives it; rw names the access). False, and nothing done,
 * for kind 0: the caller reports it as its engine sees it. Both engines
 * report window faults through here, so they name them alike. */
bool win_fault(struct vmx_vcpu *c, uint64_t gpa, int kind, const char *rw);

/* ---- the VM (vm.c, vcpu.c, hcall*.c) ---- */
/*
 * One KVM virtual machine as held by its vmm process: the VM and vCPU
 * descriptors, guest memory (a memfd laid out by the grant manager), and the
 * run state the vCPU threads obey. KVM accepts VM and vCPU ioctls only from
 * the process that created the VM, so everything here runs in that process.
 */

enum vmx_run_state { VMX_RUN, VMX_PAUSE, VMX_STOP };

struct vmx_vm;

/* A vCPU on the process backend: a ptrace'd stub child (proc_*.c). Only
 * the thread that attached (the vCPU thread) may ptrace it. */
struct proc_mapped {
	uint64_t handle, gpa, size;  /* a window as this child has it */
};

struct proc_vcpu {
	pid_t pid;                    /* the stub child; 0 once reaped */
	int pidfd;
	int listener;                 /* its seccomp listener: fds go in here */
	bool attached;
	bool running;                 /* executing guest code (vm->lock) */
	_Atomic uint64_t win_gen;     /* window generation its child has */
	struct proc_mapped mapped[CTL_WIN_SLOTS];
	struct user_regs_struct regs; /* as of the last stop */
	bool regs_dirty;              /* regs must be written before resuming */
	bool have_restore;            /* restore.* is applied at attach */
	struct ctl_vcpu_state state;  /* restore: to apply; save: last parked */
	int uffd;                     /* its config region's write faults */
	_Atomic int uffd_live;        /* uffd once armed, for the service thread */
	uint64_t *unprot;             /* pages it may write unrecorded (dirty_lock) */
};

struct vmx_vcpu {
	struct vmx_vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool halted;        /* parked by HALT until the partition stops */
	bool parked;        /* guarded by vm->lock */
	int kick_fd;        /* eventfd: wakes this vCPU out of CHAN_WAIT */
	/* CHAN_OPEN waits here for the grant manager (guarded by vm->lock). */
	bool awaiting;
	bool replied;
	struct ctl_open_reply reply;
	struct proc_vcpu proc;       /* process backend only */
};

/* Where console bytes and the final report go. */
struct vmx_sink {
	void (*console)(void *ctx, unsigned vcpu, const char *buf, size_t len);
	void *ctx;
};

/* A window as the process backend wants it in every child: the map and
 * the memory fds, kept until the window goes (window.c calls win_map and
 * win_unmap under win_lock). */
struct proc_win {
	uint64_t handle;
	struct ctl_map map;
	int mem[CTL_MAP_MEMS_MAX];
};

struct proc_vm {
	_Atomic uint64_t win_gen;     /* bumped by every window change */
	struct proc_win win[CTL_WIN_SLOTS];
	struct ctl_launch launch;     /* what each child is set up from */
	/* Config-region dirty tracking (proc_dirty.c). */
	pthread_mutex_t dirty_lock;
	uint64_t *dirty;              /* pages written since the last request */
	_Atomic bool dirty_all;       /* a child without userfaultfd */
	pthread_t uffd_thread;
	bool uffd_started;
	bool uffd_running;         /* guarded by vm->lock: past thread start */
};

struct vmx_engine;

/* One disk the partition's spec declared (blk.c): its backing file, and
 * for an encrypted one the cipher state (blk_xts.c), key mlock'd. */
struct blk_xts;
struct vmx_disk {
	int fd;
	char name[PARLEY_DISK_NAME_MAX];
	struct blk_xts *xts;      /* NULL: plain (built-in devices) */
	/* With plugins (devices.c): the block backend, and the transform of
	 * an encrypted disk (xf.p NULL: plain) with its bounce buffer. */
	bool plug;
	struct plugdev blk, xf;
	uint8_t *bounce;
	pthread_mutex_t lock;     /* the bounce buffer's */
};

struct vmx_disks {
	unsigned n;
	struct blk_geom geom[PARLEY_DISKS_MAX]; /* what requests are checked
						 * against (blkreq.h) */
	struct vmx_disk d[PARLEY_DISKS_MAX];
};

/* Device plugins handed over by the agent (CTL_PLUGIN, devices.c) and the
 * console device made from one. n == 0: the built-in devices. */
struct vmx_plugins {
	unsigned n;
	struct plugin_lib lib[CTL_PLUGINS_MAX];
	struct plugdev console;   /* console.p NULL: the built-in console */
	struct vmx_sink out;      /* where the console device's output goes */
};

struct vmx_vm {
	const struct vmx_engine *eng; /* kvm or process */
	int kvm_fd, vm_fd;            /* kvm_fd: the backend fd (kvm or stub) */
	uint8_t *mem;             /* memfd mapping: RAM, then config region */
	uint64_t ram_size, cfg_size;
	struct gmem gm;
	size_t run_size;
	uint64_t tsc_khz;
	uint64_t t0_ns;           /* CLOCK's epoch: VM creation */
	unsigned nvcpu;
	struct vmx_vcpu vcpu[PARLEY_VCPUS_MAX];
	struct vmx_sink sink;
	struct vmx_plugins plugins;
	int ctl_fd;               /* to the grant manager; -1 standalone */
	struct vmx_windows win;
	pthread_mutex_t win_lock; /* changes to windows (lookups take none) */
	bool dirty_logging;       /* config slot has KVM_MEM_LOG_DIRTY_PAGES */

	pthread_mutex_t lock;
	pthread_cond_t cond;      /* state changes, parking */
	_Atomic int state;        /* enum vmx_run_state */
	unsigned nparked;         /* parked, or waiting for the agent */
	int stop_efd;             /* written once when the partition stops */
	bool finished;            /* guarded by lock: fin is final */
	struct ctl_finished fin;
	struct proc_vm proc;      /* process backend only */
	struct vmx_disks disks;   /* fixed before the sandbox, never after */
};

/* ---- engines (kvm_*.c, proc_*.c) ---- */
/*
 * What differs between running a partition in a KVM VM and in ptrace'd
 * stub processes. Everything else -- run state, pause/resume/finish/join,
 * hypercall handlers, window handles, the control link -- is one code path
 * for both.
 */
struct vmx_engine {
	const char *name;
	/* Set up over vm->mem (already mapped and in vm->gm): the VM or the
	 * stub children, vCPUs in their fresh state unless restoring.
	 * Takes ownership of backend_fd. Runs before any thread starts. */
	int (*create)(struct vmx_vm *vm, int backend_fd, int mem_fd,
		      int mem_ro_fd, const struct ctl_launch *l,
		      struct parley_err *err);
	void (*destroy)(struct vmx_vm *vm);
	/* Load a state already checked by vmx_vcpu_restore; save one while
	 * the vCPU is parked. */
	int (*vcpu_restore)(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
			    struct parley_err *err);
	int (*vcpu_save)(struct vmx_vcpu *c, struct ctl_vcpu_state *s);
	void *(*vcpu_thread)(void *arg);
	/* Make the vCPU thread look at the run state soon. */
	void (*kick)(struct vmx_vcpu *c);
	/* Called by a vCPU thread about to park (pause, halt). */
	void (*settle)(struct vmx_vcpu *c);
	/* Windows: map all segments of m (mem: its memory fds, still owned by
	 * the caller), take one down; both under win_lock. win_settle, after
	 * win_lock is dropped, returns once no vCPU can touch what went. */
	int (*win_map)(struct vmx_vm *vm, unsigned slot, struct vmx_window *w,
		       const struct ctl_map *m, const int *mem);
	void (*win_unmap)(struct vmx_vm *vm, unsigned slot,
			  struct vmx_window *w);
	void (*win_settle)(struct vmx_vm *vm);
	int (*doorbell)(struct vmx_vm *vm, const struct vmx_window *w,
			uint64_t handle, bool assign);
	/* Config pages written since the last call (bits set, never fewer
	 * than were written). */
	int (*dirty)(struct vmx_vm *vm, uint64_t *bitmap, uint64_t pages);
	/* The vCPU's rip for a fault report (the thread's own vCPU). */
	uint64_t (*rip)(struct vmx_vcpu *c);
};

extern const struct vmx_engine vmx_kvm_engine;
extern const struct vmx_engine vmx_proc_engine;

/* Process engine internals (proc_*.c). Functions that touch a child run
 * on its tracer, the vCPU thread, unless said otherwise. */
pid_t proc_spawn(int stub_fd, int mem_fd, int mem_ro_fd); /* main thread */
uint64_t proc_tsc_khz(void);
int proc_attach(struct vmx_vcpu *c, struct parley_err *err);
int proc_setup(struct vmx_vcpu *c, const struct ctl_launch *l,
	       struct parley_err *err);
void proc_end(struct vmx_vcpu *c);
void *proc_vcpu_thread(void *arg);
void proc_kick(struct vmx_vcpu *c);          /* any thread */
uint64_t proc_rip(struct vmx_vcpu *c);
bool proc_dispatch(struct vmx_vcpu *c, int wait_status);
/* One syscall in the stopped child; *ret is its result (-errno too). */
int proc_inject(struct vmx_vcpu *c, long nr, long a0, long a1, long a2,
		long a3, long a4, long a5, long *ret);
int proc_give_fds(struct vmx_vcpu *c, const int *fds, unsigned n,
		  int *child_fds);
int proc_map_at(struct vmx_vcpu *c, uint64_t gpa, uint64_t len, int prot,
		int child_fd, uint64_t off);
int proc_unmap_at(struct vmx_vcpu *c, uint64_t gpa, uint64_t len);
int proc_close_all(struct vmx_vcpu *c);
int proc_win_sync(struct vmx_vcpu *c);
int proc_state_store(struct vmx_vcpu *c);
int proc_state_load(struct vmx_vcpu *c, const struct ctl_vcpu_state *s);
int proc_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
		      struct parley_err *err);                  /* main */
int proc_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s); /* main */
void proc_vcpu_settle(struct vmx_vcpu *c);
int proc_uffd_setup(struct vmx_vcpu *c);
int proc_dirty_init(struct vmx_vm *vm);                 /* main, before start */
void proc_dirty_fini(struct vmx_vm *vm);
int proc_dirty(struct vmx_vm *vm, uint64_t *bitmap, uint64_t pages); /* main */

/* KVM engine internals (kvm_vm.c, kvm_vcpu.c, kvm_window.c). */
void *kvm_vcpu_thread(void *arg);
void kvm_vcpu_settle(struct vmx_vcpu *c);
int kvm_win_map(struct vmx_vm *vm, unsigned slot, struct vmx_window *w,
		const struct ctl_map *m, const int *mem);
void kvm_win_unmap(struct vmx_vm *vm, unsigned slot, struct vmx_window *w);
int kvm_doorbell(struct vmx_vm *vm, const struct vmx_window *w,
		 uint64_t handle, bool assign);

/* Park while paused or halted (calls eng->settle first); false once the
 * partition stops. Every engine's vCPU loop calls it before running. */
bool vmx_vcpu_gate(struct vmx_vcpu *c);
void vmx_vcpu_halt(struct vmx_vcpu *c);

/* The privileged state every partition vCPU has (vcpu_state.c), and the
 * check a saved state must pass before either engine loads it. */
#define VMX_RFLAGS_FIXED 0x2ull
#define VMX_RFLAGS_IOPL3 0x3000ull
/* What a CPL 3 program can change in RFLAGS (popf): arithmetic flags, TF,
 * DF, AC, ID. Anything else in a restored state is refused. */
#define VMX_RFLAGS_USER 0x250dd5ull
void vmx_sregs_partition(struct kvm_sregs *s);
int vmx_state_check(const struct ctl_vcpu_state *s, unsigned index,
		    struct parley_err *err);

/* Create the VM (kvm_fd: /dev/kvm or the stub executable as l->backend
 * says, owned by vm from here; mem_ro_fd: the same memory read-only, used
 * by the process backend and not taken) over mem_fd ([0, ram) is RAM at GPA 0, [ram, ram + cfg) the
 * config region at PARLEY_CONFIG_BASE) with nvcpu vCPUs in their initial
 * CPL 3 long-mode state (entry, boot_info). */
int vmx_vm_create(struct vmx_vm *vm, int kvm_fd, int mem_fd, int mem_ro_fd,
		  const struct ctl_launch *l,
		  struct parley_err *err);
void vmx_vm_destroy(struct vmx_vm *vm);

/* Load a saved vCPU state; the privileged part (segments, control registers,
 * tables) is re-derived, never taken from the saved copy. */
int vmx_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
		     struct parley_err *err);
int vmx_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s);

/* Start one thread per vCPU; they run unless the state says otherwise. */
int vmx_vm_start(struct vmx_vm *vm);
/* Change the run state and wait until every vCPU thread has noticed. */
void vmx_vm_pause(struct vmx_vm *vm);
void vmx_vm_resume(struct vmx_vm *vm);
/* Record why the partition stopped (first report wins) and stop it. */
void vmx_vm_finish(struct vmx_vm *vm, const struct ctl_finished *fin);
/* Wait for all vCPU threads after the partition stopped. */
void vmx_vm_join(struct vmx_vm *vm);

/* The exit handlers every engine's vCPU thread dispatches to (vcpu.c,
 * hcall*.c). */
void vmx_vcpu_fault(struct vmx_vcpu *c, unsigned reason, uint64_t addr,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Park this vCPU for good (HALT); the last one to halt ends the partition. */
void vmx_vcpu_halt(struct vmx_vcpu *c);

/* ---- hypercalls (hcall.c, hcall_chan.c) ---- */
/* Declare what the partition may name in a hypercall (vm->gm.guest): its
 * RAM above the boot area, minus the launch's read-only image ranges. */
int vmx_hcall_init(struct vmx_vm *vm, const struct ctl_launch *l,
		   struct parley_err *err);
/* Handle an OUT to a hypercall port; false when the partition was stopped.
 * Checks the argument struct (place, size, alignment, reserved fields)
 * through the dispatch table before any handler runs. */
bool vmx_hypercall(struct vmx_vcpu *c, unsigned nr, uint32_t arg_gpa);
/* The channel handlers the table names: each gets the checked private
 * copy of its struct, fills in its OUT fields, and returns false only when
 * the partition stopped (then nothing is written back). */
bool vmx_hc_chan_open(struct vmx_vcpu *c, void *arg);
bool vmx_hc_chan_notify(struct vmx_vcpu *c, void *arg);
bool vmx_hc_chan_wait(struct vmx_vcpu *c, void *arg);
bool vmx_hc_chan_close(struct vmx_vcpu *c, void *arg);
/* Services: each asks the grant manager (CTL_OPEN_REQ with its op). */
bool vmx_hc_svc_offer(struct vmx_vcpu *c, void *arg);
bool vmx_hc_svc_call(struct vmx_vcpu *c, void *arg);
bool vmx_hc_svc_accept(struct vmx_vcpu *c, void *arg);
/* The answer's detail into a partition's OUT field, NUL-terminated. */
#define VMX_DETAIL_OUT(dst, r)                                             \
	do {                                                               \
		_Static_assert(sizeof(dst) <= sizeof((r)->detail), "detail");\
		memcpy(dst, (r)->detail, sizeof(dst));                     \
		(dst)[sizeof(dst) - 1] = 0;                                \
	} while (0)

/* Agent updates (hcall_update.c): each asks the grant manager
 * (CTL_UPDATE_REQ); WRITE's buffer is checked with gmem_guest_r first. */
bool vmx_hc_update_begin(struct vmx_vcpu *c, void *arg);
bool vmx_hc_update_write(struct vmx_vcpu *c, void *arg);
bool vmx_hc_update_commit(struct vmx_vcpu *c, void *arg);
bool vmx_hc_update_status(struct vmx_vcpu *c, void *arg);
/* Send a request and wait for the answer, which a CTL_UPDATE_REPLY
 * reaches the vCPU as (vmx_vcpu_update_reply). false: the partition
 * stopped meanwhile. */
bool vmx_ask_agent(struct vmx_vcpu *c, uint32_t type, const void *req,
		   uint32_t len, struct ctl_open_reply *r);
/* Segment sets: each asks the grant manager (CTL_OP_SEG_*); the segments
 * arrive as channel windows (CTL_MAP) before the answer. */
bool vmx_hc_seg_attach(struct vmx_vcpu *c, void *arg);
bool vmx_hc_seg_detach(struct vmx_vcpu *c, void *arg);
/* Block devices (blk.c): add disk i from its CTL_DISK message (before
 * the sandbox; takes fd, wipes d->key), the handlers, and the wipe of
 * every key when the partition has stopped. */
int vmx_disk_add(struct vmx_vm *vm, struct ctl_disk *d, int fd,
		 struct parley_err *err);
bool vmx_hc_blk_info(struct vmx_vcpu *c, void *arg);
bool vmx_hc_blk_read(struct vmx_vcpu *c, void *arg);
bool vmx_hc_blk_write(struct vmx_vcpu *c, void *arg);
bool vmx_hc_blk_flush(struct vmx_vcpu *c, void *arg);
bool vmx_hc_blk_submit(struct vmx_vcpu *c, void *arg);
void vmx_disks_wipe(struct vmx_vm *vm);
/* Device plugins (devices.c). Plugin i from its CTL_PLUGIN (before the
 * sandbox; takes fd). */
int vmx_plugin_add(struct vmx_vm *vm, const struct ctl_plugin *m, int fd,
		   struct parley_err *err);
/* The loaded plugin called name, or NULL. */
const struct parley_plugin *vmx_plugin_find(struct vmx_vm *vm,
					    const char *name);
/* A device of this vm: reports its states to the agent (CTL_DEVICE_STATE)
 * and runs its operations under the crash guard. */
int vmx_device_create(struct vmx_vm *vm, struct plugdev *d,
		      const struct parley_plugin *p,
		      const struct parley_plugin_config *c,
		      struct parley_err *err);
/* The console device, when there are plugins (before the sandbox): the
 * partition's console output (vm->sink) goes through it to what vm->sink
 * was. */
int vmx_console_device(struct vmx_vm *vm, struct parley_err *err);
/* A snapshot: every device's state (saving-state, then running again)
 * sent to the agent as CTL_DEVICE_SAVED; 0, or the first refusal (the
 * rest are not asked). */
int vmx_devices_save(struct vmx_vm *vm, struct parley_err *err);
/* A restore: the saved state b given to its device (loading-state). */
int vmx_device_load(struct vmx_vm *vm, const struct ctl_device_blob *b,
		    struct parley_err *err);
/* Every device to running (after the sandbox): 0, or the first refusal. */
int vmx_devices_run(struct vmx_vm *vm, struct parley_err *err);
/* Every device powered down and torn down (the partition has stopped):
 * 0, or the first refusal (the rest are still torn down). */
int vmx_devices_stop(struct vmx_vm *vm, struct parley_err *err);
/* Around a plugin's operation on a vCPU thread: a fatal signal meanwhile
 * ends the partition with VMX_STOP_PLUGIN naming plugin and op. */
void vmx_plugin_enter(const char *plugin, const char *op);
void vmx_plugin_leave(void);
/* Install the crash guard (before the sandbox; needs vm->ctl_fd). */
void vmx_plugin_guard(struct vmx_vm *vm);
/* A doorbell OUT that KVM did not catch (no ioeventfd for the value). */
bool vmx_doorbell_slow(struct vmx_vcpu *c, uint32_t value);

/* Wake every vCPU sleeping in CHAN_WAIT (it returns OK with ready 0):
 * a window was mapped, a service provider's new caller among them. */
void vmx_vm_wake_waiters(struct vmx_vm *vm);

/* Hand a CHAN_OPEN answer to the vCPU waiting for it. */
void vmx_vcpu_reply(struct vmx_vm *vm, const struct ctl_open_reply *r);
/* The same for an update answer: the vCPU's one reply slot carries it as
 * status, gpa = received, size = size, tx = state, detail; handle 0 (it
 * maps nothing). */
void vmx_vcpu_update_reply(struct vmx_vm *vm, const struct ctl_update_reply *u);

/* Send the config region's dirty bitmap (since the last call) to the agent
 * in CTL_DIRTY chunks. */
int vmx_send_dirty(struct vmx_vm *vm);
void vmx_dirty_filter(uint64_t *bitmap, uint64_t pages);


/* ---- the sandbox (sandbox.c) ---- */
/* The vmm process's seccomp allowlist, loaded after set-up and before any
 * guest instruction runs. */

/* Confine the calling process (all its threads) to what a running vmm
 * of vm's engine needs (vm NULL: KVM's). Anything else kills the process
 * with SIGSYS. */
int vmx_sandbox_enter(const struct vmx_vm *vm, struct parley_err *err);

#endif
