#include "agent/bundle.h"
#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/sign.h"
#include "common/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUNDLE_FILE_MAX (2u << 20)

static int to_grants(const Parley__V1__PolicyBody *b, struct grant_set *g,
		     struct parley_err *err)
{
	g->n = 0;
	g->g = calloc(b->n_grants ? b->n_grants : 1, sizeof(*g->g));
	if (!g->g)
		return perr(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < b->n_grants; i++, g->n++) {
		char where[32];
		snprintf(where, sizeof(where), "grants[%zu]", i);
		int rc = wire_grant_to_model(b->grants[i], where, &g->g[i], err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Service rules through the wire's checks (names, source != target; the
 * body decoder already refused duplicates). */
static int to_services(const Parley__V1__PolicyBody *b, struct grant_set *g,
		       struct parley_err *err)
{
	g->nsvc = 0;
	g->svc = calloc(b->n_services ? b->n_services : 1, sizeof(*g->svc));
	if (!g->svc)
		return perr(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < b->n_services; i++, g->nsvc++) {
		char where[40];
		snprintf(where, sizeof(where), "services[%zu]", i);
		int rc = wire_svc_to_model(b->services[i], where, &g->svc[i],
					   err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Segment sets through the data set's own parser, as a policy file's
 * "segsets" are (common/segset.c): every field checked, errors naming
 * the entry. Members are not checked against the partitions running
 * here: the daemon may send a set before it creates its members, as it
 * does grants. */
static int to_segsets(const Parley__V1__PolicyBody *b, struct grant_set *g,
		      struct parley_err *err)
{
	const char *t = b->segsets_json;
	if (!t || !t[0])
		return 0;
	json_error_t je;
	json_t *arr = json_loadb(t, strlen(t), JSON_REJECT_DUPLICATES, &je);
	if (!arr) {
		/* jansson quotes the bytes near the error: quoted again. */
		jv_syntax_error(&je, err);
		perr_prefix(err, "segsets_json: not JSON");
		return -EINVAL;
	}
	int rc = segset_doc_from_json(arr, NULL, &g->seg, err);
	json_decref(arr);
	if (rc < 0) {
		perr_prefix(err, "segsets_json");
		/* One code for a body that does not check, whichever check. */
		if (rc != -ENOMEM) {
			rc = -EINVAL;
			if (err)
				err->code = rc;
		}
	}
	return rc;
}

int bundle_accept(EVP_PKEY *pub, const char *host, uint64_t current,
		  const Parley__V1__PolicyBundle *b, struct agent_policy *out,
		  struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	/* The signature before anything else: an unsigned body is not even
	 * parsed. */
	if (sign_verify(pub, b->body.data, b->body.len, b->signature.data,
			b->signature.len) < 0)
		return perr(err, -EBADMSG, "policy bundle: bad signature");
	int rc = wire_body_decode(&b->body, &out->body, err);
	if (rc < 0)
		return perr_prefix(err, "policy bundle"), -EINVAL;
	if (strcmp(out->body->host, host)) {
		rc = perr(err, -EPERM, "policy bundle for host \"%s\", not us "
			  "(\"%s\")", out->body->host, host);
	} else if (out->body->version <= current) {
		rc = perr(err, -ESTALE, "policy bundle version %llu is not newer "
			  "than the %llu enforced: refused (replayed?)",
			  (unsigned long long)out->body->version,
			  (unsigned long long)current);
	} else {
		out->version = out->body->version;
		rc = to_grants(out->body, &out->grants, err);
		if (rc == 0)
			rc = to_services(out->body, &out->grants, err);
		if (rc == 0)
			rc = to_segsets(out->body, &out->grants, err);
		if (rc < 0)
			perr_prefix(err, "policy bundle");
	}
	if (rc < 0)
		agent_policy_free(out);
	return rc;
}

int bundle_save(const char *path, const Parley__V1__PolicyBundle *b,
		struct parley_err *err)
{
	size_t len = parley__v1__policy_bundle__get_packed_size(b);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return perr(err, -ENOMEM, "out of memory");
	parley__v1__policy_bundle__pack(b, buf);
	char tmp[4096];
	int rc = (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)
			 ? -ENAMETOOLONG : 0;
	int fd = rc ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				0600);
	if (rc == 0 && fd < 0)
		rc = -errno;
	if (rc == 0)
		rc = fd_write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	free(buf);
	if (rc < 0)
		return perr(err, rc, "saving policy bundle %s: %s", path,
			    strerror(-rc));
	return 0;
}

int bundle_load(const char *path, EVP_PKEY *pub, const char *host,
		struct agent_policy *out, struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	memset(out, 0, sizeof(*out));
	int rc = file_read_all(path, BUNDLE_FILE_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	Parley__V1__PolicyBundle *b =
		parley__v1__policy_bundle__unpack(NULL, len, buf);
	free(buf);
	if (!b)
		return perr(err, -EINVAL, "%s: not a policy bundle", path);
	rc = bundle_accept(pub, host, 0, b, out, err);
	parley__v1__policy_bundle__free_unpacked(b, NULL);
	return rc < 0 ? perr_prefix(err, "%s", path), rc : 0;
}

const Parley__V1__Baseline *agent_policy_baseline(
	const struct agent_policy *p, const char *partition)
{
	for (size_t i = 0; p->body && i < p->body->n_baselines; i++)
		if (!strcmp(p->body->baselines[i]->partition, partition))
			return p->body->baselines[i];
	return NULL;
}

void agent_policy_free(struct agent_policy *p)
{
	grant_set_free(&p->grants);
	if (p->body)
		parley__v1__policy_body__free_unpacked(p->body, NULL);
	p->body = NULL;
	p->version = 0;
}
