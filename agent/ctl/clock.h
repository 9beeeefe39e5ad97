/* The monotonic clock both sides of the control link read (CLOCK's epoch,
 * deadlines, timings). */
#ifndef PARLEY_CTL_CLOCK_H
#define PARLEY_CTL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
