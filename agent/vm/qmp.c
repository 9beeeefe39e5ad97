/* The agent's own QMP monitor on a VM's QEMU (qmp.h). */
#include "agent/vm/qmp.h"
#include "agent/ctl/fdpass.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line of QEMU's (without its "\r\n") into line[cap], by the
 * deadline; bytes past the line stay in the socket (MSG_PEEK). */
static int read_line_cap(int fd, char *line, size_t cap, int64_t deadline)
{
	size_t len = 0;
	for (;;) {
		int left = (int)(deadline - now_ms());
		struct pollfd p = { fd, POLLIN, 0 };
		if (left <= 0)
			return -ETIMEDOUT;
		int pr = poll(&p, 1, left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return pr < 0 ? -errno : -ETIMEDOUT;
		char buf[QMP_LINE_MAX];
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		char *nl = memchr(buf, '\n', (size_t)n);
		size_t take = nl ? (size_t)(nl - buf) + 1 : (size_t)n;
		if (len + take >= cap)
			return -EMSGSIZE;
		if (recv(fd, line + len, take, MSG_DONTWAIT) != (ssize_t)take)
			return -EIO;
		len += take;
		if (nl) {
			while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
				len--;
			line[len] = 0;
			return 0;
		}
	}
}

static int read_line(int fd, char *line, int64_t deadline)
{
	return read_line_cap(fd, line, QMP_LINE_MAX, deadline);
}

/* The next line that is no event ({"timestamp": ..., "event": ...}). */
static int read_answer_cap(int fd, char *line, size_t cap, int64_t deadline)
{
	for (;;) {
		int rc = read_line_cap(fd, line, cap, deadline);
		if (rc)
			return rc;
		if (strncmp(line, "{\"timestamp\"", 12) &&
		    strncmp(line, "{\"event\"", 8))
			return 0;
	}
}

static int read_answer(int fd, char *line, int64_t deadline)
{
	return read_answer_cap(fd, line, QMP_LINE_MAX, deadline);
}

static int send_cmd(int fd, const char *json, int pass)
{
	struct iovec iov = { (void *)json, strlen(json) };
	/* Small commands into an empty socket buffer: whole, or the stream
	 * is broken. */
	ssize_t w = fdpass_send(fd, &iov, 1, &pass, pass >= 0 ? 1 : 0, 0);
	return w == (ssize_t)iov.iov_len ? 0 : w < 0 ? (int)w : -EIO;
}

int qmp_batch(int fd, struct qmp_cmd *c, unsigned n, int timeout_ms,
	      struct parley_err *err)
{
	int64_t deadline = now_ms() + timeout_ms;
	char line[QMP_LINE_MAX];
	for (unsigned i = 0; i < n; i++) {
		int rc = send_cmd(fd, c[i].json, c[i].fd);
		if (rc)
			return perr(err, rc, "QMP: sending: %s", strerror(-rc));
	}
	for (unsigned i = 0; i < n; i++) {
		int rc = read_answer(fd, line, deadline);
		if (rc)
			return perr(err, rc, "QMP: answer %u of %u: %s", i + 1, n,
				    strerror(-rc));
		snprintf(c[i].reply, sizeof(c[i].reply), "%s", line);
		if (!strncmp(line, "{\"return\"", 9))
			c[i].rc = 0;
		else if (!strncmp(line, "{\"error\"", 8))
			c[i].rc = -EIO;
		else
			return perr(err, -EPROTO, "QMP: answer %u: %.100s", i + 1,
				    line);
	}
	return 0;
}

int qmp_call_long(int fd, const char *json, char **out, int timeout_ms,
		  struct parley_err *err)
{
	*out = NULL;
	int rc = send_cmd(fd, json, -1);
	if (rc)
		return perr(err, rc, "QMP: sending: %s", strerror(-rc));
	char *line = malloc(QMP_LONG_MAX);
	if (!line)
		return perr(err, -ENOMEM, "QMP: no memory");
	rc = read_answer_cap(fd, line, QMP_LONG_MAX, now_ms() + timeout_ms);
	if (!rc && strncmp(line, "{\"return\"", 9))
		rc = -EPROTO;
	if (rc) {
		perr(err, rc, "QMP: %.60s: %s", json, rc == -EPROTO ? line
		     : strerror(-rc));
		free(line);
		return rc;
	}
	*out = line;
	return 0;
}

/* A connect that cannot hang: the socket is in a directory QEMU's user
 * may write, and a listener that never accepts (a full backlog) would
 * block a plain connect() — the agent's loop with it — for good. */
static int connect_by(int fd, const struct sockaddr_un *sa, int64_t deadline)
{
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN)
		return -errno;
	for (;;) {
		int left = (int)(deadline - now_ms());
		struct pollfd p = { fd, POLLOUT, 0 };
		int pr = poll(&p, 1, left > 0 ? left : 0);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return pr < 0 ? -errno : -ETIMEDOUT;
		int e = 0;
		socklen_t el = sizeof(e);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			return -errno;
		return e ? -e : 0;
	}
}

int qmp_open(const char *path, int timeout_ms, struct parley_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return perr(err, -ENAMETOOLONG, "%s: too long for a socket", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = -1;
	for (int t = 0;; t += 10) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    0);
		if (fd < 0)
			return perr(err, -errno, "socket: %s", strerror(errno));
		int e = -connect_by(fd, &sa, now_ms() + 1000);
		if (e == 0)
			break;
		close(fd);
		if (t >= timeout_ms || e == ETIMEDOUT)
			return perr(err, -e, "QMP %s: %s", path, strerror(e));
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	char line[QMP_LINE_MAX];
	struct qmp_cmd cap = { "{\"execute\":\"qmp_capabilities\"}", -1, 0, "" };
	int rc = read_line(fd, line, now_ms() + QMP_ANSWER_MS);
	if (!rc && strncmp(line, "{\"QMP\"", 6))
		rc = -EPROTO;
	if (rc) {
		close(fd);
		return perr(err, rc, "QMP %s: no greeting: %s", path,
			    strerror(-rc));
	}
	if ((rc = qmp_batch(fd, &cap, 1, QMP_ANSWER_MS, err)) || (rc = cap.rc)) {
		close(fd);
		return rc == -EIO ? perr(err, rc, "QMP %s: %s", path, cap.reply)
				  : rc;
	}
	return fd;
}

int qmp_int(const char *reply, const char *key, int *out)
{
	const char *p = strstr(reply, key);
	if (!p)
		return -EPROTO;
	p += strlen(key);
	while (*p == ' ')
		p++;
	if (*p < '0' || *p > '9')
		return -EPROTO;
	long n = 0;
	while (*p >= '0' && *p <= '9' && n < QMP_INT_MAX)
		n = n * 10 + (*p++ - '0');
	if (n >= QMP_INT_MAX || (*p >= '0' && *p <= '9'))
		return -EPROTO;
	*out = (int)n;
	return 0;
}
