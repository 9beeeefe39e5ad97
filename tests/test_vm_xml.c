/* libvirt's XML as the agent reads it (agent/vm/vmxml.c): a domain's
 * metadata element — under a shared system libvirtd, written by whoever
 * may define domains — and the daemon's capabilities. A value counts only
 * where libvirt puts it; text that merely contains it, another namespace,
 * a DOCTYPE, a value too long, or a document that is not XML: refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/vm/vmhost.h"
#include "tests/helpers/testutil.h"
#include "agent/vm/vmxml.h"

#define NS "xmlns:parley='" VMHOST_NS "'"

static int md(const char *text, char *name, char *agent)
{
	return vmxml_md_attrs(text, name, 48, agent, 64);
}

Test(vm_xml, metadata_as_libvirt_writes_it)
{
	char n[48], a[64];
	/* what virDomainGetMetadata returns (libvirt 9.0): the element
	 * without the namespace it was asked for */
	cr_assert_eq(md("<vm name=\"guest\" agent=\"/tmp/s/vm\"/>", n, a), 0);
	cr_assert_str_eq(n, "guest");
	cr_assert_str_eq(a, "/tmp/s/vm");
	cr_assert_eq(md("<parley:vm " NS " name='guest' agent='/s/vm'/>", n, a), 0);
	cr_assert_str_eq(n, "guest");
	cr_assert_str_eq(a, "/s/vm");
	/* libvirt re-quotes, and may put attributes in another order */
	cr_assert_eq(md("<parley:vm agent=\"/s/vm\" xmlns:parley=\"" VMHOST_NS
			"\" name=\"guest\"/>", n, a), 0);
	cr_assert_str_eq(n, "guest");
	cr_assert_str_eq(a, "/s/vm");
	/* an earlier agent's, without the attribute */
	cr_assert_eq(md("<parley:vm " NS " name='g'/>", n, a), 0);
	cr_assert_str_eq(a, "");
	/* another prefix for the same namespace is the same element */
	cr_assert_eq(md("<p:vm xmlns:p='" VMHOST_NS "' name='g'/>", n, a), 0);
	cr_assert_str_eq(n, "g");
	/* a character reference is what it stands for */
	cr_assert_eq(md("<parley:vm " NS " name='&#103;x'/>", n, a), 0);
	cr_assert_str_eq(n, "gx");
}

Test(vm_xml, metadata_only_where_libvirt_puts_it)
{
	char n[48], a[64];
	/* the names inside another attribute's value: not the attributes
	 * (a substring search took the first " agent=" it found) */
	cr_assert_eq(md("<parley:vm " NS " x=\" agent='/ours' name='evil'\" "
			"name='g' agent='/theirs'/>", n, a), 0);
	cr_assert_str_eq(n, "g");
	cr_assert_str_eq(a, "/theirs");
	cr_assert_eq(md("<parley:vm " NS " x=\" name='evil'\"/>", n, a),
		     -EPROTO, "no name of its own");
	cr_assert_str_eq(n, "");
	static const char *bad[] = {
		"<parley:vm xmlns:parley='https://evil.invalid/' name='g'/>",
		"<vmx name='g'/>",                          /* another element */
		"<x:vm xmlns:x='urn:x' name='g'/>",         /* another namespace */
		"<parley:vmx " NS " name='g'/>",            /* another element */
		"<x " NS "><parley:vm name='g'/></x>",      /* not the root */
		"<parley:vm " NS " name='g' name='h'/>",    /* twice: not XML */
		"<parley:vm " NS " name='g'>",              /* unclosed */
		"<parley:vm " NS " name='g'/><more/>",      /* two roots */
		"<parley:vm " NS " parley:name='g'/>",      /* namespaced attr */
		"<parley:vm " NS " name='&#0;'/>",          /* a NUL */
		"<parley:vm " NS " name='&amp'/>",          /* broken reference */
		"<parley:vm " NS " name=''/>",                /* empty */
		"name='g'",
		"",
		/* longer than the caller's room: refused, not cut */
		"<parley:vm " NS " name='0123456789012345678901234567890123456789"
		"01234567'/>",
		"<parley:vm " NS " name='g' agent='/0123456789012345678901234567"
		"890123456789012345678901234567890123456789'/>",
		/* a DOCTYPE: refused whole (entities, a billion laughs) */
		"<!DOCTYPE parley:vm [<!ENTITY a 'g'>]><parley:vm " NS " name='&a;'/>",
		"<!DOCTYPE parley:vm SYSTEM '/etc/passwd'><parley:vm " NS " name='g'/>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(md(bad[i], n, a), -EPROTO, "%s", bad[i]);
		cr_assert(!n[0] && !a[0], "%s: nothing left in the outputs",
			  bad[i]);
	}
}

/* A DOCTYPE naming a file: never opened. The file is a FIFO with no
 * writer — opening it for reading would block, and the test time out. */
Test(vm_xml, a_doctype_opens_nothing, .timeout = 20)
{
	char *dir = t_tmpdir(), fifo[PATH_MAX], doc[2 * PATH_MAX], n[48], a[64];
	snprintf(fifo, sizeof(fifo), "%s/dtd", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	snprintf(doc, sizeof(doc), "<!DOCTYPE vm SYSTEM '%s'><vm name='g'/>",
		 fifo);
	cr_assert_eq(md(doc, n, a), -EPROTO);
	snprintf(doc, sizeof(doc), "<!DOCTYPE vm [<!ENTITY x SYSTEM '%s'>]>"
		 "<vm name='&x;'/>", fifo);
	cr_assert_eq(md(doc, n, a), -EPROTO);
	snprintf(doc, sizeof(doc), "<!DOCTYPE capabilities [<!ENTITY x SYSTEM "
		 "'%s'>]><capabilities><host><secmodel><model>&x;</model>"
		 "</secmodel></host></capabilities>", fifo);
	cr_assert_eq(vmxml_sec_models(doc), 0);
	unlink(fifo);
	t_rmtree(dir);
	free(dir);
}

Test(vm_xml, a_billion_laughs_and_a_huge_document_are_refused)
{
	char n[48], a[64];
	static const char laughs[] =
		"<?xml version='1.0'?><!DOCTYPE v ["
		"<!ENTITY l0 'ha'>"
		"<!ENTITY l1 '&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;'>"
		"<!ENTITY l2 '&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;'>"
		"<!ENTITY l3 '&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;'>"
		"<!ENTITY l4 '&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;'>"
		"<!ENTITY l5 '&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;'>"
		"<!ENTITY l6 '&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;&l5;'>"
		"<!ENTITY l7 '&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;&l6;'>"
		"<!ENTITY l8 '&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;&l7;'>"
		"<!ENTITY l9 '&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;&l8;'>"
		"]><capabilities><host><secmodel><model>&l9;</model>"
		"<baselabel type='kvm'>&l9;</baselabel></secmodel></host>"
		"</capabilities>";
	cr_assert_eq(vmxml_sec_models(laughs), 0);
	unsigned u, g;
	cr_assert(!vmxml_kvm_label(laughs, &u, &g));
	size_t big = VMXML_MAX + 16;
	char *h = malloc(big + 1);
	cr_assert(h);
	memset(h, ' ', big);
	memcpy(h, "<parley:vm " NS " name='g'/>", strlen("<parley:vm " NS " name='g'/>"));
	h[big] = 0;
	strcpy(n, "x");
	strcpy(a, "y");
	cr_assert_eq(md(h, n, a), -EFBIG);
	cr_assert(!n[0] && !a[0], "nothing left in the outputs");
	free(h);
}

#define CAPS(secmodels) \
	"<capabilities><host><uuid>x</uuid><cpu><arch>x86_64</arch>" \
	"<model>EPYC</model></cpu>" secmodels "</host>" \
	"<guest><os_type>hvm</os_type></guest></capabilities>"
#define SM(model, rest) "<secmodel><model>" model "</model><doi>0</doi>" \
	rest "</secmodel>"
#define DAC(label) SM("dac", "<baselabel type='kvm'>" label "</baselabel>" \
		      "<baselabel type='qemu'>+64055:+994</baselabel>")

Test(vm_xml, security_models_of_the_host)
{
	cr_assert_eq(vmxml_sec_models(CAPS(SM("none", "") DAC("+1:+2"))), 0);
	cr_assert_eq(vmxml_sec_models(CAPS(SM("selinux", "") DAC("+1:+2"))),
		     VMHOST_SEC_SELINUX);
	cr_assert_eq(vmxml_sec_models(CAPS(SM("apparmor", "") DAC("+1:+2"))),
		     VMHOST_SEC_APPARMOR);
	cr_assert_eq(vmxml_sec_models(CAPS(SM("selinux", "") SM("apparmor", ""))),
		     VMHOST_SEC_SELINUX | VMHOST_SEC_APPARMOR);
	/* the same words elsewhere are not a security model */
	static const char *none[] = {
		CAPS("<cpu><model>selinux</model></cpu>"),
		CAPS("<!-- <secmodel><model>selinux</model></secmodel> -->"),
		"<capabilities><guest>" SM("apparmor", "") "</guest></capabilities>",
		"<capabilities>" SM("selinux", "") "</capabilities>",
		"<other><host>" SM("selinux", "") "</host></other>",
		CAPS(SM("selinuxx", "")),
		CAPS(SM(" selinux", "")),
		CAPS("<secmodel><doi>selinux</doi></secmodel>"),
		CAPS("<secmodel><model>selinux</model>"),   /* not XML */
		"",
		"<secmodel><model>selinux</model></secmodel>",
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		cr_assert_eq(vmxml_sec_models(none[i]), 0, "%s", none[i]);
}

Test(vm_xml, the_kvm_label_of_the_dac_model)
{
	unsigned u = 7, g = 7;
	cr_assert(vmxml_kvm_label(CAPS(SM("none", "") DAC("+64055:+994")), &u, &g));
	cr_assert_eq(u, 64055);
	cr_assert_eq(g, 994);
	cr_assert(vmxml_kvm_label(CAPS(DAC("+4294967295:+0")), &u, &g));
	cr_assert_eq(u, 4294967295u);
	static const char *none[] = {
		CAPS(SM("selinux", "<baselabel type='kvm'>+1:+2</baselabel>")),
		CAPS(SM("dac", "<baselabel type='qemu'>+1:+2</baselabel>")),
		CAPS(SM("dac", "<baselabel>+1:+2</baselabel>")),
		CAPS(DAC("+1:2")),
		CAPS(DAC("1:+2")),
		CAPS(DAC("+-1:+2")),
		CAPS(DAC("+1:+-2")),
		CAPS(DAC("++1:+2")),
		CAPS(DAC("+4294967296:+1")),
		CAPS(DAC("+99999999999999999999:+1")),
		CAPS(DAC("+1:+2x")),
		CAPS(DAC(" +1:+2")),
		CAPS(DAC("+1:+")),
		CAPS(DAC("")),
		"<capabilities><guest>" DAC("+1:+2") "</guest></capabilities>",
		"<baselabel type='kvm'>+1:+2</baselabel>",
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		u = g = 7;
		cr_assert(!vmxml_kvm_label(none[i], &u, &g), "%s", none[i]);
		cr_assert(u == 7 && g == 7, "%s: ids untouched", none[i]);
	}
}
