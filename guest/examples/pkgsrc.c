/* pkgsrc: the "guest facility" an updater gets its package from: sends
 * its configuration file "package" over the channel "update" (protocol
 * in updproto.h), then waits for the peer to be done with it. */
#include <parley/guest.h>
#include "updproto.h"

int main(const struct parley_boot_info *bi)
{
	const struct parley_config_file *f = parley_config_find(bi, "package");
	if (!f) {
		parley_printf("pkgsrc: no config file \"package\"\n");
		return 2;
	}
	struct parley_chan c;
	char detail[64];
	int64_t rc = upd_open(&c, detail);
	if (rc != PARLEY_OK) {
		parley_printf("pkgsrc: channel \"update\": %ld %s\n", (long)rc,
			      detail);
		return 2;
	}
	uint64_t size = f->size;
	const uint8_t *p = (const uint8_t *)(uintptr_t)f->gpa;
	rc = parley_chan_send(&c, &size, sizeof(size));
	for (uint64_t off = 0; rc == PARLEY_OK && off < size;) {
		uint32_t n = size - off < UPD_MSG_MAX ? (uint32_t)(size - off)
						      : UPD_MSG_MAX;
		rc = parley_chan_send(&c, p + off, n);
		off += n;
	}
	if (rc != PARLEY_OK) {
		parley_printf("pkgsrc: send: %ld\n", (long)rc);
		return 2;
	}
	uint8_t ack;
	uint32_t got;
	rc = parley_chan_recv(&c, &ack, sizeof(ack), &got);
	parley_printf("pkgsrc: sent %lu bytes, %s\n", (unsigned long)size,
		      rc == PARLEY_OK ? "received" : "not acknowledged");
	return rc == PARLEY_OK ? 0 : 2;
}
