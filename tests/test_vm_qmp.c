/* The agent's own QMP monitor client (agent/vm/qmp.c) against a hostile
 * QEMU: what it answers is checked line by line, within a size cap and a
 * deadline; events are skipped; a broken stream is an error, never a
 * wrong answer handed to the caller. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/vm/qmp.h"
#include "tests/helpers/testutil.h"

static int pair[2];

static void pair_up(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
}

static void pair_down(void)
{
	close(pair[0]);
	close(pair[1]);
}

static void qemu_says(const char *s)
{
	cr_assert_eq(write(pair[1], s, strlen(s)), (ssize_t)strlen(s));
}

/* Answers in order, events between them skipped; each command's fate its
 * own. */
Test(vm_qmp, answers_in_order_events_skipped, .init = pair_up,
     .fini = pair_down)
{
	struct parley_err err = { 0 };
	struct qmp_cmd c[3] = {
		{ "{\"execute\":\"add-fd\"}", -1, 1, "" },
		{ "{\"execute\":\"object-add\"}", -1, 1, "" },
		{ "{\"execute\":\"device_add\"}", -1, 1, "" },
	};
	qemu_says("{\"timestamp\": {\"seconds\": 1}, \"event\": \"RESET\"}\r\n"
		  "{\"return\": {\"fd\": 23, \"fdset-id\": 4}}\r\n"
		  "{\"event\": \"X\"}\r\n"
		  "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n"
		  "{\"return\": {}}\r\n");
	cr_assert_eq(qmp_batch(pair[0], c, 3, 2000, &err), 0, "%s", err.msg);
	cr_assert_eq(c[0].rc, 0);
	cr_assert_eq(c[1].rc, -EIO);
	cr_assert(strstr(c[1].reply, "GenericError"));
	cr_assert_eq(c[2].rc, 0);
	int fd = -1, set = -1;
	cr_assert_eq(qmp_int(c[0].reply, "\"fd\":", &fd), 0);
	cr_assert_eq(qmp_int(c[0].reply, "\"fdset-id\":", &set), 0);
	cr_assert_eq(fd, 23);
	cr_assert_eq(set, 4);
	/* what the agent sent, in order */
	char buf[256] = "";
	cr_assert_gt(read(pair[1], buf, sizeof(buf) - 1), 0);
	cr_assert(strstr(buf, "add-fd") < strstr(buf, "device_add"));
}

/* A descriptor goes with its own command: it arrives with that command's
 * first byte (the kernel never glues what follows to it; QEMU reads its
 * monitor a byte at a time and not past a command it has not answered). */
Test(vm_qmp, descriptor_goes_with_its_command, .init = pair_up,
     .fini = pair_down)
{
	struct parley_err err = { 0 };
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct qmp_cmd c[2] = {
		{ "{\"execute\":\"getfd\"}", p[0], 1, "" },
		{ "{\"execute\":\"query-version\"}", -1, 1, "" },
	};
	qemu_says("{\"return\": {}}\r\n{\"return\": {}}\r\n");
	cr_assert_eq(qmp_batch(pair[0], c, 2, 2000, &err), 0, "%s", err.msg);
	char buf[64];
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	struct iovec iov = { buf, sizeof(buf) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.b, .msg_controllen = sizeof(u.b) };
	ssize_t n = recvmsg(pair[1], &mh, 0);
	cr_assert_gt(n, 0);
	buf[n] = 0;
	cr_assert_str_eq(buf, c[0].json, "the descriptor came with '%s'", buf);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cr_assert(cm && cm->cmsg_type == SCM_RIGHTS);
	int got;
	memcpy(&got, CMSG_DATA(cm), sizeof(int));
	cr_assert_geq(got, 0);
	close(got);
	/* the next command carries none */
	mh.msg_controllen = sizeof(u.b);
	n = recvmsg(pair[1], &mh, 0);
	cr_assert_gt(n, 0);
	cr_assert_eq(mh.msg_controllen, 0u);
	close(p[0]);
	close(p[1]);
}

/* What QEMU may answer that breaks the stream: each an error. */
Test(vm_qmp, hostile_answers_break_the_batch, .init = pair_up,
     .fini = pair_down)
{
	struct parley_err err = { 0 };
	struct qmp_cmd c = { "{\"execute\":\"device_add\"}", -1, 1, "" };
	/* neither return nor error */
	qemu_says("{\"QMP\": {}}\r\n");
	cr_assert_eq(qmp_batch(pair[0], &c, 1, 2000, &err), -EPROTO);
	/* a line longer than any answer */
	static char big[QMP_LINE_MAX + 10];
	memset(big, 'x', sizeof(big) - 1);
	qemu_says(big);
	cr_assert_eq(qmp_batch(pair[0], &c, 1, 2000, &err), -EMSGSIZE);
}

Test(vm_qmp, silence_times_out, .init = pair_up, .fini = pair_down)
{
	struct parley_err err = { 0 };
	struct qmp_cmd c = { "{\"execute\":\"device_add\"}", -1, 1, "" };
	qemu_says("{\"return\": {}"); /* no end of line, then nothing */
	cr_assert_eq(qmp_batch(pair[0], &c, 1, 100, &err), -ETIMEDOUT);
}

Test(vm_qmp, hung_up_is_an_error, .init = pair_up, .fini = pair_down)
{
	struct parley_err err = { 0 };
	struct qmp_cmd c = { "{\"execute\":\"device_add\"}", -1, 1, "" };
	qemu_says("{\"event\": \"SHUTDOWN\"}\r\n");
	shutdown(pair[1], SHUT_WR);
	cr_assert_eq(qmp_batch(pair[0], &c, 1, 2000, &err), -EPIPE);
}

/* Numbers out of an answer: plain small decimals only. */
Test(vm_qmp, hostile_numbers_refused)
{
	int v = 7;
	cr_assert_eq(qmp_int("{\"return\": {\"fd\": 12}}", "\"fd\":", &v), 0);
	cr_assert_eq(v, 12);
	const char *bad[] = {
		"{\"return\": {\"fd\": -1}}",
		"{\"return\": {\"fd\": \"3\"}}",
		"{\"return\": {\"fd\": 99999999999999999999}}",
		"{\"return\": {\"fd\": 16777216}}",
		"{\"return\": {}}",
		"{\"return\": {\"fd\":",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(qmp_int(bad[i], "\"fd\":", &v), -EPROTO, "%s",
			     bad[i]);
}

/* qmp_open against a socket whose server is not QEMU. */
struct fake {
	int lfd;
	const char *say;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	if (c >= 0 && *f->say) {
		send(c, f->say, strlen(f->say), MSG_NOSIGNAL);
		char buf[256];
		if (read(c, buf, sizeof(buf)) > 0) {
			/* the negotiation's answer */
			const char *no = "{\"error\": {\"desc\": \"no\"}}\r\n";
			send(c, no, strlen(no), MSG_NOSIGNAL);
		}
	}
	if (c >= 0)
		close(c);
	return NULL;
}

static int open_against(const char *say)
{
	char *dir = t_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/qmp", dir);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	struct fake f = { socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), say };
	cr_assert_geq(f.lfd, 0);
	cr_assert_eq(bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f.lfd, 1), 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fake_main, &f), 0);
	struct parley_err err = { 0 };
	int rc = qmp_open(path, 1000, &err);
	pthread_join(t, NULL);
	close(f.lfd);
	if (rc >= 0)
		close(rc);
	unlink(path);
	rmdir(dir);
	free(dir);
	return rc;
}

Test(vm_qmp, open_needs_a_greeting_and_negotiation)
{
	cr_assert_eq(open_against("hello\r\n"), -EPROTO);
	cr_assert_eq(open_against(""), -EPIPE);
	/* a greeting, then the negotiation refused */
	cr_assert_eq(open_against("{\"QMP\": {\"version\": {}}}\r\n"), -EIO);
}

/* A listener that never accepts (its backlog full: a QEMU stalling on
 * purpose, or another process on the path): the connect is given up, it
 * never blocks (the criterion timeout would catch a hang). */
Test(vm_qmp, open_never_accepted_gives_up, .timeout = 20)
{
	char *dir = t_tmpdir();
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/qmp", dir);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(l, 0), 0);
	int fill[64], nfill = 0;
	while (nfill < 64) {
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
			       SOCK_NONBLOCK, 0);
		if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(c);
			break;
		}
		fill[nfill++] = c;
	}
	cr_assert_lt(nfill, 64, "the backlog never filled");
	struct parley_err err = { 0 };
	int rc = qmp_open(sa.sun_path, 300, &err);
	cr_assert_lt(rc, 0, "connected to a listener that never accepts");
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	close(l);
	unlink(sa.sun_path);
	rmdir(dir);
	free(dir);
}

struct writer {
	int fd;
	const char *s;
};

/* QEMU's side writing more than a socket buffer holds. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t n = strlen(w->s);
	for (size_t off = 0; off < n;) {
		ssize_t k = send(w->fd, w->s + off, n - off, MSG_NOSIGNAL);
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	return NULL;
}

/* A long answer (query-pci of a VM with many devices) comes whole; one
 * longer than QMP_LONG_MAX, an error answer or silence is an error. */
Test(vm_qmp, long_answers_whole_or_refused, .init = pair_up,
     .fini = pair_down, .timeout = 30)
{
	struct parley_err err = { 0 };
	size_t n = 100000;
	char *big = malloc(n + 32);
	int len = snprintf(big, 16, "{\"return\": \"");
	memset(big + len, 'x', n);
	snprintf(big + len + n, 16, "\"}\r\n");
	/* a writer thread: the socket holds less than the answer */
	struct writer w = { pair[1], big };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	char *out = NULL;
	cr_assert_eq(qmp_call_long(pair[0], "{\"execute\":\"query-pci\"}", &out,
				   5000, &err), 0, "%s", err.msg);
	pthread_join(t, NULL);
	cr_assert_eq(strlen(out), (size_t)len + n + 2);
	free(out);
	qemu_says("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n");
	cr_assert_eq(qmp_call_long(pair[0], "{\"execute\":\"x\"}", &out, 1000,
				   &err), -EPROTO);
	cr_assert_null(out);
	cr_assert_eq(qmp_call_long(pair[0], "{\"execute\":\"x\"}", &out, 200,
				   &err), -ETIMEDOUT);
	/* longer than QMP_LONG_MAX: refused at the cap, not read on */
	free(big);
	n = QMP_LONG_MAX + 10;
	big = malloc(n + 32);
	len = snprintf(big, 16, "{\"return\": \"");
	memset(big + len, 'y', n);
	snprintf(big + len + n, 16, "\"}\r\n");
	w.s = big;
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	cr_assert_eq(qmp_call_long(pair[0], "{\"execute\":\"x\"}", &out, 5000,
				   &err), -EMSGSIZE);
	cr_assert_null(out);
	shutdown(pair[0], SHUT_RDWR); /* the writer's rest fails */
	pthread_join(t, NULL);
	free(big);
}
