/*
 * Host certificates: the pin a join sets (or the first hello, for a host
 * an operator created without a join), and the revocation list a deleted
 * or re-joined host's certificate goes to, which the agent link checks
 * at every handshake.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int db_cert_revoke_pinned(struct store *s, const char *host, const char *why,
			  struct parley_err *err)
{
	/* The WHERE is also what tells SQLite's parser that ON CONFLICT
	 * belongs to the INSERT, not to a join in the SELECT. */
	static const char q[] =
		"INSERT INTO revoked_certs (sha256, host, revoked_ms, why) "
		"SELECT cert_sha256, name, ?2, ?3 FROM hosts "
		"WHERE name = ?1 AND cert_sha256 IS NOT NULL "
		"ON CONFLICT (sha256) DO NOTHING";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, host);
	db_bind_i64(st, 2, db_now_ms());
	db_bind_text(st, 3, why);
	return db_run(s, st, "revoke certificate", err);
}

static int revoked(struct store *s, struct store_blob fp, bool *out,
		   char *host_out, struct parley_err *err)
{
	static const char q[] = "SELECT host FROM revoked_certs "
				"WHERE sha256 = ?1";
	struct db_stmt *st;
	int rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_blob(st, 1, fp.p, fp.len);
	rc = db_step(s, st, "find revoked certificate", err);
	*out = rc == 1;
	if (rc == 1 && host_out)
		rc = db_col_name(s, st, 0, host_out, STORE_NAME_MAX, err);
	db_reset(st);
	return rc < 0 ? rc : 0;
}

int store_cert_revoked(struct store *s, struct store_blob cert_sha256,
		       bool *is_revoked, char *host_out,
		       struct parley_err *err)
{
	*is_revoked = false;
	if (host_out)
		host_out[0] = '\0';
	int rc = db_check_digest("certificate fingerprint", cert_sha256, err);
	return rc < 0 ? rc : revoked(s, cert_sha256, is_revoked, host_out,
				     err);
}

static int enrol(struct store *s, const char *name, struct store_blob fp,
		 bool *created, struct parley_err *err)
{
	static const char q_new[] =
		"INSERT INTO hosts (name, libvirt_uri, cert_sha256, "
		"created_ms, updated_ms) VALUES (?1, '', ?2, ?3, ?3)";
	static const char q_pin[] =
		"UPDATE hosts SET cert_sha256 = ?2, updated_ms = ?3 "
		"WHERE name = ?1";
	bool rev;
	int rc = revoked(s, fp, &rev, NULL, err);
	if (rc == 0 && rev)
		rc = perr(err, -EKEYREVOKED, "host \"%s\": this certificate "
			  "was revoked", name);
	if (rc < 0)
		return rc;
	struct store_host h;
	rc = store_host_get(s, name, &h, NULL);
	*created = rc == -ENOENT;
	if (rc == 0 && h.has_cert &&
	    memcmp(h.cert_sha256, fp.p, STORE_DIGEST) != 0)
		rc = db_cert_revoke_pinned(s, name, "rejoined", err);
	else if (rc == -ENOENT)
		rc = 0;
	struct db_stmt *st;
	if (rc == 0)
		rc = db_prep(s, *created ? q_new : q_pin, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_blob(st, 2, fp.p, fp.len);
	db_bind_i64(st, 3, db_now_ms());
	return db_run(s, st, "enrol host", err);
}

/* Both writes: arguments checked, then op in its own transaction (or
 * savepoint); *flag only says yes once that committed. */
typedef int (*cert_op)(struct store *s, const char *name,
		       struct store_blob fp, bool *flag,
		       struct parley_err *err);

static int host_cert_op(struct store *s, const char *name,
			struct store_blob fp, cert_op op, bool *flag,
			struct parley_err *err)
{
	bool f = false;
	int rc = db_check_name("host name", name, err);
	if (rc == 0)
		rc = db_check_digest("certificate fingerprint", fp, err);
	if (rc == 0)
		rc = db_op_begin(s, err);
	if (rc < 0)
		return rc;
	rc = db_op_end(s, op(s, name, fp, &f, err), err);
	if (flag)
		*flag = rc == 0 && f;
	return rc;
}

int store_host_enrol(struct store *s, const char *name,
		     struct store_blob cert_sha256, bool *created,
		     struct parley_err *err)
{
	return host_cert_op(s, name, cert_sha256, enrol, created, err);
}

static int pin_first(struct store *s, const char *name, struct store_blob fp,
		     bool *pinned_now, struct parley_err *err)
{
	static const char q[] =
		"UPDATE hosts SET cert_sha256 = ?2, updated_ms = ?3 "
		"WHERE name = ?1 AND cert_sha256 IS NULL";
	struct store_host h;
	int rc = store_host_get(s, name, &h, err);
	if (rc < 0)
		return rc;
	if (h.has_cert)
		return memcmp(h.cert_sha256, fp.p, STORE_DIGEST) == 0
			? 0 : perr(err, -ESTALE, "host \"%s\" has another "
				   "certificate pinned", name);
	struct db_stmt *st;
	rc = db_prep(s, q, &st, err);
	if (rc < 0)
		return rc;
	db_bind_text(st, 1, name);
	db_bind_blob(st, 2, fp.p, fp.len);
	db_bind_i64(st, 3, db_now_ms());
	rc = db_run(s, st, "pin certificate", err);
	*pinned_now = rc == 0;
	return rc;
}

int store_host_pin_first(struct store *s, const char *name,
			 struct store_blob cert_sha256, bool *pinned_now,
			 struct parley_err *err)
{
	return host_cert_op(s, name, cert_sha256, pin_first, pinned_now, err);
}
