/*
 * Channel memory (agent/ipc/chanmem.h): one memfd per section with one
 * writer, read-only re-opens for the side that may only read, the window
 * segments and descriptors each side gets, and truncation.
 */
#include "agent/ipc/chanmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE PARLEY_PAGE_SIZE

void chanmem_layout(struct cm_chan *ch)
{
	struct parley_chan_hdr *h = &ch->hdr;
	memset(h, 0, sizeof(*h));
	h->magic = PARLEY_RING_MAGIC;
	h->version = PARLEY_RING_VERSION;
	h->ring_bytes = ch->g.ring_bytes;
	h->nqueues = ch->g.dir == GRANT_BOTH ? 2 : 1;
	snprintf(h->name, sizeof(h->name), "%s", ch->g.channel);
	ch->nsec = 1;
	ch->sec_size[0] = PAGE;
	ch->sec_writer[0] = CM_WRITER_AGENT;
	uint64_t off = PAGE;
	for (unsigned q = 0; q < h->nqueues; q++) {
		h->q[q].prod_off = off;
		h->q[q].cons_off = off + PAGE;
		h->q[q].data_off = off + 2 * PAGE;
		h->q[q].from = ch->g.dir == GRANT_B_TO_A || q == 1
				       ? PARLEY_RING_FROM_B
				       : PARLEY_RING_FROM_A;
		off += 2 * PAGE + ch->g.ring_bytes;
		/* the producer's section, then the consumer's. The
		 * producer's (its index page, then the data) is made a
		 * power of two: a Linux VM's end maps each section as a PCI
		 * BAR (ivshmem-plain), and BARs are powers of two. The rest
		 * is padding nobody maps (thin partitions' windows take
		 * PAGE + ring_bytes of it). */
		ch->sec_size[ch->nsec] = 2 * ch->g.ring_bytes;
		ch->sec_writer[ch->nsec++] = (int)h->q[q].from;
		ch->sec_size[ch->nsec] = PAGE;
		ch->sec_writer[ch->nsec++] = 1 - (int)h->q[q].from;
	}
	h->total_bytes = off;
	ch->size = off;
}

/* A read-only re-open of one of our memfds: a vmm handed it cannot map it
 * writable (mmap PROT_WRITE, mprotect: EACCES), truncate or punch it. */
static int reopen_ro(int fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	return ro < 0 ? -errno : ro;
}

/* One section: sized, sealed against growth and against further seals (a
 * vmm holding the writable fd could otherwise seal it against the
 * truncation that revokes it), mode 0400 so that no other uid re-opens it
 * writable through /proc. */
static int section_make(struct cm_chan *ch, unsigned i)
{
	char nm[96];
	snprintf(nm, sizeof(nm), "parley-chan:%s:%u", ch->g.channel, i);
	ch->mem[i] = memfd_create(nm, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ch->mem[i] < 0)
		return -errno;
	if (ftruncate(ch->mem[i], (off_t)ch->sec_size[i]) < 0 ||
	    (i == 0 && pwrite(ch->mem[i], &ch->hdr, sizeof(ch->hdr), 0) !=
			       (ssize_t)sizeof(ch->hdr)) ||
	    fcntl(ch->mem[i], F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
	    fchmod(ch->mem[i], 0400) < 0)
		return -errno;
	ch->mem_ro[i] = reopen_ro(ch->mem[i]);
	return ch->mem_ro[i] < 0 ? ch->mem_ro[i] : 0;
}

int chanmem_create(struct cm_chan *ch)
{
	for (unsigned i = 0; i < ch->nsec; i++) {
		int rc = section_make(ch, i);
		if (rc < 0)
			return rc;
	}
	for (int i = 0; i < 2; i++) {
		ch->bell[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ch->bell[i] < 0)
			return -errno;
	}
	return 0;
}

/* Revocation in the kernel: every section cut to nothing. A vmm that kept
 * a mapping faults on its next access (SIGBUS in the vmm, -EFAULT from
 * KVM_RUN for the partition), whatever it told us. */
void chanmem_truncate(struct cm_chan *ch)
{
	for (unsigned i = 0; i < ch->nsec; i++)
		if (ch->mem[i] >= 0 && ftruncate(ch->mem[i], 0) < 0)
			abort(); /* our own unsealed-for-shrink memfd: cannot */
}

/* The sections of the window and who may write them, for one side. Window
 * offsets are ring.h's; each segment names its section's memfd. */
void chanmem_segments(const struct cm_chan *ch, int side, struct ctl_map *m)
{
	const struct parley_chan_hdr *h = &ch->hdr;
	unsigned n = 0;
	m->nmem = ch->nsec;
	m->seg[n++] = (typeof(m->seg[0])){ 0, PAGE, 0, 0, 1 };
	m->tx = m->rx = PARLEY_CHAN_NO_QUEUE;
	for (unsigned q = 0; q < h->nqueues; q++) {
		bool prod = h->q[q].from == (uint32_t)side;
		uint32_t psec = 1 + 2 * q, csec = 2 + 2 * q;
		if (prod)
			m->tx = q;
		else
			m->rx = q;
		m->seg[n++] = (typeof(m->seg[0])){ h->q[q].prod_off, PAGE, 0,
						   psec, !prod };
		m->seg[n++] = (typeof(m->seg[0])){ h->q[q].cons_off, PAGE, 0,
						   csec, prod };
		m->seg[n++] = (typeof(m->seg[0])){ h->q[q].data_off,
						   ch->g.ring_bytes, PAGE,
						   psec, !prod };
	}
	m->nseg = n;
}

/* The descriptors one side gets: doorbells, then per section the writable
 * memfd if that side is its writer, else the read-only re-open. */
unsigned chanmem_fds(const struct cm_chan *ch, int side, int *fds)
{
	unsigned n = 0;
	fds[n++] = ch->bell[side];
	fds[n++] = ch->bell[1 - side];
	for (unsigned i = 0; i < ch->nsec; i++)
		fds[n++] = ch->sec_writer[i] == side ? ch->mem[i]
						     : ch->mem_ro[i];
	return n;
}

void chanmem_close(struct cm_chan *ch)
{
	for (unsigned i = 0; i < CM_SECTIONS_MAX; i++) {
		if (ch->mem[i] >= 0)
			close(ch->mem[i]);
		if (ch->mem_ro[i] >= 0)
			close(ch->mem_ro[i]);
		ch->mem[i] = ch->mem_ro[i] = -1;
	}
	for (int i = 0; i < 2; i++) {
		if (ch->bell[i] >= 0)
			close(ch->bell[i]);
		ch->bell[i] = -1;
	}
}

int chanmem_cut(const struct cm_chan *ch)
{
	for (unsigned i = 0; i < ch->nsec; i++) {
		struct stat st;
		if (ch->sec_writer[i] != CM_WRITER_AGENT &&
		    fstat(ch->mem[i], &st) == 0 &&
		    (uint64_t)st.st_size < ch->sec_size[i])
			return (int)i;
	}
	return -1;
}
