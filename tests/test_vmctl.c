/* The VM control protocol's decoder (agent/vm/vmctl.c) against hostile
 * byte streams: every check it makes, one test each, and the good frames
 * through every chunking. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "agent/vm/vmctl.h"

static size_t frame(uint8_t *out, uint16_t type, const void *pl, uint32_t len,
		    uint32_t seq)
{
	struct parley_vmctl_hdr h = { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				      type, len, seq };
	memcpy(out, &h, sizeof(h));
	memcpy(out + sizeof(h), pl, len);
	return sizeof(h) + len;
}

static size_t open_frame(uint8_t *out, const char *name, uint32_t seq)
{
	struct parley_vmctl_open o;
	memset(&o, 0, sizeof(o));
	memcpy(o.name, name, strlen(name));
	return frame(out, PARLEY_VMCTL_OPEN, &o, sizeof(o), seq);
}

/* Feed all of buf; returns the last rc, the frames in msgs/nmsg. */
static int feed_all(struct vmctl_dec *d, const uint8_t *buf, size_t n,
		    size_t chunk, struct vmctl_msg *msgs, unsigned *nmsg,
		    struct parley_err *err)
{
	size_t off = 0;
	int rc = 0;
	*nmsg = 0;
	while (off < n) {
		size_t len = chunk && chunk < n - off ? chunk : n - off, used;
		rc = vmctl_dec_feed(d, buf + off, len, &used, &msgs[*nmsg], err);
		if (rc < 0)
			return rc;
		if (rc == 1)
			(*nmsg)++;
		off += used;
	}
	return rc;
}

Test(vmctl, frames_decode_under_every_chunking)
{
	uint8_t buf[1024];
	size_t n = 0;
	struct parley_vmctl_hello he = { 1, 0 };
	struct parley_vmctl_handle hd = { 7, 0 };
	struct parley_vmctl_digest dg;
	memset(&dg, 0, sizeof(dg));
	strcpy(dg.path, "/etc/app.conf");
	dg.sha256[0] = 0xab;
	n += frame(buf + n, PARLEY_VMCTL_HELLO, &he, sizeof(he), 1);
	n += open_frame(buf + n, "pingpong", 2);
	n += frame(buf + n, PARLEY_VMCTL_NOTIFY, &hd, sizeof(hd), 3);
	n += frame(buf + n, PARLEY_VMCTL_DIGEST, &dg, sizeof(dg), 4);
	n += frame(buf + n, PARLEY_VMCTL_STATE, &hd, sizeof(hd), 5);
	for (size_t chunk = 0; chunk <= 40; chunk++) {
		struct vmctl_dec d;
		struct vmctl_msg m[8];
		unsigned nm;
		struct parley_err err = { 0 };
		vmctl_dec_init(&d);
		cr_assert_geq(feed_all(&d, buf, n, chunk, m, &nm, &err), 0,
			      "chunk %zu: %s", chunk, err.msg);
		cr_assert_eq(nm, 5, "chunk %zu", chunk);
		cr_assert_eq(m[0].h.type, PARLEY_VMCTL_HELLO);
		cr_assert_str_eq(m[1].u.open.name, "pingpong");
		cr_assert_eq(m[1].h.seq, 2);
		cr_assert_eq(m[2].u.handle.handle, 7);
		cr_assert_str_eq(m[3].u.digest.path, "/etc/app.conf");
		cr_assert_eq(m[3].u.digest.sha256[0], 0xab);
		cr_assert_eq(m[4].h.type, PARLEY_VMCTL_STATE);
		cr_assert_eq(m[4].u.handle.handle, 7);
		cr_assert_eq(d.have, 0);
	}
}

/* One hostile frame: refused with -EPROTO naming `what`, and the decoder
 * takes nothing more after it, not even a good frame. */
static void refused(const uint8_t *buf, size_t n, const char *what)
{
	struct vmctl_dec d;
	struct vmctl_msg m[4];
	unsigned nm;
	struct parley_err err = { 0 };
	uint8_t good[128];
	size_t gn = open_frame(good, "ok", 9), used;
	vmctl_dec_init(&d);
	cr_assert_eq(feed_all(&d, buf, n, 0, m, &nm, &err), -EPROTO,
		     "%s accepted", what);
	cr_assert(strstr(err.msg, what), "'%s' not in '%s'", what, err.msg);
	cr_assert(d.broken);
	cr_assert_eq(vmctl_dec_feed(&d, good, gn, &used, &m[0], &err), -EPROTO);
	cr_assert_eq(used, 0);
}

Test(vmctl, bad_magic_version_type_length_refused)
{
	uint8_t buf[256];
	struct parley_vmctl_hello he = { 1, 0 };
	size_t n = frame(buf, PARLEY_VMCTL_HELLO, &he, sizeof(he), 1);
	buf[0] ^= 1;
	refused(buf, n, "magic");
	n = frame(buf, PARLEY_VMCTL_HELLO, &he, sizeof(he), 1);
	buf[4] = 1;  /* version 1 (WAIT, answered NOTIFY): not spoken */
	refused(buf, n, "version 1 (this agent speaks 4)");
	buf[4] = 2;  /* version 2 (the header as a device): not spoken */
	refused(buf, n, "version 2");
	buf[4] = 3;  /* version 3 (doorbells through the agent only) */
	refused(buf, n, "version 3");
	buf[4] = 5;
	refused(buf, n, "version 5");
	/* An agent-to-guest type and an unknown one from the guest. */
	n = frame(buf, PARLEY_VMCTL_OPEN_REPLY, &he, sizeof(he), 1);
	refused(buf, n, "type 130");
	n = frame(buf, 77, &he, sizeof(he), 1);
	refused(buf, n, "type 77");
	n = frame(buf, 0, &he, sizeof(he), 1);
	refused(buf, n, "type 0");
	/* Version 1's WAIT, with its old payload: gone in version 2. */
	struct parley_vmctl_handle hd = { 1, 0 };
	n = frame(buf, 4, &hd, sizeof(hd), 1);
	refused(buf, n, "type 4");
	/* WAKE is the agent's: a guest may not send it. */
	struct parley_vmctl_status st = { 0, 1 };
	n = frame(buf, PARLEY_VMCTL_WAKE, &st, sizeof(st), 1);
	refused(buf, n, "type 132");
	/* Lengths other than the type's: shorter, longer, huge (the header
	 * alone is refused; no payload is waited for). */
	n = frame(buf, PARLEY_VMCTL_HELLO, &he, sizeof(he) - 1, 1);
	refused(buf, n, "7 payload bytes");
	struct parley_vmctl_hdr h = { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				      PARLEY_VMCTL_OPEN,
				      0xffffffffu, 1 };
	refused((uint8_t *)&h, sizeof(h), "4294967295 payload bytes");
}

Test(vmctl, payload_rules_refused)
{
	uint8_t buf[256];
	struct parley_vmctl_hello he = { 1, 5 };
	refused(buf, frame(buf, PARLEY_VMCTL_HELLO, &he, sizeof(he), 1),
		"reserved");
	he = (struct parley_vmctl_hello){ 0, 0 };
	refused(buf, frame(buf, PARLEY_VMCTL_HELLO, &he, sizeof(he), 1),
		"version 0");
	struct parley_vmctl_handle hd = { 1, 1 };
	refused(buf, frame(buf, PARLEY_VMCTL_STATE, &hd, sizeof(hd), 1),
		"reserved");
	refused(buf, frame(buf, PARLEY_VMCTL_NOTIFY, &hd, sizeof(hd), 1),
		"reserved");
	struct parley_vmctl_open o;
	memset(&o, 'a', sizeof(o)); /* no NUL */
	refused(buf, frame(buf, PARLEY_VMCTL_OPEN, &o, sizeof(o), 1),
		"channel name");
	memset(&o, 0, sizeof(o));  /* empty */
	refused(buf, frame(buf, PARLEY_VMCTL_OPEN, &o, sizeof(o), 1),
		"channel name");
	strcpy(o.name, "../etc");
	refused(buf, frame(buf, PARLEY_VMCTL_OPEN, &o, sizeof(o), 1),
		"channel name");
	memset(&o, 0, sizeof(o));
	strcpy(o.name, "ok");
	o.name[10] = 'x';          /* bytes hidden after the NUL */
	refused(buf, frame(buf, PARLEY_VMCTL_OPEN, &o, sizeof(o), 1),
		"channel name");
	struct parley_vmctl_digest dg;
	const char *bad[] = { "relative/x", "/a/../b", "/..", "/a b",
			      "/tab\there" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&dg, 0, sizeof(dg));
		strcpy(dg.path, bad[i]);
		refused(buf, frame(buf, PARLEY_VMCTL_DIGEST, &dg, sizeof(dg), 1),
			"absolute path");
	}
	memset(&dg, 0, sizeof(dg));
	strcpy(dg.path, "/a/..b/c..");    /* not a ".." component: fine */
	cr_assert(vmctl_path_valid(dg.path, sizeof(dg.path)));
}

Test(vmctl, encode_checks_type_and_size)
{
	uint8_t out[512];
	struct parley_vmctl_status st = { -2, 3 };
	int n = vmctl_encode(PARLEY_VMCTL_STATUS, 4, &st, sizeof(st), out,
			     sizeof(out));
	cr_assert_eq(n, (int)(sizeof(struct parley_vmctl_hdr) + sizeof(st)));
	struct parley_vmctl_hdr h;
	memcpy(&h, out, sizeof(h));
	cr_assert_eq(h.seq, 4);
	cr_assert_eq(h.len, sizeof(st));
	cr_assert_eq(vmctl_encode(PARLEY_VMCTL_STATUS, 4, &st, sizeof(st) - 1,
				  out, sizeof(out)), -EINVAL);
	cr_assert_eq(vmctl_encode(PARLEY_VMCTL_OPEN, 4, &st, sizeof(st), out,
				  sizeof(out)), -EINVAL); /* a guest type */
	cr_assert_eq(vmctl_encode(PARLEY_VMCTL_STATUS, 4, &st, sizeof(st), out,
				  10), -EINVAL);
}
