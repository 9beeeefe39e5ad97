/*
 * Orchestration of `libvirt` partitions (DESIGN.md section 7): define,
 * start, stop and destroy them through libvirt on their host's
 * libvirt_uri, and follow their domain lifecycle events, which libvirt
 * delivers through the daemon's libevent loop (no thread of ours).
 *
 * Files: orch.c (the operations and the connection cache, lost
 * connections opened again), orch_events.c (libvirt's event
 * implementation on libevent, lifecycle events into the store),
 * orch_reconcile.c (audited state writes; the store brought in line with
 * libvirt), orch_xml.c (domain XML from a partition spec).
 *
 * Every write to the store goes with its audit event in one transaction
 * (libvirt_defined, libvirt_started, libvirt_stopped, libvirt_destroyed,
 * libvirt_lifecycle, libvirt_reconciled). The store is reconciled with
 * libvirt -- each libvirt partition's state compared with its domain:
 * running, paused, shut off, crashed or missing -- when orch_init opens
 * the connections of the URIs that have libvirt partitions, and whenever
 * a lost connection is opened again (retried every ORCH_RECONNECT_S).
 *
 * Errors: 0 or a negative errno, with `err` (may be NULL) naming the
 * problem. The codes:
 *   -EINVAL     a bad name, a spec that is not a valid libvirt partition
 *               spec, a host without a libvirt URI, a thin partition
 *   -ENOENT     the host or partition is not in the store
 *   -EEXIST     a thin partition, or one on another host, has that name
 *   -EBUSY      a grant still names the partition (destroy), or another
 *               struct orch is alive (orch_init)
 *   ORCH_ECONFLICT  the domain is in the state asked for already (start
 *               a running one, stop one that is not running). The HTTP
 *               API answers 409 CONFLICT.
 *   ORCH_ELIBVIRT  libvirt refused: err carries libvirt's own message
 *               (virGetLastErrorMessage). The HTTP API answers 502 LIBVIRT.
 *   and what the store returns (db/store.h).
 *
 * Threads: everything runs on the thread of the event loop. libvirt's
 * event implementation is process-wide and can be registered only once,
 * so there is at most one struct orch at a time, and its event_base serves
 * every libvirt connection of the process.
 */
#ifndef PARLEY_DAEMON_ORCH_H
#define PARLEY_DAEMON_ORCH_H

#include <errno.h>
#include <libvirt/libvirt.h>
#include "common/err.h"

struct event_base;
struct store;
struct orch;

/* libvirt refused an operation; err holds its message. */
#define ORCH_ELIBVIRT (-EREMOTEIO)
/* The domain is in the state asked for already. */
#define ORCH_ECONFLICT (-EALREADY)
/* Seconds between attempts to open a lost connection again. */
#define ORCH_RECONNECT_S 5

/* Partition states this module writes. */
#define ORCH_STATE_DEFINED "defined"
#define ORCH_STATE_RUNNING "running"
#define ORCH_STATE_STOPPED "stopped"
#define ORCH_STATE_PAUSED "paused"
#define ORCH_STATE_CRASHED "crashed"
#define ORCH_STATE_UNDEFINED "undefined"
/* Audit events: a domain lifecycle event; a state the store had that
 * libvirt contradicted (reason STATE_DRIFT, detail "store S (C), libvirt
 * C'"); and the operations. */
#define ORCH_AUDIT_EVENT "libvirt_lifecycle"
#define ORCH_AUDIT_RECONCILED "libvirt_reconciled"
#define ORCH_AUDIT_DEFINED "libvirt_defined"
#define ORCH_AUDIT_STARTED "libvirt_started"
#define ORCH_AUDIT_STOPPED "libvirt_stopped"
#define ORCH_AUDIT_DESTROYED "libvirt_destroyed"

/*
 * Register libvirt's event implementation on `base` (once per process;
 * before any libvirt connection is opened) and make an orchestrator that
 * keeps its partitions in `s`. Both stay the caller's and must outlive
 * *out. -EBUSY if another orchestrator is alive. Then open a connection
 * for every libvirt URI that has libvirt partitions in the store and
 * reconcile them; a URI that cannot be reached is logged and tried again
 * on first use (it is not an error here).
 */
int orch_init(struct orch **out, struct event_base *base, struct store *s,
	      struct parley_err *err);
/* Close every connection (deregistering its event callbacks) and free.
 * NULL is fine. */
void orch_free(struct orch *o);

/*
 * Define partition `name` on `host` from `spec_json` (a partition spec:
 * name, memory, vcpus, config, image, cmdline; see orch_xml.c) through the
 * host's libvirt_uri (one connection per URI, opened on first use and
 * kept), then store it: kind libvirt, state "defined", its key
 * configuration file names. The files are attached to the domain
 * read-only, as disks of type file. A spec "name" must equal `name`.
 * Defining a name libvirt already has is libvirt's error (ORCH_ELIBVIRT).
 */
int orch_define(struct orch *o, const char *host, const char *name,
		const char *spec_json, struct parley_err *err);
/* virDomainCreate; state "running". ORCH_ECONFLICT if the domain runs
 * already (and the store, if it said otherwise, is reconciled). */
int orch_start(struct orch *o, const char *name, struct parley_err *err);
/* virDomainDestroy (a hard stop); state "stopped". ORCH_ECONFLICT if the
 * domain is not running (paused counts as running). */
int orch_stop(struct orch *o, const char *name, struct parley_err *err);
/* Stop it if it runs, undefine it (a domain libvirt no longer has is
 * fine) and delete it from the store. -EBUSY, before touching libvirt,
 * while a grant names it. */
int orch_destroy(struct orch *o, const char *name, struct parley_err *err);

/* Tests only: the cached connection of `host` (opened if need be), to act
 * on a domain as another management tool on that host would. Borrowed:
 * the orchestrator closes it. NULL on error. */
virConnectPtr orch_conn_for_test(struct orch *o, const char *host);
/* Tests only: act as if `host`'s connection had been lost (its events stop
 * at once, as they would), so that the loop opens it again and
 * reconciles. 0, or -ENOENT when it has no open connection. */
int orch_lose_conn_for_test(struct orch *o, const char *host);

/* ---- internal to daemon/orch*.c ----------------------------------- */

#include <stdbool.h>
#include <stdint.h>
#include "db/store.h"

/* One cached libvirt connection (several hosts may share a URI). */
struct orch_conn {
	struct orch_conn *next;
	struct orch *o;
	char *uri;
	virConnectPtr conn;
	int cb_id;                 /* lifecycle callback, -1 when none */
	bool close_cb;             /* our close callback is registered */
	bool lost;                 /* libvirt said it closed: reopen */
};

struct orch {
	struct event_base *base;
	struct store *store;
	struct orch_conn *conns;
	struct event *reconnect;   /* opens lost connections again */
};

/* libvirt's last error as ORCH_ELIBVIRT: "<what> <name>: <message>". */
int orch_lv_err(struct parley_err *err, const char *what, const char *name);

/* One transaction (or the caller's open batch, store_join_begin): set the
 * state of `name` (if state is not NULL; if_version as
 * store_partition_set_state) or delete its row (delete_row), and append
 * ev. */
int orch_write(struct orch *o, const char *name, const char *state,
	       uint64_t if_version, const struct store_audit_in *ev,
	       bool delete_row, struct parley_err *err);
/* Bring p's state in line with its domain on c, audited. 1 if it was
 * changed, 0 if it agreed (or libvirt reports no state). */
int orch_reconcile_one(struct orch_conn *c, const struct store_partition *p,
		       struct parley_err *err);
/* Every libvirt partition of the hosts that use c's URI; the count
 * changed. Carries on past a partition that fails (the first error is
 * returned after the rest were looked at). */
int orch_reconcile_conn(struct orch_conn *c, struct parley_err *err);

/* orch_events.c: libvirt's event loop on `base` (registered once per
 * process; a later call moves it to a new base when nothing is pending). */
int orch_ev_attach(struct event_base *base, struct parley_err *err);
/* Run the frees libvirt asked for and let go of the base. */
void orch_ev_detach(void);
/* Follow c's domain lifecycle events into the store. */
int orch_ev_watch(struct orch_conn *c, struct parley_err *err);
void orch_ev_unwatch(struct orch_conn *c);

/* orch_xml.c: a libvirt partition spec, checked. */
struct orch_spec_file {
	char name[STORE_FILE_NAME_MAX];
	char *path;                       /* absolute, on the libvirt host */
};
struct orch_spec {
	char name[STORE_NAME_MAX];        /* "" when the spec names none */
	uint64_t mem_bytes;               /* ORCH_MEM_MIN..ORCH_MEM_MAX, KiB multiple */
	unsigned vcpus;                   /* 1..ORCH_VCPUS_MAX */
	char *image;                      /* kernel, absolute path, or NULL */
	char *cmdline;                    /* or NULL */
	unsigned nfile;                   /* 0..STORE_FILES_MAX */
	struct orch_spec_file file[STORE_FILES_MAX];
};
#define ORCH_MEM_MIN (1ull << 20)
#define ORCH_MEM_MAX (1ull << 40)
#define ORCH_MEM_DEFAULT (128ull << 20)
#define ORCH_VCPUS_MAX 64
#define ORCH_PATH_MAX 4096
#define ORCH_CMDLINE_MAX 1024

/* Parse json (NUL-terminated, at most STORE_SPEC_MAX bytes). On error
 * *out is zeroed and err names the field. */
int orch_spec_parse(const char *json, struct orch_spec *out,
		    struct parley_err *err);
void orch_spec_free(struct orch_spec *s);
/* The domain XML of partition `name` (malloc'd into *xml) for a
 * connection whose virConnectGetType is `conn_type` ("TEST", "QEMU"). */
int orch_xml_domain(const char *name, const struct orch_spec *s,
		    const char *conn_type, char **xml, struct parley_err *err);

#endif
