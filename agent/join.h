/*
 * `parley-agent join`: enrol this host with a one-time join token
 * (daemon/join.h has the daemon side).
 *
 *   parley-agent join --server HOST:PORT --token prj_... \
 *                     --ca-sha256 HEX --state-dir DIR
 *
 * The agent makes its Ed25519 key, connects with TLS 1.3 trusting only
 * the CA whose certificate has SHA-256 HEX (the fingerprint parley-pki
 * prints, "sha256:" prefix allowed) -- a server that cannot show a chain
 * to it is refused before the token is sent -- and sends one JoinRequest.
 * The answer is checked again (the CA's fingerprint, the certificate
 * chains to it, carries this key, names the host) and written to DIR:
 * host.key (0600), host.crt, ca.crt, policy.pub, each atomically. After
 * that `parley-agent serve --state-dir DIR --server HOST:PORT` needs
 * nothing else. DIR is created (0700) if absent; a DIR that already holds
 * host.key or host.crt is refused (one identity per state directory).
 *
 * Exit status: 0 joined; 1 refused or failed (the message says which:
 * the server's Error code, TOKEN_USED etc., or the local reason);
 * 2 usage.
 */
#ifndef PARLEY_AGENT_JOIN_H
#define PARLEY_AGENT_JOIN_H

/* argv[0] is "join". Returns the exit status. */
int join_main(int argc, char **argv);

#endif
