#ifndef PROCREF_CPOSIXSHIMS_H
#define PROCREF_CPOSIXSHIMS_H
/*
 * Thin C shims for calls Swift cannot make directly: variadic functions (semctl, syscall),
 * symbols hidden without _GNU_SOURCE (pipe2, POSIX_SPAWN_SETSID, closefrom), and glibc's
 * missing `union semun`. Each returns -1 and sets errno on failure, like the call it wraps.
 * Kept small and dependency-free so the Embedded Swift holder can import it too.
 */
#include <stdint.h>
#include <sys/types.h>
#include <sys/sem.h>
#include <sys/ipc.h>
#include <errno.h>

#include "procref_holder_protocol.h"
#include "procref_door.h"

/* --- System V semaphores ------------------------------------------------- */

/** IPC_STAT fields procrefd checks before trusting an existing set. */
typedef struct procref_sem_info {
    uint32_t owner_uid;
    uint32_t creator_uid;
    uint32_t mode;      /* permission bits */
    uint32_t nsems;
} procref_sem_info;

int procref_semget(int32_t key, int nsems, int flags);
int procref_semctl_getval(int semid, int semnum);
int procref_semctl_stat(int semid, procref_sem_info *out);
int procref_semctl_rmid(int semid);
/** semop on up to two operations; flags may contain SEM_UNDO and IPC_NOWAIT. */
int procref_semop2(int semid,
                   unsigned short num0, short op0, short flags0,
                   int count, /* 1 or 2 */
                   unsigned short num1, short op1, short flags1);
int procref_sem_undo_flag(void);
int procref_ipc_nowait_flag(void);

/* --- Processes ----------------------------------------------------------- */

int procref_pidfd_open(pid_t pid);
int procref_pidfd_send_signal(int pidfd, int signo);
/**
 * waitid(P_PIDFD). Returns 0 with *exited = 1 and code/status filled when the child ended,
 * 0 with *exited = 0 when it is still running (nohang), or -1 with errno.
 * *by_signal is 1 when it was killed by a signal (status is then the signal number).
 */
int procref_waitid_pidfd(int pidfd, int nohang, int *exited, int *by_signal, int *status);
/** Same as above for a plain pid (used where no pidfd exists). */
int procref_waitpid(pid_t pid, int nohang, int *exited, int *by_signal, int *status);

/** Sockets one spawn may pass for socket activation. */
#define PROCREF_MAX_LISTEN_FDS 16

/** Options for procref_spawn. Descriptors < 0 mean /dev/null. */
typedef struct procref_spawn_options {
    int new_session;      /* setsid(): outlives the parent's session and terminal */
    int new_process_group;/* setpgid(0,0): its own group, signalled as a whole */
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    int pass_fd;          /* dup'ed to descriptor 3 in the child, or -1 */
    int pass_fd2;         /* dup'ed to descriptor 4 (only with pass_fd), or -1 */
    const char *cwd;      /* NULL: inherit */
    int cgroup_fd;        /* a cgroup v2 directory (O_PATH or O_DIRECTORY): the child starts in it; or -1 */
    /* Set up in the child before exec, in this order (each step checked; a failure names
     * its step in *failed_step): join_fds, rlimits, umask, groups, gid, uid, cwd. */
    const int *join_fds;  /* open cgroup.procs files (v1 hierarchies) the child writes "0" to */
    int join_count;
    const struct procref_rlimit *rlimits;
    int rlimit_count;
    int umask_value;      /* -1: inherit */
    const unsigned *groups; /* supplementary groups (setgroups), with group_count >= 0; -1: keep */
    int group_count;
    long long gid;        /* -1: keep */
    long long uid;        /* -1: keep; after setuid(uid != 0), setuid(0) must fail */
    int *failed_step;     /* out: PROCREF_STEP_* of a failed set-up step, or 0 */
    /* Socket activation: these become descriptors 3, 4, ... in the child, and the child
     * writes its own pid into listen_pid_entry (an environment string "LISTEN_PID=" with
     * room for 20 more bytes), as systemd does; listen_count 0: none. */
    const int *listen_fds;
    int listen_count;
    char *listen_pid_entry;
} procref_spawn_options;

struct procref_rlimit {
    int resource;
    unsigned long long soft;
    unsigned long long hard;
};

enum {
    PROCREF_STEP_EXEC = 1, PROCREF_STEP_CGROUP, PROCREF_STEP_RLIMIT, PROCREF_STEP_SETGROUPS,
    PROCREF_STEP_SETGID, PROCREF_STEP_SETUID, PROCREF_STEP_PRIVILEGES_KEPT, PROCREF_STEP_CWD, PROCREF_STEP_SETUP
};

/**
 * posix_spawn with every descriptor above 2 (or 3 with pass_fd) closed in the child.
 * Returns the child's pid, or -1 with errno (errors of the exec itself included).
 */
pid_t procref_spawn(const char *path, char *const argv[], char *const envp[],
                    const procref_spawn_options *options);
/**
 * The same through clone3, for a child that needs set-up posix_spawn cannot do (a cgroup,
 * users and groups, rlimits, umask). With options->cgroup_fd >= 0: CLONE_INTO_CGROUP, so
 * the child starts in that cgroup and nothing it forks can start outside it. No pass_fd.
 */
pid_t procref_spawn_in_cgroup(const char *path, char *const argv[], char *const envp[],
                              const procref_spawn_options *options);

/** prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process. */
int procref_set_child_subreaper(void);

int procref_set_nonblocking(int fd);
int procref_dup_cloexec(int fd);
/** pipe2(fds, O_CLOEXEC). */
int procref_pipe_cloexec(int fds[2]);

/* --- Signals and time (used by the holder) ------------------------------- */

/** Blocks TERM, INT, HUP, USR1 and returns a signalfd reading them. */
int procref_signalfd_for_control_signals(void);
/** Reads one signal from a signalfd: its number, or -1 with errno. */
int procref_signalfd_read(int fd);
/**
 * Catches TERM, INT, HUP, QUIT, USR1, USR2 in the whole process (whichever thread receives
 * one) and writes each to a pipe; returns the pipe's read end (non-blocking). Exec resets
 * the handlers in children.
 */
int procref_forwarding_pipe(void);
/**
 * Reads one caught signal: its number, with *from_kernel = 1 when the kernel sent it (a
 * terminal's ^C goes to the whole foreground group), or -1 with errno (EAGAIN: none).
 */
int procref_forwarding_read(int fd, int *from_kernel);
int64_t procref_monotonic_ms(void);
/**
 * poll() on up to two descriptors (fd < 0 is ignored). Returns poll's result and sets
 * *ready0 / *ready1 to 1 when that descriptor is readable or hung up.
 */
int procref_poll2(int fd0, int fd1, int timeout_ms, int *ready0, int *ready1);
/** poll() for readability on three descriptors (any may be -1); the readiness of each. */
int procref_poll3(int fd0, int fd1, int fd2, int timeout_ms, int *ready0, int *ready1, int *ready2);
/** read(), retried on EINTR. */
ssize_t procref_read(int fd, void *buf, size_t count);
ssize_t procref_write(int fd, const void *buf, size_t count);
int procref_close(int fd);
/* Installs a SIGCHLD handler (SA_RESTART | SA_NOCLDSTOP) that writes a byte to a
   non-blocking pipe, and returns the pipe's read end (-1 and errno on failure). Once per
   process: the handler only wakes a reader; whoever reads reaps. */
int procref_sigchld_pipe(void);
/* Names the calling thread for the kernel (comm, 15 bytes; longer names are cut). */
void procref_set_thread_name(const char *name);
void procref_exit(int code) __attribute__((noreturn));
int procref_errno(void);
long long procref_parse_int(const char *text, int *ok);
/** A connected pair of Unix stream sockets, both close-on-exec. */
int procref_socketpair_cloexec(int fds[2]);
/** A connected pair of AF_UNIX datagram sockets (close-on-exec). */
int procref_socketpair_datagram_cloexec(int fds[2]);
/** send() that never blocks nor raises SIGPIPE. */
ssize_t procref_send_datagram(int fd, const void *buf, size_t count);
/** Sends one datagram to the Unix socket at `path` ('@' first: abstract), as sd_notify does. */
int procref_notify_socket(const char *path, const char *message);
/** Waits up to timeout_ms for data, then recv()s it: bytes, -2 on timeout, -1 with errno. */
ssize_t procref_receive(int fd, void *buf, size_t count, int timeout_ms);
pid_t procref_getpid(void);
/**
 * Reads one line "A B C\n" of three decimal integers from fd (blocking). Returns 0 with the
 * values set, 1 at end of file, -1 on a malformed line or a read error.
 */
int procref_read_three_ints(int fd, long long *a, long long *b, long long *c);
/** The same, and the descriptor sent with the line (SCM_RIGHTS) in *passed, or -1. */
int procref_read_three_ints_fd(int fd, long long *a, long long *b, long long *c, int *passed);
/** sendmsg of `buf`, with `fd` passed along (SCM_RIGHTS) when it is >= 0. */
ssize_t procref_send_with_fd(int sock, const void *buf, size_t len, int fd);
/**
 * Rewrites argv[1...] in place with `text` (spaces become argument separators), so that
 * /proc/PID/cmdline shows it; truncated to the space the original arguments took.
 */
void procref_set_arguments(const char *text);

/** The process's argc/argv, captured at load time. */
int procref_argc(void);
const char *procref_argv(int index);

/* --- epoll (struct epoll_event is packed on x86_64; keep it on the C side) --- */
int procref_epoll_create(void);
int procref_epoll_add(int epfd, int fd, uint64_t token);
int procref_epoll_remove(int epfd, int fd);
/** Waits for readable descriptors; writes their tokens. Returns the count, or -1 with errno. */
int procref_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms);
int procref_eventfd(void);
/** Adds fd for one readiness report: EPOLLIN (writable 0) or EPOLLOUT (writable 1), one-shot. */
/* mode: 0 readable, 1 writable, 2 peer hung up (EPOLLRDHUP; EPOLLHUP and EPOLLERR always count). */
int procref_epoll_add_once(int epfd, int fd, int mode, uint64_t token);

/* --- Sockets ---------------------------------------------------------------- */
/** Connects to host:port within timeout_ms; returns the (non-blocking) fd. */
int procref_tcp_connect(const char *host, const char *port, int timeout_ms);
/** Connects to a Unix socket path within timeout_ms; 0 on success, -1 with errno. */
int procref_unix_probe(const char *path, int timeout_ms);
/** Connects to a Unix socket path within timeout_ms; returns the (non-blocking) fd. */
int procref_unix_connect(const char *path, int timeout_ms);
/** Starts a non-blocking connect to the index-th address of host:port. Returns the fd (the
 *  connect may still be in progress), or -1 with errno; ENOENT past the last address. */
int procref_tcp_connect_begin(const char *host, const char *port, int index);
/** Starts a non-blocking connect to a Unix socket path; the fd, or -1 with errno. */
int procref_unix_connect_begin(const char *path);
/** The outcome of a connect begun on fd, once it is writable: 0, or -1 with errno. */
int procref_connect_result(int fd);
/** Creates, binds (mode applied with fchmod before listen) and listens on a Unix socket. */
int procref_unix_listen(const char *path, unsigned int mode, int backlog);
/** The same with a socket type (SOCK_SEQPACKET, | SOCK_NONBLOCK, ...). */
int procref_unix_listen_typed(const char *path, unsigned int mode, int backlog, int type);
/** Creates, binds (SO_REUSEADDR) and listens on host:port (numeric); *bound_port gets the port. */
int procref_tcp_listen(const char *host, uint16_t port, int backlog, uint16_t *bound_port);
/** Inodes of the TCP sockets listening on `port` (IPv4 and IPv6), asked of the kernel with
 *  NETLINK_SOCK_DIAG (listening sockets only); how many were written to out (at most max),
 *  or -1 with errno. */
int procref_tcp_listening_inodes(uint16_t port, uint64_t *out, int max);

#endif
