/* The API's HTTP gate (daemon/rpc/api_gate.c): raw bytes from a client,
 * framed into requests. The answer may not depend on how the bytes were
 * split into reads (the filter sees them piece by piece); what it accepts
 * it accepts again on its own; every refusal is a known one. */
#include <stdint.h>
#include <stdlib.h>

#include "daemon/rpc/api_gate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* First byte: the read size (0: all at once); small limits so that
	 * the fuzzer reaches them. */
	size_t piece = data[0] % 32;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	unsigned r1, r2, r3;
	size_t a = api_gate_scan(p, n, 256, 64, 0, &r1);
	size_t b = api_gate_scan(p, n, 256, 64, piece, &r2);
	if (a > n || a != b || r1 != r2 || (r1 && !api_gate_refusal(r1)))
		abort();
	if (api_gate_scan(p, a, 256, 64, 0, &r3) != a || r3)
		abort();
	return 0;
}
