/*
 * libFuzzer target for what the daemon's frames do to an agent: a sequence
 * of frames, read as the link reads them (frame_decode: the length prefix,
 * the envelope, wire_check), each handed to agent_link_dispatch
 * (agent/link_dispatch.c), the function the link's on_read calls. The
 * state is a real agent link made per input by agent_link_init from a
 * state directory the target writes once (a host certificate for HOST,
 * the public half of a policy key the target holds, a persisted bundle of
 * version BASE_VERSION), without a connection: everything happens but the
 * bytes sent. Before the frames, five records are queued (partition
 * status): three synced, two not, so acks and welcomes meet an outbox
 * with records sent, not sent and not yet on disk. A real chanmgr takes
 * the grants, the audit sink is the link's own.
 *
 * A POLICY frame's signature is chosen by its request_id % 3: 0 as sent
 * (a forger: bundle_accept must refuse it), 1 re-signed over its body with
 * the key the target holds (a daemon with the key), 2 re-signed with a
 * key it does not hold.
 *
 * Oracle, per frame, from what the target knows, not from what the link
 * did:
 *  - a refusal has a printable message and leaves the state as it was:
 *    the policy, the chanmgr's grants, the outbox (records, next seq,
 *    cursor), up, ready, the welcome's values;
 *  - before a welcome only a welcome, a heartbeat and an error are taken;
 *    a body only an agent sends is refused always;
 *  - a welcome is taken iff the link is not up, it names HOST and its seq
 *    is believable; then every record at or below its seq is gone, the
 *    next seq is above it, ready iff the policy is at least its version;
 *  - a bundle is taken iff signed with the held key, for HOST, newer than
 *    the policy enforced and valid; then it is enforced (chanmgr's grants),
 *    persisted (bundle.pb loads to the same version), acked;
 *  - an ack is taken iff every record at or below its seq was sent (it
 *    never drops a record the daemon was not sent); then none is left;
 *  - a command reaches on_command once, and only after the welcome --
 *    unless its request_id (a stored command's id) is at or below the
 *    last one carried out, which is confirmed again and not run; a
 *    command carried out with an id moves that mark to it, and the file
 *    a restarted agent loads (commands-done) says the same;
 *  - an update offer or chunk reaches the agent's staging area (a real
 *    upd_stage, as agent/serve.c wires it, trusting a release key the
 *    target holds) only after the welcome, once; an offer answers
 *    receiving, failed or busy with a printable reason, and receiving
 *    means a stream of that digest and size from offset 0 (or, the same
 *    one offered again, from where it was); a chunk of another digest is
 *    dropped unanswered and changes nothing; one at the offset held
 *    either moves the stream on by its length, ends it (staged, refused
 *    or failed: the whole package checked), or fails it; one elsewhere
 *    answers where to go on from and changes nothing.
 *  - a rollback request reaches upd_rollback_take (agent/update/rollback.h,
 *    as agent/serve.c wires it, with the staging area's state directory,
 *    which keeps no previous version) only after the welcome, once: it is
 *    never handed over, it is answered refused (or busy while a stream is
 *    held) with a printable reason, and the same request again is
 *    answered with the same outcome.
 * The staging area is a directory of its own under /var/tmp (a disk, not
 * tmpfs: an offer fallocates up to 256 MiB), emptied before each input.
 * FUZZ_AGENT_DISPATCH_TRACE=1 prints each frame's answer (to see what the
 * seeds reach).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/bundle.h"
#include "agent/link.h"
#include "agent/ipc/chanmgr.h"
#include "agent/update/keep.h"
#include "agent/update/rollback.h"
#include "agent/update/stage.h"
#include "common/err.h"
#include "common/fileio.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOST "host-a"
#define BASE_VERSION 5
#define FRAMES_MAX 64

static char dir[256], updir[256];
static struct event_base *base;
static EVP_PKEY *held, *other;
static uint8_t *base_bundle;
static bool trace; /* FUZZ_AGENT_DISPATCH_TRACE=1: each frame's answer */
static size_t base_bundle_len;

static const char *const files[] = { "ca.crt", "host.crt", "host.key",
				     "policy.pub", "bundle.pb", "bundle.pb.tmp",
				     "outbox", "outbox.tmp", "outbox.bad",
				     "seq", "seq.tmp", "commands-done",
				     "commands-done.tmp" };

/* The staging area as upd_stage_open finds it after a clean stop: the
 * update directory empty (nothing partial to discard and audit). */
static void empty_updir(void)
{
	char p[512];
	PARLEY_ASSERT(path_join(p, sizeof(p), updir, UPD_DIR) == 0);
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	unlinkat(fd, UPD_INCOMING, 0);
	upd_rm_dir(fd, UPD_STAGE_TMP);
	upd_rm_dir(fd, UPD_STAGE);
	close(fd);
}

static void cleanup(void)
{
	char p[512];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (path_join(p, sizeof(p), dir, files[i]) == 0)
			unlink(p);
	rmdir(dir);
	empty_updir();
	if (path_join(p, sizeof(p), updir, UPD_DIR) == 0)
		rmdir(p);
	if (path_join(p, sizeof(p), updir, UPD_RELEASE_PUB) == 0)
		unlink(p);
	rmdir(updir);
	EVP_PKEY_free(held);
	EVP_PKEY_free(other);
	free(base_bundle);
	if (base)
		event_base_free(base);
}

static void write_pki(void)
{
	EVP_PKEY *ca_k = NULL, *k = NULL;
	X509 *ca_x = NULL, *x = NULL;
	struct parley_err err = { 0 };
	char p[512];
	PARLEY_ASSERT(pki_ca_new("fuzz-ca", 1, &ca_k, &ca_x, &err) == 0);
	PARLEY_ASSERT(pki_key_new(&k, &err) == 0);
	PARLEY_ASSERT(pki_issue(ca_k, ca_x, k, HOST, -PKI_SKEW_S, 86400 * 365,
				false, &x, &err) == 0);
	PARLEY_ASSERT(path_join(p, sizeof(p), dir, "ca.crt") == 0 &&
		      pki_write_cert(p, ca_x, &err) == 0);
	PARLEY_ASSERT(path_join(p, sizeof(p), dir, "host.crt") == 0 &&
		      pki_write_cert(p, x, &err) == 0);
	PARLEY_ASSERT(path_join(p, sizeof(p), dir, "host.key") == 0 &&
		      pki_write_key(p, k, &err) == 0);
	PARLEY_ASSERT(pki_key_new(&held, &err) == 0 &&
		      pki_key_new(&other, &err) == 0);
	PARLEY_ASSERT(path_join(p, sizeof(p), dir, "policy.pub") == 0 &&
		      sign_write_pub(p, held, &err) == 0);
	/* The release key the staging area trusts (any key will do: no
	 * input carries a signature made with it). */
	PARLEY_ASSERT(path_join(p, sizeof(p), updir, UPD_RELEASE_PUB) == 0 &&
		      sign_write_pub(p, other, &err) == 0);
	EVP_PKEY_free(ca_k);
	EVP_PKEY_free(k);
	X509_free(ca_x);
	X509_free(x);
}

/* The bundle the agent enforces when the frames begin: version
 * BASE_VERSION, one grant, signed with the held key. */
static void make_base_bundle(void)
{
	Parley__V1__Grant g = PARLEY__V1__GRANT__INIT, *gp = &g;
	g.channel = (char *)"telemetry";
	g.endpoint_a = (char *)"a";
	g.endpoint_b = (char *)"b";
	g.ring_bytes = 65536;
	Parley__V1__PolicyBody body = PARLEY__V1__POLICY_BODY__INIT;
	body.host = (char *)HOST;
	body.version = BASE_VERSION;
	body.grants = &gp;
	body.n_grants = 1;
	size_t blen = parley__v1__policy_body__get_packed_size(&body);
	uint8_t *bb = malloc(blen), sig[SIGN_LEN];
	PARLEY_ASSERT(bb);
	parley__v1__policy_body__pack(&body, bb);
	PARLEY_ASSERT(sign_data(held, bb, blen, sig) == 0);
	Parley__V1__PolicyBundle b = PARLEY__V1__POLICY_BUNDLE__INIT;
	b.body.data = bb;
	b.body.len = blen;
	b.signature.data = sig;
	b.signature.len = SIGN_LEN;
	b.key_id = (char *)"";
	base_bundle_len = parley__v1__policy_bundle__get_packed_size(&b);
	base_bundle = malloc(base_bundle_len);
	PARLEY_ASSERT(base_bundle);
	parley__v1__policy_bundle__pack(&b, base_bundle);
	free(bb);
}

static void setup(void)
{
	log_init("fuzz_agent_dispatch", (enum log_level)(LOG_ERROR + 1));
	trace = getenv("FUZZ_AGENT_DISPATCH_TRACE") != NULL;
	/* tmpfs where there is one: the outbox fdatasyncs per input. */
	const char *t = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
			: getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%s/fuzz-agent-dispatch-XXXXXX", t);
	PARLEY_ASSERT(mkdtemp(dir));
	snprintf(updir, sizeof(updir), "/var/tmp/fuzz-agent-update-XXXXXX");
	if (!mkdtemp(updir)) {
		snprintf(updir, sizeof(updir), "%s/fuzz-agent-update-XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		PARLEY_ASSERT(mkdtemp(updir));
	}
	PARLEY_ASSERT((base = event_base_new()));
	write_pki();
	make_base_bundle();
	atexit(cleanup);
}

/* Each input meets the same state: no outbox, the base bundle. */
static void reset_dir(void)
{
	char p[512];
	for (size_t i = 5; i < sizeof(files) / sizeof(files[0]); i++)
		if (path_join(p, sizeof(p), dir, files[i]) == 0)
			unlink(p);
	PARLEY_ASSERT(path_join(p, sizeof(p), dir, "bundle.pb") == 0);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	PARLEY_ASSERT(fd >= 0 &&
		      fd_write_all(fd, base_bundle, base_bundle_len) == 0);
	close(fd);
}

struct rec {
	unsigned ready, commands, offers, chunks, rollbacks;
	const Parley__V1__PartitionCommand *last;
	struct upd_stage *upd;
	struct upd_rollback *rb;
};

static void on_ready(void *ctx)
{
	((struct rec *)ctx)->ready++;
}

static void on_command(void *ctx, const Parley__V1__PartitionCommand *c)
{
	struct rec *r = ctx;
	r->commands++;
	r->last = c;
}

static const char *const report_states[] = { "receiving", "staged",
					     "refused", "failed", "busy" };

static void check_report(const struct upd_report *rep)
{
	bool known = false;
	for (size_t i = 0; i < sizeof(report_states) / sizeof(*report_states);
	     i++)
		known |= !strcmp(rep->state, report_states[i]);
	PARLEY_ASSERT(known);
	for (const char *c = rep->reason; *c; c++)
		PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
	/* Only a refusal or failure says why. */
	PARLEY_ASSERT(!!strcmp(rep->state, "receiving") || !rep->reason[0]);
}

/* What agent/serve.c does with an offer, and what it must have done. */
static void on_update_offer(void *ctx, const Parley__V1__UpdateOffer *o)
{
	struct rec *r = ctx;
	struct upd_stage *u = r->upd;
	struct upd_report rep;
	bool same = u->fd >= 0 && u->from_daemon && u->size == o->size &&
		    !memcmp(u->sha256, o->sha256.data, 32);
	uint64_t had = u->received;
	r->offers++;
	upd_daemon_offer(u, o->sha256.data, o->size, o->version, &rep);
	check_report(&rep);
	if (trace)
		fprintf(stderr, "  offer: %s %llu %s\n", rep.state,
			(unsigned long long)rep.received, rep.reason);
	PARLEY_ASSERT(!strcmp(rep.state, "receiving") ||
		      !strcmp(rep.state, "failed") ||
		      !strcmp(rep.state, "busy"));
	if (strcmp(rep.state, "receiving"))
		return;
	PARLEY_ASSERT(u->fd >= 0 && u->from_daemon && u->size == o->size &&
		      !memcmp(u->sha256, o->sha256.data, 32));
	PARLEY_ASSERT(rep.received == u->received &&
		      u->received == (same ? had : 0));
}

static void on_update_chunk(void *ctx, const Parley__V1__UpdateChunk *c)
{
	struct rec *r = ctx;
	struct upd_stage *u = r->upd;
	struct upd_report rep;
	bool ours = u->fd >= 0 && u->from_daemon &&
		    !memcmp(u->sha256, c->sha256.data, 32);
	uint64_t had = u->received, size = u->size;
	r->chunks++;
	bool answered = upd_daemon_chunk(u, c->sha256.data, c->offset,
					 c->data.data, c->data.len, &rep);
	PARLEY_ASSERT(answered == ours);
	if (!answered) {
		PARLEY_ASSERT(u->received == had);
		return;
	}
	check_report(&rep);
	if (trace)
		fprintf(stderr, "  chunk: %s %llu %s\n", rep.state,
			(unsigned long long)rep.received, rep.reason);
	if (c->offset != had) {
		PARLEY_ASSERT(!strcmp(rep.state, "receiving") &&
			      u->received == had && rep.received == had);
		return;
	}
	if (c->data.len > size - had) {
		PARLEY_ASSERT(!strcmp(rep.state, "failed") && u->fd < 0);
		return;
	}
	if (!strcmp(rep.state, "receiving")) {
		PARLEY_ASSERT(had + c->data.len < size &&
			      u->received == had + c->data.len);
		return;
	}
	/* The stream is over: the whole package was checked, or writing
	 * it failed; nothing is held open either way. */
	PARLEY_ASSERT(u->fd < 0);
	PARLEY_ASSERT(strcmp(rep.state, "staged") ||
		      had + c->data.len == size);
}

/* What agent/serve.c does with a rollback request: the state directory
 * keeps no previous version, so never a hand-over. */
static void on_update_rollback(void *ctx, const Parley__V1__UpdateRollback *m)
{
	struct rec *r = ctx;
	struct upd_rollback *rb = r->rb;
	bool repeat = m->request == rb->request;
	char was[sizeof(rb->state)], why[sizeof(rb->reason)];
	memcpy(was, rb->state, sizeof(was));
	memcpy(why, rb->reason, sizeof(why));
	r->rollbacks++;
	enum upd_rb_do d = upd_rollback_take(rb, r->upd->audit, updir,
					     m->expect_version, m->request,
					     upd_rollback_busy(r->upd, false));
	if (trace)
		fprintf(stderr, "  rollback: %d %s %s\n", (int)d, rb->state,
			rb->reason);
	PARLEY_ASSERT(d == UPD_RB_ANSWER && !rb->dir[0]);
	PARLEY_ASSERT(rb->request == m->request);
	PARLEY_ASSERT(!strcmp(rb->state, "refused") ||
		      !strcmp(rb->state, "busy"));
	PARLEY_ASSERT(rb->reason[0]);
	for (const char *c = rb->reason; *c; c++)
		PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
	if (repeat && was[0])
		PARLEY_ASSERT(!strcmp(was, rb->state) &&
			      !strcmp(why, rb->reason));
}

/* What a frame may change, taken before it. */
struct snap {
	bool up, ready;
	uint64_t want, version, next_seq, n_bundles, n_refused, n_refusals;
	uint64_t cmd_done, n_cmd_skipped;
	uint32_t heartbeat_ms;
	const Parley__V1__PolicyBody *body;
	const struct grant *cm_g;
	unsigned cm_n, ob_n;
	const struct outbox_rec *head, *cursor;
	struct rec rec;
};

static void take(struct snap *s, const struct agent_link *l,
		 const struct chanmgr *cm, const struct rec *r)
{
	*s = (struct snap){
		.up = l->up, .ready = l->ready, .want = l->want_version,
		.version = l->policy.version, .next_seq = l->ob.next_seq,
		.n_bundles = l->n_bundles, .n_refused = l->n_refused_bundles,
		.n_refusals = l->n_refusals, .heartbeat_ms = l->heartbeat_ms,
		.body = l->policy.body, .cm_g = cm->grants.g,
		.cm_n = cm->grants.n, .ob_n = l->ob.n, .head = l->ob.head,
		.cursor = l->ob.cursor, .rec = *r,
		.cmd_done = l->cmd_done, .n_cmd_skipped = l->n_cmd_skipped,
	};
}

static void printable(const char *m)
{
	PARLEY_ASSERT(m[0]);
	for (const char *c = m; *c; c++)
		PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
}

/* Nothing a refusal may change. A refused bundle is audited: that event
 * takes a seq (it waits in the link's pending batch, not the outbox). */
static void unchanged(const struct snap *s, const struct agent_link *l,
		      const struct chanmgr *cm, const struct rec *r,
		      bool audited)
{
	PARLEY_ASSERT(l->up == s->up && l->ready == s->ready &&
		      l->want_version == s->want &&
		      l->heartbeat_ms == s->heartbeat_ms);
	PARLEY_ASSERT(l->policy.version == s->version &&
		      l->policy.body == s->body && l->n_bundles == s->n_bundles);
	PARLEY_ASSERT(cm->grants.g == s->cm_g && cm->grants.n == s->cm_n);
	PARLEY_ASSERT(l->ob.n == s->ob_n && l->ob.head == s->head &&
		      l->ob.cursor == s->cursor &&
		      (audited ? l->ob.next_seq == s->next_seq + 1
			       : l->ob.next_seq == s->next_seq));
	PARLEY_ASSERT(r->ready == s->rec.ready &&
		      r->commands == s->rec.commands &&
		      r->offers == s->rec.offers &&
		      r->chunks == s->rec.chunks &&
		      r->rollbacks == s->rec.rollbacks);
}

/* Whether some record at or below seq is still there (the outbox is in
 * seq order). */
static bool holds_upto(const struct outbox *o, uint64_t seq)
{
	return o->head && o->head->seq <= seq;
}

/* Every record at or below seq handed out (walked here, not asked). */
static bool all_sent_upto(const struct outbox *o, uint64_t seq)
{
	for (const struct outbox_rec *r = o->cursor; r; r = r->next)
		if (r->seq <= seq)
			return false;
	return true;
}

/* Run iff it carries no id or one above the mark; the mark follows what
 * ran, in memory and in the file. */
static void check_command(uint64_t id, const struct snap *s,
			  const struct agent_link *l, const struct rec *r,
			  const Parley__V1__PartitionCommand *c)
{
	if (id && id <= s->cmd_done) {
		PARLEY_ASSERT(r->commands == s->rec.commands &&
			      l->cmd_done == s->cmd_done &&
			      l->n_cmd_skipped == s->n_cmd_skipped + 1);
		return;
	}
	PARLEY_ASSERT(r->commands == s->rec.commands + 1 && r->last == c &&
		      l->n_cmd_skipped == s->n_cmd_skipped);
	PARLEY_ASSERT(l->cmd_done == (id ? id : s->cmd_done));
	struct agent_link again;
	memset(&again, 0, sizeof(again));
	memcpy(again.state_dir, l->state_dir, sizeof(again.state_dir));
	PARLEY_ASSERT(agent_link_cmd_load(&again, NULL) == 0 &&
		      again.cmd_done == l->cmd_done);
}

static void check_welcome(const Parley__V1__Welcome *w, int rc,
			  const struct snap *s, const struct agent_link *l,
			  const struct chanmgr *cm, const struct rec *r)
{
	bool believable = w->acked_seq < s->next_seq ||
			  w->acked_seq <= UINT64_MAX / 2;
	bool take_it = !s->up && !strcmp(w->host, HOST) && believable;
	PARLEY_ASSERT((rc == 0) == take_it);
	if (rc < 0)
		return;
	PARLEY_ASSERT(l->up && l->heartbeat_ms == w->heartbeat_ms &&
		      l->want_version == w->policy_version);
	PARLEY_ASSERT(!holds_upto(&l->ob, w->acked_seq));
	PARLEY_ASSERT(l->ob.next_seq > w->acked_seq &&
		      l->ob.next_seq >= s->next_seq);
	PARLEY_ASSERT(l->ready == (s->ready ||
				   w->policy_version <= l->policy.version));
	PARLEY_ASSERT(l->policy.body == s->body && cm->grants.g == s->cm_g);
	PARLEY_ASSERT(r->commands == s->rec.commands);
	/* Everything synced is handed out again, in order. */
	for (const struct outbox_rec *x = l->ob.head; x != l->ob.cursor;
	     x = x->next)
		PARLEY_ASSERT(x->synced);
	PARLEY_ASSERT(!l->ob.cursor || !l->ob.cursor->synced);
}

static void check_bundle(const Parley__V1__PolicyBundle *b, bool signed_held,
			 int rc, const struct snap *s,
			 const struct agent_link *l, const struct chanmgr *cm)
{
	Parley__V1__PolicyBody *body =
		parley__v1__policy_body__unpack(NULL, b->body.len, b->body.data);
	if (!signed_held) {
		PARLEY_ASSERT(rc == -EBADMSG);
	} else if (!body) {
		PARLEY_ASSERT(rc == -EINVAL);
	} else if (strcmp(body->host, HOST)) {
		PARLEY_ASSERT(rc == -EPERM || rc == -EINVAL);
	} else if (body->version <= s->version) {
		PARLEY_ASSERT(rc == -ESTALE || rc == -EINVAL);
	} else {
		PARLEY_ASSERT(rc == 0 || rc == -EINVAL);
	}
	if (rc < 0) {
		PARLEY_ASSERT(l->n_refused_bundles == s->n_refused + 1);
		if (body)
			parley__v1__policy_body__free_unpacked(body, NULL);
		return;
	}
	PARLEY_ASSERT(l->policy.version == body->version &&
		      l->policy.grants.n == body->n_grants);
	PARLEY_ASSERT(l->n_bundles == s->n_bundles + 1);
	PARLEY_ASSERT(cm->grants.n == l->policy.grants.n);
	for (unsigned i = 0; i < cm->grants.n; i++)
		PARLEY_ASSERT(!strcmp(cm->grants.g[i].channel,
				      body->grants[i]->channel));
	PARLEY_ASSERT(l->ready == (s->ready || body->version >= s->want));
	/* Persisted before enforced. */
	char p[512];
	struct agent_policy back;
	struct parley_err err = { 0 };
	PARLEY_ASSERT(path_join(p, sizeof(p), dir, "bundle.pb") == 0);
	PARLEY_ASSERT(bundle_load(p, l->policy_pub, HOST, &back, &err) == 0);
	PARLEY_ASSERT(back.version == body->version);
	agent_policy_free(&back);
	parley__v1__policy_body__free_unpacked(body, NULL);
}

static void dispatch_one(struct agent_link *l, struct chanmgr *cm,
			 struct rec *r, const Parley__V1__Envelope *in)
{
	Parley__V1__Envelope e = *in;
	Parley__V1__PolicyBundle own;
	uint8_t sig[SIGN_LEN];
	bool signed_held = false;
	if (e.body_case == PARLEY__V1__ENVELOPE__BODY_POLICY) {
		own = *in->policy;
		unsigned mode = (unsigned)(in->request_id % 3);
		if (mode) {
			PARLEY_ASSERT(sign_data(mode == 1 ? held : other,
						own.body.data, own.body.len,
						sig) == 0);
			own.signature.data = sig;
			own.signature.len = SIGN_LEN;
		}
		signed_held = sign_verify(held, own.body.data, own.body.len,
					  own.signature.data,
					  own.signature.len) == 0;
		PARLEY_ASSERT(mode != 1 || signed_held);
		e.policy = &own;
	}
	struct snap s;
	take(&s, l, cm, r);
	bool ack_sent = e.body_case == PARLEY__V1__ENVELOPE__BODY_ACK &&
			all_sent_upto(&l->ob, e.ack->seq);
	struct parley_err err = { 0 };
	int rc = agent_link_dispatch(l, &e, &err);
	if (trace)
		fprintf(stderr, "%s: %d %s\n", wire_body_name(e.body_case), rc,
			err.msg);
	if (rc < 0) {
		printable(err.msg);
		unchanged(&s, l, cm, r,
			  e.body_case == PARLEY__V1__ENVELOPE__BODY_POLICY &&
				  s.up);
	} else {
		PARLEY_ASSERT(rc == 0);
	}
	Parley__V1__Envelope__BodyCase c = e.body_case;
	if (!s.up && c != PARLEY__V1__ENVELOPE__BODY_WELCOME &&
	    c != PARLEY__V1__ENVELOPE__BODY_ERROR &&
	    c != PARLEY__V1__ENVELOPE__BODY_HEARTBEAT) {
		PARLEY_ASSERT(rc == -EPROTO);
		return;
	}
	switch (c) {
	case PARLEY__V1__ENVELOPE__BODY_WELCOME:
		check_welcome(e.welcome, rc, &s, l, cm, r);
		break;
	case PARLEY__V1__ENVELOPE__BODY_POLICY:
		check_bundle(e.policy, signed_held, rc, &s, l, cm);
		break;
	case PARLEY__V1__ENVELOPE__BODY_ACK:
		/* Taken iff every record at or below the seq was sent. */
		PARLEY_ASSERT((rc == 0) == ack_sent);
		if (rc == 0) {
			PARLEY_ASSERT(!holds_upto(&l->ob, e.ack->seq));
			PARLEY_ASSERT(l->ob.cursor == s.cursor);
		}
		break;
	case PARLEY__V1__ENVELOPE__BODY_HEARTBEAT:
		PARLEY_ASSERT(rc == 0);
		unchanged(&s, l, cm, r, false);
		break;
	case PARLEY__V1__ENVELOPE__BODY_COMMAND:
		PARLEY_ASSERT(rc == 0);
		check_command(e.request_id, &s, l, r, e.command);
		break;
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_OFFER:
		PARLEY_ASSERT(rc == 0 && r->offers == s.rec.offers + 1 &&
			      r->chunks == s.rec.chunks);
		break;
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_CHUNK:
		PARLEY_ASSERT(rc == 0 && r->chunks == s.rec.chunks + 1 &&
			      r->offers == s.rec.offers);
		break;
	case PARLEY__V1__ENVELOPE__BODY_UPDATE_ROLLBACK:
		PARLEY_ASSERT(rc == 0 && r->rollbacks == s.rec.rollbacks + 1 &&
			      r->offers == s.rec.offers &&
			      r->chunks == s.rec.chunks);
		break;
	case PARLEY__V1__ENVELOPE__BODY_SERVERS:
		/* Taken after the welcome: the list only grows, bounded. */
		PARLEY_ASSERT(rc == 0 && l->nservers >= 1 &&
			      l->nservers <= AGENT_LINK_SERVERS_MAX);
		break;
	case PARLEY__V1__ENVELOPE__BODY_ERROR:
		PARLEY_ASSERT(rc == 0 && l->n_refusals == s.n_refusals + 1);
		for (const char *x = l->last_error; *x; x++)
			PARLEY_ASSERT(*x >= 0x20 && *x < 0x7f);
		break;
	default:
		PARLEY_ASSERT(rc == -EPROTO);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!base)
		setup();
	reset_dir();
	static struct agent_link l;
	static struct chanmgr cm;
	static struct audit audit;
	static struct upd_stage upd;
	static struct upd_rollback rb;
	rb = (struct upd_rollback){ 0 };
	struct rec r = { .upd = &upd, .rb = &rb };
	struct parley_err err = { 0 };
	chanmgr_init(&cm, &audit);
	empty_updir();
	PARLEY_ASSERT(agent_link_init(&l, base, dir, "127.0.0.1", 9, &cm,
				      &err) == 0);
	PARLEY_ASSERT(l.policy.version == BASE_VERSION && cm.grants.n == 1);
	audit.sink = agent_link_audit;
	audit.sink_ctx = &l;
	l.on_ready = on_ready;
	l.on_command = on_command;
	l.on_update_offer = on_update_offer;
	l.on_update_chunk = on_update_chunk;
	l.on_update_rollback = on_update_rollback;
	l.ready_ctx = &r;
	/* After the link: what it audits goes to the link's batch. */
	PARLEY_ASSERT(upd_stage_open(&upd, updir, &audit, &err) == 0 &&
		      upd.release);
	/* Records 1-3 on disk, 4-5 not yet. */
	for (int i = 0; i < 5; i++) {
		agent_link_status(&l, "p", "process", "created", NULL, 0);
		if (i == 2)
			PARLEY_ASSERT(outbox_sync(&l.ob, &err) == 0);
	}
	PARLEY_ASSERT(l.ob.n == 5 && l.ob.next_seq == 6);

	size_t off = 0;
	for (unsigned n = 0; n < FRAMES_MAX && off < size; n++) {
		Parley__V1__Envelope *e = NULL;
		size_t used = 0;
		err = (struct parley_err){ 0 };
		int rc = frame_decode(data + off, size - off, FRAME_MAX, &used,
				      &e, &err);
		if (rc <= 0)
			break; /* the link would wait, or close */
		off += used;
		dispatch_one(&l, &cm, &r, e);
		parley__v1__envelope__free_unpacked(e, NULL);
		PARLEY_ASSERT(r.ready == (l.ready ? 1u : 0u));
	}
	upd_stage_close(&upd);
	agent_link_free(&l);
	chanmgr_free(&cm);
	return 0;
}
