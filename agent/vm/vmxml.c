/* libvirt's XML, read with libxml2 (vmxml.h). */
#include "agent/vm/vmxml.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "agent/vm/vmhost.h"

/* Parse text: the document or NULL. No entity substitution (NOENT not
 * given), no external DTD or network, no error printing (a hostile
 * document is refused, not logged line by line); libxml2's own limits on
 * depth and sizes stay on (no XML_PARSE_HUGE). */
static xmlDocPtr doc_read(const char *text)
{
	size_t n = strnlen(text, VMXML_MAX + 1);
	if (n > VMXML_MAX)
		return NULL;
	xmlDocPtr doc = xmlReadMemory(text, (int)n, NULL, NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR |
				      XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	/* libvirt writes no DOCTYPE. One here could declare entities whose
	 * references, kept unexpanded by the parser, would be expanded by
	 * reading an element's text (a billion laughs): refused whole. */
	if (doc && (doc->intSubset || doc->extSubset)) {
		xmlFreeDoc(doc);
		doc = NULL;
	}
	return doc;
}

static bool named(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name,
						      name);
}

/* Attribute attr of n (no namespace) into out: 0, -ENOENT, or -EPROTO
 * when it does not fit. */
static int attr_copy(xmlNode *n, const char *attr, char *out, size_t cap)
{
	xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)attr);
	if (!v)
		return -ENOENT;
	size_t l = strlen((const char *)v);
	int rc = l < cap ? 0 : -EPROTO;
	if (!rc)
		memcpy(out, v, l + 1);
	xmlFree(v);
	return rc;
}

int vmxml_md_attrs(const char *md, char *name, size_t ncap, char *agent,
		   size_t acap)
{
	name[0] = agent[0] = 0;
	if (strnlen(md, VMXML_MAX + 1) > VMXML_MAX)
		return -EFBIG;
	xmlDocPtr doc = doc_read(md);
	xmlNode *r = doc ? xmlDocGetRootElement(doc) : NULL;
	int rc = -EPROTO;
	/* libvirt hands the element back without its namespace (the
	 * namespace is what it was asked for); with one, it must be ours */
	if (r && named(r, "vm") && (!r->ns || (r->ns->href &&
	    !strcmp((const char *)r->ns->href, VMHOST_NS))) &&
	    attr_copy(r, "name", name, ncap) == 0 && name[0]) {
		int a = attr_copy(r, "agent", agent, acap);
		rc = a == 0 || a == -ENOENT ? 0 : -EPROTO;
	}
	if (rc)
		name[0] = agent[0] = 0;
	xmlFreeDoc(doc);
	return rc;
}

/* The <secmodel> elements of <capabilities><host>, one by one: first
 * NULL, then the previous. */
static xmlNode *next_secmodel(xmlDocPtr doc, xmlNode *prev)
{
	xmlNode *n = prev ? prev->next : NULL;
	if (!prev) {
		xmlNode *r = doc ? xmlDocGetRootElement(doc) : NULL;
		if (!r || !named(r, "capabilities"))
			return NULL;
		for (n = r->children; n && !named(n, "host"); n = n->next)
			;
		n = n ? n->children : NULL;
	}
	while (n && !named(n, "secmodel"))
		n = n->next;
	return n;
}

/* The text of sm's first child element `name` (malloc'd by libxml2), or
 * NULL. */
static xmlChar *child_text(xmlNode *sm, const char *name)
{
	for (xmlNode *c = sm->children; c; c = c->next)
		if (named(c, name))
			return xmlNodeGetContent(c);
	return NULL;
}

unsigned vmxml_sec_models(const char *caps)
{
	unsigned m = 0;
	xmlDocPtr doc = doc_read(caps);
	for (xmlNode *sm = NULL; (sm = next_secmodel(doc, sm));) {
		xmlChar *model = child_text(sm, "model");
		if (model && !strcmp((const char *)model, "selinux"))
			m |= VMHOST_SEC_SELINUX;
		else if (model && !strcmp((const char *)model, "apparmor"))
			m |= VMHOST_SEC_APPARMOR;
		xmlFree(model);
	}
	xmlFreeDoc(doc);
	return m;
}

/* "+UID:+GID", whole: both numbers decimal and below 2^32. */
static bool label_ids(const char *s, unsigned *uid, unsigned *gid)
{
	unsigned long long u, g;
	int end = -1;
	if (sscanf(s, "+%10llu:+%10llu%n", &u, &g, &end) != 2 || end < 0 ||
	    s[end] || s[1] < '0' || s[1] > '9' || u > 0xffffffffull ||
	    g > 0xffffffffull)
		return false;
	const char *c = strchr(s, ':');
	if (!c || c[2] < '0' || c[2] > '9')
		return false;
	*uid = (unsigned)u;
	*gid = (unsigned)g;
	return true;
}

bool vmxml_kvm_label(const char *caps, unsigned *uid, unsigned *gid)
{
	bool found = false;
	xmlDocPtr doc = doc_read(caps);
	for (xmlNode *sm = NULL; !found && (sm = next_secmodel(doc, sm));) {
		xmlChar *model = child_text(sm, "model");
		bool dac = model && !strcmp((const char *)model, "dac");
		xmlFree(model);
		for (xmlNode *c = dac ? sm->children : NULL; c && !found;
		     c = c->next) {
			if (!named(c, "baselabel"))
				continue;
			xmlChar *type = xmlGetNoNsProp(c, (const xmlChar *)"type");
			xmlChar *v = type && !strcmp((const char *)type, "kvm")
				? xmlNodeGetContent(c) : NULL;
			found = v && label_ids((const char *)v, uid, gid);
			xmlFree(v);
			xmlFree(type);
		}
	}
	xmlFreeDoc(doc);
	return found;
}
