/*
 * A token bucket with episodes, for what a partition may ask as fast as
 * it likes and the agent records: past the bucket, requests are refused
 * (or records left out) and only counted; an episode of such refusals is
 * reported twice — when it begins, and its count when it ends — so a
 * flood costs the audit at most the bucket's rate and two records a
 * second, and no refusal goes uncounted.
 */
#ifndef PARLEY_IPC_RATELIMIT_H
#define PARLEY_IPC_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
	uint64_t credit_ns, credit_at_ns; /* the bucket, in ns of refill */
	uint64_t began_ns;                /* the episode's first refusal */
	uint64_t count;                   /* refusals in the episode */
	bool limiting;
};

/* now: mono_now_ns() (agent/ctl/clock.h); a zero-initialised bucket is
 * full. True: go on. False: over `burst` at `per_s` a second, counted; *began
 * says this refusal began an episode (report it). */
bool rl_take(struct ratelimit *l, uint64_t now, unsigned burst,
	     unsigned per_s, bool *began);

/* A take given back (what it paid for did not happen), up to the cap. */
void rl_give_back(struct ratelimit *l, unsigned burst, unsigned per_s);

/* An episode to report as ended: its count, and the episode closed; 0
 * if there is none, or it is not due — due a second after its first
 * refusal (force: now). A flood goes on as one episode a second. */
uint64_t rl_end(struct ratelimit *l, uint64_t now, bool force);

#endif
