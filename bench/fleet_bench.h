/*
 * The fleet suite (`./dev bench fleet`, bench/README.md): a real parleyd on
 * loopback with a fresh SQLite store, and thousands of simulated agents in
 * this process on one libevent loop, each with its own client certificate.
 *
 *   fleet_setup.c   temporary directory, certificates made in-process
 *                   (pki_*), the store filled before the daemon starts,
 *                   parleyd spawned and stopped, /proc readings
 *   fleet_client.c  the simulated agents: TLS 1.3 with their own
 *                   certificate, Hello, PolicyBundle -> PolicyAck, audit
 *                   batches waiting for their Ack
 *   bench_fleet.c   the driver: phases, figures
 */
#ifndef PARLEY_BENCH_FLEET_H
#define PARLEY_BENCH_FLEET_H

#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include "common/err.h"
#include "parley.pb-c.h"

#define FLEET_NAME_MAX 32
/* Ring size of every grant before and after the fleet-wide change. */
#define FLEET_RING_BEFORE 4096
#define FLEET_RING_AFTER 8192

/* ---- fleet_setup.c -------------------------------------------------- */

/* One simulated host's identity: CN = name. */
struct fleet_id {
	char name[FLEET_NAME_MAX];
	X509 *cert;
	EVP_PKEY *key;
	uint64_t version;          /* policy version of its first bundle */
};

struct fleet_env {
	char dir[PATH_MAX];        /* temporary: certificates, store, log */
	char parleyd[PATH_MAX];    /* <build>/bin/parleyd */
	char store[PATH_MAX + 16];
	char log[PATH_MAX + 16];
	char ca[PATH_MAX + 16];    /* ca.crt, for the client context */
	char ctx_crt[PATH_MAX + 16], ctx_key[PATH_MAX + 16];
	pid_t pid;                 /* parleyd, 0 when not running */
	int port;
};

/* Monotonic time. */
uint64_t fleet_now_ns(void);
double fleet_since_s(uint64_t t0_ns);

/* Paths from /proc/self/exe, a fresh directory under $TMPDIR (or /tmp). */
int fleet_env_init(struct fleet_env *e, struct parley_err *err);
/* Remove the directory's files and the directory. */
void fleet_env_remove(struct fleet_env *e);

/* RLIMIT_NOFILE up to at least `want` (raising the hard limit too when
 * allowed); the daemon inherits it. Returns the soft limit now in force. */
long fleet_raise_nofile(long want);

/*
 * The fleet CA, the daemon's certificate and policy key as files for
 * parleyd, a certificate for the client context's default identity, and
 * n host identities ("fleet-00000" ...) kept in memory, every one issued
 * with pki_issue. *ids is calloc'd; free with fleet_ids_free.
 */
int fleet_pki(struct fleet_env *e, unsigned n, struct fleet_id **ids,
	      struct parley_err *err);
void fleet_ids_free(struct fleet_id *ids, unsigned n);

/* Names derived from a host name. */
void fleet_part_name(char *out, const char *host, char ab);
void fleet_chan_name(char *out, const char *host);

/* The store before the daemon starts, in one transaction: every host, two
 * partitions per host and one grant between them (FLEET_RING_BEFORE); each
 * grant makes a policy version, noted in ids[i].version. */
int fleet_populate(const struct fleet_env *e, struct fleet_id *ids,
		   unsigned n, struct parley_err *err);

/* Start parleyd on 127.0.0.1, a free port; wait (at most 10 s) for it to
 * write the port file. */
int fleet_daemon_start(struct fleet_env *e, struct parley_err *err);
/* Another parleyd on the same certificates, keys and store (a replica,
 * issue 15): state directory and log e->dir/NAME(.log). */
int fleet_replica_start(const struct fleet_env *e, const char *name,
			pid_t *pid, int *port, struct parley_err *err);
/* SIGTERM, wait up to 10 s, then SIGKILL; reap. */
void fleet_daemon_stop(struct fleet_env *e);
bool fleet_daemon_alive(struct fleet_env *e);

/* From /proc/PID/status and /proc/PID/stat; -1 when unreadable. */
long fleet_rss_kib(pid_t pid);
double fleet_cpu_s(pid_t pid);
/* This process's CPU time (user + system); with its reaped children. */
double fleet_self_cpu_s(void);
double fleet_family_cpu_s(void);
/* Busy time of all CPUs from /proc/stat, in seconds: in processes (user,
 * nice, system) and in interrupts (irq, softirq: loopback TCP is mostly
 * the latter). */
int fleet_host_cpu(double *proc_s, double *irq_s);

/* ---- fleet_pg.c (with tests/helpers/pgcluster.c) -------------------- */

/* A throw-away PostgreSQL cluster in e->dir/pg (its path in pgdir, "" if
 * none), e->store its database. */
int fleet_pg_store(struct fleet_env *e, char *pgdir, size_t cap,
		   struct parley_err *err);
/* A replica's state directory, readable by the daemon once unprivileged
 * (before fleet_replica_start). */
int fleet_pg_replica_dir(const struct fleet_env *e, const char *name,
			 struct parley_err *err);
/* Stop the cluster and remove its directory (nothing if pgdir is ""). */
void fleet_pg_stop(const char *pgdir);

/* ---- fleet_client.c ------------------------------------------------- */

enum fleet_state { FA_IDLE, FA_CONNECTING, FA_UP, FA_FAILED };

struct fleet;

struct fleet_agent {
	struct fleet *f;
	const struct fleet_id *id;
	unsigned idx;
	struct bufferevent *bev;
	struct event *hb;          /* heartbeat timer, while up */
	enum fleet_state state;
	unsigned attempts;
	uint64_t t_start_ns;       /* connect started */
	uint64_t t_up_ns;          /* Welcome arrived */
	uint64_t bundle_version;   /* last bundle received and acked */
	uint64_t bundles;
	uint64_t want;             /* the bundle version waited for */
	bool got;                  /* bundle_version reached want */
	uint64_t t_got_ns;         /* when it did */
	/* audit */
	bool audit;                /* one of the audit senders */
	uint64_t next_seq;         /* next event seq (starts at 1) */
	uint64_t wait_seq;         /* seq of the batch in flight, 0: none */
	uint64_t t_sent_ns;
};

struct fleet {
	struct event_base *base;
	SSL_CTX *ctx;
	struct sockaddr_in addr;
	/* Port 0: every agent connects to addr; else the odd-numbered ones
	 * connect here (a second replica). */
	struct sockaddr_in addr2;
	struct event *tick;        /* wakes the loop so deadlines are seen */
	unsigned n;
	struct fleet_agent *a;
	/* ramp-up */
	unsigned window;           /* handshakes in flight at most */
	unsigned max_attempts;
	unsigned next, inflight, connected, gave_up;
	unsigned *retry, nretry;
	bool ramping;
	uint64_t n_conn_errors, n_dropped, n_error_frames, n_bad_bundles;
	uint64_t n_bundles;
	unsigned n_got;            /* agents whose `got` is set */
	unsigned n_lost_wanted;    /* agents waited for that lost the link */
	uint64_t t_last_got_ns;
	uint64_t t_last_drop_ns;
	char last_error[PARLEY_ERR_MSG_MAX];
	/* audit */
	bool audit_on;             /* send a next batch on each Ack */
	unsigned audit_batch;
	uint64_t win_start_ns, win_end_ns;
	uint64_t ev_acked_in_win, ev_acked, batches_acked, bad_acks;
	double *audit_lat;         /* per batch in the window, seconds */
	size_t audit_nlat, audit_cap;
	Parley__V1__AuditEvent *audit_ev, **audit_evp;
};

int fleet_client_init(struct fleet *f, const struct fleet_env *e,
		      const struct fleet_id *ids, unsigned n, unsigned window,
		      struct parley_err *err);
void fleet_client_free(struct fleet *f);

/* Run the loop until done(f, ctx) or `timeout_ms` pass; true if done. */
bool fleet_run_until(struct fleet *f, bool (*done)(struct fleet *, void *),
		     void *ctx, int timeout_ms);

/* Start connecting everyone, at most f->window handshakes at a time. */
void fleet_ramp_start(struct fleet *f);
bool fleet_ramp_done(struct fleet *f, void *ctx);

/* Connect the first `m` agents that are not up (again), as the ramp-up
 * does; true when none is left in flight. */
bool fleet_reconnect(struct fleet *f, unsigned m, int timeout_ms);

/* Wait for a bundle of version `want` at every agent that is up (and only
 * those): resets `got` and n_got. Returns how many are waited for. */
unsigned fleet_want(struct fleet *f, const uint64_t *want);
/* ctx: the count fleet_want returned. Every one got its bundle... */
bool fleet_got_all(struct fleet *f, void *ctx);
/* ... or got it or lost its link. */
bool fleet_got_or_lost(struct fleet *f, void *ctx);

/* Start the audit senders: the first `m` agents that are up, batches of
 * `batch` events; counting Acks that arrive in [win_start, win_end). */
unsigned fleet_audit_start(struct fleet *f, unsigned m, unsigned batch,
			   uint64_t win_start_ns, uint64_t win_end_ns);
/* Stop sending; done when no batch is in flight. */
void fleet_audit_stop(struct fleet *f);
bool fleet_audit_idle(struct fleet *f, void *ctx);

#endif
