/* The monotonic clock every part reads for deadlines and timings (the
 * control link's CLOCK epoch among them: agent/ctl/clock.h). */
#ifndef PARLEY_COMMON_CLOCK_H
#define PARLEY_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mono_now_ms(void)
{
	return mono_now_ns() / 1000000;
}

#endif
