/* A guest's console as the agent streams it (agent/vm/vmrun.c,
 * vmrun_console): the guest is hostile — no control byte of its reaches
 * the operator's terminal, a flood is skipped rather than read whole on
 * the agent's loop, and what was read gives its disk space back. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/vm/vmrun.h"
#include "tests/helpers/testutil.h"

static struct vmhost host;
static char path[PATH_MAX + 64];

static void setup(void)
{
	memset(&host, 0, sizeof(host));
	char *dir = t_tmpdir();
	snprintf(host.dir, sizeof(host.dir), "%s", dir);
	free(dir);
	vmhost_console_path(&host, "g", path, sizeof(path));
}

static void teardown(void)
{
	char old[PATH_MAX + 80];
	snprintf(old, sizeof(old), "%s.0", path);
	unlink(path);
	unlink(old);
	rmdir(host.dir);
}

static void append(const void *p, size_t n)
{
	FILE *f = fopen(path, "a");
	cr_assert(f);
	cr_assert_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

/* What one call printed. */
static char *stream(struct vmrun_con *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	vmrun_console(&host, "g", c, out);
	fclose(out);
	return buf;
}

Test(vm_console, control_bytes_never_reach_the_terminal, .init = setup,
     .fini = teardown)
{
	struct vmrun_con c = { .rc = -1 };
	static const char evil[] = "hi \x1b]0;owned\x07 \x1b[2J\x7f\x01 there\r\n"
				   "PARLEY-GUEST done rc=3\n";
	append(evil, sizeof(evil) - 1);
	char *o = stream(&c);
	cr_assert_str_eq(o, "g| hi ?]0;owned? ?[2J?? there\n"
			    "g| PARLEY-GUEST done rc=3\n");
	cr_assert_eq(c.rc, 3);
	free(o);
}

Test(vm_console, a_flood_is_skipped_and_its_disk_given_back, .init = setup,
     .fini = teardown, .timeout = 60)
{
	struct vmrun_con c = { .rc = -1 };
	static char chunk[1 << 20];
	memset(chunk, 'x', sizeof(chunk));
	for (size_t i = 0; i < sizeof(chunk); i += 100)
		chunk[i] = '\n';
	for (int i = 0; i < 40; i++) /* 40 MiB, more than the backlog */
		append(chunk, sizeof(chunk));
	char *o = stream(&c);
	cr_assert(strstr(o, "bytes dropped"), "%.200s", o);
	free(o);
	/* each call reads a bounded amount */
	cr_assert_leq(c.off, 40L * (1 << 20) - VMRUN_CON_BACKLOG / 2 +
				 VMRUN_CON_READ);
	long before = c.off;
	free(stream(&c));
	cr_assert_leq(c.off - before, VMRUN_CON_READ);
	/* what was read no longer takes disk: far less than the file */
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 40L << 20);
	cr_assert_lt((long)st.st_blocks * 512, 20L << 20,
		     "%ld bytes on disk", (long)st.st_blocks * 512);
}

/* Under a system libvirtd virtlogd writes the console and rotates it
 * (NAME.console renamed NAME.console.0, a new one begun): the rest of
 * the old file is read there — a line split across the two comes out
 * whole — then the new one from its start; the result line is not lost. */
Test(vm_console, rotated_by_virtlogd_read_on_in_the_new_file, .init = setup,
     .fini = teardown)
{
	struct vmrun_con c = { .rc = -1 };
	append("one\ntw", 6);
	char *o = stream(&c);
	cr_assert_str_eq(o, "g| one\n");
	free(o);
	append("o\nthree\n", 8);
	char old[PATH_MAX + 80];
	snprintf(old, sizeof(old), "%s.0", path);
	cr_assert_eq(rename(path, old), 0);
	append("four\nPARLEY-GUEST done rc=0\n", 28);
	o = stream(&c);
	cr_assert_str_eq(o, "g| two\ng| three\ng| four\n"
			    "g| PARLEY-GUEST done rc=0\n");
	cr_assert_eq(c.rc, 0);
	free(o);
	/* nothing twice */
	o = stream(&c);
	cr_assert(!o || !*o, "%s", o);
	free(o);
	/* a .0 that is not the file we read (replaced, not renamed) is not
	 * read as its rest; the new file may get the freed inode number of
	 * ours: shorter than what was read of ours, it is read as new */
	cr_assert_eq(unlink(old), 0);
	cr_assert_eq(rename(path, old), 0);
	FILE *f = fopen(old, "a");
	cr_assert(f);
	fputs("nope\n", f);
	fclose(f);
	cr_assert_eq(unlink(old), 0);
	f = fopen(old, "w");
	cr_assert(f);
	fputs("stale\n", f);
	fclose(f);
	append("five\n", 5);
	o = stream(&c);
	cr_assert_str_eq(o, "g| five\n");
	free(o);
	unlink(old);
}
