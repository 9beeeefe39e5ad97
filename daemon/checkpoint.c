#include "daemon/checkpoint.h"
#include "daemon/keys/keyd.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ckpt_make(struct ckpt *c, struct store_checkpoint *out,
	      struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = store_audit_head(c->store, &out->seq, out->hash, err);
	if (rc == 0 && out->seq == 0)
		rc = perr(err, -ENODATA, "the audit trail is empty: nothing "
			  "to anchor");
	if (rc < 0)
		return rc;
	out->time_ms = now_ms();
	memcpy(out->key_id, c->keys->ckpt_id, sizeof(out->key_id));
	rc = keyd_sign_checkpoint(c->keys, out->seq, out->hash, out->time_ms,
				  out->sig, err);
	if (rc == 0)
		rc = store_checkpoint_add(c->store, out, &out->id, err);
	if (rc < 0) {
		c->n_failed++;
		return rc;
	}
	c->last_seq = out->seq;
	c->n_made++;
	log_info("audit checkpoint %llu: row %llu signed",
		 (unsigned long long)out->id, (unsigned long long)out->seq);
	return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct ckpt *c = arg;
	struct store_checkpoint cp;
	struct parley_err err = { 0 };
	uint64_t head;
	uint8_t hash[STORE_DIGEST];
	if (store_audit_head(c->store, &head, hash, &err) < 0) {
		log_warn("audit checkpoint: %s", perr_msg(&err));
		return;
	}
	if (head == c->last_seq)
		return;
	if (ckpt_make(c, &cp, &err) < 0)
		log_warn("audit checkpoint: %s", perr_msg(&err));
}

int ckpt_start(struct ckpt *c, struct event_base *base, struct store *s,
	       struct keyd *keys, uint32_t interval_s, struct parley_err *err)
{
	memset(c, 0, sizeof(*c));
	c->store = s;
	c->keys = keys;
	struct store_checkpoint last;
	int n = store_checkpoint_list(s, 0, 1, &last, err);
	if (n < 0)
		return n;
	c->last_seq = n ? last.seq : 0;
	if (!interval_s)
		return 0;
	c->tick = event_new(base, -1, EV_PERSIST, on_tick, c);
	struct timeval tv = { (time_t)interval_s, 0 };
	if (!c->tick || event_add(c->tick, &tv) < 0)
		return perr(err, -ENOMEM, "checkpoint timer");
	return 0;
}

void ckpt_stop(struct ckpt *c)
{
	if (c->tick)
		event_free(c->tick);
	c->tick = NULL;
}
