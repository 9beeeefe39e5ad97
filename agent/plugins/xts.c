/*
 * Plugin "xts" (class transform): AES-256-XTS per 512-byte unit, the
 * dm-crypt aes-xts-plain64 construction (agent/vmx/blk_xts.c, VAES where
 * the CPU has it). The key is copied into the cipher's mlock'd page at
 * init and wiped at teardown; it is never part of the saved state, which
 * holds only the unit size (version 1, 8 bytes) so a restore with another
 * layout is refused.
 */
#include "agent/plugin/plugin.h"
#include "agent/plugins/common.h"
#include "agent/vmx/blk_xts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XTS_BOUNCE (1u << 20)

struct dev {
	struct blk_xts *x;
	uint32_t unit;
};

static int init(const struct parley_plugin_config *c, void **out, char *why,
		size_t n)
{
	if (c->unit != XTS_UNIT)
		return plug_why(why, n, "unit of %u bytes (only %u)", c->unit,
				XTS_UNIT);
	if (!c->key || c->key_len != XTS_KEY_BYTES)
		return plug_why(why, n, "key of %zu bytes (%u wanted)",
				c->key_len, XTS_KEY_BYTES);
	struct dev *d = calloc(1, sizeof(*d));
	if (!d)
		return plug_why(why, n, "out of memory");
	struct parley_err err = { 0 };
	if (xts_new(c->key, XTS_BOUNCE, &d->x, &err) < 0) {
		free(d);
		return plug_why(why, n, "%s", perr_msg(&err));
	}
	d->unit = c->unit;
	*out = d;
	return 0;
}

static int load_state(void *dev, const void *state, size_t len,
		      uint32_t version, char *why, size_t n)
{
	struct dev *d = dev;
	uint64_t unit = 0;
	if (plug_load_u64(&unit, state, len, version, why, n))
		return -1;
	if (unit != d->unit)
		return plug_why(why, n, "saved with %llu-byte units, now %u",
				(unsigned long long)unit, d->unit);
	return 0;
}

static int save_state(void *dev, void *buf, size_t cap, size_t *len,
		      uint32_t *version, char *why, size_t n)
{
	return plug_save_u64(((struct dev *)dev)->unit, buf, cap, len,
			     version, why, n);
}

static void teardown(void *dev)
{
	struct dev *d = dev;
	xts_free(d->x);
	free(d);
}

static int encrypt(void *dev, const uint8_t *in, uint8_t *out, size_t len,
		   uint64_t off)
{
	return xts_crypt(((struct dev *)dev)->x, 1, in, out, len, off);
}

static int decrypt(void *dev, const uint8_t *in, uint8_t *out, size_t len,
		   uint64_t off)
{
	return xts_crypt(((struct dev *)dev)->x, 0, in, out, len, off);
}

__attribute__((visibility("default")))
const struct parley_plugin parley_plugin_v1 = {
	.abi = PARLEY_PLUGIN_ABI,
	.size = sizeof(struct parley_plugin),
	.plugin_class = PARLEY_PLUGIN_TRANSFORM,
	.name = "xts",
	.ops = { .init = init, .power_up = plug_nothing,
		 .load_state = load_state, .run = plug_nothing,
		 .save_state = save_state, .power_down = plug_nothing,
		 .teardown = teardown },
	.u.transform = { .encrypt = encrypt, .decrypt = decrypt },
};
