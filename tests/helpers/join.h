/* Joining in tests: a real parleyd with its join listener on a free port,
 * `parley-agent join` as a real process, tokens put straight into the
 * store. Built on tests/helpers/fleetd.h (the daemon is f->daemon, so
 * fd_stop ends it). */
#ifndef PARLEY_TEST_JOIN_H
#define PARLEY_TEST_JOIN_H

#include <stdint.h>
#include "tests/helpers/fleetd.h"

struct jn {
	struct fleetd f;
	int join_port;
	char ca_sha256[65];        /* of the fleet CA */
};

/* fd_init, then parleyd with --join-listen 127.0.0.1:0 --ca-key. */
void jn_start(struct jn *j);
/* The same with a release key pair (parley-pki release-key) in the
 * daemon's state directory, which it hands to joiners. */
void jn_start_release(struct jn *j);
/* A new token for `host`, valid for ttl_ms (negative: already expired),
 * stored by digest; the text goes to token. */
void jn_token(struct jn *j, const char *host, int64_t ttl_ms,
	      char token[69]);
/* `parley-agent join` into f.dir/<dir> with this token and pin (NULL: the
 * fleet CA's); returns the exit status, *out its output (free it). */
int jn_join(struct jn *j, const char *dir, const char *token,
	    const char *pin, char **out);
/* The path f.dir/<name>, malloc'd. */
char *jn_path(struct jn *j, const char *name);

#endif
