/* The VM control protocol's decoder and encoder (vmctl.h). */
#include "agent/vm/vmctl.h"

#include <errno.h>
#include <string.h>
#include "common/jsonv.h"

void vmctl_dec_init(struct vmctl_dec *d)
{
	memset(d, 0, sizeof(*d));
}

/* A field of cap bytes holds a NUL-terminated string of 1..cap-1 bytes,
 * and only NULs after it (so no hidden bytes ride along). */
static bool field_str(const char *s, size_t cap, size_t *len)
{
	const char *nul = memchr(s, '\0', cap);
	if (!nul || nul == s)
		return false;
	*len = (size_t)(nul - s);
	for (size_t i = *len; i < cap; i++)
		if (s[i])
			return false;
	return true;
}

bool vmctl_path_valid(const char *s, size_t cap)
{
	size_t len;
	if (!field_str(s, cap, &len) || s[0] != '/')
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	/* ".." as a component: the path names a file the guest chose, but
	 * audit readers should see it as written, not resolved. */
	for (const char *p = s; (p = strstr(p, "..")); p += 2)
		if ((p == s || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
			return false;
	return true;
}

static int check_payload(const struct vmctl_msg *m, struct parley_err *err)
{
	size_t len;
	switch (m->h.type) {
	case PARLEY_VMCTL_HELLO:
		if (m->u.hello.reserved)
			return perr(err, -EPROTO, "HELLO: reserved field set");
		if (m->u.hello.version < 1)
			return perr(err, -EPROTO, "HELLO: version 0");
		return 0;
	case PARLEY_VMCTL_OPEN:
		if (!field_str(m->u.open.name, sizeof(m->u.open.name), &len) ||
		    !jv_name_valid(m->u.open.name, len, sizeof(m->u.open.name)))
			return perr(err, -EPROTO, "OPEN: not a channel name");
		return 0;
	case PARLEY_VMCTL_NOTIFY:
	case PARLEY_VMCTL_CLOSE:
	case PARLEY_VMCTL_STATE:
		if (m->u.handle.reserved)
			return perr(err, -EPROTO, "type %u: reserved field set",
				    m->h.type);
		return 0;
	case PARLEY_VMCTL_DIGEST:
		if (!vmctl_path_valid(m->u.digest.path,
				      sizeof(m->u.digest.path)))
			return perr(err, -EPROTO, "DIGEST: not an absolute path");
		return 0;
	}
	return perr(err, -EPROTO, "type %u from the guest", m->h.type);
}

static int broken(struct vmctl_dec *d, int rc)
{
	d->broken = true;
	return rc;
}

int vmctl_dec_feed(struct vmctl_dec *d, const void *in, size_t n,
		   size_t *used, struct vmctl_msg *out, struct parley_err *err)
{
	const uint8_t *p = in;
	const size_t hs = sizeof(struct parley_vmctl_hdr);
	*used = 0;
	if (d->broken)
		return perr(err, -EPROTO, "control stream already broken");
	while (*used < n) {
		/* How much of this frame is still missing: the header first,
		 * then (once the header is checked) its one payload length. */
		size_t want = hs;
		if (d->have >= hs) {
			struct parley_vmctl_hdr h;
			memcpy(&h, d->buf, hs);
			want = hs + h.len;
		}
		size_t take = want - d->have;
		if (take > n - *used)
			take = n - *used;
		memcpy(d->buf + d->have, p + *used, take);
		d->have += take;
		*used += take;
		if (d->have < want)
			return 0;
		struct parley_vmctl_hdr h;
		memcpy(&h, d->buf, hs);
		if (d->have == hs) {
			/* The header is whole: check it before trusting len. */
			if (h.magic != PARLEY_VMCTL_MAGIC)
				return broken(d, perr(err, -EPROTO,
					"bad magic 0x%08x", h.magic));
			if (h.version != PARLEY_VMCTL_VERSION)
				return broken(d, perr(err, -EPROTO,
					"version %u (this agent speaks %u)",
					h.version, PARLEY_VMCTL_VERSION));
			if (h.type == 0 || h.type >= 0x80 ||
			    !parley_vmctl_payload_len(h.type))
				return broken(d, perr(err, -EPROTO,
					"type %u from the guest", h.type));
			if (h.len != parley_vmctl_payload_len(h.type))
				return broken(d, perr(err, -EPROTO,
					"type %u with %u payload bytes "
					"(must be %u)", h.type, h.len,
					parley_vmctl_payload_len(h.type)));
			if (h.len)
				continue; /* now read the payload */
		}
		memset(out, 0, sizeof(*out));
		out->h = h;
		memcpy(&out->u, d->buf + hs, h.len);
		d->have = 0;
		int rc = check_payload(out, err);
		return rc < 0 ? broken(d, rc) : 1;
	}
	return 0;
}

int vmctl_encode(uint16_t type, uint32_t seq, const void *payload,
		 size_t len, void *out, size_t cap)
{
	const size_t hs = sizeof(struct parley_vmctl_hdr);
	if (type < 0x80 || !parley_vmctl_payload_len(type) ||
	    len != parley_vmctl_payload_len(type) || cap < hs + len)
		return -EINVAL;
	struct parley_vmctl_hdr h = {
		.magic = PARLEY_VMCTL_MAGIC, .version = PARLEY_VMCTL_VERSION,
		.type = type, .len = (uint32_t)len, .seq = seq,
	};
	memcpy(out, &h, hs);
	memcpy((uint8_t *)out + hs, payload, len);
	return (int)(hs + len);
}
