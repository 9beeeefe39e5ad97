/*
 * Typed readers for the agent link (DESIGN.md section 7, STYLE.md point 8):
 * after a frame is unpacked, every field of whichever body it carries is
 * checked against the limits below before anything else looks at it, so
 * the daemon and the agent handle only envelopes of a known shape. The
 * same checks serve a sender that wants to refuse its own bad output.
 *
 * Error codes, the same for every body:
 *   -EPROTO  no body, or a body type this side does not know (protobuf
 *            keeps an unknown oneof member as an unknown field, so it
 *            arrives as "no body")
 *   -E2BIG   a repeated field with more entries than its limit
 *   -EEXIST  a duplicate where entries must be unique (file names within
 *            a digest list, channels and baselines within a policy)
 *   -EBADMSG a field number no encoder may write (0, or above 2^29-1):
 *            protobuf-c keeps the overlong tag 0x80 0x00 as an unknown
 *            field 0 that would not decode again once re-encoded
 *   -EINVAL  any other field out of its range
 * Messages name the field: "audit.events[3].partition: \"a/b\" is not a
 * valid name".
 *
 * Text from the peer is never trusted to be printable: names are
 * [A-Za-z0-9_.-] (jv_name_valid), tokens (event, error code) the same,
 * free text (reasons, details, messages) valid UTF-8 without control
 * characters, so it can go into a log line or a JSON document as is.
 */
#ifndef PARLEY_COMMON_WIRE_H
#define PARLEY_COMMON_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "parley.pb-c.h"
#include "common/err.h"
#include "common/grant.h"

/* Names (host, partition, channel): 1..WIRE_NAME_MAX-1 bytes. */
#define WIRE_NAME_MAX 64
/* Key configuration file names: 1..63 bytes of printable ASCII, no '/'
 * (the rule of agent/spec.c; PARLEY_CONFIG_NAME_MAX). */
#define WIRE_FILE_NAME_MAX 64
/* Upper bounds, in bytes, of strings (inclusive). */
#define WIRE_EVENT_MAX 64           /* AuditEvent.event (token, required) */
#define WIRE_DEVICES_MAX 17          /* PartitionStatus.devices: the
					* console and two per disk */
#define WIRE_REASON_MAX 64          /* AuditEvent / PartitionStatus.reason */
#define WIRE_DETAIL_MAX 256         /* AuditEvent.detail */
#define WIRE_ERRMSG_MAX 512         /* Error.message, PolicyAck.error */
#define WIRE_CODE_MAX 64            /* Error.code (token, required) */
#define WIRE_SPEC_MAX (64 * 1024)   /* PartitionCommand.spec_json */
#define WIRE_AGENT_VERSION_MAX 64   /* Hello.agent_version */
#define WIRE_HELLO_PARTS_MAX 1024   /* Hello.partitions */
#define WIRE_JOIN_SERVERS_MAX 8     /* JoinResponse.servers, each HOST:PORT
				     * of at most 127 bytes */
/* UpdateChunk.data: 1..this many bytes (a frame with room to spare). */
#define WIRE_UPDATE_CHUNK_MAX (256u * 1024)
/* UpdateOffer.size: a package (common/updpkg.h UPDPKG_HDR..UPDPKG_MAX). */
#define WIRE_UPDATE_MIN 80u
#define WIRE_UPDATE_MAX (256ull << 20)
/* Exact sizes of binary fields. */
#define WIRE_DIGEST_LEN 32          /* SHA-256: digests, files, segments */
#define WIRE_SIG_LEN 64             /* Ed25519 signature */
#define WIRE_KEY_ID_LEN 64          /* lower-case hex SHA-256 */
/* Entries of repeated fields (inclusive). */
#define WIRE_BATCH_MAX 1024         /* measurements / audit events per frame */
#define WIRE_FILES_MAX 32           /* = PARLEY_CONFIG_FILES_MAX */
#define WIRE_SEGMENTS_MAX 16
#define WIRE_GRANTS_MAX 4096        /* per PolicyBody */
#define WIRE_BASELINES_MAX 1024     /* per PolicyBody */
#define WIRE_SERVICES_MAX 1024      /* = SVC_RULES_MAX, per PolicyBody */
#define WIRE_DISK_KEYS_MAX 1024     /* per PolicyBody */
#define WIRE_DISK_NAME_MAX 31       /* a disk's name (agent/disk/disk_spec.c) */
/* PolicyBody.segsets_json: the sets' JSON text (parsed by the agent with
 * common/segset.c, after this bound). */
#define WIRE_SEGSETS_JSON_MAX (512u * 1024)
/* Welcome.heartbeat_ms: the agent must be able to keep up with it, and a
 * silence of an hour is not a heartbeat. */
#define WIRE_HEARTBEAT_MIN_MS 10
#define WIRE_HEARTBEAT_MAX_MS 3600000
/* PolicyBundle.body: a serialized PolicyBody, never more than a frame. */
#define WIRE_POLICY_BODY_MAX (1u << 20)

/*
 * Check every field of the body `e` carries. Per body, beyond the limits
 * above:
 *   hello        host a name; next_seq >= 1 (seqs start at 1)
 *   welcome      host a name; heartbeat_ms in WIRE_HEARTBEAT_{MIN,MAX}_MS
 *   policy       body 1..WIRE_POLICY_BODY_MAX bytes (not decoded here: see
 *                wire_body_decode, after the signature is verified);
 *                signature 64 bytes; key_id 64 lower-case hex digits
 *   policy_ack   ok: version >= 1 and no error; !ok: an error message
 *   measurements 1..WIRE_BATCH_MAX, seq >= 1 and strictly increasing;
 *                partition a name; digest, files, segments as in Baseline
 *   audit        1..WIRE_BATCH_MAX, seq >= 1 and strictly increasing;
 *                event a token; partition, channel empty or names; file
 *                empty or a file name; reason, detail text
 *   ack          any seq (0: nothing committed yet)
 *   command      partition a name; action in range; spec_json 1..64 KiB
 *                for CREATE, empty otherwise
 *   status       seq >= 1; partition a name; state one of created,
 *                running, paused, stopped, destroyed; reason text
 *   heartbeat    nothing to check
 *   error        code a token; message text
 *   update_offer version X.Y.Z (1..31 bytes of digits and dots); size in
 *                WIRE_UPDATE_MIN..WIRE_UPDATE_MAX; sha256 32 bytes
 *   update_chunk sha256 32 bytes; data 1..WIRE_UPDATE_CHUNK_MAX bytes;
 *                offset + len within WIRE_UPDATE_MAX
 *   update_progress sha256 empty or 32 bytes; state one of receiving,
 *                staged, refused, failed, committed, busy; received within
 *                WIRE_UPDATE_MAX; reason text (WIRE_DETAIL_MAX); version
 *                text (WIRE_AGENT_VERSION_MAX)
 *   update_rollback expect_version empty or text (WIRE_AGENT_VERSION_MAX)
 *                starting X.Y.Z (parley_version_parse with a prefix);
 *                request >= 1
 * Returns 0, or a negative errno with *err naming the field.
 */
int wire_check(const Parley__V1__Envelope *e, struct parley_err *err);

/*
 * A PolicyBody: host a name, version >= 1, at most WIRE_GRANTS_MAX grants
 * (each as wire_grant_to_model checks it, channels unique) and
 * WIRE_BASELINES_MAX baselines (partition a name, unique; digest 32 bytes;
 * at most 32 files with unique names and 32-byte digests; at most 16
 * segments of 32 bytes), at most WIRE_SERVICES_MAX service rules (names,
 * source != target, each (source, target, service) once) and a
 * disk_keys (names, key_version >= 1, sealed SEAL_LEN bytes, (partition,
 * disk, key_version) once; at most WIRE_DISK_KEYS_MAX), a
 * segsets_json of at most WIRE_SEGSETS_JSON_MAX bytes (its contents are
 * the agent's to parse: agent/bundle.c). `where` prefixes the field names in messages
 * (NULL: "body"). For the daemon before it signs, and wire_body_decode.
 */
int wire_check_policy_body(const Parley__V1__PolicyBody *b, const char *where,
			   struct parley_err *err);

/*
 * Unpack a PolicyBundle's body bytes (after its signature was verified)
 * and check them as wire_check_policy_body does. Returns 0 with *out (free
 * with parley__v1__policy_body__free_unpacked(*out, NULL)), or -EMSGSIZE
 * (more than WIRE_POLICY_BODY_MAX bytes), -EBADMSG (not a PolicyBody), or
 * a check's code; *out is NULL on error.
 */
int wire_body_decode(const ProtobufCBinaryData *body,
		     Parley__V1__PolicyBody **out, struct parley_err *err);

/* An empty envelope (no body yet) answering or starting `request_id`. */
void wire_init_envelope(Parley__V1__Envelope *e, uint64_t request_id);

/* Point `b` at len bytes of `p` (borrowed, not copied). */
void wire_bytes(ProtobufCBinaryData *b, const void *p, size_t len);

/* The body's field name ("hello", "policy_ack", ...) for logs and
 * messages; "none" when not set, "unknown" for anything else. */
const char *wire_body_name(Parley__V1__Envelope__BodyCase c);

/*
 * Fill `w` from `g`. The strings of `w` point into `g` (borrowed): pack
 * `w` while `g` is alive and unchanged, and never free `w`'s strings.
 */
void wire_grant_from_model(Parley__V1__Grant *w, const struct grant *g);

/*
 * Check `w` (channel and endpoints names, endpoints different, direction in
 * range, ring_bytes a power of two in 4K..16M) and copy it into `g`.
 * `where` prefixes field names in messages (NULL: "grant"). Returns 0, or
 * -EINVAL with *err naming the field; `g` is zeroed on error.
 */
int wire_grant_to_model(const Parley__V1__Grant *w, const char *where,
			struct grant *g, struct parley_err *err);

/* A service rule to and from the wire, as the grant pair above: `w`'s
 * strings borrow `r`'s; wire_svc_to_model checks names and source !=
 * target (-EINVAL naming the field; `r` zeroed on error). */
void wire_svc_from_model(Parley__V1__ServiceRule *w, const struct svc_rule *r);
int wire_svc_to_model(const Parley__V1__ServiceRule *w, const char *where,
		      struct svc_rule *r, struct parley_err *err);

#endif
