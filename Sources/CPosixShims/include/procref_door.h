#ifndef PROCREF_DOOR_H
#define PROCREF_DOOR_H
/*
 * The calls the front-door helper (procref-door) makes on its connections: accept, splice
 * through pipes, half-close, epoll with both directions, and the control socket that
 * carries listening sockets (SCM_RIGHTS) in whole messages. Each returns -1 with errno on
 * failure, like the call it wraps.
 */
#include <stdint.h>
#include <sys/types.h>

/* The control protocol, one SOCK_SEQPACKET message each.
 * procrefd to the door: a listening socket to accept on (passed with the message); the
 * service is ready (connect upstream); its start failed or it stopped (hold no one: close
 * what waits, and wait for a start again).
 * The door to procrefd: connections wait for a start; "count OPEN ACCEPTED PENDING": open
 * connections, connections accepted since the door started, connections waiting. */
#define PROCREF_DOOR_LISTEN "listen"
#define PROCREF_DOOR_READY "ready"
#define PROCREF_DOOR_FAILED "failed"
#define PROCREF_DOOR_STOPPED "stopped"
#define PROCREF_DOOR_NEED "need"
#define PROCREF_DOOR_COUNT "count"

/** A connected pair of close-on-exec Unix SOCK_SEQPACKET sockets: messages stay whole,
 *  and a passed descriptor stays with its message. */
int procref_socketpair_seqpacket_cloexec(int fds[2]);
/** accept4, non-blocking and close-on-exec; -1 with EAGAIN when none waits. */
int procref_door_accept(int listen_fd);
/** A pipe whose both ends are non-blocking and close-on-exec. */
int procref_door_pipe(int fds[2]);
/** Sets the pipe's capacity (F_SETPIPE_SZ); the capacity set, or -1. */
int procref_door_pipe_size(int fd, int size);
/** splice(2) of up to len bytes, non-blocking, moving pages: bytes moved, 0 at EOF, -1. */
ssize_t procref_door_splice(int from, int to, size_t len);
/** shutdown(fd, SHUT_WR): the peer reads EOF, and may still answer. */
int procref_door_shutdown_write(int fd);
/** epoll_ctl ADD (add 1) or MOD (add 0) for readable and/or writable, level-triggered. */
int procref_door_epoll_set(int epfd, int fd, int add, int readable, int writable, uint64_t token);
/** epoll_wait: tokens and, per token, 1 readable, 2 writable, 4 hang-up/error (or'ed). */
int procref_door_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);
/** One message from a control socket, non-blocking: its bytes in buf and a passed
 *  descriptor in *fd (-1 if none). 0 when the peer closed, -1 with EAGAIN when none. */
ssize_t procref_door_receive(int sock, void *buf, size_t len, int *fd);
/** semop(semnum 0, delta, SEM_UNDO), retried on EINTR. */
int procref_door_semop(int semid, int delta);

#endif
