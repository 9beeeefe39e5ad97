/*
 * libFuzzer target for agent update packages (common/updpkg.h), the
 * checked parser everything a partition streams down goes through before
 * it is trusted: the bytes as a whole package (updpkg_parse, and
 * updpkg_verify against a release key made once: a forger without the
 * key), and as a bare manifest (updpkg_parse_manifest).
 *
 * Oracle: an accepted package is self-consistent (1..FILES_MAX files,
 * unique valid names, parley-agent and parley-vmm among them, files laid
 * out back to back after the manifest, ending exactly at the package's
 * end, each hash the SHA-256 of its bytes); verify never accepts (the
 * fuzzer cannot sign); every refusal has a reason and a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "common/err.h"
#include "common/jsonv.h"
#include "common/pki.h"
#include "common/updpkg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_pkg(const struct updpkg *p, size_t size, const uint8_t *d)
{
	PARLEY_ASSERT(p->nfile >= 1 && p->nfile <= UPDPKG_FILES_MAX);
	PARLEY_ASSERT(updpkg_find(p, "parley-agent") &&
		      updpkg_find(p, "parley-vmm"));
	uint64_t off = UPDPKG_HDR + (uint64_t)p->manifest_len;
	for (unsigned i = 0; i < p->nfile; i++) {
		const struct updpkg_file *f = &p->file[i];
		size_t n = strnlen(f->name, sizeof(f->name));
		PARLEY_ASSERT(n < sizeof(f->name) &&
			      jv_name_valid(f->name, n, sizeof(f->name)));
		for (unsigned k = 0; k < i; k++)
			PARLEY_ASSERT(strcmp(f->name, p->file[k].name));
		PARLEY_ASSERT(f->off == off);
		off += f->size;
		PARLEY_ASSERT(off <= size);
		if (d) {
			uint8_t md[32];
			SHA256(d + f->off, f->size, md);
			PARLEY_ASSERT(!memcmp(md, f->sha256, 32));
		}
	}
	PARLEY_ASSERT(!d || off == size);
}

static EVP_PKEY *key(void)
{
	static EVP_PKEY *k;
	if (!k) {
		struct parley_err err = { 0 };
		PARLEY_ASSERT(pki_key_new(&k, &err) == 0);
	}
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct updpkg p;
	struct parley_err err = { 0 };
	enum updpkg_refusal why;
	int rc = updpkg_parse(data, size, &p, &why, &err);
	if (rc == 0) {
		PARLEY_ASSERT(why == UPDPKG_OK);
		check_pkg(&p, size, data);
	} else {
		PARLEY_ASSERT(rc == -EBADMSG && why != UPDPKG_OK && err.msg[0]);
	}
	struct updpkg_running run;
	updpkg_running_self(&run);
	err = (struct parley_err){ 0 };
	rc = updpkg_verify(data, size, key(), &run, &p, &why, &err);
	PARLEY_ASSERT(rc == -EBADMSG && why != UPDPKG_OK && err.msg[0]);
	/* The same bytes as a manifest alone. */
	memset(&p, 0, sizeof(p));
	err = (struct parley_err){ 0 };
	if (size <= UPDPKG_MANIFEST_MAX &&
	    updpkg_parse_manifest(data, size, &p, &err) == 0) {
		p.manifest_len = (uint32_t)size; /* files laid out after it */
		check_pkg(&p, SIZE_MAX, NULL);
	}
	else
		PARLEY_ASSERT(err.msg[0] || size == 0 ||
			      size > UPDPKG_MANIFEST_MAX);
	return 0;
}
