/*
 * What the agent reads of libvirt's XML, through libxml2: the metadata
 * element of a domain (under a shared system libvirtd, any client allowed
 * to define domains writes it) and the host's capabilities (the daemon's).
 * No entities substituted, no DTD, no network; a document over
 * VMXML_MAX bytes is refused unread. A value is taken only from where
 * libvirt puts it — an attribute of the root element, a child of
 * <host>'s <secmodel> — never from text that merely contains its name.
 */
#ifndef PARLEY_AGENT_VM_VMXML_H
#define PARLEY_AGENT_VM_VMXML_H

#include <stdbool.h>
#include <stddef.h>

#define VMXML_MAX (1u << 20)

/* The metadata element md (VMHOST_NS's <vm name='…' agent='…'/>, as
 * virDomainGetMetadata returns it: without a namespace, or with ours): its
 * name into name (cap bytes with the NUL) and its agent attribute into
 * agent ("" when it has none). 0; -EPROTO when md is not that element,
 * has no name (or an empty one), or a value does not fit; -EFBIG past VMXML_MAX. */
int vmxml_md_attrs(const char *md, char *name, size_t ncap, char *agent,
		   size_t acap);

/* The confining security models of the host's capabilities
 * (VMHOST_SEC_* bits of <host><secmodel><model>), 0 for none or for a
 * document that is not capabilities. */
unsigned vmxml_sec_models(const char *caps);

/* The DAC model's base label for KVM domains (<baselabel type='kvm'>
 * "+UID:+GID" under <secmodel><model>dac</model>): true and the ids, or
 * false when the document says none (or says it in another form). */
bool vmxml_kvm_label(const char *caps, unsigned *uid, unsigned *gid);

#endif
