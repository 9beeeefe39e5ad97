/*
 * libFuzzer target for the key process's doors (daemon/keys/keyd_proto.h):
 * the request parser the key process reads the main process through, and
 * the reply and INFO parsers the main process reads the key process
 * through. Whatever parses must encode back to exactly the same bytes
 * (one encoding per message: nothing rides along unchecked), and every
 * field must be inside the range the parser promises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonv.h"
#include "daemon/keys/keyd_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_req(const uint8_t *data, size_t size)
{
	struct keyd_req q;
	if (keyd_req_parse(data, size, &q, NULL) < 0)
		return;
	if (q.type == KEYD_SIGN_BUNDLE || q.type == KEYD_ISSUE_CERT) {
		if (!jv_name_valid(q.host, strlen(q.host), KEYD_NAME_MAX) ||
		    q.data + q.len > data + size || q.data < data)
			abort();
	}
	if ((q.type == KEYD_SIGN_BUNDLE && (!q.version ||
					    q.len > KEYD_BODY_MAX)) ||
	    (q.type == KEYD_ISSUE_CERT && (!q.days || q.days > KEYD_DAYS_MAX ||
					   q.len > KEYD_CSR_MAX)) ||
	    (q.type == KEYD_SIGN_CHECKPOINT && (!q.seq || q.time_ms < 0)))
		abort();
	uint8_t *m;
	size_t ml;
	if (keyd_req_encode(&q, &m, &ml) < 0)
		abort();
	if (ml != size || memcmp(m, data, size))
		abort();
	free(m);
}

static void check_rep(const uint8_t *data, size_t size)
{
	struct keyd_rep r;
	if (keyd_rep_parse(data, size, &r, NULL) < 0)
		return;
	if (r.status > 0 || r.len > KEYD_CSR_MAX ||
	    strlen(r.msg) >= sizeof(r.msg))
		abort();
	struct keyd_info i;
	if (keyd_info_parse(r.data, r.len, &i, NULL) == 0 &&
	    (i.has_ca > 1 || i.policy_pub_len > 1024 || i.ckpt_pub_len > 1024))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_req(data, size);
	check_rep(data, size);
	return 0;
}
