/*
 * Domain XML from a libvirt partition spec. The spec is untrusted (it comes
 * through the API): every field is checked here, every string that reaches
 * the XML is escaped, and the paths must be absolute -- they name files on
 * the host libvirt runs on, not on ours.
 *
 *   {
 *     "name": "web",                    optional; must equal the API's name
 *     "memory": "128M",                 size string or integer bytes
 *     "vcpus": 1,
 *     "image": "/srv/parley/web.elf",   optional: a kernel booted directly
 *     "cmdline": "console=ttyS0",       optional
 *     "config": [ {"name": "motd", "path": "/srv/parley/motd.txt"} ]
 *   }
 *
 * Each key configuration file becomes a read-only disk of type file
 * (vda, vdb, ...), with the file's name as disk serial when it fits.
 */
#include "daemon/orch.h"
#include "common/jsonv.h"
#include "common/size.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* virtio-blk serials are at most 20 bytes; libvirt accepts these. */
#define ORCH_SERIAL_MAX 20
#define ORCH_SERIAL_CHARS                                                \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-"

static const char *const spec_known[] = { "name", "memory", "vcpus", "image",
					  "cmdline", "config", NULL };
static const char *const file_known[] = { "name", "path", NULL };

static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

static int get_path(const json_t *v, const char *lbl, char **out,
		    struct parley_err *err)
{
	const char *s;
	size_t len;
	int rc = jv_get_string(v, lbl, &s, &len, err);
	if (rc < 0)
		return rc;
	if (len == 0 || len >= ORCH_PATH_MAX || s[0] != '/')
		return perr(err, -EINVAL, "%s: expected an absolute path on the "
			    "libvirt host (1..%d bytes)", lbl, ORCH_PATH_MAX - 1);
	if (!printable(s, len))
		return perr(err, -EINVAL, "%s: not printable ASCII", lbl);
	*out = strdup(s);
	return *out ? 0 : perr(err, -ENOMEM, "%s: out of memory", lbl);
}

static int get_memory(const json_t *v, uint64_t *out, struct parley_err *err)
{
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		*out = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		if (parse_size(json_string_value(v), out) < 0)
			return perr(err, -EINVAL, "memory: not a size "
				    "(e.g. \"128M\")");
	} else {
		return jv_type_error(v, "memory", "a size", err);
	}
	if (*out < ORCH_MEM_MIN || *out > ORCH_MEM_MAX || *out % 1024)
		return perr(err, -EINVAL, "memory: %llu bytes; expected whole "
			    "KiB in 1M..1T", (unsigned long long)*out);
	return 0;
}

static int get_vcpus(const json_t *v, unsigned *out, struct parley_err *err)
{
	if (!json_is_integer(v))
		return jv_type_error(v, "vcpus", "an integer", err);
	json_int_t n = json_integer_value(v);
	if (n < 1 || n > ORCH_VCPUS_MAX)
		return perr(err, -EINVAL, "vcpus: %lld; expected 1..%d",
			    (long long)n, ORCH_VCPUS_MAX);
	*out = (unsigned)n;
	return 0;
}

static int get_cmdline(const json_t *v, char **out, struct parley_err *err)
{
	const char *s;
	size_t len;
	int rc = jv_get_string(v, "cmdline", &s, &len, err);
	if (rc < 0)
		return rc;
	if (len >= ORCH_CMDLINE_MAX || !printable(s, len))
		return perr(err, -EINVAL, "cmdline: expected printable ASCII, "
			    "at most %d bytes", ORCH_CMDLINE_MAX - 1);
	*out = strdup(s);
	return *out ? 0 : perr(err, -ENOMEM, "cmdline: out of memory");
}

static int get_file_name(const json_t *v, unsigned i, char *out,
			 struct parley_err *err)
{
	const char *s;
	size_t len;
	int rc = jv_get_string(v, "config[].name", &s, &len, err);
	if (rc < 0)
		return rc;
	if (len == 0 || len >= STORE_FILE_NAME_MAX || !printable(s, len) ||
	    strchr(s, '/'))
		return perr(err, -EINVAL, "config[%u].name: expected 1..%d "
			    "printable bytes without '/'", i,
			    STORE_FILE_NAME_MAX - 1);
	memcpy(out, s, len + 1);
	return 0;
}

static int get_file(json_t *e, unsigned i, struct orch_spec *s,
		    struct parley_err *err)
{
	char where[32];
	snprintf(where, sizeof(where), "config[%u]: ", i);
	if (!json_is_object(e))
		return jv_type_error(e, "config[]", "an object", err);
	int rc = jv_check_known(e, file_known, where, err);
	if (rc < 0)
		return rc;
	struct orch_spec_file *f = &s->file[i];
	rc = get_file_name(json_object_get(e, "name"), i, f->name, err);
	if (rc < 0)
		return rc;
	for (unsigned j = 0; j < i; j++)
		if (!strcmp(s->file[j].name, f->name))
			return perr(err, -EINVAL, "config[%u].name: \"%s\" "
				    "named twice", i, f->name);
	return get_path(json_object_get(e, "path"), "config[].path", &f->path,
			err);
}

static int get_files(json_t *v, struct orch_spec *s, struct parley_err *err)
{
	if (!json_is_array(v))
		return jv_type_error(v, "config", "an array", err);
	if (json_array_size(v) > STORE_FILES_MAX)
		return perr(err, -E2BIG, "config: more than %d files",
			    STORE_FILES_MAX);
	for (unsigned i = 0; i < json_array_size(v); i++) {
		int rc = get_file(json_array_get(v, i), i, s, err);
		s->nfile = i + 1;
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int get_name(const json_t *v, char *out, struct parley_err *err)
{
	const char *s;
	size_t len;
	int rc = jv_get_string(v, "name", &s, &len, err);
	if (rc < 0)
		return rc;
	if (!jv_name_valid(s, len, STORE_NAME_MAX))
		return perr(err, -EINVAL, "name: not a valid partition name");
	memcpy(out, s, len + 1);
	return 0;
}

static int spec_fields(json_t *root, struct orch_spec *s,
		       struct parley_err *err)
{
	json_t *v;
	int rc = jv_check_known(root, spec_known, "", err);
	if (rc == 0 && (v = json_object_get(root, "name")))
		rc = get_name(v, s->name, err);
	if (rc == 0 && (v = json_object_get(root, "memory")))
		rc = get_memory(v, &s->mem_bytes, err);
	if (rc == 0 && (v = json_object_get(root, "vcpus")))
		rc = get_vcpus(v, &s->vcpus, err);
	if (rc == 0 && (v = json_object_get(root, "image")))
		rc = get_path(v, "image", &s->image, err);
	if (rc == 0 && (v = json_object_get(root, "cmdline")))
		rc = get_cmdline(v, &s->cmdline, err);
	if (rc == 0 && (v = json_object_get(root, "config")))
		rc = get_files(v, s, err);
	return rc;
}

int orch_spec_parse(const char *json, struct orch_spec *out,
		    struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	out->mem_bytes = ORCH_MEM_DEFAULT;
	out->vcpus = 1;
	size_t len = strlen(json);
	if (len > STORE_SPEC_MAX)
		return perr(err, -E2BIG, "spec: more than %d bytes",
			    STORE_SPEC_MAX);
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
	if (!root)
		return jv_syntax_error(&jerr, err);
	int rc = json_is_object(root) ? spec_fields(root, out, err)
				      : jv_type_error(root, "spec",
						      "an object", err);
	json_decref(root);
	if (rc < 0)
		orch_spec_free(out);
	return rc;
}

void orch_spec_free(struct orch_spec *s)
{
	if (!s)
		return;
	free(s->image);
	free(s->cmdline);
	for (unsigned i = 0; i < s->nfile; i++)
		free(s->file[i].path);
	memset(s, 0, sizeof(*s));
}

/* Text for an XML element or a quoted attribute. */
static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '\'': fputs("&apos;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f); break;
		}
	}
}

static void xml_elem(FILE *f, const char *indent, const char *tag,
		     const char *text)
{
	fprintf(f, "%s<%s>", indent, tag);
	xml_text(f, text);
	fprintf(f, "</%s>\n", tag);
}

static bool serial_fits(const char *name)
{
	size_t len = strlen(name);
	return len <= ORCH_SERIAL_MAX && strspn(name, ORCH_SERIAL_CHARS) == len;
}

/* vda..vdz, then vdaa.. (STORE_FILES_MAX is 32). */
static void disk_target(unsigned i, char out[8])
{
	if (i < 26)
		snprintf(out, 8, "vd%c", 'a' + i);
	else
		snprintf(out, 8, "vda%c", 'a' + (i - 26));
}

static void xml_disk(FILE *f, const struct orch_spec_file *sf, unsigned i)
{
	char dev[8];
	disk_target(i, dev);
	fputs("    <disk type='file' device='disk'>\n"
	      "      <driver name='qemu' type='raw'/>\n"
	      "      <source file='", f);
	xml_text(f, sf->path);
	fprintf(f, "'/>\n      <target dev='%s' bus='virtio'/>\n"
		"      <readonly/>\n", dev);
	if (serial_fits(sf->name))
		xml_elem(f, "      ", "serial", sf->name);
	fputs("    </disk>\n", f);
}

static void xml_os(FILE *f, const struct orch_spec *s)
{
	fputs("  <os>\n    <type>hvm</type>\n", f);
	if (s->image)
		xml_elem(f, "    ", "kernel", s->image);
	if (s->cmdline)
		xml_elem(f, "    ", "cmdline", s->cmdline);
	fputs("  </os>\n", f);
}

/* The test driver simulates; anything else is QEMU/KVM, where `-cpu
 * host` aborts under our nested KVM (DESIGN.md section 7): a named model. */
static const char *virt_type(const char *conn_type)
{
	return strcasecmp(conn_type, "test") ? "kvm" : "test";
}

int orch_xml_domain(const char *name, const struct orch_spec *s,
		    const char *conn_type, char **xml, struct parley_err *err)
{
	size_t len;
	FILE *f = open_memstream(xml, &len);
	if (!f)
		return perr(err, -ENOMEM, "domain XML: out of memory");
	const char *type = virt_type(conn_type);
	fprintf(f, "<domain type='%s'>\n", type);
	xml_elem(f, "  ", "name", name);
	fprintf(f, "  <memory unit='KiB'>%llu</memory>\n  <vcpu>%u</vcpu>\n",
		(unsigned long long)(s->mem_bytes / 1024), s->vcpus);
	xml_os(f, s);
	if (strcmp(type, "test"))
		fputs("  <cpu mode='custom' match='exact'>"
		      "<model fallback='allow'>qemu64</model></cpu>\n", f);
	fputs("  <devices>\n", f);
	for (unsigned i = 0; i < s->nfile; i++)
		xml_disk(f, &s->file[i], i);
	fputs("  </devices>\n</domain>\n", f);
	if (fclose(f) != 0) {
		free(*xml);
		*xml = NULL;
		return perr(err, -ENOMEM, "domain XML: out of memory");
	}
	return 0;
}
