/* A token bucket with episodes (ratelimit.h). */
#include "agent/ipc/ratelimit.h"

#define SECOND_NS 1000000000ull

bool rl_take(struct ratelimit *l, uint64_t now, unsigned burst,
	     unsigned per_s, bool *began)
{
	const uint64_t cost = SECOND_NS / (per_s ? per_s : 1);
	const uint64_t cap = cost * (burst ? burst : 1);
	*began = false;
	if (l->credit_ns > cap) /* (a bucket asked with a smaller cap) */
		l->credit_ns = cap;
	if (!l->credit_at_ns || now - l->credit_at_ns >= cap - l->credit_ns)
		l->credit_ns = cap;
	else
		l->credit_ns += now - l->credit_at_ns;
	l->credit_at_ns = now;
	if (l->credit_ns >= cost) {
		l->credit_ns -= cost;
		return true;
	}
	l->count++;
	if (!l->limiting) {
		l->limiting = *began = true;
		l->began_ns = now;
	}
	return false;
}

void rl_give_back(struct ratelimit *l, unsigned burst, unsigned per_s)
{
	const uint64_t cost = SECOND_NS / (per_s ? per_s : 1);
	const uint64_t cap = cost * (burst ? burst : 1);
	l->credit_ns = l->credit_ns < cap && cap - l->credit_ns > cost
		       ? l->credit_ns + cost : cap;
}

uint64_t rl_end(struct ratelimit *l, uint64_t now, bool force)
{
	if (!l->limiting)
		return 0;
	if (!force && now - l->began_ns < SECOND_NS)
		return 0;
	uint64_t n = l->count;
	l->limiting = false;
	l->count = 0;
	return n;
}
