#include "agent/servers.h"
#include "agent/link.h"
#include "common/fileio.h"
#include "common/hostport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* In link.h, kept here with the list's parsing: it touches only the
 * list, and whatever uses the list need not take the whole link. */
int agent_link_add_server(struct agent_link *l, const char *hostport,
			  struct parley_err *err)
{
	char host[128];
	int port;
	if (hostport_split(hostport, host, sizeof(host), &port) < 0 ||
	    port <= 0 || !host[0])
		return perr(err, -EINVAL, "server \"%.80s\" is not HOST:PORT",
			    hostport);
	for (const char *p = host; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return perr(err, -EINVAL, "server: byte 0x%02x in its "
				    "host", (unsigned char)*p);
	for (unsigned i = 0; i < l->nservers; i++)
		if (l->ports[i] == port && !strcmp(l->servers[i], host))
			return 0;
	if (l->nservers == AGENT_LINK_SERVERS_MAX)
		return perr(err, -E2BIG, "more than %d servers",
			    AGENT_LINK_SERVERS_MAX);
	snprintf(l->servers[l->nservers], sizeof(l->servers[0]), "%s", host);
	l->ports[l->nservers++] = port;
	return 0;
}

/* The file's text ("" when there is none); NULL on a read error. */
static char *file_text(const char *state_dir, struct parley_err *err)
{
	char path[4200];
	if (path_join(path, sizeof(path), state_dir, "servers") < 0) {
		perr(err, -ENAMETOOLONG, "state dir: too long");
		return NULL;
	}
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = file_read_all(path, AGENT_SERVERS_FILE_MAX, &buf, &len, err);
	if (rc == -ENOENT) {
		if (err)
			*err = (struct parley_err){ 0 };
		return strdup("");
	}
	if (rc < 0)
		return NULL;
	if (memchr(buf, 0, len)) {
		free(buf);
		perr(err, -EINVAL, "%s: a NUL byte", path);
		return NULL;
	}
	return (char *)buf; /* file_read_all terminates it */
}

/* Each entry of text (separated by commas, newlines or blanks) to cb;
 * stops at cb's first error. */
static int each(const char *text, int (*cb)(const char *hp, void *ctx),
		void *ctx, struct parley_err *err)
{
	const char *p = text;
	while (*p) {
		size_t n = strcspn(p, ", \t\r\n");
		if (n >= 128)
			return perr(err, -EINVAL, "server \"%.40s...\" too "
				    "long", p);
		if (n) {
			char hp[128];
			memcpy(hp, p, n);
			hp[n] = 0;
			int rc = cb(hp, ctx);
			if (rc < 0)
				return rc;
		}
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

struct first {
	char *host;
	size_t cap;
	int *port;
	bool found;
};

static int take_first(const char *hp, void *ctx)
{
	struct first *f = ctx;
	if (f->found)
		return 0;
	if (hostport_split(hp, f->host, f->cap, f->port) < 0 || *f->port <= 0)
		return -EINVAL;
	for (const char *p = f->host; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -EINVAL;
	f->found = true;
	return 0;
}

int agent_servers_first(const char *list, const char *state_dir, char *host,
			size_t cap, int *port, struct parley_err *err)
{
	struct first f = { host, cap, port, false };
	int rc = each(list ? list : "", take_first, &f, err);
	if (rc == -EINVAL && (!err || !err->msg[0]))
		return perr(err, rc, "--server \"%s\": not HOST:PORT[,...]",
			    list);
	if (rc < 0 || f.found)
		return rc;
	char *text = file_text(state_dir, err);
	if (!text)
		return -EIO;
	rc = each(text, take_first, &f, err);
	free(text);
	if (rc == -EINVAL && (!err || !err->msg[0]))
		return perr(err, rc, "%s/servers: an entry not HOST:PORT",
			    state_dir);
	if (rc == 0 && !f.found)
		rc = perr(err, -ENOENT, "no --server and no servers file in "
			  "%s", state_dir);
	return rc;
}

struct adding {
	struct agent_link *l;
	struct parley_err *err;
};

static int add_one(const char *hp, void *ctx)
{
	struct adding *a = ctx;
	return agent_link_add_server(a->l, hp, a->err);
}

int agent_servers_add(struct agent_link *l, const char *list,
		      const char *state_dir, struct parley_err *err)
{
	struct adding a = { l, err };
	int rc = each(list ? list : "", add_one, &a, err);
	if (rc < 0)
		return rc;
	char *text = file_text(state_dir, err);
	if (!text)
		return -EIO;
	rc = each(text, add_one, &a, err);
	free(text);
	return rc;
}

int agent_servers_save(const char *state_dir, char *const *servers, size_t n,
		       struct parley_err *err)
{
	if (n == 0)
		return 0;
	if (n > AGENT_LINK_SERVERS_MAX)
		n = AGENT_LINK_SERVERS_MAX;
	char text[AGENT_SERVERS_FILE_MAX];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		char host[128];
		int port;
		if (strlen(servers[i]) >= 128 ||
		    hostport_split(servers[i], host, sizeof(host), &port) < 0 ||
		    port <= 0)
			return perr(err, -EINVAL, "server \"%.80s\" is not "
				    "HOST:PORT", servers[i]);
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\n",
					servers[i]);
	}
	char path[4200], tmp[4300];
	if (path_join(path, sizeof(path), state_dir, "servers") < 0)
		return perr(err, -ENAMETOOLONG, "state dir: too long");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return file_write_replace(path, tmp, text, len, err);
}

int agent_servers_take(struct agent_link *l, char *const *servers, size_t n,
		       struct parley_err *err)
{
	unsigned before = l->nservers;
	for (size_t i = 0; i < n; i++)
		if (agent_link_add_server(l, servers[i], err) == -E2BIG)
			break; /* full: keep what we have */
	if (l->nservers == before)
		return 0;
	char text[AGENT_LINK_SERVERS_MAX][160];
	char *list[AGENT_LINK_SERVERS_MAX];
	for (unsigned i = 0; i < l->nservers; i++) {
		snprintf(text[i], sizeof(text[i]),
			 strchr(l->servers[i], ':') ? "[%s]:%d" : "%s:%d",
			 l->servers[i], l->ports[i]);
		list[i] = text[i];
	}
	return agent_servers_save(l->state_dir, list, l->nservers, err);
}
