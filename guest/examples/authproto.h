/* What authsvc and authclient agree on: the service name and statuses. */
#ifndef AUTHPROTO_H
#define AUTHPROTO_H

#define AUTH_SERVICE "auth"
#define AUTH_MSG_MAX 256

enum {
	AUTH_OK = 0,
	AUTH_WRONG = 1,     /* the password's hash is not the user's */
	AUTH_UNKNOWN = 2,   /* no such user in the key file */
	AUTH_MALFORMED = 3, /* not "user:password" */
};

#endif
