/*
 * Plugin "console" (class console): a partition's console output, cut
 * into lines per vCPU (at most 256 bytes a piece) and handed to the vmm's
 * console link (config emit). A line not finished when the partition is
 * snapshotted is part of the saved state (version 1), so a restored
 * partition continues it; power_down emits what is left.
 */
#include "agent/plugin/plugin.h"
#include "agent/plugins/common.h"

#include <stdlib.h>
#include <string.h>

#define VCPUS 64
#define LINE 256

struct dev {
	void (*emit)(void *ctx, unsigned vcpu, const char *buf, size_t len);
	void *ctx;
	uint16_t len[VCPUS];
	char line[VCPUS][LINE];
};

static int init(const struct parley_plugin_config *c, void **out, char *why,
		size_t n)
{
	if (!c->emit)
		return plug_why(why, n, "no console link to write to");
	struct dev *d = calloc(1, sizeof(*d));
	if (!d)
		return plug_why(why, n, "out of memory");
	d->emit = c->emit;
	d->ctx = c->emit_ctx;
	*out = d;
	return 0;
}

static int nothing(void *dev, char *why, size_t n)
{
	(void)dev, (void)why, (void)n;
	return 0;
}

/* State: for each vCPU with a partial line, u8 vcpu, u16 len, bytes. */
static int load_state(void *dev, const void *state, size_t len,
		      uint32_t version, char *why, size_t n)
{
	struct dev *d = dev;
	const uint8_t *s = state;
	if (version != 1)
		return plug_why(why, n, "saved state version %u (1 wanted)",
				version);
	for (size_t at = 0; at < len;) {
		uint16_t l;
		if (len - at < 3)
			return plug_why(why, n, "saved state cut short");
		unsigned v = s[at];
		memcpy(&l, s + at + 1, 2);
		at += 3;
		if (v >= VCPUS || l == 0 || l > LINE || len - at < l ||
		    d->len[v])
			return plug_why(why, n, "saved line of vCPU %u bad", v);
		memcpy(d->line[v], s + at, l);
		d->len[v] = l;
		at += l;
	}
	return 0;
}

static int save_state(void *dev, void *buf, size_t cap, size_t *len,
		      uint32_t *version, char *why, size_t n)
{
	struct dev *d = dev;
	uint8_t *o = buf;
	size_t at = 0;
	for (unsigned v = 0; v < VCPUS; v++) {
		if (!d->len[v])
			continue;
		if (cap - at < 3u + d->len[v])
			return plug_why(why, n, "no room for the state");
		o[at] = (uint8_t)v;
		memcpy(o + at + 1, &d->len[v], 2);
		memcpy(o + at + 3, d->line[v], d->len[v]);
		at += 3u + d->len[v];
	}
	*len = at;
	*version = 1;
	return 0;
}

static void flush_line(struct dev *d, unsigned v)
{
	if (d->len[v])
		d->emit(d->ctx, v, d->line[v], d->len[v]);
	d->len[v] = 0;
}

static int power_down(void *dev, char *why, size_t n)
{
	(void)why, (void)n;
	for (unsigned v = 0; v < VCPUS; v++)
		flush_line(dev, v);
	return 0;
}

static void teardown(void *dev)
{
	free(dev);
}

static int cwrite(void *dev, unsigned vcpu, const char *buf, size_t len)
{
	struct dev *d = dev;
	if (vcpu >= VCPUS)
		return -1;
	for (size_t i = 0; i < len; i++) {
		d->line[vcpu][d->len[vcpu]++] = buf[i];
		if (buf[i] == '\n' || d->len[vcpu] == LINE)
			flush_line(d, vcpu);
	}
	return 0;
}

__attribute__((visibility("default")))
const struct parley_plugin parley_plugin_v1 = {
	.abi = PARLEY_PLUGIN_ABI,
	.size = sizeof(struct parley_plugin),
	.plugin_class = PARLEY_PLUGIN_CONSOLE,
	.name = "console",
	.ops = { .init = init, .power_up = nothing, .load_state = load_state,
		 .run = nothing, .save_state = save_state,
		 .power_down = power_down, .teardown = teardown },
	.u.console = { .write = cwrite },
};
