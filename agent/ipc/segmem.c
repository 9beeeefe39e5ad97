/* Segment-set memory (agent/ipc/segmem.h). */
#include "agent/ipc/segmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int reopen_ro(int fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	return ro < 0 ? -errno : ro;
}

/* One segment's memfd, sized, sealed against growth and further seals
 * (never against shrinking: revocation cuts it), mode 0400 so no other
 * uid re-opens it writable through /proc; and its read-only re-open. */
static int seg_make(struct segmem *sm, uint32_t i)
{
	char nm[96];
	snprintf(nm, sizeof(nm), "parley-seg:%s:%u", sm->name, i);
	int fd = memfd_create(nm, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	int ro = -1;
	if (ftruncate(fd, (off_t)sm->seg[i].size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
	    fchmod(fd, 0400) < 0 || (ro = reopen_ro(fd)) < 0) {
		int rc = ro < -1 ? ro : -errno;
		close(fd);
		return rc;
	}
	if (sm->mem[i] >= 0)
		close(sm->mem[i]);
	if (sm->mem_ro[i] >= 0)
		close(sm->mem_ro[i]);
	sm->mem[i] = fd;
	sm->mem_ro[i] = ro;
	return 0;
}

int segmem_create(struct segmem *sm, const uint8_t *table, size_t len,
		  struct parley_err *err)
{
	memset(sm, 0, sizeof(*sm));
	for (unsigned i = 0; i < PARLEY_SEGSET_SEGS_MAX; i++)
		sm->mem[i] = sm->mem_ro[i] = -1;
	const struct parley_segset_hdr *h = (const void *)table;
	if (len < sizeof(*h) || h->table_size != len ||
	    h->nsegs > PARLEY_SEGSET_SEGS_MAX)
		return perr(err, -EINVAL, "segment set: not a compiled table");
	snprintf(sm->name, sizeof(sm->name), "%s", h->name);
	sm->nsegs = h->nsegs;
	sm->nmembers = h->nmembers;
	/* Segment 0 first, from the table itself, then mapped for us. */
	int fd = memfd_create("parley-seg-table", MFD_CLOEXEC |
						   MFD_ALLOW_SEALING);
	if (fd < 0)
		return perr(err, -errno, "segment set %s: memfd", sm->name);
	void *p = MAP_FAILED;
	if (ftruncate(fd, (off_t)len) == 0)
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;
		close(fd);
		return perr(err, rc, "segment set %s: table", sm->name);
	}
	memcpy(p, table, len);
	sm->mem[0] = fd;
	sm->hdr = p;
	sm->member = (void *)((uint8_t *)p + h->member_off);
	sm->seg = (void *)((uint8_t *)p + h->seg_off);
	int rc = fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK |
					    F_SEAL_SEAL) < 0 ? -errno : 0;
	if (rc == 0)
		rc = sm->mem_ro[0] = reopen_ro(fd);
	for (uint32_t i = 1; rc >= 0 && i < sm->nsegs; i++)
		rc = seg_make(sm, i);
	if (rc < 0) {
		segmem_close(sm);
		return perr(err, rc, "segment set %s: memory", sm->name);
	}
	return 0;
}

void segmem_close(struct segmem *sm)
{
	if (sm->hdr)
		munmap(sm->hdr, sm->hdr->table_size);
	sm->hdr = NULL;
	for (unsigned i = 0; i < PARLEY_SEGSET_SEGS_MAX; i++) {
		if (sm->mem[i] >= 0)
			close(sm->mem[i]);
		if (sm->mem_ro[i] >= 0)
			close(sm->mem_ro[i]);
		sm->mem[i] = sm->mem_ro[i] = -1;
	}
}

int segmem_view(const struct segmem *sm, uint32_t member,
		struct segmem_view *v)
{
	if (member >= sm->nmembers)
		return -EINVAL;
	v->n = 0;
	v->window_size = sm->hdr->window_size;
	for (uint32_t i = 0; i < sm->nsegs; i++) {
		const struct parley_segset_seg *g = &sm->seg[i];
		bool w = g->writer == member;
		bool r = (g->readers >> member) & 1;
		if ((!w && !r) || g->state != PARLEY_SEG_LIVE)
			continue;
		v->s[v->n].seg = i;
		v->s[v->n].off = g->offset;
		v->s[v->n].len = g->size;
		v->s[v->n].fd = w ? sm->mem[i] : sm->mem_ro[i];
		v->s[v->n].readonly = !w;
		v->n++;
	}
	return 0;
}

/* Table changes: odd epoch while writing, so readers retry. */
static void begin(struct segmem *sm)
{
	__atomic_store_n(&sm->hdr->epoch, sm->hdr->epoch + 1,
			 __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void end(struct segmem *sm)
{
	__atomic_store_n(&sm->hdr->epoch, sm->hdr->epoch + 1,
			 __ATOMIC_RELEASE);
}

int segmem_join(struct segmem *sm, uint32_t member)
{
	if (member >= sm->nmembers)
		return -EINVAL;
	/* A member back after removal writes into fresh memory: the old
	 * memfds were cut and stay cut for whoever kept a mapping. */
	if (sm->member[member].state == PARLEY_MEMBER_REMOVED)
		for (uint32_t i = 1; i < sm->nsegs; i++)
			if (sm->seg[i].writer == member) {
				int rc = seg_make(sm, i);
				if (rc < 0)
					return rc;
			}
	begin(sm);
	for (uint32_t i = 1; i < sm->nsegs; i++)
		if (sm->seg[i].writer == member)
			sm->seg[i].state = PARLEY_SEG_LIVE;
	sm->member[member].state = PARLEY_MEMBER_PRESENT;
	sm->member[member].joins++;
	end(sm);
	return 0;
}

uint64_t segmem_remove(struct segmem *sm, uint32_t member)
{
	if (member >= sm->nmembers)
		return 0;
	begin(sm);
	sm->member[member].state = PARLEY_MEMBER_REMOVED;
	for (uint32_t i = 1; i < sm->nsegs; i++)
		if (sm->seg[i].writer == member)
			sm->seg[i].state = PARLEY_SEG_REVOKED;
	end(sm);
	uint64_t notify = 0;
	for (uint32_t m = 0; m < sm->nmembers; m++)
		if (m != member && sm->member[m].state == PARLEY_MEMBER_PRESENT)
			notify |= 1ull << m;
	return notify;
}

void segmem_cut(struct segmem *sm, uint32_t member)
{
	if (member >= sm->nmembers ||
	    sm->member[member].state != PARLEY_MEMBER_REMOVED)
		return;
	for (uint32_t i = 1; i < sm->nsegs; i++)
		if (sm->seg[i].writer == member && ftruncate(sm->mem[i], 0) < 0)
			abort(); /* our own memfd, never sealed for shrink */
}
