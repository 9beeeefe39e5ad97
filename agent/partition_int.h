/* What partition.c, part_link.c and part_snapshot.c share, and nobody
 * else. */
#ifndef PARLEY_AGENT_PARTITION_INT_H
#define PARLEY_AGENT_PARTITION_INT_H

#include "agent/partition.h"

struct partition *part_new(const char *name, const struct part_opts *o);
int part_spawn_vmm(struct partition *p, struct parley_err *err);
/* Send CTL_LAUNCH (and vCPU states when restoring), wait for CTL_READY. */
int part_launch(struct partition *p, uint32_t flags,
		const struct ctl_vcpu_state *st, struct parley_err *err);
/* Open the pidfd the vmm process is killed and reaped by (after spawn). */
void part_watch(struct partition *p);
/* Wait for one message of type `want`, handling console output and
 * deferring requests meanwhile; a vmm that does not answer within
 * opts.timeout_ms, or breaks the protocol, is killed (part_link.c). */
int part_await(struct partition *p, uint32_t want, void *out, size_t cap,
	       struct parley_err *err);
/* The device plugins o hands the vmm, into p->measure (the baseline). */
void part_measure_plugins(struct partition *p, const struct part_opts *o);
int part_measure_files(struct partition *p,
		       const struct measure_input_file *files, unsigned n,
		       struct parley_err *err);

#endif
