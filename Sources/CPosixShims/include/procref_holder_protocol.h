/* The procref-holder protocol, written once for both sides: procrefd (Swift, through
 * Posix/HolderProtocol.swift) and procref-holder (Embedded Swift, Sources/procref-holder).
 *
 * A holder is started as `procref-holder SEMID TTL_MS CLIENT_PID` (descriptor 3 a pipe to
 * procrefd), or idle as `procref-holder --pool PADDING` (descriptor 3 a socket), where it
 * waits for the command line `SEMID TTL_MS CLIENT_PID` (TTL_MS 0: none; CLIENT_PID 0: no
 * client), sent with the client's pidfd (SCM_RIGHTS) when there is a client. Every line is
 * ASCII and ends in '\n'; the texts below are without it. */
#ifndef PROCREF_HOLDER_PROTOCOL_H
#define PROCREF_HOLDER_PROTOCOL_H

#include <signal.h>

/* argv[1] of an idle pooled holder, shown again once it has given its reference back. */
static const char *const procref_holder_pool_flag = "--pool";
/* holder → procrefd: its +1 | SEM_UNDO is in. */
static const char *const procref_holder_acquired = "acquired";
/* procrefd → holder: give the reference back; answered `released` on the same socket. */
static const char *const procref_holder_release = "release";
static const char *const procref_holder_released = "released";
/* holder → procrefd before a failed exit: `error WHAT ERRNO`. */
static const char *const procref_holder_error = "error";

/* Sent to a holder: its deadline moves to now + TTL. SIGTERM, SIGINT and SIGHUP release. */
#define PROCREF_HOLDER_KEEPALIVE_SIGNAL SIGUSR1

/* Exit codes, read by procrefd through waitid. Whatever the code, the kernel undoes the +1. */
#define PROCREF_HOLDER_EXIT_RELEASED 0        /* released by signal, or retired from the pool */
#define PROCREF_HOLDER_EXIT_USAGE 2
#define PROCREF_HOLDER_EXIT_EXPIRED 3         /* its TTL ran out */
#define PROCREF_HOLDER_EXIT_CLIENT_EXITED 4   /* the watched client exited */
#define PROCREF_HOLDER_EXIT_CLIENT_UNUSABLE 10
#define PROCREF_HOLDER_EXIT_SEMOP_FAILED 11

/* Writes `text` and '\n' in one write (text at most 63 bytes). */
ssize_t procref_holder_write_line(int fd, const char *text);
/* Writes `error WHAT ERRNO\n` in one write. */
ssize_t procref_holder_write_error(int fd, const char *what, int err);
/* Whether the `n` bytes read start with the line `release`. */
int procref_holder_is_release(const unsigned char *buffer, ssize_t n);

#endif
