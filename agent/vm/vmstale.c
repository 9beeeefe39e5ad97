/* An adopted VM's channel devices from an earlier agent (vmmgr_int.h):
 * found through QEMU's query-pci, unplugged at the guest's HELLO, their
 * backends and descriptors removed once QEMU let go — or the VM stopped
 * past the deadline. */
#include "agent/vm/vmmgr_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "agent/ctl/stop.h"
#include "common/log.h"

/* A section device of another agent (pld<mark>h<handle>s<sec>,
 * vmplug_qid): its mark, handle and section, or false. */
bool vmstale_id(const struct vm_part *v, const char *id, struct vm_stale *st)
{
	int pid, used = 0;
	unsigned h, sec;
	if (!id || sscanf(id, "pld%dh%us%u%n", &pid, &h, &sec, &used) != 3 ||
	    id[used] || pid <= 0 || pid == v->m->nonce ||
	    sec >= PARLEY_VMCTL_DEVS_MAX || h > 0x7fffffffu)
		return false;
	/* Only the one form vmplug_qid prints (sscanf skips blanks and
	 * takes signs and leading zeros): the ids rebuilt from these
	 * numbers (stale_qid) must name the same objects. */
	char back[48];
	snprintf(back, sizeof(back), "pld%dh%us%u", pid, h, sec);
	if (strcmp(back, id))
		return false;
	st->pid = pid;
	st->handle = h;
	st->sec = sec;
	return true;
}

static void stale_fdsets_go(struct vm_part *v);

static bool has_device(const struct vm_part *v, const struct vm_stale *st)
{
	for (unsigned k = 0; k < v->nstale; k++)
		if (v->stale[k].pid == st->pid &&
		    v->stale[k].handle == st->handle && v->stale[k].sec == st->sec)
			return true;
	return false;
}

/* An earlier agent's backend ('m', object-del), chardev ('c',
 * chardev-remove) whose device is gone, or wake port ('w', its chardev:
 * the port and the chardev go, whatever the guest holds — its channel
 * died with that agent): that agent died between the
 * guest's eject and its own delete, and nothing uses it now — left, QEMU
 * would keep that channel's memory for the VM's life. One monitor command;
 * false once the sweep's budget is spent. */
static bool orphan_go(struct vm_part *v, const char *id, char kind,
		      const char *command, unsigned *budget)
{
	struct vm_stale st;
	char d[48], cmd[160];
	if (!id || id[0] != 'p' || id[1] != 'l' || id[2] != kind ||
	    strlen(id) >= sizeof(d))
		return true;
	snprintf(d, sizeof(d), "pld%s", id + 3);
	/* the one canonical form (vmstale_id): the id is digits and
	 * letters only, safe in the command's JSON */
	if (!vmstale_id(v, d, &st) || has_device(v, &st))
		return true;
	if (!*budget)
		return false;
	--*budget;
	struct parley_err err = { 0 };
	if (kind == 'w') {
		/* a wake port's chardev (vmbell.c): its port first (no eject
		 * to wait for, but QEMU lets go of the chardev a moment
		 * later: the first try may find it busy, so a failure here is
		 * quiet — vmstale_gone sweeps again once the old devices
		 * went). Gone already: nothing to delete. */
		d[2] = 'p'; /* pld… -> plp…, the port of the same channel end */
		vm_json_id(cmd, sizeof(cmd), "device_del", d);
		vm_mon_one(v, cmd, &err);
	}
	vm_json_id(cmd, sizeof(cmd), command, id);
	struct parley_err e2 = { 0 };
	if (vm_mon_one(v, cmd, &e2) == 0)
		return true;
	if (kind == 'w')
		v->stale_wake_left = true; /* busy a moment: again later */
	else
		log_warn("%s", e2.msg);
	return true;
}

/* QEMU's list (a qom-list of /objects, or query-chardev), each entry's
 * `key` an id to try: hostile, parsed by jansson, strings only. */
static void orphans_in(struct vm_part *v, const char *query, const char *key,
		       const char *kinds, const char *command, unsigned *budget)
{
	char *reply = NULL;
	struct parley_err err = { 0 };
	if (vm_mon_long(v, query, &reply, &err)) {
		log_warn("%s", err.msg);
		return;
	}
	json_t *j = json_loadb(reply, strnlen(reply, QMP_LONG_MAX), 0, NULL);
	free(reply);
	json_t *e;
	size_t i;
	bool more = true;
	json_array_foreach(json_object_get(j, "return"), i, e)
		for (const char *k = kinds; more && *k; k++)
			more = orphan_go(v, json_string_value(
					 json_object_get(e, key)), *k, command,
					 budget);
	json_decref(j);
}

/* After query-pci: the earlier agents' backends and chardevs without a
 * device go now (at most VMSTALE_ORPHANS_MAX monitor commands: a QEMU
 * listing thousands cannot hold the agent's loop), and, with no stale
 * device left to wait for, the descriptors they were given. */
#define VMSTALE_ORPHANS_MAX 64
static void orphans_go(struct vm_part *v)
{
	unsigned budget = VMSTALE_ORPHANS_MAX;
	orphans_in(v, "{\"execute\":\"qom-list\",\"arguments\":{\"path\":"
		   "\"/objects\"}}", "name", "m", "object-del", &budget);
	orphans_in(v, "{\"execute\":\"query-chardev\"}", "label", "cw",
		   "chardev-remove", &budget);
	if (!v->nstale && v->mon >= 0)
		stale_fdsets_go(v);
}

/* An earlier agent's wake chardevs QEMU still held at the last sweep
 * (stale_wake_left): swept again. */
void vmstale_wake_sweep(struct vm_part *v)
{
	unsigned budget = VMSTALE_ORPHANS_MAX;
	v->stale_wake_left = false;
	/* A QEMU that says busy for ever is asked no more (the chardev is
	 * its own: it reads a doorbell no one rings any more) */
	if (v->stale_wake_sweeps >= VMSTALE_WAKE_SWEEPS) {
		log_warn("VM %s: an earlier agent's wake chardev still busy "
			 "after %u sweeps: left in QEMU", v->spec.name,
			 VMSTALE_WAKE_SWEEPS);
		return;
	}
	v->stale_wake_sweeps++;
	orphans_in(v, "{\"execute\":\"query-chardev\"}", "label", "w",
		   "chardev-remove", &budget);
}

/* QEMU's query-pci (QEMU is not trusted: parsed by jansson, each field
 * checked): the section devices of an earlier agent on the slots we use;
 * their channels died with it. Then what such agents left without a
 * device (orphans_go). */
void vmstale_find(struct vm_part *v)
{
	char *reply = NULL;
	struct parley_err err = { 0 };
	if (vm_mon_long(v, "{\"execute\":\"query-pci\"}", &reply, &err)) {
		log_warn("%s", err.msg);
		return;
	}
	json_t *j = json_loadb(reply, strnlen(reply, QMP_LONG_MAX), 0, NULL);
	free(reply);
	json_t *buses = json_object_get(j, "return"), *bus, *d;
	size_t bi, di;
	uint32_t maxh = 0;
	json_array_foreach(buses, bi, bus) {
		json_t *n = json_object_get(bus, "bus");
		if (!json_is_integer(n) || json_integer_value(n) != 0)
			continue;
		json_array_foreach(json_object_get(bus, "devices"), di, d) {
			json_t *sl = json_object_get(d, "slot");
			json_int_t slot = json_is_integer(sl)
				? json_integer_value(sl) : -1;
			struct vm_stale st = { 0 };
			if (slot < VMMGR_SLOT0 || slot >= VMMGR_SLOT0 + 16 ||
			    v->nstale >= 16 ||
			    !vmstale_id(v, json_string_value(
					json_object_get(d, "qdev_id")), &st))
				continue;
			st.slot = (uint8_t)slot;
			v->stale[v->nstale++] = st;
			v->slots_used |= 1u << (slot - VMMGR_SLOT0);
			if (st.handle > maxh)
				maxh = st.handle;
		}
	}
	json_decref(j);
	/* New handles above the old ones: a guest that still names an old
	 * handle gets BAD_HANDLE, never another channel. */
	if (maxh >= v->next_handle)
		v->next_handle = maxh;
	orphans_go(v);
}

static void stale_qid(char *out, size_t cap, char kind,
		      const struct vm_stale *st)
{
	snprintf(out, cap, "pl%c%dh%us%u", kind, st->pid, st->handle,
		 st->sec);
}

/* The guest said HELLO: whoever holds its port now has let go of the
 * old channels (libparley unmaps before it re-opens), so their devices
 * go. */
void vmstale_unplug(struct vm_part *v)
{
	if (v->nstale && !v->stale_hello_ns)
		v->stale_hello_ns = vm_now_ns();
	for (unsigned i = 0; i < v->nstale; i++) {
		struct vm_stale *st = &v->stale[i];
		char id[48], cmd[128];
		struct parley_err err = { 0 };
		if (st->unplugging)
			continue;
		st->unplugging = true;
		stale_qid(id, sizeof(id), 'd', st);
		vm_json_id(cmd, sizeof(cmd), "device_del", id);
		if (vm_mon_one(v, cmd, &err))
			log_warn("%s", err.msg);
	}
}

/* The descriptors an earlier agent gave QEMU for read-only backends
 * (add-fd's opaque names them: plf<pid>h...), once every stale device
 * and backend is gone: removed, so QEMU holds none of that memory. */
static void stale_fdsets_go(struct vm_part *v)
{
	char *reply = NULL;
	struct parley_err err = { 0 };
	if (vm_mon_long(v, "{\"execute\":\"query-fdsets\"}", &reply, &err)) {
		log_warn("%s", err.msg);
		return;
	}
	json_t *j = json_loadb(reply, strnlen(reply, QMP_LONG_MAX), 0, NULL);
	free(reply);
	json_t *set, *fd;
	size_t si, fi;
	json_array_foreach(json_object_get(j, "return"), si, set) {
		json_t *id = json_object_get(set, "fdset-id");
		bool stale = false;
		json_array_foreach(json_object_get(set, "fds"), fi, fd) {
			const char *o = json_string_value(
				json_object_get(fd, "opaque"));
			struct vm_stale st;
			char d[48];
			if (o && o[0] == 'p' && o[1] == 'l' && o[2] == 'f') {
				snprintf(d, sizeof(d), "pld%s", o + 3);
				stale = stale || vmstale_id(v, d, &st);
			}
		}
		if (!stale || !json_is_integer(id) ||
		    json_integer_value(id) < 0 ||
		    json_integer_value(id) >= QMP_INT_MAX)
			continue;
		char cmd[96];
		vm_json_remove_fd(cmd, sizeof(cmd),
				  (int)json_integer_value(id));
		if (vm_mon_one(v, cmd, &err))
			log_warn("%s", err.msg);
	}
	json_decref(j);
}

/* Their backends, once QEMU let go of the devices: true if any went. A
 * section the VM wrote had a chardev (plc...), one it read a memory
 * object (plm...); deleting either fails while its device is there. */
bool vmstale_gone(struct vmmgr *m, struct vm_part *v)
{
	unsigned before = v->nstale;
	/* Asking QEMU costs a monitor round trip: not on every serve. */
	uint64_t now = vm_now_ns();
	if (now - v->stale_try_ns < 50000000ull)
		return false;
	v->stale_try_ns = now;
	/* This agent holds none of that memory, so it can neither punch
	 * nor truncate it: devices the guest has not let go of by a
	 * deadline stop the VM, as a late revocation would — a
	 * revocation's (chanmgr's ext_unmap_ms) from the guest's HELLO,
	 * when they were unplugged, and VMMGR_STALE_MS from the adoption
	 * for a guest that never says HELLO (after a hand-over a guest
	 * takes seconds to find its new agent). */
	uint64_t ext = v->m->cm->ext_unmap_ms > 0
		? (uint64_t)v->m->cm->ext_unmap_ms : 5000;
	bool late_eject = v->stale_hello_ns &&
			  now - v->stale_hello_ns > ext * 1000000ull;
	bool no_hello = v->adopted_ns &&
			now - v->adopted_ns > VMMGR_STALE_MS * 1000000ull;
	if (late_eject || no_hello) {
		char d[160];
		/* (a guest whose port broke — e.g. a guest tool of another
		 * protocol version, vm_ctl_violation — never says HELLO) */
		snprintf(d, sizeof(d), "kept %u channel device(s) of the "
			 "previous agent %s", v->nstale, late_eject
			 ? "past the unplug deadline after its HELLO"
			 : v->ctl < 0 ? "and its control port broke (see "
				        "vm_ctl_violation)"
				      : "without a HELLO since its adoption");
		vm_fault(v, VMX_STOP_REVOKED_ACCESS, d);
		return false;
	}
	for (unsigned i = 0; i < v->nstale;) {
		struct vm_stale *st = &v->stale[i];
		char mid[48], cid[48], cmd[128];
		struct parley_err err = { 0 };
		stale_qid(mid, sizeof(mid), 'm', st);
		stale_qid(cid, sizeof(cid), 'c', st);
		bool gone = false;
		if (st->unplugging) {
			vm_json_id(cmd, sizeof(cmd), "object-del", mid);
			gone = vm_mon_one(v, cmd, &err) == 0;
			vm_json_id(cmd, sizeof(cmd), "chardev-remove", cid);
			gone = (vm_mon_one(v, cmd, &err) == 0) || gone;
		}
		if (!gone) {
			i++;
			continue;
		}
		v->slots_used &= ~(1u << (st->slot - VMMGR_SLOT0));
		*st = v->stale[--v->nstale];
	}
	if (before && !v->nstale) {
		if (v->stale_wake_left)
			vmstale_wake_sweep(v);
		stale_fdsets_go(v);
		vm_emit(m, "vm_unplugged", v->spec.name, NULL, "ADOPTED", NULL,
		     "the devices of the previous agent's channels");
	}
	return v->nstale != before;
}
