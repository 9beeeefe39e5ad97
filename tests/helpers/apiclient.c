#include "tests/helpers/apiclient.h"
#include "tests/helpers/testutil.h"
#include "common/fileio.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

static void parse(struct ac_resp *r);

int ac_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = { 10, 0 };
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t parent_ = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent_);
int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static bool ready(struct fleetd *f, void *ctx)
{
	struct api_client *c = ctx;
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/parleyd.api-port", f->dir);
	if (file_read_all(path, 64, &buf, &len, NULL) < 0)
		return false;
	c->port = atoi((char *)buf);
	free(buf);
	snprintf(path, sizeof(path), "%s/admin.token", f->dir);
	if (file_read_all(path, 256, &buf, &len, NULL) < 0)
		return false;
	snprintf(c->admin, sizeof(c->admin), "%.*s", (int)strcspn((char *)buf,
								  "\n"),
		 (char *)buf);
	free(buf);
	snprintf(path, sizeof(path), "%s/parleyd.port", f->dir);
	if (file_read_all(path, 64, &buf, &len, NULL) < 0)
		return false;
	f->port = atoi((char *)buf);
	free(buf);
	return c->port > 0 && f->port > 0 && strlen(c->admin) == 68;
}

static void spawn_daemon(struct api_client *c)
{
	const char *const *extra = c->extra;
	char ca[600], crt[600], key[600], pol[600], log[600];
	const char *d = c->f.dir;
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", d);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", d);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", d);
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", d);
	snprintf(log, sizeof(log), "%s/parleyd.log", d);
	/* The link: any port at first, then the same one (agents keep it). */
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->f.port);
	char *argv[40] = { T_BIN("parleyd"), "--listen", listen,
			   "--api-listen", "127.0.0.1:0", "--state-dir",
			   (char *)d, "--ca", ca, "--cert", crt, "--key", key,
			   "--policy-key", pol, "--store", c->f.store, NULL };
	int n = 17;
	if (c->tls) {
		argv[n++] = "--api-cert";
		argv[n++] = crt;
		argv[n++] = "--api-key";
		argv[n++] = key;
	}
	char cakey[600];
	if (c->join) {
		snprintf(cakey, sizeof(cakey), "%s/ca/ca.key", d);
		argv[n++] = "--join-listen";
		argv[n++] = "127.0.0.1:0";
		argv[n++] = "--ca-key";
		argv[n++] = cakey;
	}
	for (int i = 0; extra && extra[i] && n < 39; i++)
		argv[n++] = (char *)extra[i];
	c->f.daemon = spawn(argv, log);
	cr_assert(fd_wait(ready, &c->f, c, 10000), "parleyd API did not start");
}

void ac_start(struct api_client *c)
{
	memset(c, 0, sizeof(*c));
	fd_init(&c->f);
	spawn_daemon(c);
}

void ac_start_args(struct api_client *c, const char *const *extra)
{
	memset(c, 0, sizeof(*c));
	fd_init(&c->f);
	c->extra = extra;
	spawn_daemon(c);
}

void ac_start_join(struct api_client *c)
{
	memset(c, 0, sizeof(*c));
	fd_init(&c->f);
	c->join = true;
	spawn_daemon(c);
}

void ac_start_tls(struct api_client *c)
{
	memset(c, 0, sizeof(*c));
	fd_init(&c->f);
	c->tls = true;
	spawn_daemon(c);
}

void ac_raw_tls(const struct api_client *c, const void *req, size_t len,
		struct ac_resp *r)
{
	ac_raw_tls_end(c, req, len, 0, r);
}

void ac_raw_tls_end(const struct api_client *c, const void *req, size_t len,
		    int end, struct ac_resp *r)
{
	memset(r, 0, sizeof(*r));
	/* SSL_write uses write(2): a server that answered and closed
	 * before reading everything must not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	char ca[700];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", c->f.dir);
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert(ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int fd = ac_connect(c->port);
	cr_assert_geq(fd, 0, "connect to the API");
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	cr_assert_eq(SSL_connect(ssl), 1, "TLS handshake with parleyd");
	/* As ac_raw: the server may answer and close before reading all. */
	for (size_t off = 0; off < len;) {
		int n = SSL_write(ssl, (const char *)req + off,
				  (int)(len - off > 16384 ? 16384 : len - off));
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (end == 1)
		SSL_shutdown(ssl); /* close_notify: the client is done */
	else if (end == 2)
		shutdown(fd, SHUT_WR); /* a FIN without close_notify */
	size_t cap = 4096, got = 0;
	r->raw = malloc(cap);
	for (;;) {
		if (got + 1 >= cap)
			r->raw = realloc(r->raw, cap *= 2);
		int n = SSL_read(ssl, r->raw + got, (int)(cap - got - 1));
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	r->raw[got] = '\0';
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	parse(r);
}

void ac_kill(struct api_client *c)
{
	if (c->f.daemon > 0) {
		kill(c->f.daemon, SIGKILL);
		waitpid(c->f.daemon, NULL, 0);
	}
	c->f.daemon = 0;
}

void ac_kill_restart(struct api_client *c)
{
	ac_kill(c);
	char path[700];
	snprintf(path, sizeof(path), "%s/parleyd.api-port", c->f.dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/parleyd.port", c->f.dir);
	unlink(path);
	c->port = 0;
	spawn_daemon(c);
}

void ac_stop(struct api_client *c)
{
	fd_stop(&c->f);
}

static void parse(struct ac_resp *r)
{
	if (sscanf(r->raw, "HTTP/1.%*d %d", &r->status) != 1)
		r->status = 0;
	char *b = strstr(r->raw, "\r\n\r\n");
	r->body = b ? b + 4 : "";
	r->json = json_loads(r->body, 0, NULL);
}

void ac_raw(int port, const void *req, size_t len, struct ac_resp *r)
{
	memset(r, 0, sizeof(*r));
	int fd = ac_connect(port);
	cr_assert_geq(fd, 0, "connect to the API");
	/* The server may answer (413, 400) and close before it has read
	 * everything: a failed send is not the test's failure. */
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, (const char *)req + off, len - off,
				 MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	size_t cap = 4096, got = 0;
	r->raw = malloc(cap);
	for (;;) {
		if (got + 1 >= cap)
			r->raw = realloc(r->raw, cap *= 2);
		ssize_t n = recv(fd, r->raw + got, cap - got - 1, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	r->raw[got] = '\0';
	close(fd);
	parse(r);
}

int ac_request(int port, const char *token, const char *method,
	       const char *path, const char *body)
{
	int fd = ac_connect(port);
	if (fd < 0)
		return 0;
	char req[2048], resp[4096];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nConnection: "
			 "close\r\nAuthorization: Bearer %s\r\n"
			 "Content-Length: %zu\r\n\r\n%s", method, path, token,
			 body ? strlen(body) : 0, body ? body : "");
	int status = 0;
	if (n > 0 && (size_t)n < sizeof(req) &&
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
		ssize_t got = recv(fd, resp, sizeof(resp) - 1, 0);
		if (got > 12) {
			resp[got] = '\0';
			if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
				status = 0;
		}
	}
	close(fd);
	return status;
}

void ac_call(struct api_client *c, const char *method, const char *path,
	     const char *token, const char *body, struct ac_resp *r)
{
	size_t blen = body ? strlen(body) : 0;
	size_t cap = blen + 1024;
	char *req = malloc(cap);
	int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Connection: close\r\n", method, path);
	if (token)
		n += snprintf(req + n, cap - (size_t)n,
			      "Authorization: Bearer %s\r\n", token);
	if (body)
		n += snprintf(req + n, cap - (size_t)n, "Content-Type: "
			      "application/json\r\nContent-Length: %zu\r\n",
			      blen);
	n += snprintf(req + n, cap - (size_t)n, "\r\n");
	if (body)
		memcpy(req + n, body, blen);
	ac_raw(c->port, req, (size_t)n + blen, r);
	free(req);
}

void ac_free(struct ac_resp *r)
{
	json_decref(r->json);
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

static const char *err_field(const struct ac_resp *r, const char *k)
{
	json_t *e = json_object_get(r->json, "error");
	const char *s = json_string_value(json_object_get(e, k));
	return s ? s : "";
}

const char *ac_code(const struct ac_resp *r)
{
	return err_field(r, "code");
}

const char *ac_msg(const struct ac_resp *r)
{
	return err_field(r, "message");
}

void ac_call_ok(struct api_client *c, const char *method, const char *path,
		const char *body, int want, struct ac_resp *keep)
{
	struct ac_resp r;
	ac_call(c, method, path, c->admin, body, &r);
	cr_assert_eq(r.status, want, "%s %s: %d %s", method, path, r.status,
		     r.body ? r.body : r.raw ? r.raw : "");
	if (keep)
		*keep = r;
	else
		ac_free(&r);
}
