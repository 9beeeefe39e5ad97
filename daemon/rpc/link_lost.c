/*
 * Thin partitions lost with their agent (link_int.h: link_lost_hello).
 *
 * A thin partition does not outlive its agent: an agent killed or crashed
 * and started again (not handed over) holds none of them, while the store
 * still says they run. Every hello lists what the agent holds
 * (Hello.partitions); a row of this host the store calls running,
 * starting, created or paused that the list does not name was lost, and
 * gets a partition_lost audit event (reason AGENT_RESTARTED) with its new
 * state in one transaction. One that ran or was on its way (created,
 * starting: a thin partition is created only to be started) is "defined"
 * again: the daemon's own CREATE and START of a defined row follow at
 * once (link.c send_commands), and at every hello and change until the
 * agent reports it -- a new vmm, its config measured and admitted against
 * its baseline as at any start; durable, so a connection or agent lost
 * again meanwhile loses nothing. A paused one is "stopped" (an operator
 * paused it; a START runs it again). An agent that does not list (an
 * older one) changes nothing.
 */
#include "daemon/rpc/link_int.h"
#include "daemon/agentvm.h"
#include "common/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool listed(const Parley__V1__Hello *h, const char *name)
{
	for (size_t i = 0; i < h->n_partitions; i++)
		if (!strcmp(h->partitions[i], name))
			return true;
	return false;
}

enum lost_then { LOST_START, LOST_STOP };

/* What a lost row's state asks for; false: not lost by this rule. */
static bool lost_rule(const char *state, enum lost_then *then)
{
	if (!strcmp(state, "running") || !strcmp(state, "starting") ||
	    !strcmp(state, "created"))
		*then = LOST_START;
	else if (!strcmp(state, "paused"))
		*then = LOST_STOP;
	else
		return false;
	return true;
}

static int mark_lost(struct link_conn *c, const struct store_partition *p,
		     enum lost_then then, struct parley_err *err)
{
	struct store *s = c->ls->store;
	const char *state = then == LOST_START ? "defined" : "stopped";
	char detail[2 * STORE_NAME_MAX + 160];
	snprintf(detail, sizeof(detail), "%s -> %s: its agent started again "
		 "without it (not handed over); %s", p->state, state,
		 then == LOST_START ? "created and started again from its spec"
				    : "start it again to run it");
	struct store_audit_in ev = { .host = c->host, .event = "partition_lost",
				     .partition = p->name,
				     .reason = "AGENT_RESTARTED",
				     .detail = detail };
	int rc = store_begin(s, err);
	if (rc < 0)
		return rc;
	rc = store_partition_set_state(s, p->name, state, p->version, NULL,
				       err);
	if (rc == 0)
		rc = store_audit_append(s, &ev, 1, NULL, err);
	if (rc < 0) {
		store_rollback(s, NULL);
		return rc;
	}
	return store_commit(s, err);
}

void link_lost_hello(struct link_conn *c, const Parley__V1__Hello *h)
{
	if (!h->partitions_listed)
		return;
	struct store_partition *p = NULL;
	int n = store_partition_list(c->ls->store, c->host, NULL,
				     STORE_LIST_MAX, &p, NULL);
	for (int i = 0; i < n; i++) {
		enum lost_then then;
		if (p[i].kind != STORE_PART_THIN || agentvm_part(&p[i]) ||
		    p[i].spec_len <= 2 || !lost_rule(p[i].state, &then) ||
		    listed(h, p[i].name))
			continue;
		struct parley_err err = { 0 };
		if (mark_lost(c, &p[i], then, &err) < 0) {
			/* changed meanwhile (-ESTALE): its next hello looks
			 * again */
			log_warn("agent %s: partition %s lost, not recorded: %s",
				 c->host, p[i].name, perr_msg(&err));
			continue;
		}
		log_warn("agent %s started again without partition %s (%s): "
			 "%s", c->host, p[i].name, p[i].state,
			 then == LOST_START ? "defined again, to be created and "
			 "started" : "recorded stopped");
	}
	if (n > 0)
		store_partition_list_free(p, (unsigned)n);
}
