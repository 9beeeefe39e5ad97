/* A system libvirtd's qemu.conf as the agent reads it (agent/vm/vmsys.c,
 * vmhost_conf_int): the daemon's file, hostile bytes as far as the agent
 * is concerned. Only a setting written as libvirt writes it counts, the
 * last one wins, and nothing else of the file can pass for it. */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/vm/vmhost.h"

#define KEY "seccomp_sandbox"

Test(vm_conf, settings_as_libvirt_writes_them)
{
	cr_assert_eq(vmhost_conf_int("", KEY, 1), 1);
	cr_assert_eq(vmhost_conf_int(KEY " = 0\n", KEY, 1), 0);
	cr_assert_eq(vmhost_conf_int("  " KEY "\t=\t0  # off\n", KEY, 1), 0);
	cr_assert_eq(vmhost_conf_int(KEY "=0", KEY, 1), 0);   /* no newline */
	cr_assert_eq(vmhost_conf_int(KEY " = 0\r\n", KEY, 1), 0);
	cr_assert_eq(vmhost_conf_int(KEY " = 0\n" KEY " = 1\n", KEY, 5), 1);
	cr_assert_eq(vmhost_conf_int(KEY " = -1\n", KEY, 1), -1);
}

Test(vm_conf, nothing_else_passes_for_a_setting)
{
	static const char *not_it[] = {
		"# " KEY " = 0\n",               /* a comment */
		KEY "_x = 0\n",                  /* a longer key */
		"x" KEY " = 0\n",                /* a key that ends with it */
		KEY " 0\n",                      /* no = */
		KEY " = \n",                     /* no number */
		KEY " = 0x0\n",                  /* not decimal */
		KEY " = 0abc\n",                 /* junk after it */
		KEY " = \"0\"\n",                /* a string */
		"x = 1 " KEY " = 0\n",           /* not at the line's start */
	};
	for (size_t i = 0; i < sizeof(not_it) / sizeof(not_it[0]); i++)
		cr_assert_eq(vmhost_conf_int(not_it[i], KEY, 7), 7, "%s",
			     not_it[i]);
	/* a NUL ends the text: what follows it is not read */
	static const char nul[] = KEY " = 1\n\0" KEY " = 0\n";
	cr_assert_eq(vmhost_conf_int(nul, KEY, 7), 1);
	/* a huge number does not wrap to something else silently: strtol
	 * saturates, and a saturated value is not 0 */
	cr_assert_neq(vmhost_conf_int(KEY " = 99999999999999999999999\n",
				      KEY, 7), 0);
	/* a long file of junk lines and one real setting at its end */
	static char big[1 << 16];
	memset(big, 'x', sizeof(big) - 64);
	for (size_t i = 80; i < sizeof(big) - 64; i += 81)
		big[i] = '\n';
	strcpy(big + sizeof(big) - 64, "\n" KEY " = 0\n");
	cr_assert_eq(vmhost_conf_int(big, KEY, 7), 0);
}
