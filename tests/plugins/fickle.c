/*
 * A device plugin for tests/test_plugin.c (class transform, never
 * installed): it refuses the lifecycle operation its device is named
 * after ("refuse-power_up", "refuse-save_state", ...), keeps a counter of
 * the bytes it transformed as its saved state (version 7), and its
 * "transform" is a copy. Built as fickle.so; with FICKLE_ABI=99 as
 * fickle-abi99.so, a plugin of an ABI this vmm does not load; named "xts"
 * (FICKLE_NAME) as fickle-xts.so, which a vmm takes for its encryption;
 * and so named with FICKLE_CRASH as fickle-xts-crash.so, whose transform
 * dies of SIGILL.
 */
#include "agent/plugin/plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FICKLE_NAME
#define FICKLE_NAME "fickle"
#endif
#ifndef FICKLE_ABI
#define FICKLE_ABI PARLEY_PLUGIN_ABI
#endif

struct dev {
	char refuse[32];
	uint64_t bytes;
};

static int check(struct dev *d, const char *op, char *why, size_t n)
{
	if (strcmp(d->refuse, op))
		return 0;
	snprintf(why, n, "told to refuse %s\x1b[2J", op); /* not printable */
	return -1;
}

static int init(const struct parley_plugin_config *c, void **out, char *why,
		size_t n)
{
	struct dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -1;
	if (c->device && !strncmp(c->device, "refuse-", 7))
		snprintf(d->refuse, sizeof(d->refuse), "%s", c->device + 7);
	if (check(d, "init", why, n)) {
		free(d);
		return -1;
	}
	*out = d;
	return 0;
}

static int power_up(void *dev, char *why, size_t n)
{
	return check(dev, "power_up", why, n);
}

static int run(void *dev, char *why, size_t n)
{
	return check(dev, "run", why, n);
}

static int power_down(void *dev, char *why, size_t n)
{
	return check(dev, "power_down", why, n);
}

static int load_state(void *dev, const void *state, size_t len,
		      uint32_t version, char *why, size_t n)
{
	struct dev *d = dev;
	if (check(d, "load_state", why, n))
		return -1;
	if (version != 7 || len != sizeof(d->bytes)) {
		snprintf(why, n, "state version %u, %zu bytes", version, len);
		return -1;
	}
	memcpy(&d->bytes, state, sizeof(d->bytes));
	return 0;
}

static int save_state(void *dev, void *buf, size_t cap, size_t *len,
		      uint32_t *version, char *why, size_t n)
{
	struct dev *d = dev;
	if (check(d, "save_state", why, n))
		return -1;
	if (cap < sizeof(d->bytes))
		return -1;
	memcpy(buf, &d->bytes, sizeof(d->bytes));
	*len = sizeof(d->bytes);
	*version = 7;
	return 0;
}

static void teardown(void *dev)
{
	free(dev);
}

static int copy(void *dev, const uint8_t *in, uint8_t *out, size_t len,
		uint64_t off)
{
	(void)off;
#ifdef FICKLE_CRASH
	if (len)
		__builtin_trap();
#endif
	memmove(out, in, len);
	((struct dev *)dev)->bytes += len;
	return 0;
}

__attribute__((visibility("default")))
const struct parley_plugin parley_plugin_v1 = {
	.abi = FICKLE_ABI,
	.size = sizeof(struct parley_plugin),
	.plugin_class = PARLEY_PLUGIN_TRANSFORM,
	.name = FICKLE_NAME,
	.ops = { .init = init, .power_up = power_up, .load_state = load_state,
		 .run = run, .save_state = save_state,
		 .power_down = power_down, .teardown = teardown },
	.u.transform = { .encrypt = copy, .decrypt = copy },
};
