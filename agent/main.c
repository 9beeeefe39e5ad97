/*
 * parley-agent: the per-host grant manager.
 *
 *   parley-agent run [options] SPEC...       run partitions from spec files
 *   parley-agent restore [options] SNAP...   resume saved partitions
 *
 * Options: --image-dir DIR (repeatable) where images are looked up after the
 * spec's own directory; --vmm PATH the parley-vmm binary (default: beside
 * this one); --snapshot-dir DIR where SIGUSR2 suspends partitions to.
 */
#include "agent/partition.h"
#include "agent/spec.h"
#include "agent/supervisor.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAGE_DIRS_MAX 8

struct cli {
	const char *image_dirs[IMAGE_DIRS_MAX + 1];
	unsigned nimage_dirs;
	const char *vmm;
	const char *snapshot_dir;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: parley-agent run [--image-dir DIR] [--vmm PATH] "
		"[--snapshot-dir DIR] SPEC...\n"
		"       parley-agent restore [--vmm PATH] SNAPSHOT...\n");
}

static int parse_opts(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		{ "image-dir", required_argument, NULL, 'i' },
		{ "vmm", required_argument, NULL, 'v' },
		{ "snapshot-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "+i:v:s:h", opts, NULL)) != -1) {
		switch (o) {
		case 'i':
			if (c->nimage_dirs == IMAGE_DIRS_MAX) {
				fprintf(stderr, "parley-agent: too many "
						"--image-dir\n");
				return -1;
			}
			c->image_dirs[c->nimage_dirs++] = optarg;
			break;
		case 'v':
			c->vmm = optarg;
			break;
		case 's':
			c->snapshot_dir = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return -1;
	}
	return optind;
}

/* Start one partition from a spec or a snapshot; errors are printed. */
static int start_one(struct supervisor *s, const struct part_opts *o,
		     const char *arg, const struct part_spec *spec)
{
	struct parley_err err = { 0 };
	struct partition *p = NULL;
	int rc = spec ? partition_create(spec, o, &p, &err)
		      : partition_restore(arg, o, &p, &err);
	if (rc < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		return rc;
	}
	sup_add(s, p);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	int restore = strcmp(argv[1], "restore") == 0;
	if (!restore && strcmp(argv[1], "run") != 0) {
		usage(stderr);
		return 2;
	}
	struct cli c = { 0 };
	int first = parse_opts(argc - 1, argv + 1, &c);
	if (first < 0)
		return 2;
	sup_block_signals();
	static struct supervisor sup;
	sup.out = stdout;
	sup.snapshot_dir = c.snapshot_dir;
	struct part_opts o = {
		.vmm_path = c.vmm, .image_dirs = c.image_dirs,
		.on_console = sup_console, .ctx = &sup,
	};
	/* Every spec is checked before any partition starts: one typo must
	 * not leave half a set of partitions running. */
	int n = argc - first - 1, bad = 0;
	struct part_spec *specs = calloc((size_t)n, sizeof(*specs));
	for (int i = 0; !restore && i < n; i++) {
		struct parley_err err = { 0 };
		if (spec_load(argv[first + 1 + i], &specs[i], &err) < 0) {
			fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
			bad = 1;
		}
	}
	for (int i = 0; !bad && i < n; i++)
		if (start_one(&sup, &o, argv[first + 1 + i],
			      restore ? NULL : &specs[i]) < 0)
			bad = 1;
	for (int i = 0; i < n; i++)
		spec_free(&specs[i]);
	free(specs);
	if (bad && sup.n == 0)
		return 2;
	int rc = sup_run(&sup);
	sup_free(&sup);
	return bad ? 2 : rc;
}
