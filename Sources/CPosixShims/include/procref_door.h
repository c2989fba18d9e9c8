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
 * procrefd to the door: "listen KEY", a listening socket to accept on (passed with the
 * message; KEY is procrefd's name for it, given back at a rejoin); the service is ready
 * (connect upstream); its start failed or it stopped (hold no one: close what waits, and
 * wait for a start again); retire (accept nothing more, finish the open connections, exit).
 * The door to procrefd: connections wait for a start; "count OPEN ACCEPTED PENDING UP DOWN":
 * open connections, connections accepted since the door started, connections waiting, and
 * bytes forwarded toward upstream and toward clients since the door started. With
 * connection audit on: "opened ID PEER" at each accept, and "closed ID UP DOWN MS" at each
 * close (bytes each way, and how long it was open).
 * A door whose procrefd went away keeps serving, and connects to the next procrefd's
 * rendezvous socket: "adopt SEMID SERVICE", then a "listen KEY" message with each of its
 * listening sockets, then a count. */
#define PROCREF_DOOR_LISTEN "listen"
#define PROCREF_DOOR_RETIRE "retire"
#define PROCREF_DOOR_ADOPT "adopt"
#define PROCREF_DOOR_READY "ready"
#define PROCREF_DOOR_FAILED "failed"
#define PROCREF_DOOR_STOPPED "stopped"
#define PROCREF_DOOR_NEED "need"
#define PROCREF_DOOR_COUNT "count"
#define PROCREF_DOOR_OPENED "opened"
#define PROCREF_DOOR_CLOSED "closed"

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
/** A non-blocking, close-on-exec SOCK_SEQPACKET connection to the Unix socket at path. */
int procref_door_connect_messages(const char *path);
/** A SOCK_SEQPACKET listener at path, mode exactly `mode`, non-blocking, close-on-exec. */
int procref_door_listen_messages(const char *path, unsigned int mode, int backlog);
/** The peer's uid and pid on a connected Unix socket (SO_PEERCRED); 0, or -1. */
int procref_door_peer(int fd, uid_t *uid, pid_t *pid);
/** The TCP port a listening socket is bound to, or -1 (not TCP, or an error). */
int procref_door_bound_port(int fd);
/** The peer of an accepted connection as text ("HOST:PORT", "[V6]:PORT", or "unix"), in
 *  buf; the text's length, or -1. */
int procref_door_peer_text(int fd, char *buf, size_t len);
/** Whether the semaphore set is gone (removed, or never there): 1, else 0. */
int procref_door_set_gone(int semid);
/** semop(semnum 0, delta, SEM_UNDO), retried on EINTR. */
int procref_door_semop(int semid, int delta);

#endif
