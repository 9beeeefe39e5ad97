/*
 * libFuzzer target for the agent's own QMP monitor client (agent/vm/qmp.c):
 * the bytes a VM's QEMU — possibly compromised — writes on the monitor.
 * The input is what QEMU says; a batch of three commands and then a long
 * call read it. Neither may crash, read past a line's cap, or hand back an
 * answer that is not one: a batch either breaks (negative) or gives each
 * command 0 ({"return"}) or -EIO ({"error"}) with a NUL-terminated reply;
 * a long call gives a line starting {"return" or nothing. qmp_int on the
 * input gives a number below QMP_INT_MAX or refuses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/vm/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (size > 96 * 1024 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	int big = 512 * 1024;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	size_t off = 0;
	while (off < size) {
		ssize_t w = send(sv[1], data + off, size - off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	shutdown(sv[1], SHUT_WR); /* then EOF: nothing waits */
	struct parley_err err = { 0 };
	struct qmp_cmd c[3] = {
		{ "{\"execute\":\"add-fd\"}", -1, 1, "" },
		{ "{\"execute\":\"object-add\"}", -1, 1, "" },
		{ "{\"execute\":\"device_add\"}", -1, 1, "" },
	};
	int rc = qmp_batch(sv[0], c, 3, 50, &err);
	if (rc > 0)
		abort();
	for (unsigned i = 0; rc == 0 && i < 3; i++) {
		if ((c[i].rc != 0 && c[i].rc != -EIO) ||
		    !memchr(c[i].reply, 0, sizeof(c[i].reply)))
			abort();
		if (c[i].rc == 0 && strncmp(c[i].reply, "{\"return\"", 9))
			abort();
		int n;
		if (qmp_int(c[i].reply, "\"fd\":", &n) == 0 &&
		    (n < 0 || n >= QMP_INT_MAX))
			abort();
	}
	char *out = (char *)1;
	rc = qmp_call_long(sv[0], "{\"execute\":\"query-pci\"}", &out, 50,
			   &err);
	if (rc == 0 && (!out || strncmp(out, "{\"return\"", 9) ||
			strlen(out) >= QMP_LONG_MAX))
		abort();
	if (rc != 0 && out)
		abort();
	free(out);
	close(sv[0]);
	close(sv[1]);
	/* the numbers' parser on the raw bytes */
	char *s = malloc(size + 1);
	if (s) {
		memcpy(s, data, size);
		s[size] = 0;
		int n;
		if (qmp_int(s, "\"fdset-id\":", &n) == 0 &&
		    (n < 0 || n >= QMP_INT_MAX))
			abort();
		free(s);
	}
	return 0;
}
