/*
 * Plugin "console" (class console): a partition's console output, handed
 * as it comes to the vmm's console link (config emit) — the agent does
 * the line buffering, as it always has. Its saved state (version 1) is
 * the count of bytes the partition has written, which a restored device
 * continues.
 */
#include "agent/plugin/plugin.h"
#include "agent/plugins/common.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct dev {
	void (*emit)(void *ctx, unsigned vcpu, const char *buf, size_t len);
	void *ctx;
	_Atomic uint64_t bytes;    /* vCPUs write concurrently */
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

static int load_state(void *dev, const void *state, size_t len,
		      uint32_t version, char *why, size_t n)
{
	uint64_t b = 0;
	if (plug_load_u64(&b, state, len, version, why, n))
		return -1;
	atomic_store(&((struct dev *)dev)->bytes, b);
	return 0;
}

static int save_state(void *dev, void *buf, size_t cap, size_t *len,
		      uint32_t *version, char *why, size_t n)
{
	return plug_save_u64(atomic_load(&((struct dev *)dev)->bytes), buf,
			     cap, len, version, why, n);
}

static void teardown(void *dev)
{
	free(dev);
}

static int cwrite(void *dev, unsigned vcpu, const char *buf, size_t len)
{
	struct dev *d = dev;
	atomic_fetch_add(&d->bytes, len);
	d->emit(d->ctx, vcpu, buf, len);
	return 0;
}

__attribute__((visibility("default")))
const struct parley_plugin parley_plugin_v1 = {
	.abi = PARLEY_PLUGIN_ABI,
	.size = sizeof(struct parley_plugin),
	.plugin_class = PARLEY_PLUGIN_CONSOLE,
	.name = "console",
	.ops = { .init = init, .power_up = plug_nothing,
		 .load_state = load_state, .run = plug_nothing,
		 .save_state = save_state, .power_down = plug_nothing,
		 .teardown = teardown },
	.u.console = { .write = cwrite },
};
