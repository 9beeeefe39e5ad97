/* The monotonic clock both sides of the control link read (CLOCK's epoch,
 * deadlines, timings): the one of common/clock.h. */
#ifndef PARLEY_CTL_CLOCK_H
#define PARLEY_CTL_CLOCK_H

#include "common/clock.h"

#endif
