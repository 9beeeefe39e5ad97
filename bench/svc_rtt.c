/* Service call round trips (64 bytes, polled) against bare channel round
 * trips measured in the same run by the same partitions (svcbench.elf):
 * what the call framing and in-flight bookkeeping of the SDK add. */
#include "bench/chan_bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define N          5000
#define WARM       500
#define TIMEOUT_MS 60000

static const char policy[] =
	"{\"grants\":[{\"channel\":\"rtt\",\"endpoint_a\":\"ping\","
	"\"endpoint_b\":\"pong\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}"
	"],\"services\":[{\"source\":\"ping\",\"target\":\"pong\","
	"\"service\":\"echo\",\"action\":\"allow\"}]}";

static int median_us(const struct cb_run *r, const char *key, double *med,
		     struct parley_err *err)
{
	char label[64];
	snprintf(label, sizeof(label), "svcbench %s", key);
	return cb_median_us(r, 0, key, N, label, med, err);
}

int svc_bench_rtt(const struct bench_env *e, struct svc_rtt_result *res,
		  struct parley_err *err)
{
	char cmd[2][64];
	snprintf(cmd[0], sizeof(cmd[0]), "mode=ping n=%d warm=%d", N, WARM);
	snprintf(cmd[1], sizeof(cmd[1]), "mode=pong n=%d warm=%d", N, WARM);
	const struct cb_part parts[] = {
		{ "ping", cmd[0], NULL, false, "svcbench.elf" },
		{ "pong", cmd[1], NULL, false, "svcbench.elf" },
	};
	struct cb_run *r = calloc(1, sizeof(*r));
	if (!r)
		return perr(err, -ENOMEM, "out of memory");
	int rc = cb_start(r, e, policy, parts, 2, err);
	if (rc == 0)
		rc = cb_wait(r, TIMEOUT_MS, err);
	if (rc == 0)
		rc = median_us(r, "chan_rtt", &res->chan_us, err);
	if (rc == 0)
		rc = median_us(r, "svc_rtt", &res->svc_us, err);
	if (rc == 0)
		res->ratio = res->svc_us / res->chan_us;
	cb_free(r);
	free(r);
	return rc;
}
