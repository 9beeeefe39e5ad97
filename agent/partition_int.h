/* What partition.c shares with part_snapshot.c, and nobody else. */
#ifndef PARLEY_AGENT_PARTITION_INT_H
#define PARLEY_AGENT_PARTITION_INT_H

#include "agent/partition.h"

struct partition *part_new(const char *name, const struct part_opts *o);
int part_spawn_vmm(struct partition *p, struct parley_err *err);
/* Send CTL_LAUNCH (and vCPU states when restoring), wait for CTL_READY. */
int part_launch(struct partition *p, uint32_t flags,
		const struct ctl_vcpu_state *st, struct parley_err *err);
/* Wait for one message of type `want`, handling console output and
 * deferring requests meanwhile. */
int part_await(struct partition *p, uint32_t want, void *out, size_t cap,
	       struct parley_err *err);
int part_measure_files(struct partition *p,
		       const struct measure_input_file *files, unsigned n,
		       struct parley_err *err);

#endif
