/*
 * `parleyd store ...`: work on a store without running the daemon.
 */
#ifndef PARLEY_DAEMON_STORE_CLI_H
#define PARLEY_DAEMON_STORE_CLI_H

/* argv[1] is "store". Returns the exit status (0, 1 failed, 2 usage). */
int store_cli_main(int argc, char **argv);

#endif
