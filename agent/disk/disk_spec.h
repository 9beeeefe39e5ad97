/* The "disks" field of a partition spec (agent/spec.h): parsed here,
 * every error naming the field ("disks[1].size: ..."). */
#ifndef PARLEY_AGENT_DISK_SPEC_H
#define PARLEY_AGENT_DISK_SPEC_H

#include <jansson.h>
#include "agent/spec.h"

int spec_parse_disks(json_t *root, struct part_spec *out,
		     struct parley_err *err);

#endif
