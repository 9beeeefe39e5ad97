#include "daemon/keys/privsep.h"
#include "common/log.h"
#include "db/store.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <unistd.h>

static int take(const char *name, const char *v, char *dst, size_t cap,
		struct parley_err *err)
{
	if (!v)
		return perr(err, -EINVAL, "%s: needs a value", name);
	if ((size_t)snprintf(dst, cap, "%s", v) >= cap)
		return perr(err, -ENAMETOOLONG, "%s: too long", name);
	return 0;
}

static int take_u32(const char *name, const char *v, uint32_t *out,
		    struct parley_err *err)
{
	char *end;
	if (!v)
		return perr(err, -EINVAL, "%s: needs a value", name);
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || errno || n > 86400 * 365)
		return perr(err, -EINVAL, "%s: \"%s\" is not a number of "
			    "seconds", name, v);
	*out = (uint32_t)n;
	return 0;
}

int privsep_take_args(int *argc, char **argv, struct privsep_config *pc,
		      struct parley_err *err)
{
	memset(pc, 0, sizeof(*pc));
	snprintf(pc->user, sizeof(pc->user), "%s", PRIVSEP_DEFAULT_USER);
	pc->ckpt_interval_s = CKPT_DEFAULT_INTERVAL_S;
	int out = 1, rc = 0;
	for (int i = 1; i < *argc && rc == 0; i++) {
		const char *v = i + 1 < *argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--user"))
			rc = take(argv[i], v, pc->user, sizeof(pc->user), err),
			pc->user_set = true, i++;
		else if (!strcmp(argv[i], "--checkpoint-key"))
			rc = take(argv[i], v, pc->ckpt_key,
				  sizeof(pc->ckpt_key), err), i++;
		else if (!strcmp(argv[i], "--checkpoint-interval"))
			rc = take_u32(argv[i], v, &pc->ckpt_interval_s, err),
			i++;
		else
			argv[out++] = argv[i];
	}
	if (rc < 0)
		return rc;
	argv[out] = NULL;
	*argc = out;
	return 0;
}

static int own(const char *path, uid_t uid, gid_t gid, bool must,
	       struct parley_err *err)
{
	if (fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 ||
	    (!must && errno == ENOENT))
		return 0;
	return perr(err, -errno, "chown %s: %m", path);
}

/* A directory of the system's own (--store /var/lib/parley.db would
 * hand /var/lib to the network-facing user). */
static bool system_dir(const char *d)
{
	static const char *const sys[] = {
		"/", "/etc", "/var", "/var/lib", "/var/cache", "/var/log",
		"/usr", "/usr/lib", "/usr/local", "/usr/share", "/opt", "/srv",
		"/home", "/root", "/boot", "/run", "/var/run", "/dev", "/bin",
		"/sbin", "/lib", "/mnt", "/media",
	};
	char real[PATH_MAX];
	if (!realpath(d, real))
		return true; /* unknown: not taken over */
	for (size_t i = 0; i < sizeof(sys) / sizeof(*sys); i++)
		if (!strcmp(real, sys[i]))
			return true;
	return false;
}

/* The store and what SQLite keeps beside it, and the directory SQLite
 * creates those in. */
static int own_store(const char *store, uid_t uid, gid_t gid,
		     struct parley_err *err)
{
	char dir[PATH_MAX], side[PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s", store);
	char *d = dirname(dir);
	struct stat st;
	if (stat(d, &st) < 0)
		return perr(err, -errno, "%s: %m", d);
	int rc = 0;
	/* SQLite makes its journal beside the store, so the directory goes
	 * to the user -- but not a directory that is someone's (a user's
	 * home, a checkout): that would hand their files to the daemon's
	 * user (a walkthrough from a git checkout made it nobody's). */
	char git[PATH_MAX + 8];
	snprintf(git, sizeof(git), "%s/.git", d);
	const char *whose = NULL;
	if (st.st_mode & (S_ISVTX | S_IWOTH))
		whose = NULL; /* shared: left as it is */
	else if (st.st_uid != 0 && st.st_uid != uid)
		whose = "another user's";
	else if (access(git, F_OK) == 0)
		whose = "a git checkout";
	else if (st.st_uid == 0 && system_dir(d))
		whose = "the system's";
	if (whose)
		return perr(err, -EPERM, "the store's directory %s is %s: "
			    "parleyd, running as uid %u, would take it over "
			    "(SQLite writes its journal beside the store); "
			    "give --store a directory of parleyd's own", d,
			    whose, (unsigned)uid);
	if (!(st.st_mode & (S_ISVTX | S_IWOTH)))
		rc = own(d, uid, gid, true, err);
	if (rc == 0)
		rc = own(store, uid, gid, true, err);
	static const char *const ext[] = { "-wal", "-shm", "-journal" };
	for (unsigned i = 0; rc == 0 && i < 3; i++) {
		snprintf(side, sizeof(side), "%s%s", store, ext[i]);
		rc = own(side, uid, gid, false, err);
	}
	return rc;
}

static const struct passwd *who(const struct privsep_config *pc,
				struct parley_err *err)
{
	const struct passwd *pw = getpwnam(pc->user);
	if (!pw && !pc->user_set) {
		log_warn("no user \"%s\": the main process runs as \"%s\" "
			 "(create a system user %s, or give --user)",
			 pc->user, PRIVSEP_FALLBACK_USER, PRIVSEP_DEFAULT_USER);
		pw = getpwnam(PRIVSEP_FALLBACK_USER);
	}
	if (!pw)
		perr(err, -ENOENT, "--user %s: no such user", pc->user);
	else if (pw->pw_uid == 0)
		perr(err, -EPERM, "--user %s: has uid 0; the network-facing "
		     "process must not be root", pc->user);
	return pw && pw->pw_uid ? pw : NULL;
}

int privsep_drop(const struct privsep_config *pc, const char *store,
		 unsigned *uid, struct parley_err *err)
{
	*uid = (unsigned)geteuid();
	if (geteuid() != 0) {
		log_warn("running as uid %u, not root: the keys are in the key "
			 "process, but this process could still read their "
			 "files (start parleyd as root; it drops to --user)",
			 *uid);
		return 0;
	}
	const struct passwd *pw = who(pc, err);
	if (!pw)
		return err ? err->code : -ENOENT;
	uid_t u = pw->pw_uid;
	gid_t g = pw->pw_gid;
	char name[64];
	snprintf(name, sizeof(name), "%s", pw->pw_name);
	/* A database server's store is no file of ours to own. */
	char file[PATH_MAX];
	int rc = store_uri_file(store, file, sizeof(file), err);
	if (rc == 1)
		rc = own_store(file, u, g, err);
	if (rc < 0)
		return rc;
	/* A parent that asked for a signal when it dies (a supervisor, a
	 * test) keeps it: the kernel clears it at the change of uid. */
	int pds = 0;
	pid_t parent = getppid();
	if (prctl(PR_GET_PDEATHSIG, &pds) != 0)
		pds = 0;
	if (setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 ||
	    setresuid(u, u, u) != 0)
		return perr(err, -errno, "dropping to %s: %m", name);
	if (setuid(0) == 0 || seteuid(0) == 0)
		return perr(err, -EPERM, "dropping to %s: root came back", name);
	if (pds > 0 && (prctl(PR_SET_PDEATHSIG, pds) != 0 ||
			getppid() != parent))
		return perr(err, -ESRCH, "dropping to %s: the parent that "
			    "asked for signal %d at its death is gone", name,
			    pds);
	*uid = (unsigned)u;
	log_info("running as %s (uid %u); the keys are held by the key "
		 "process", name, (unsigned)u);
	return 0;
}
