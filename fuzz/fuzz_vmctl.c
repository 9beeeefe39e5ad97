/*
 * libFuzzer target for the VM control protocol's decoder (agent/vm/vmctl.c):
 * the bytes a guest writes into its control port, every one hostile. The
 * input is fed whole, then again in chunks whose sizes the input's first
 * byte picks; both must decode the same frames (chunking never changes
 * what is accepted), every accepted frame must keep the rules vmctl.h
 * lists, and after a violation the decoder must accept nothing more.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/vm/vmctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXMSG 64

static void check(const struct vmctl_msg *m)
{
	if (m->h.magic != PARLEY_VMCTL_MAGIC ||
	    m->h.version != PARLEY_VMCTL_VERSION || m->h.type >= 0x80 ||
	    m->h.len != parley_vmctl_payload_len(m->h.type) || !m->h.len)
		abort();
	if (m->h.type == PARLEY_VMCTL_OPEN &&
	    !memchr(m->u.open.name, 0, sizeof(m->u.open.name)))
		abort();
	if ((m->h.type == PARLEY_VMCTL_NOTIFY || m->h.type == PARLEY_VMCTL_STATE ||
	     m->h.type == PARLEY_VMCTL_CLOSE) && m->u.handle.reserved)
		abort();
	if (m->h.type == PARLEY_VMCTL_DIGEST &&
	    (!memchr(m->u.digest.path, 0, sizeof(m->u.digest.path)) ||
	     m->u.digest.path[0] != '/'))
		abort();
}

/* Decode data in chunks of `chunk` bytes (0: whole); the frames accepted
 * go into got[], their count returned; *broke: a violation was seen. */
static unsigned run(const uint8_t *data, size_t size, size_t chunk,
		    struct vmctl_msg *got, int *broke)
{
	struct vmctl_dec d;
	unsigned n = 0;
	size_t off = 0;
	vmctl_dec_init(&d);
	*broke = 0;
	while (off < size) {
		size_t len = chunk && chunk < size - off ? chunk : size - off;
		/* An exact-size heap copy, so ASan sees any over-read. */
		uint8_t *piece = malloc(len);
		if (!piece)
			abort();
		memcpy(piece, data + off, len);
		size_t at = 0;
		while (at < len) {
			size_t used;
			struct vmctl_msg m;
			struct parley_err err = { 0 };
			int rc = vmctl_dec_feed(&d, piece + at, len - at,
						&used, &m, &err);
			if (used > len - at)
				abort();
			at += used;
			if (rc < 0) {
				*broke = 1;
				if (!d.broken || err.code != rc)
					abort();
				/* Broken for good. */
				if (vmctl_dec_feed(&d, piece, len, &used, &m,
						   &err) >= 0 || used)
					abort();
				free(piece);
				return n;
			}
			if (rc == 1) {
				check(&m);
				if (n < MAXMSG)
					got[n] = m;
				n++;
			} else if (at != len) {
				abort(); /* "need more" only when all is taken */
			}
		}
		free(piece);
		off += len;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmctl_msg a[MAXMSG], b[MAXMSG];
	int ba, bb;
	if (size == 0)
		return 0;
	unsigned na = run(data + 1, size - 1, 0, a, &ba);
	unsigned nb = run(data + 1, size - 1, 1 + data[0] % 17, b, &bb);
	if (na != nb || ba != bb)
		abort();
	for (unsigned i = 0; i < na && i < MAXMSG; i++)
		if (memcmp(&a[i], &b[i], sizeof(a[i])))
			abort();
	return 0;
}
