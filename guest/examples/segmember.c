/*
 * A member of a segment set (issue 14): attaches to the set, waits until
 * every member is there, then writes messages into the one segment it
 * writes (a pipe, or its segment of a queue) and reads every pipe and
 * queue it may read, checking each message (sequence, pattern, checksum).
 *
 * Command line (all optional):
 *   set=NAME      the set (default "bus")
 *   n=N           messages this member writes (default 100); readers
 *                 expect N from every writer they read
 *   all=0         start without waiting for every member
 *   delay_ms=N    sleep before attaching (a late joiner)
 *   show=1        print the table as seen at attach and exit
 *   bad_write=1   write into the table (read-only for members): stopped
 *   tamper=1      flip a byte of config file "conf" before attaching
 *   tamper_later=1  attach, wait for everyone, then tamper and attach
 *                 again (re-measured: refused, removed from the set)
 *   tamper_wait=1 attach, tamper, then sleep until removed from the set
 *                 (re-measured when another member attaches)
 *   watch=1       wait until some other member is removed, print it, exit
 *   detach=1      once everyone is there, detach and exit
 *   hostile=1     attach with an unterminated name, then with the argument
 *                 struct at an address it may not name (stopped)
 *
 * Output lines the tests read: "attach R", "member I epoch E",
 * "table NAME=STATE ...", "got M from W, B bad", "sent N",
 * "removed NAME", "reattach R".
 */
#include <parley/guest.h>

#define MSG_MAGIC 0x4d474553u /* "SEGM" */
#define BYE 0xffffffffu
#define PAT 48

struct msg {
	uint32_t magic, writer, seq, check;
	uint8_t pat[PAT];
};

static const struct parley_boot_info *boot;
static struct parley_segset set;
static struct parley_segtab tab;

static uint32_t checksum(const struct msg *m)
{
	uint32_t h = 2166136261u ^ m->writer ^ (m->seq * 16777619u);
	for (unsigned i = 0; i < PAT; i++)
		h = (h ^ m->pat[i]) * 16777619u;
	return h;
}

static void make(struct msg *m, uint32_t writer, uint32_t seq)
{
	m->magic = MSG_MAGIC;
	m->writer = writer;
	m->seq = seq;
	for (unsigned i = 0; i < PAT; i++)
		m->pat[i] = (uint8_t)(writer * 31 + seq * 7 + i);
	m->check = checksum(m);
}

static void table(void)
{
	if (parley_seg_table(&set, &tab) != PARLEY_SEG_OK) {
		parley_printf("table corrupt\n");
		parley_exit(9);
	}
}

static void show(void)
{
	static const char *const st[] = { "absent", "present", "removed" };
	char line[512];
	int at = parley_snprintf(line, sizeof(line), "table");
	for (uint32_t i = 0; i < tab.hdr.nmembers && at < 400; i++)
		at += parley_snprintf(line + at, sizeof(line) - (size_t)at,
				      " %s=%s/%llu", tab.member[i].name,
				      st[tab.member[i].state % 3],
				      (unsigned long long)tab.member[i].joins);
	parley_printf("%s\n", line);
}

/* Every member has come (it may have left again since). */
static int all_came(void)
{
	for (uint32_t i = 0; i < tab.hdr.nmembers; i++)
		if (tab.member[i].joins == 0)
			return 0;
	return 1;
}

static void tamper(void)
{
	const struct parley_config_file *f = parley_config_find(boot, "conf");
	if (!f) {
		parley_printf("no conf to tamper with\n");
		parley_exit(8);
	}
	volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)f->gpa;
	p[0] ^= 0xff;
	parley_printf("tampered conf\n");
}

/* Wait for another member's removal (table changes wake us). */
static int watch(void)
{
	uint64_t end = parley_clock_ns() + 20000000000ull;
	while (parley_clock_ns() < end) {
		table();
		for (uint32_t i = 0; i < tab.hdr.nmembers; i++)
			if (i != set.self &&
			    tab.member[i].state == PARLEY_MEMBER_REMOVED) {
				parley_printf("removed %s epoch %llu\n",
					      tab.member[i].name,
					      (unsigned long long)tab.hdr.epoch);
				return 0;
			}
		if (tab.member[set.self].state == PARLEY_MEMBER_REMOVED ||
		    parley_seg_wait(&set, UINT64_MAX) == PARLEY_E_CLOSED) {
			parley_printf("removed from the set\n");
			return 0;
		}
	}
	parley_printf("nobody removed\n");
	return 1;
}

static void hostile(void)
{
	struct parley_hc_seg_attach a;
	memset(&a, 'x', sizeof(a.name)); /* no NUL anywhere */
	a.ret = 0;
	parley_hypercall(PARLEY_HC_SEG_ATTACH, &a);
	parley_printf("unterminated %lld\n", (long long)a.ret);
	/* The struct in page 0: the partition may not name it. */
	parley_printf("bad pointer next\n");
	__asm__ volatile("outl %0, %1"
			 :
			 : "a"((uint32_t)0x10),
			   "Nd"((uint16_t)(PARLEY_HC_PORT_BASE +
					   PARLEY_HC_SEG_ATTACH))
			 : "memory");
	parley_printf("still running\n");
}

/* ---- traffic ---------------------------------------------------------- */

#define SRC_MAX PARLEY_SEGSET_MEMBERS_MAX

static struct parley_seg_pipe out;    /* the segment this member writes */
static int has_out;
static struct parley_seg_pipe pin[PARLEY_SEGSET_DECL_MAX];
static unsigned npin;
static int pin_gone[PARLEY_SEGSET_DECL_MAX]; /* revoked: never touched */
static struct parley_seg_queue qin[4];
static char qname[4][PARLEY_SEG_NAME_MAX];
static unsigned nq;
static uint32_t next_seq[SRC_MAX], bad[SRC_MAX];
static int bye[SRC_MAX], reads[SRC_MAX];

static int queue_known(const char *q)
{
	for (unsigned i = 0; i < nq; i++)
		if (!strcmp(qname[i], q))
			return 1;
	return 0;
}

static void open_ends(void)
{
	for (uint32_t s = 1; s <= tab.hdr.ndecl; s++) {
		const struct parley_segset_seg *g = &tab.seg[s];
		if (g->kind != PARLEY_SEG_PIPE && g->kind != PARLEY_SEG_QUEUE)
			continue;
		if (g->writer == set.self && !has_out) {
			int rc = parley_seg_pipe_writer(&out, &tab, set.base,
							set.self, g->name);
			has_out = rc == PARLEY_SEG_OK;
		} else if ((g->readers >> set.self) & 1) {
			reads[g->writer] = 1;
			if (g->kind == PARLEY_SEG_PIPE)
				pin_gone[npin] = parley_seg_pipe_reader(
					&pin[npin], &tab, set.base, set.self,
					g->name) != PARLEY_SEG_OK,
				npin++;
			else if (!queue_known(g->queue) && nq < 4)
				memcpy(qname[nq++], g->queue,
				       PARLEY_SEG_NAME_MAX);
		}
	}
	for (unsigned i = 0; i < nq; i++)
		parley_seg_queue_reader(&qin[i], &tab, set.base, set.self,
					qname[i]);
}

/* The table moved: every end learns it. */
static void changed(void)
{
	table();
	if (has_out)
		parley_seg_pipe_update(&out, &tab);
	for (unsigned i = 0; i < npin; i++)
		if (!pin_gone[i] &&
		    parley_seg_pipe_update(&pin[i], &tab) == PARLEY_SEG_GONE)
			pin_gone[i] = 1;
	for (unsigned i = 0; i < nq; i++)
		parley_seg_queue_reader(&qin[i], &tab, set.base, set.self,
					qname[i]);
}

static void take(const struct msg *m, uint32_t len, uint32_t from)
{
	if (len != sizeof(*m) || m->magic != MSG_MAGIC || m->writer != from ||
	    from >= SRC_MAX) {
		bad[from < SRC_MAX ? from : 0]++;
		return;
	}
	if (m->seq == BYE) {
		bye[from] = 1;
		return;
	}
	struct msg want;
	make(&want, from, next_seq[from]);
	if (m->seq != next_seq[from] || m->check != want.check ||
	    memcmp(m->pat, want.pat, PAT))
		bad[from]++;
	next_seq[from] = m->seq + 1;
}

/* Read what is there; 1 if anything came. */
static int drain(void)
{
	struct msg m;
	uint32_t len, from;
	int got = 0;
	for (unsigned i = 0; i < npin; i++)
		for (int k = 0; k < 64 && !pin_gone[i]; k++) {
			int rc = parley_seg_recv(&pin[i], &m, sizeof(m), &len);
			if (rc == PARLEY_SEG_CHANGED)
				changed();
			if (rc != PARLEY_SEG_OK)
				break;
			take(&m, len, pin[i].from);
			got = 1;
		}
	for (unsigned i = 0; i < nq; i++)
		for (int k = 0; k < 64; k++) {
			int rc = parley_seg_queue_recv(&qin[i], &m, sizeof(m),
						       &len, &from);
			if (rc == PARLEY_SEG_CHANGED)
				changed();
			if (rc != PARLEY_SEG_OK)
				break;
			take(&m, len, from);
			got = 1;
		}
	return got;
}

static int all_read(uint32_t n)
{
	for (uint32_t w = 0; w < tab.hdr.nmembers; w++)
		if (reads[w] && next_seq[w] < n &&
		    tab.member[w].state != PARLEY_MEMBER_REMOVED)
			return 0;
	return 1;
}

/* Everyone who reads this member's segment is done with it: said bye
 * (it had read everything first) or left. */
static int readers_done(void)
{
	if (!has_out)
		return 1;
	for (uint32_t r = 0; r < tab.hdr.nmembers; r++)
		if (((tab.seg[out.seg].readers >> r) & 1) && !bye[r] &&
		    tab.member[r].state != PARLEY_MEMBER_REMOVED)
			return 0;
	return 1;
}

static int send(struct msg *m)
{
	int rc = parley_seg_send(&out, m, sizeof(*m));
	if (rc == PARLEY_SEG_CHANGED) {
		changed();
		rc = parley_seg_send(&out, m, sizeof(*m));
	}
	return rc;
}

static int traffic(uint32_t n)
{
	open_ends();
	uint32_t sent = 0;
	int bye_sent = 0;
	uint64_t idle = 0;
	while (!(bye_sent && readers_done())) {
		int progress = drain();
		struct msg m;
		if (has_out && sent < n) {
			make(&m, set.self, sent);
			if (send(&m) == PARLEY_SEG_OK)
				sent++, progress = 1;
		} else if (!bye_sent && all_read(n)) {
			make(&m, set.self, BYE);
			bye_sent = !has_out || send(&m) == PARLEY_SEG_OK;
		}
		if (progress) {
			idle = 0;
		} else if (++idle > 16) {
			if (parley_seg_wait(&set, 50000) == PARLEY_E_CLOSED) {
				parley_printf("removed from the set\n");
				return 1;
			}
		}
	}
	parley_printf("sent %u\n", sent);
	int wrong = 0;
	for (uint32_t w = 0; w < tab.hdr.nmembers; w++) {
		if (!reads[w])
			continue;
		parley_printf("got %u from %s, %u bad\n", next_seq[w],
			      tab.member[w].name, bad[w]);
		wrong |= next_seq[w] != n || bad[w];
	}
	return wrong;
}

int main(const struct parley_boot_info *bi)
{
	boot = bi;
	static char name[PARLEY_CHAN_NAME_MAX] = "bus";
	size_t nlen;
	const char *arg = parley_cmdline_get(bi, "set", &nlen);
	if (arg && nlen > 0 && nlen < sizeof(name)) {
		memcpy(name, arg, nlen);
		name[nlen] = 0;
	}
	long delay = parley_cmdline_int(bi, "delay_ms", 0);
	if (delay > 0)
		parley_sleep_ns((uint64_t)delay * 1000000);
	if (parley_cmdline_int(bi, "hostile", 0)) {
		hostile();
		return 0;
	}
	if (parley_cmdline_int(bi, "tamper", 0))
		tamper();
	char detail[64] = "";
	int64_t r = parley_seg_attach(name, &set, detail);
	parley_printf("attach %lld %s\n", (long long)r, detail);
	if (r != PARLEY_OK)
		return 0;
	table();
	parley_printf("member %u epoch %llu\n", set.self,
		      (unsigned long long)tab.hdr.epoch);
	if (parley_cmdline_int(bi, "tamper_wait", 0)) {
		tamper();
		for (uint64_t end = parley_clock_ns() + 20000000000ull;
		     parley_clock_ns() < end;)
			if (parley_seg_wait(&set, UINT64_MAX) ==
			    PARLEY_E_CLOSED) {
				parley_printf("removed from the set\n");
				return 0;
			}
		return 1;
	}
	if (parley_cmdline_int(bi, "show", 0)) {
		show();
		return 0;
	}
	if (parley_cmdline_int(bi, "bad_write", 0)) {
		parley_printf("writing the table\n");
		*(volatile uint8_t *)set.base = 1;
		parley_printf("wrote the table\n");
		return 1;
	}
	if (parley_cmdline_int(bi, "all", 1) ||
	    parley_cmdline_int(bi, "tamper_later", 0))
		for (table(); !all_came(); table())
			parley_seg_wait(&set, 100000000);
	if (parley_cmdline_int(bi, "detach", 0)) {
		parley_printf("detach %lld\n",
			      (long long)parley_seg_detach(name));
		return 0;
	}
	if (parley_cmdline_int(bi, "tamper_later", 0)) {
		tamper();
		r = parley_seg_attach(name, &set, detail);
		parley_printf("reattach %lld %s\n", (long long)r, detail);
		return 0;
	}
	if (parley_cmdline_int(bi, "watch", 0))
		return watch();
	return traffic((uint32_t)parley_cmdline_int(bi, "n", 100));
}
