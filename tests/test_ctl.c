/*
 * The agent <-> vmm control protocol (agent/vmx/ctl.c) over a real
 * socketpair(AF_UNIX, SOCK_SEQPACKET): every message type round trip, then
 * a table of hostile packets written raw with send(), each with the exact
 * return of ctl_recv, each followed by a good packet that must still read
 * correctly; end of stream, would-block and a closed peer. Then the typed
 * reader ctl_read: every vmm message back as its struct, each side's types
 * refused from the other, a table of fields out of range, a flood of
 * descriptors — each refused with -EPROTO and no descriptor kept.
 *
 * What a 0-byte packet is (measured on Linux): send(fd, "", 0, 0) on a
 * SOCK_SEQPACKET socket returns 0 and queues an empty record; recv() of it
 * returns 0, exactly as at end of stream after the peer closed, and the
 * socket stays open with later packets readable behind it. recv() cannot
 * tell the two apart; see empty_packet_is_not_end_of_stream.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/ctl/ctl.h"
#include "agent/ctl/stop.h"

#define CANARY 0x5a

/* sv[0] writes, sv[1] reads without blocking, so a bad test fails rather
 * than hangs. */
static void pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv),
		     0, "socketpair: %s", strerror(errno));
	cr_assert_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
}

static void unpair(int sv[2])
{
	close(sv[0]);
	close(sv[1]);
}

/* Receive one message into a CTL_MSG_MAX buffer. */
static int recv_one(int fd, uint32_t *type, void *buf)
{
	return ctl_recv(fd, type, buf, CTL_MSG_MAX);
}

/* A good packet after a bad one must still read whole and correct. */
static void expect_good_after(int sv[2], const char *after)
{
	struct ctl_refused r = { .type = CTL_GET_STATE, .code = -EBUSY };
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type = 0;
	int n;

	cr_assert_eq(ctl_send(sv[0], CTL_REFUSED, &r, sizeof(r)), 0);
	n = recv_one(sv[1], &type, buf);
	cr_expect_eq(n, (int)sizeof(r), "after %s: good packet gave %d", after,
		     n);
	cr_expect_eq(type, CTL_REFUSED, "after %s: type %u", after, type);
	cr_expect_arr_eq(buf, &r, sizeof(r), "after %s: payload differs",
			 after);
	n = recv_one(sv[1], &type, buf);
	cr_expect_eq(n, -EAGAIN, "after %s: %d, queue not empty", after, n);
}

static void round_trip(int sv[2], uint32_t type, const void *p, uint32_t len)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t got = 0;
	int n;

	cr_assert_eq(ctl_send(sv[0], type, p, len), 0, "send type %u", type);
	memset(buf, CANARY, sizeof(buf));
	n = recv_one(sv[1], &got, buf);
	cr_expect_eq(n, (int)len, "type %u: %d bytes, want %u", type, n, len);
	cr_expect_eq(got, type, "type %u came back as %u", type, got);
	if (n > 0)
		cr_expect_arr_eq(buf, p, len, "type %u payload", type);
	if (n >= 0 && (size_t)n < sizeof(buf))
		cr_expect_eq((unsigned char)buf[n], CANARY,
			     "type %u: written past the payload", type);
}

Test(ctl, round_trip_every_type)
{
	int sv[2];
	struct ctl_launch l = {
		.ram_size = 0x1000000, .cfg_size = 0x2000, .entry = 0x100010,
		.boot_info = PARLEY_BOOT_INFO_GPA, .vcpus = 2,
		.flags = CTL_LAUNCH_RESTORE | CTL_LAUNCH_PAUSED,
	};
	struct ctl_vcpu_state *s = calloc(1, sizeof(*s));
	struct ctl_finished f = { .reason = 3, .vcpu = 1, .code = -42,
				  .rip = 0x100123, .addr = 0xdead000 };
	struct ctl_refused r = { .type = CTL_GET_STATE, .code = -EBUSY };
	static const uint32_t empty[] = {
		CTL_PAUSE, CTL_RESUME, CTL_GET_STATE, CTL_STOP, CTL_READY,
		CTL_PAUSED, CTL_RESUMED, CTL_STATE_DONE,
	};

	cr_assert_not_null(s);
	pair(sv);
	round_trip(sv, CTL_LAUNCH, &l, sizeof(l));
	memset(s, 0x77, sizeof(*s)); /* every byte, FPU state included */
	s->index = 7;
	s->halted = 1;
	s->regs.rip = 0x100200;
	s->regs.rflags = 0x3202;
	s->sregs.cr3 = 0x1000;
	round_trip(sv, CTL_VCPU_STATE, s, sizeof(*s));
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
		round_trip(sv, empty[i], NULL, 0);
	snprintf(f.detail, sizeof(f.detail), "page fault at 0x%x", 0xdead000);
	round_trip(sv, CTL_FINISHED, &f, sizeof(f));
	round_trip(sv, CTL_REFUSED, &r, sizeof(r));
	unpair(sv);
	free(s);
}

/* Console messages: only the len bytes used are sent, 0 to the maximum. */
Test(ctl, round_trip_console)
{
	int sv[2];
	struct ctl_console *c = calloc(1, sizeof(*c));
	static const uint32_t lens[] = { 0, 1, 13, PARLEY_CONSOLE_MAX - 1,
					 PARLEY_CONSOLE_MAX };
	size_t fixed = offsetof(struct ctl_console, buf);

	cr_assert_not_null(c);
	pair(sv);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		c->vcpu = (uint32_t)i;
		c->len = lens[i];
		memset(c->buf, 'a' + (int)i, lens[i]);
		round_trip(sv, CTL_CONSOLE, c, (uint32_t)(fixed + lens[i]));
	}
	unpair(sv);
	free(c);
}

Test(ctl, payload_sizes)
{
	cr_expect_eq(ctl_payload_size(CTL_LAUNCH), sizeof(struct ctl_launch));
	cr_expect_eq(ctl_payload_size(CTL_VCPU_STATE),
		     sizeof(struct ctl_vcpu_state));
	cr_expect_eq(ctl_payload_size(CTL_FINISHED),
		     sizeof(struct ctl_finished));
	cr_expect_eq(ctl_payload_size(CTL_REFUSED), sizeof(struct ctl_refused));
	cr_expect_eq(ctl_payload_size(CTL_PAUSE), 0);
	cr_expect_eq(ctl_payload_size(CTL_STATE_DONE), 0);
	/* Variable and unknown are both negative, and told apart. */
	cr_expect_lt(ctl_payload_size(CTL_CONSOLE), 0);
	cr_expect_lt(ctl_payload_size(0), 0);
	cr_expect_lt(ctl_payload_size(UINT32_MAX), 0);
	cr_expect_neq(ctl_payload_size(CTL_CONSOLE), ctl_payload_size(0));
	cr_expect_leq(sizeof(struct ctl_hdr) + sizeof(struct ctl_vcpu_state),
		      CTL_MSG_MAX);
	cr_expect_leq(sizeof(struct ctl_hdr) + sizeof(struct ctl_console),
		      CTL_MSG_MAX);
}

/* Hostile packets: bytes built here, sent raw, one packet each. */
#define RAW_MAX (64 * 1024)

struct raw {
	uint8_t b[RAW_MAX];
	size_t len;
};

/* Header {type, len} then payload bytes of 0xcc. */
static void raw_msg(struct raw *r, uint32_t type, uint32_t len_field,
		    size_t payload)
{
	struct ctl_hdr h = { .type = type, .len = len_field };

	cr_assert_leq(sizeof(h) + payload, RAW_MAX);
	memcpy(r->b, &h, sizeof(h));
	memset(r->b + sizeof(h), 0xcc, payload);
	r->len = sizeof(h) + payload;
}

/* A console packet: header, {vcpu, len}, then text bytes. */
static void raw_console(struct raw *r, uint32_t len_field, uint32_t clen,
			size_t text)
{
	size_t fixed = offsetof(struct ctl_console, buf);
	struct ctl_console c = { .vcpu = 0, .len = clen };

	raw_msg(r, CTL_CONSOLE, (uint32_t)(fixed + text), fixed + text);
	if (len_field != UINT32_MAX)
		memcpy(r->b + offsetof(struct ctl_hdr, len), &len_field, 4);
	memcpy(r->b + sizeof(struct ctl_hdr), &c, fixed);
	memset(r->b + sizeof(struct ctl_hdr) + fixed, 'z', text);
}

static void h_1byte(struct raw *r)
{
	r->len = 1;
	r->b[0] = CTL_PAUSE;
}
static void h_3bytes(struct raw *r)
{
	raw_msg(r, CTL_PAUSE, 0, 0);
	r->len = 3;
}
static void h_7bytes(struct raw *r)
{
	raw_msg(r, CTL_PAUSE, 0, 0);
	r->len = 7;
}
static void h_len_more(struct raw *r) { raw_msg(r, CTL_PAUSE, 4, 0); }
static void h_len_less(struct raw *r) { raw_msg(r, CTL_PAUSE, 0, 4); }
static void h_len_huge(struct raw *r)
{
	raw_msg(r, CTL_LAUNCH, UINT32_MAX, sizeof(struct ctl_launch));
}
static void h_len_wraps(struct raw *r)
{
	/* sizeof(hdr) + len wraps to the packet size in 32 bits */
	raw_msg(r, CTL_LAUNCH, (uint32_t)(0 - sizeof(struct ctl_hdr)),
		sizeof(struct ctl_launch));
}
static void h_type0(struct raw *r) { raw_msg(r, 0, 0, 0); }
static void h_type7(struct raw *r) { raw_msg(r, CTL_STOP + 1, 0, 0); }
static void h_type31(struct raw *r) { raw_msg(r, CTL_READY - 1, 0, 0); }
static void h_type40(struct raw *r) { raw_msg(r, CTL_REFUSED + 1, 8, 8); }
static void h_type_max(struct raw *r) { raw_msg(r, UINT32_MAX, 0, 0); }
static void h_pause_payload(struct raw *r) { raw_msg(r, CTL_PAUSE, 1, 1); }
static void h_ready_payload(struct raw *r) { raw_msg(r, CTL_READY, 8, 8); }
static void h_launch_short(struct raw *r)
{
	raw_msg(r, CTL_LAUNCH, sizeof(struct ctl_launch) - 1,
		sizeof(struct ctl_launch) - 1);
}
static void h_launch_long(struct raw *r)
{
	raw_msg(r, CTL_LAUNCH, sizeof(struct ctl_launch) + 1,
		sizeof(struct ctl_launch) + 1);
}
static void h_launch_empty(struct raw *r) { raw_msg(r, CTL_LAUNCH, 0, 0); }
static void h_state_short(struct raw *r)
{
	raw_msg(r, CTL_VCPU_STATE, sizeof(struct ctl_vcpu_state) - 8,
		sizeof(struct ctl_vcpu_state) - 8);
}
static void h_finished_short(struct raw *r)
{
	raw_msg(r, CTL_FINISHED, sizeof(struct ctl_finished) - 1,
		sizeof(struct ctl_finished) - 1);
}
static void h_refused_long(struct raw *r)
{
	raw_msg(r, CTL_REFUSED, sizeof(struct ctl_refused) * 2,
		sizeof(struct ctl_refused) * 2);
}
static void h_con_short(struct raw *r)
{
	/* shorter than the console's own {vcpu, len} */
	raw_msg(r, CTL_CONSOLE, 4, 4);
}
static void h_con_empty(struct raw *r) { raw_msg(r, CTL_CONSOLE, 0, 0); }
static void h_con_over_max(struct raw *r)
{
	raw_console(r, UINT32_MAX, PARLEY_CONSOLE_MAX + 1,
		    PARLEY_CONSOLE_MAX + 1);
}
static void h_con_len_huge(struct raw *r)
{
	raw_console(r, UINT32_MAX, UINT32_MAX, 16);
}
static void h_con_len_more(struct raw *r)
{
	raw_console(r, UINT32_MAX, 11, 10);
}
static void h_con_len_less(struct raw *r)
{
	raw_console(r, UINT32_MAX, 9, 10);
}
static void h_con_hdr_lies(struct raw *r)
{
	/* console consistent inside, header len one short of the packet */
	raw_console(r, offsetof(struct ctl_console, buf) + 9, 10, 10);
}
static void h_over_max(struct raw *r)
{
	/* consistent header, one byte longer than any message */
	raw_msg(r, CTL_VCPU_STATE, CTL_PAYLOAD_MAX + 1, CTL_PAYLOAD_MAX + 1);
}
static void h_over_max_lies(struct raw *r)
{
	/* header claims a good vCPU state; the packet goes on past it */
	raw_msg(r, CTL_VCPU_STATE, sizeof(struct ctl_vcpu_state),
		CTL_PAYLOAD_MAX + 1);
}
static void h_64k(struct raw *r)
{
	raw_msg(r, CTL_CONSOLE, RAW_MAX - 8, RAW_MAX - 8);
}

/* Device messages (vmm -> agent), each with one field wrong: 0xcc fill
 * leaves names without their NUL. */
static void raw_devstate(struct raw *r, const struct ctl_device_state *d)
{
	struct ctl_hdr h = { .type = CTL_DEVICE_STATE, .len = sizeof(*d) };
	memcpy(r->b, &h, sizeof(h));
	memcpy(r->b + sizeof(h), d, sizeof(*d));
	r->len = sizeof(h) + sizeof(*d);
}
static struct ctl_device_state good_devstate(void)
{
	struct ctl_device_state d = { .state = 1 };
	snprintf(d.device, sizeof(d.device), "disk0");
	snprintf(d.plugin, sizeof(d.plugin), "file");
	return d;
}
static void h_dev_unterminated(struct raw *r)
{
	raw_msg(r, CTL_DEVICE_STATE, sizeof(struct ctl_device_state),
		sizeof(struct ctl_device_state));
}
static void h_dev_state0(struct raw *r)
{
	struct ctl_device_state d = good_devstate();
	d.state = 0;
	raw_devstate(r, &d);
}
static void h_dev_state9(struct raw *r)
{
	struct ctl_device_state d = good_devstate();
	d.state = 9;
	raw_devstate(r, &d);
}
static void h_dev_reserved(struct raw *r)
{
	struct ctl_device_state d = good_devstate();
	d.reserved = 1;
	raw_devstate(r, &d);
}
static void h_dev_noname(struct raw *r)
{
	struct ctl_device_state d = good_devstate();
	d.device[0] = 0;
	raw_devstate(r, &d);
}
static void h_dev_detail(struct raw *r)
{
	struct ctl_device_state d = good_devstate();
	memset(d.detail, 'x', sizeof(d.detail));
	raw_devstate(r, &d);
}
static void h_devsaved_short(struct raw *r)
{
	raw_msg(r, CTL_DEVICE_SAVED, sizeof(struct ctl_device_blob) - 1,
		sizeof(struct ctl_device_blob) - 1);
}

struct hostile {
	const char *name;
	void (*build)(struct raw *);
	int code;
};

static const struct hostile hostile[] = {
	{ "1-byte packet", h_1byte, -EPROTO },
	{ "3-byte packet", h_3bytes, -EPROTO },
	{ "7-byte packet", h_7bytes, -EPROTO },
	{ "header len > payload", h_len_more, -EPROTO },
	{ "header len < payload", h_len_less, -EPROTO },
	{ "header len 2^32-1", h_len_huge, -EPROTO },
	{ "header len wraps", h_len_wraps, -EPROTO },
	{ "type 0", h_type0, -EPROTO },
	{ "type between ranges (7)", h_type7, -EPROTO },
	{ "type between ranges (31)", h_type31, -EPROTO },
	{ "type past the last (40)", h_type40, -EPROTO },
	{ "type 2^32-1", h_type_max, -EPROTO },
	{ "PAUSE with a payload", h_pause_payload, -EPROTO },
	{ "READY with a payload", h_ready_payload, -EPROTO },
	{ "LAUNCH one byte short", h_launch_short, -EPROTO },
	{ "LAUNCH one byte long", h_launch_long, -EPROTO },
	{ "LAUNCH empty", h_launch_empty, -EPROTO },
	{ "VCPU_STATE short", h_state_short, -EPROTO },
	{ "FINISHED short", h_finished_short, -EPROTO },
	{ "REFUSED long", h_refused_long, -EPROTO },
	{ "CONSOLE shorter than its fixed part", h_con_short, -EPROTO },
	{ "CONSOLE empty", h_con_empty, -EPROTO },
	{ "CONSOLE len > PARLEY_CONSOLE_MAX", h_con_over_max, -EPROTO },
	{ "CONSOLE len 2^32-1", h_con_len_huge, -EPROTO },
	{ "CONSOLE len > text", h_con_len_more, -EPROTO },
	{ "CONSOLE len < text", h_con_len_less, -EPROTO },
	{ "CONSOLE header len one short", h_con_hdr_lies, -EPROTO },
	{ "CTL_MSG_MAX + 1 bytes", h_over_max, -EPROTO },
	{ "CTL_MSG_MAX + 1, header claims less", h_over_max_lies, -EPROTO },
	{ "64 KiB packet", h_64k, -EPROTO },
};

Test(ctl, hostile_packets)
{
	static struct raw r;
	_Alignas(8) char buf[CTL_MSG_MAX];

	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const struct hostile *h = &hostile[i];
		uint32_t type = 0xabcd;
		int sv[2], n;

		pair(sv);
		memset(&r, 0, sizeof(r));
		h->build(&r);
		cr_assert_eq(send(sv[0], r.b, r.len, 0), (ssize_t)r.len,
			     "%s: send: %s", h->name, strerror(errno));
		n = recv_one(sv[1], &type, buf);
		cr_expect_eq(n, h->code, "%s (%zu bytes): got %d, want %d",
			     h->name, r.len, n, h->code);
		cr_expect_eq(type, 0xabcd, "%s: *type set on error", h->name);
		expect_good_after(sv, h->name);
		unpair(sv);
	}
}

/* All of them queued at once on one link: each is consumed whole, so the
 * good packet behind each one still lines up. */
Test(ctl, hostile_packets_back_to_back)
{
	static struct raw r;
	_Alignas(8) char buf[CTL_MSG_MAX];
	int sv[2];
	size_t n_h = sizeof(hostile) / sizeof(hostile[0]);

	pair(sv);
	for (size_t i = 0; i < n_h; i++) {
		memset(&r, 0, sizeof(r));
		hostile[i].build(&r);
		cr_assert_eq(send(sv[0], r.b, r.len, 0), (ssize_t)r.len);
		cr_assert_eq(ctl_send(sv[0], CTL_PAUSED, NULL, 0), 0);
	}
	for (size_t i = 0; i < n_h; i++) {
		uint32_t type = 0;

		cr_expect_eq(recv_one(sv[1], &type, buf), hostile[i].code,
			     "%s", hostile[i].name);
		cr_expect_eq(recv_one(sv[1], &type, buf), 0, "after %s",
			     hostile[i].name);
		cr_expect_eq(type, CTL_PAUSED, "after %s", hostile[i].name);
	}
	unpair(sv);
}

/* A good message whose payload does not fit the caller's buffer: refused,
 * and nothing written to the buffer. */
Test(ctl, cap_smaller_than_payload)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	struct ctl_launch l = { .ram_size = 0x400000, .vcpus = 1 };
	struct ctl_console c = { .len = 100 };
	size_t fixed = offsetof(struct ctl_console, buf);
	uint32_t type = 0;
	int sv[2];

	pair(sv);
	cr_assert_eq(ctl_send(sv[0], CTL_LAUNCH, &l, sizeof(l)), 0);
	memset(buf, CANARY, sizeof(buf));
	cr_expect_eq(ctl_recv(sv[1], &type, buf, sizeof(l) - 1), -EPROTO);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq((unsigned char)buf[i], CANARY,
			     "byte %zu written past a refused cap", i);
	memset(c.buf, 'q', c.len);
	cr_assert_eq(ctl_send(sv[0], CTL_CONSOLE, &c, (uint32_t)(fixed + 100)),
		     0);
	cr_expect_eq(ctl_recv(sv[1], &type, buf, fixed + 99), -EPROTO);
	cr_expect_eq((unsigned char)buf[0], CANARY);
	/* cap 0 takes a payload-less message, nothing else */
	cr_assert_eq(ctl_send(sv[0], CTL_RESUMED, NULL, 0), 0);
	cr_expect_eq(ctl_recv(sv[1], &type, buf, 0), 0);
	cr_expect_eq(type, CTL_RESUMED);
	/* exact cap is enough */
	cr_assert_eq(ctl_send(sv[0], CTL_LAUNCH, &l, sizeof(l)), 0);
	cr_expect_eq(ctl_recv(sv[1], &type, buf, sizeof(l)), (int)sizeof(l));
	expect_good_after(sv, "cap tests");
	unpair(sv);
}

/* The biggest legal message is exactly CTL_MSG_MAX bytes on the wire. */
Test(ctl, largest_message_fits)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint8_t *p = calloc(1, CTL_PAYLOAD_MAX);
	uint32_t type = 0;
	long want = ctl_payload_size(CTL_VCPU_STATE);
	int sv[2];

	cr_assert_not_null(p);
	pair(sv);
	memset(p, 0x3c, CTL_PAYLOAD_MAX);
	if (want == (long)CTL_PAYLOAD_MAX) {
		cr_assert_eq(ctl_send(sv[0], CTL_VCPU_STATE, p, (uint32_t)want),
			     0);
		cr_expect_eq(recv_one(sv[1], &type, buf), (int)want);
		cr_expect_eq(type, CTL_VCPU_STATE);
		cr_expect_arr_eq(buf, p, (size_t)want);
	}
	unpair(sv);
	free(p);
}

Test(ctl, nothing_queued_is_eagain)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type = 0;
	int sv[2];

	pair(sv);
	cr_expect_eq(recv_one(sv[1], &type, buf), -EAGAIN);
	cr_expect_eq(recv_one(sv[1], &type, buf), -EAGAIN);
	expect_good_after(sv, "EAGAIN");
	unpair(sv);
}

Test(ctl, closed_peer_is_epipe)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	struct ctl_refused r = { .type = CTL_PAUSE, .code = -EINVAL };
	uint32_t type = 0;
	int sv[2];

	pair(sv);
	/* What was queued before the close is still delivered, in order. */
	cr_assert_eq(ctl_send(sv[0], CTL_READY, NULL, 0), 0);
	cr_assert_eq(ctl_send(sv[0], CTL_REFUSED, &r, sizeof(r)), 0);
	close(sv[0]);
	cr_expect_eq(recv_one(sv[1], &type, buf), 0);
	cr_expect_eq(type, CTL_READY);
	cr_expect_eq(recv_one(sv[1], &type, buf), (int)sizeof(r));
	cr_expect_eq(type, CTL_REFUSED);
	cr_expect_eq(recv_one(sv[1], &type, buf), -EPIPE);
	cr_expect_eq(recv_one(sv[1], &type, buf), -EPIPE, "EOF is sticky");
	close(sv[1]);
}

Test(ctl, closed_peer_blocking_is_epipe)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type = 0;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	close(sv[0]);
	cr_expect_eq(recv_one(sv[1], &type, buf), -EPIPE);
	close(sv[1]);
}

/* Sending to a closed peer is an error return, not a SIGPIPE. */
Test(ctl, send_to_closed_peer)
{
	int sv[2];

	cr_assert_neq(signal(SIGPIPE, SIG_DFL), SIG_ERR);
	pair(sv);
	close(sv[1]);
	cr_expect_eq(ctl_send(sv[0], CTL_PAUSE, NULL, 0), -EPIPE);
	close(sv[0]);
}

/*
 * An empty packet is not a message of any type: by the header's contract a
 * protocol error (-EPROTO), not the end of the stream, while the peer is
 * alive (ctl_recv asks poll() for POLLRDHUP/POLLHUP to tell them apart).
 * The grant manager kills a vmm that sends one (vmm-protocol) and never
 * waits for it to end.
 */
Test(ctl, empty_packet_is_not_end_of_stream)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type = 0;
	int sv[2], n;

	pair(sv);
	cr_assert_eq(send(sv[0], "", 0, 0), 0, "0-byte send: %s",
		     strerror(errno));
	n = recv_one(sv[1], &type, buf);
	cr_expect_eq(n, -EPROTO, "a 0-byte packet from a live peer read as "
		     "%d (-EPIPE = %d, end of stream)", n, -EPIPE);
	unpair(sv);
}

/* The link is still alive behind the empty packet. */
Test(ctl, empty_packet_then_good_packet)
{
	_Alignas(8) char buf[CTL_MSG_MAX];
	uint32_t type = 0;
	int sv[2], n;

	pair(sv);
	cr_assert_eq(send(sv[0], "", 0, 0), 0);
	n = recv_one(sv[1], &type, buf);
	/* The peer is alive: a protocol error, not the end of the stream
	 * (agent/ctl/ctl.c answers -EPIPE only when poll() says it hung up). */
	cr_expect_eq(n, -EPROTO, "empty packet from a live peer gave %d", n);
	expect_good_after(sv, "empty packet");
	unpair(sv);
}

/* ---- the typed reader (ctl_read) --------------------------------------- */

static int read_from(int fd, enum ctl_from from, struct ctl_msg *m)
{
	return ctl_read(fd, from, m);
}

static unsigned count_fds(void)
{
	unsigned n = 0;
	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

Test(ctl, typed_reader_gives_each_vmm_message_back)
{
	int sv[2];
	static struct ctl_msg m;
	struct ctl_finished f = { .reason = VMX_STOP_EXIT, .code = 3 };
	struct ctl_refused r = { .type = CTL_GET_STATE, .code = -EBUSY };
	struct ctl_open_req o = { .vcpu = 1 };
	static struct ctl_dirty d = { .first_page = 0, .npages = 5, .last = 1 };
	struct ctl_chan_ref ref = { .chan = 9, .status = -ENOENT, .handle = 7 };
	struct ctl_console c = { .vcpu = 0, .len = 3 };

	snprintf(f.detail, sizeof(f.detail), "bye");
	snprintf(o.name, sizeof(o.name), "c1");
	memcpy(c.buf, "abc", 3);
	d.bits[0] = 0x11;
	pair(sv);
	cr_assert_eq(ctl_send(sv[0], CTL_FINISHED, &f, sizeof(f)), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_eq(m.type, CTL_FINISHED);
	cr_expect_eq(m.u.finished.code, 3);
	cr_expect_str_eq(m.u.finished.detail, "bye");
	cr_assert_eq(ctl_send(sv[0], CTL_REFUSED, &r, sizeof(r)), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_eq(m.u.refused.code, -EBUSY);
	cr_assert_eq(ctl_send(sv[0], CTL_OPEN_REQ, &o, sizeof(o)), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_str_eq(m.u.open_req.name, "c1");
	/* the segment-set ops: a set name, no target */
	for (uint32_t op = CTL_OP_SEG_ATTACH; op <= CTL_OP_SEG_DETACH; op++) {
		o.op = op;
		cr_assert_eq(ctl_send(sv[0], CTL_OPEN_REQ, &o, sizeof(o)), 0);
		cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
		cr_expect_eq(m.u.open_req.op, op);
	}
	o.op = CTL_OP_CHAN_OPEN;
	cr_assert_eq(ctl_send(sv[0], CTL_DIRTY, &d, sizeof(d)), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_eq(m.u.dirty.npages, 5);
	cr_expect_eq(m.u.dirty.bits[0], 0x11);
	for (uint32_t t = CTL_MAPPED; t <= CTL_CLOSED; t++) {
		cr_assert_eq(ctl_send(sv[0], t, &ref, sizeof(ref)), 0);
		cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
		cr_expect_eq(m.type, t);
		cr_expect_eq(m.u.ref.handle, 7);
	}
	/* console: what the text did not fill reads as zero, never as an
	 * earlier message's bytes */
	memset(&m, 0x5a, sizeof(m));
	cr_assert_eq(ctl_send(sv[0], CTL_CONSOLE, &c,
			      offsetof(struct ctl_console, buf) + 3), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_eq(m.u.console.len, 3);
	cr_expect_eq(m.u.console.buf[3], 0);
	cr_expect_eq(m.u.console.buf[PARLEY_CONSOLE_MAX - 1], 0);
	unpair(sv);
}

/* A vmm's device reports (CTL_DEVICE_STATE, CTL_DEVICE_SAVED) through
 * the typed reader, the one door: each with one field wrong is refused
 * (-EPROTO, nothing kept); a well-formed one passes. */
Test(ctl, typed_reader_refuses_hostile_device_reports)
{
	static const struct hostile dev[] = {
		{ "DEVICE_STATE names without NUL", h_dev_unterminated, 0 },
		{ "DEVICE_STATE state 0", h_dev_state0, 0 },
		{ "DEVICE_STATE state past the last", h_dev_state9, 0 },
		{ "DEVICE_STATE reserved set", h_dev_reserved, 0 },
		{ "DEVICE_STATE empty device name", h_dev_noname, 0 },
		{ "DEVICE_STATE detail without NUL", h_dev_detail, 0 },
		{ "DEVICE_SAVED one byte short", h_devsaved_short, 0 },
	};
	static struct ctl_msg m;
	static struct raw r;
	int sv[2];
	pair(sv);
	for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) {
		memset(&r, 0, sizeof(r));
		dev[i].build(&r);
		cr_assert_eq(send(sv[0], r.b, r.len, 0), (ssize_t)r.len);
		cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO,
			     "%s accepted", dev[i].name);
	}
	struct ctl_device_state good = good_devstate();
	raw_devstate(&r, &good);
	cr_assert_eq(send(sv[0], r.b, r.len, 0), (ssize_t)r.len);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_str_eq(m.u.device_state.plugin, "file");
	unpair(sv);
}

Test(ctl, typed_reader_refuses_the_other_sides_types)
{
	int sv[2];
	static struct ctl_msg m;
	struct ctl_launch l = { .vcpus = 1 };
	static struct ctl_vcpu_state st;

	pair(sv);
	/* a vmm may not send an agent's request ... */
	cr_assert_eq(ctl_send(sv[0], CTL_LAUNCH, &l, sizeof(l)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO);
	cr_assert_eq(ctl_send(sv[0], CTL_STOP, NULL, 0), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO);
	/* ... nor the agent a vmm's report */
	cr_assert_eq(ctl_send(sv[0], CTL_READY, NULL, 0), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_AGENT, &m), -EPROTO);
	/* a vCPU state goes both ways */
	cr_assert_eq(ctl_send(sv[0], CTL_VCPU_STATE, &st, sizeof(st)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_assert_eq(ctl_send(sv[0], CTL_VCPU_STATE, &st, sizeof(st)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_AGENT, &m), 0);
	cr_assert_eq(ctl_send(sv[0], CTL_LAUNCH, &l, sizeof(l)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_AGENT, &m), 0);
	expect_good_after(sv, "the other side's types");
	unpair(sv);
}

/* Field rules, one broken at a time: each refused with -EPROTO, and the
 * message after it still reads. */
struct bad_field {
	const char *name;
	uint32_t type;
	enum ctl_from from;
	void (*make)(void *payload);
	unsigned nfds;
};

static void bf_reason(void *p) { ((struct ctl_finished *)p)->reason = VMX_STOP_MAX_; }
static void bf_detail(void *p) { memset(((struct ctl_finished *)p)->detail, 'x', 160); }
static void bf_ref_code(void *p) { ((struct ctl_refused *)p)->code = 0; }
static void bf_ref_type(void *p)
{
	((struct ctl_refused *)p)->type = CTL_READY;
	((struct ctl_refused *)p)->code = -EBUSY;
}
static void bf_name_open(void *p) { memset(((struct ctl_open_req *)p)->name, 'n', PARLEY_CHAN_NAME_MAX); }
static void bf_name_empty(void *p) { (void)p; }
static void bf_open_res(void *p)
{
	struct ctl_open_req *o = p;
	o->name[0] = 'c';
	o->op = CTL_OP_MAX_ + 1;
}
static void bf_seg_tgt(void *p)
{
	struct ctl_open_req *o = p;
	o->name[0] = 'b';
	o->op = CTL_OP_SEG_ATTACH;
	o->target[0] = 't'; /* a target only for SVC_CALL */
}
static void bf_seg_detach_name(void *p)
{
	struct ctl_open_req *o = p;
	o->op = CTL_OP_SEG_DETACH; /* and no set name */
}
static void bf_open_tgt(void *p)
{
	struct ctl_open_req *o = p;
	o->name[0] = 'c';
	o->target[0] = 't'; /* a target only for SVC_CALL */
}
static void bf_call_notgt(void *p)
{
	struct ctl_open_req *o = p;
	o->name[0] = 's';
	o->op = CTL_OP_SVC_CALL;
}
static void bf_call_tgt_long(void *p)
{
	struct ctl_open_req *o = p;
	o->name[0] = 's';
	o->op = CTL_OP_SVC_CALL;
	memset(o->target, 't', sizeof(o->target));
}
static void bf_dirty_n(void *p) { ((struct ctl_dirty *)p)->npages = 8ull * CTL_DIRTY_BYTES + 1; }
static void bf_dirty_last(void *p) { ((struct ctl_dirty *)p)->last = 2; }
static void bf_dirty_res(void *p) { ((struct ctl_dirty *)p)->reserved = 1; }
static void map_base(struct ctl_map *m)
{
	m->nseg = 1;
	m->nmem = 1;
	m->seg[0].len = 4096;
}
static void bf_map_nseg0(void *p) { map_base(p); ((struct ctl_map *)p)->nseg = 0; }
static void bf_map_nseg8(void *p) { map_base(p); ((struct ctl_map *)p)->nseg = CTL_MAP_SEGS_MAX + 1; }
static void bf_map_mem(void *p) { map_base(p); ((struct ctl_map *)p)->seg[0].mem = 1; }
static void bf_map_ro(void *p) { map_base(p); ((struct ctl_map *)p)->seg[0].readonly = 2; }
static void bf_map_res(void *p) { map_base(p); ((struct ctl_map *)p)->reserved = 1; }
static void bf_reply_detail(void *p) { memset(((struct ctl_open_reply *)p)->detail, 'd', 64); }
static void bf_ping_res(void *p) { ((struct ctl_ping *)p)->reserved = 1; }

static void bf_upd_op(void *p) { ((struct ctl_update_req *)p)->op = CTL_UPD_STATUS + 1; }
static void bf_upd_len0(void *p) { ((struct ctl_update_req *)p)->op = CTL_UPD_WRITE; }
static void bf_upd_len_big(void *p)
{
	struct ctl_update_req *u = p;
	u->op = CTL_UPD_WRITE;
	u->gpa = 0x100000;
	u->len = PARLEY_UPDATE_CHUNK_MAX + 1;
}
static void bf_upd_wrap(void *p)
{
	struct ctl_update_req *u = p;
	u->op = CTL_UPD_WRITE;
	u->gpa = UINT64_MAX - 10;
	u->len = 100;
}
static void bf_upd_gpa_begin(void *p) { ((struct ctl_update_req *)p)->gpa = 0x100000; }
static void bf_upd_len_status(void *p)
{
	((struct ctl_update_req *)p)->op = CTL_UPD_STATUS;
	((struct ctl_update_req *)p)->len = 1;
}
static void bf_upd_arg_commit(void *p)
{
	((struct ctl_update_req *)p)->op = CTL_UPD_COMMIT;
	((struct ctl_update_req *)p)->arg = 5;
}
static void bf_ureply_state(void *p) { ((struct ctl_update_reply *)p)->state = PARLEY_UPDATE_FAILED + 1; }
static void bf_ureply_res(void *p) { ((struct ctl_update_reply *)p)->reserved = 1; }
/* A disk that passes every rule; each row breaks one. */
static void disk_base(void *p)
{
	struct ctl_disk *d = p;
	*d = (struct ctl_disk){ .index = 0, .sectors = 8, .sector_size = 512 };
	memcpy(d->name, "data", 5);
}
static void bf_disk_index(void *p) { disk_base(p); ((struct ctl_disk *)p)->index = PARLEY_DISKS_MAX; }
static void bf_disk_flags(void *p) { disk_base(p); ((struct ctl_disk *)p)->flags = 0x4; }
static void bf_disk_ssize(void *p) { disk_base(p); ((struct ctl_disk *)p)->sector_size = 1024; }
static void bf_disk_empty(void *p) { disk_base(p); ((struct ctl_disk *)p)->sectors = 0; }
static void bf_disk_huge(void *p) { disk_base(p); ((struct ctl_disk *)p)->sectors = 1ull << 60; }
static void bf_disk_name(void *p) { disk_base(p); memset(((struct ctl_disk *)p)->name, 'n', PARLEY_DISK_NAME_MAX); }
static void bf_disk_noname(void *p) { disk_base(p); ((struct ctl_disk *)p)->name[0] = 0; }
static void bf_disk_res(void *p) { disk_base(p); ((struct ctl_disk *)p)->reserved = 1; }
static void bf_disk_key(void *p) { disk_base(p); ((struct ctl_disk *)p)->key[5] = 1; }
static void bf_ureply_detail(void *p) { memset(((struct ctl_update_reply *)p)->detail, 'd', 64); }

static const struct bad_field bad_fields[] = {
	{ "FINISHED reason past the last", CTL_FINISHED, CTL_FROM_VMM, bf_reason, 0 },
	{ "FINISHED detail unterminated", CTL_FINISHED, CTL_FROM_VMM, bf_detail, 0 },
	{ "REFUSED code not negative", CTL_REFUSED, CTL_FROM_VMM, bf_ref_code, 0 },
	{ "REFUSED type not a request", CTL_REFUSED, CTL_FROM_VMM, bf_ref_type, 0 },
	{ "OPEN_REQ name unterminated", CTL_OPEN_REQ, CTL_FROM_VMM, bf_name_open, 0 },
	{ "OPEN_REQ name empty", CTL_OPEN_REQ, CTL_FROM_VMM, bf_name_empty, 0 },
	{ "OPEN_REQ unknown op", CTL_OPEN_REQ, CTL_FROM_VMM, bf_open_res, 0 },
	{ "OPEN_REQ target on an open", CTL_OPEN_REQ, CTL_FROM_VMM, bf_open_tgt, 0 },
	{ "OPEN_REQ call without target", CTL_OPEN_REQ, CTL_FROM_VMM, bf_call_notgt, 0 },
	{ "OPEN_REQ call target unterminated", CTL_OPEN_REQ, CTL_FROM_VMM, bf_call_tgt_long, 0 },
	{ "OPEN_REQ seg attach with a target", CTL_OPEN_REQ, CTL_FROM_VMM, bf_seg_tgt, 0 },
	{ "OPEN_REQ seg detach without a name", CTL_OPEN_REQ, CTL_FROM_VMM, bf_seg_detach_name, 0 },
	{ "DIRTY npages past a chunk", CTL_DIRTY, CTL_FROM_VMM, bf_dirty_n, 0 },
	{ "DIRTY last 2", CTL_DIRTY, CTL_FROM_VMM, bf_dirty_last, 0 },
	{ "DIRTY reserved set", CTL_DIRTY, CTL_FROM_VMM, bf_dirty_res, 0 },
	{ "MAP no segment", CTL_MAP, CTL_FROM_AGENT, bf_map_nseg0, 3 },
	{ "MAP too many segments", CTL_MAP, CTL_FROM_AGENT, bf_map_nseg8, 3 },
	{ "MAP segment names a missing fd", CTL_MAP, CTL_FROM_AGENT, bf_map_mem, 3 },
	{ "MAP readonly 2", CTL_MAP, CTL_FROM_AGENT, bf_map_ro, 3 },
	{ "MAP reserved set", CTL_MAP, CTL_FROM_AGENT, bf_map_res, 3 },
	{ "OPEN_REPLY detail unterminated", CTL_OPEN_REPLY, CTL_FROM_AGENT, bf_reply_detail, 0 },
	{ "UPDATE_REQ unknown op", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_op, 0 },
	{ "UPDATE_REQ write of 0 bytes", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_len0, 0 },
	{ "UPDATE_REQ write past the chunk cap", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_len_big, 0 },
	{ "UPDATE_REQ write wrapping", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_wrap, 0 },
	{ "UPDATE_REQ begin with a buffer", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_gpa_begin, 0 },
	{ "UPDATE_REQ status with a length", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_len_status, 0 },
	{ "UPDATE_REQ commit with an argument", CTL_UPDATE_REQ, CTL_FROM_VMM, bf_upd_arg_commit, 0 },
	{ "UPDATE_REPLY unknown state", CTL_UPDATE_REPLY, CTL_FROM_AGENT, bf_ureply_state, 0 },
	{ "UPDATE_REPLY reserved set", CTL_UPDATE_REPLY, CTL_FROM_AGENT, bf_ureply_res, 0 },
	{ "UPDATE_REPLY detail unterminated", CTL_UPDATE_REPLY, CTL_FROM_AGENT, bf_ureply_detail, 0 },
	{ "PING reserved set", CTL_PING, CTL_FROM_AGENT, bf_ping_res, 0 },
	{ "DISK index past the last", CTL_DISK, CTL_FROM_AGENT, bf_disk_index, 1 },
	{ "DISK unknown flag", CTL_DISK, CTL_FROM_AGENT, bf_disk_flags, 1 },
	{ "DISK sector size 1024", CTL_DISK, CTL_FROM_AGENT, bf_disk_ssize, 1 },
	{ "DISK of no sectors", CTL_DISK, CTL_FROM_AGENT, bf_disk_empty, 1 },
	{ "DISK of 2^69 bytes", CTL_DISK, CTL_FROM_AGENT, bf_disk_huge, 1 },
	{ "DISK name unterminated", CTL_DISK, CTL_FROM_AGENT, bf_disk_name, 1 },
	{ "DISK name empty", CTL_DISK, CTL_FROM_AGENT, bf_disk_noname, 1 },
	{ "DISK reserved set", CTL_DISK, CTL_FROM_AGENT, bf_disk_res, 1 },
	{ "DISK key on a plain disk", CTL_DISK, CTL_FROM_AGENT, bf_disk_key, 1 },
	{ "DISK without its descriptor", CTL_DISK, CTL_FROM_AGENT, disk_base, 0 },
	{ "DISK from the vmm", CTL_DISK, CTL_FROM_VMM, disk_base, 1 },
	{ "PONG reserved set", CTL_PONG, CTL_FROM_VMM, bf_ping_res, 0 },
};

Test(ctl, typed_reader_refuses_fields_out_of_range)
{
	static struct ctl_msg m;
	static union {
		struct ctl_map map;
		struct ctl_dirty dirty;
		char raw[CTL_PAYLOAD_MAX];
	} pl;
	int sv[2];

	pair(sv);
	unsigned before = count_fds();
	for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
		const struct bad_field *b = &bad_fields[i];
		int fds[3];
		for (unsigned k = 0; k < b->nfds; k++)
			fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		memset(&pl, 0, sizeof(pl));
		b->make(&pl);
		long len = ctl_payload_size(b->type);
		cr_assert_eq(ctl_send_fds(sv[0], b->type, &pl, (uint32_t)len,
					  fds, b->nfds), 0, "%s", b->name);
		for (unsigned k = 0; k < b->nfds; k++)
			close(fds[k]);
		cr_expect_eq(read_from(sv[1], b->from, &m), -EPROTO, "%s",
			     b->name);
		expect_good_after(sv, b->name);
	}
	cr_expect_eq(count_fds(), before, "descriptors of refused messages "
		     "left open");
	unpair(sv);
}

/* More descriptors than any message carries: refused, none kept. */
Test(ctl, typed_reader_refuses_a_descriptor_flood)
{
	static struct ctl_msg m;
	int sv[2], fds[CTL_FDS_MAX + 1];
	struct ctl_console c = { .len = 0 };

	pair(sv);
	unsigned before = count_fds();
	for (unsigned k = 0; k < CTL_FDS_MAX + 1; k++)
		fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct ctl_hdr h = { .type = CTL_CONSOLE,
			     .len = offsetof(struct ctl_console, buf) };
	char pkt[sizeof(h) + offsetof(struct ctl_console, buf)];
	memcpy(pkt, &h, sizeof(h));
	memcpy(pkt + sizeof(h), &c, offsetof(struct ctl_console, buf));
	struct iovec iov = { pkt, sizeof(pkt) };
	_Alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(fds))];
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	cr_assert_eq(sendmsg(sv[0], &mh, 0), (ssize_t)sizeof(pkt));
	for (unsigned k = 0; k < CTL_FDS_MAX + 1; k++)
		close(fds[k]);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO);
	cr_expect_eq(count_fds(), before);
	expect_good_after(sv, "descriptor flood");
	unpair(sv);
}

/* The hand-over's health check (CTL_PING 28 agent -> vmm, CTL_PONG 60
 * back): each only from its side, exactly its size, the nonce returned. */
Test(ctl, ping_and_pong_each_from_its_side_only)
{
	int sv[2];
	static struct ctl_msg m;
	struct ctl_ping p = { .nonce = 0x1122334455667788ull };
	uint64_t longer[3] = { 1, 0, 0 };

	pair(sv);
	cr_expect_eq(ctl_payload_size(CTL_PING), sizeof(struct ctl_ping));
	cr_expect_eq(ctl_payload_size(CTL_PONG), sizeof(struct ctl_ping));
	cr_expect_str_eq(ctl_type_name(CTL_PING), "CTL_PING");
	cr_expect_str_eq(ctl_type_name(CTL_PONG), "CTL_PONG");
	cr_assert_eq(ctl_send(sv[0], CTL_PONG, &p, sizeof(p)), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_VMM, &m), 0);
	cr_expect_eq(m.type, CTL_PONG);
	cr_expect_eq(m.u.ping.nonce, p.nonce);
	cr_assert_eq(ctl_send(sv[0], CTL_PING, &p, sizeof(p)), 0);
	cr_assert_eq(read_from(sv[1], CTL_FROM_AGENT, &m), 0);
	cr_expect_eq(m.u.ping.nonce, p.nonce);
	/* the wrong side */
	cr_assert_eq(ctl_send(sv[0], CTL_PING, &p, sizeof(p)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO);
	cr_assert_eq(ctl_send(sv[0], CTL_PONG, &p, sizeof(p)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_AGENT, &m), -EPROTO);
	/* the wrong size, either way */
	cr_assert_eq(ctl_send(sv[0], CTL_PONG, &p, 8), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO);
	cr_assert_eq(ctl_send(sv[0], CTL_PONG, longer, sizeof(longer)), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_VMM, &m), -EPROTO);
	cr_assert_eq(ctl_send(sv[0], CTL_PING, NULL, 0), 0);
	cr_expect_eq(read_from(sv[1], CTL_FROM_AGENT, &m), -EPROTO);
	/* the neighbours of the new numbers stay unknown */
	cr_expect_lt(ctl_payload_size(CTL_PING - 1), 0);
	cr_expect_lt(ctl_payload_size(CTL_PING + 1), 0);
	cr_expect_lt(ctl_payload_size(CTL_PONG - 1), 0);
	cr_expect_lt(ctl_payload_size(CTL_PONG + 1), 0);
	expect_good_after(sv, "ping/pong");
	unpair(sv);
}

/* The disk the rows above break, whole: read, its descriptor with it. */
Test(ctl, typed_reader_takes_a_good_disk)
{
	static struct ctl_msg m;
	struct ctl_disk d;
	int sv[2];
	pair(sv);
	disk_base(&d);
	d.flags = CTL_DISK_XTS | CTL_DISK_READ_ONLY;
	d.key[0] = 1;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_eq(ctl_send_fds(sv[0], CTL_DISK, &d, sizeof(d), &fd, 1), 0);
	close(fd);
	cr_assert_eq(read_from(sv[1], CTL_FROM_AGENT, &m), 0);
	cr_assert_eq(m.type, CTL_DISK);
	cr_assert_eq(m.nfds, 1);
	cr_expect_eq(m.u.disk.sectors, 8);
	cr_expect_str_eq(m.u.disk.name, "data");
	cr_expect_str_eq(ctl_type_name(CTL_DISK), "CTL_DISK");
	close(m.fds[0]);
	unpair(sv);
}
