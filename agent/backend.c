#include "agent/backend.h"
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int backend_parse(const char *s, uint32_t *out)
{
	if (!strcmp(s, "auto"))
		*out = BACKEND_AUTO;
	else if (!strcmp(s, "kvm"))
		*out = CTL_BACKEND_KVM;
	else if (!strcmp(s, "process"))
		*out = CTL_BACKEND_PROCESS;
	else
		return -EINVAL;
	return 0;
}

const char *backend_name(uint32_t b)
{
	switch (b) {
	case BACKEND_AUTO:
		return "auto";
	case CTL_BACKEND_KVM:
		return "kvm";
	case CTL_BACKEND_PROCESS:
		return "process";
	default:
		return "?";
	}
}

const char *backend_kvm_missing(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? "/dev/kvm does not exist"
				       : "/dev/kvm cannot be opened read-write";
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	return v == KVM_API_VERSION ? NULL : "/dev/kvm speaks another API";
}

void backend_describe(uint32_t want, char *out, size_t cap)
{
	const char *why = backend_kvm_missing();
	if (want != BACKEND_AUTO)
		snprintf(out, cap, "backend: %s (--backend)", backend_name(want));
	else if (why)
		snprintf(out, cap, "backend: process (auto: %s)", why);
	else
		snprintf(out, cap, "backend: kvm (auto: /dev/kvm is usable)");
}

int backend_resolve(uint32_t want, uint32_t *out, struct parley_err *err)
{
	const char *why;
	switch (want) {
	case BACKEND_AUTO:
		*out = backend_kvm_missing() ? CTL_BACKEND_PROCESS
					     : CTL_BACKEND_KVM;
		return 0;
	case CTL_BACKEND_KVM:
		why = backend_kvm_missing();
		if (why)
			return perr(err, -ENODEV, "backend kvm: %s", why);
		*out = want;
		return 0;
	case CTL_BACKEND_PROCESS:
		*out = want;
		return 0;
	default:
		return perr(err, -EINVAL, "unknown backend %u", want);
	}
}

static int stub_path(const char *vmm_path, char *out, size_t cap)
{
	char dir[PATH_MAX];
	if ((size_t)snprintf(dir, sizeof(dir), "%s", vmm_path) >= sizeof(dir))
		return -ENAMETOOLONG;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	return path_join(out, cap, dir, "parley-vmm-stub");
}

int backend_open_fd(uint32_t b, const char *vmm_path, struct parley_err *err)
{
	char path[PATH_MAX];
	int fd;
	if (b == CTL_BACKEND_KVM) {
		fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return perr(err, -errno, "/dev/kvm: %m");
		return fd;
	}
	if (b != CTL_BACKEND_PROCESS)
		return perr(err, -EINVAL, "unknown backend %u", b);
	if (stub_path(vmm_path, path, sizeof(path)) < 0)
		return perr(err, -ENAMETOOLONG, "stub path too long");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", path);
	return fd;
}
