/*
 * The partition SDK: what a freestanding partition links against.
 *
 * A partition defines `int main(const struct parley_boot_info *bi)`; the boot
 * stub calls it on vCPU 0 and passes its return value to parley_exit(). Other
 * vCPUs enter `parley_secondary()` (weak; the default parks the vCPU).
 */
#ifndef PARLEY_GUEST_H
#define PARLEY_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <parley/abi.h>
#include <parley/hypercall.h>

int main(const struct parley_boot_info *bi);
void parley_secondary(const struct parley_boot_info *bi, uint32_t cpu);

/* Hypercalls. */
void parley_hypercall(enum parley_hc_nr nr, void *arg);
int64_t parley_console_write(const void *buf, size_t len);
__attribute__((noreturn)) void parley_exit(int code);
__attribute__((noreturn)) void parley_halt(void);
uint64_t parley_clock_ns(void);

/* Console. */
int parley_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int parley_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int parley_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void parley_puts(const char *s);

/* Boot info helpers. */
const struct parley_config_file *parley_config_find(
	const struct parley_boot_info *bi, const char *name);
const char *parley_cmdline_get(const struct parley_boot_info *bi,
			       const char *key, size_t *len);
long parley_cmdline_int(const struct parley_boot_info *bi, const char *key,
			long dflt);
static inline uint64_t parley_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* The few libc pieces partitions need (gcc also emits calls to mem*). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

#endif
