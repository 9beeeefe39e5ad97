#include <parley/guest.h>

struct out {
	char *buf;
	size_t size, len; /* len counts every byte, even those not stored */
};

static void out_c(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_num(struct out *o, unsigned long long v, unsigned base,
		    int neg, int width, char pad)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	for (; width > n; width--)
		out_c(o, pad);
	while (n)
		out_c(o, tmp[--n]);
}

static unsigned long long arg_u(va_list *ap, int lng)
{
	if (lng >= 2)
		return va_arg(*ap, unsigned long long);
	if (lng == 1)
		return va_arg(*ap, unsigned long);
	return va_arg(*ap, unsigned int);
}

static long long arg_s(va_list *ap, int lng)
{
	if (lng >= 2)
		return va_arg(*ap, long long);
	if (lng == 1)
		return va_arg(*ap, long);
	return va_arg(*ap, int);
}

/* Enough printf for partitions: %d %i %u %x %s %c %p %%, flags '0',
 * a width, and the l / ll / z length modifiers. */
int parley_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };
	va_list aq;
	va_copy(aq, ap);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			out_c(&o, *fmt);
			continue;
		}
		char pad = ' ';
		int width = 0, lng = 0;
		if (*++fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z')
			lng += *fmt++ == 'z' ? 2 : 1;
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long v = arg_s(&aq, lng);
			out_num(&o, v < 0 ? -(unsigned long long)v : (unsigned long long)v,
				10, v < 0, width, pad);
			break;
		}
		case 'u':
			out_num(&o, arg_u(&aq, lng), 10, 0, width, pad);
			break;
		case 'x':
			out_num(&o, arg_u(&aq, lng), 16, 0, width, pad);
			break;
		case 'p':
			out_c(&o, '0'), out_c(&o, 'x');
			out_num(&o, (uintptr_t)va_arg(aq, void *), 16, 0, 0, ' ');
			break;
		case 'c':
			out_c(&o, (char)va_arg(aq, int));
			break;
		case 's': {
			const char *s = va_arg(aq, const char *);
			for (s = s ? s : "(null)"; *s; s++)
				out_c(&o, *s);
			break;
		}
		case '\0':
			fmt--;
			break;
		default:
			out_c(&o, *fmt);
		}
	}
	va_end(aq);
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int parley_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = parley_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int parley_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = parley_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	parley_console_write(buf, len);
	return n;
}

void parley_puts(const char *s)
{
	parley_console_write(s, strlen(s));
	parley_console_write("\n", 1);
}
