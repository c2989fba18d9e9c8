#define _GNU_SOURCE
#include "CPosixShims.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

int procref_semget(int32_t key, int nsems, int flags) { return semget((key_t)key, nsems, flags); }

int procref_semctl_getval(int semid, int semnum) { return semctl(semid, semnum, GETVAL); }


int procref_semctl_stat(int semid, procref_sem_info *out) {
    struct semid_ds ds;
    union semun arg;
    arg.buf = &ds;
    if (semctl(semid, 0, IPC_STAT, arg) == -1) return -1;
    out->owner_uid = ds.sem_perm.uid;
    out->creator_uid = ds.sem_perm.cuid;
    out->mode = ds.sem_perm.mode & 0777;
    out->nsems = (uint32_t)ds.sem_nsems;
    return 0;
}

int procref_semctl_rmid(int semid) { return semctl(semid, 0, IPC_RMID); }

int procref_semop2(int semid, unsigned short num0, short op0, short flags0, int count,
                   unsigned short num1, short op1, short flags1) {
    struct sembuf ops[2] = {
        {.sem_num = num0, .sem_op = op0, .sem_flg = flags0},
        {.sem_num = num1, .sem_op = op1, .sem_flg = flags1},
    };
    int rc;
    do {
        rc = semop(semid, ops, (size_t)(count == 2 ? 2 : 1));
    } while (rc == -1 && errno == EINTR);
    return rc;
}

int procref_sem_undo_flag(void) { return SEM_UNDO; }
int procref_ipc_nowait_flag(void) { return IPC_NOWAIT; }

int procref_pidfd_open(pid_t pid) { return pidfd_open(pid, 0); }

int procref_pidfd_send_signal(int pidfd, int signo) { return pidfd_send_signal(pidfd, signo, NULL, 0); }

static void fill_status(const siginfo_t *info, int *exited, int *by_signal, int *status) {
    if (info->si_pid == 0) { *exited = 0; return; }
    *exited = 1;
    if (info->si_code == CLD_EXITED) { *by_signal = 0; *status = info->si_status; }
    else { *by_signal = 1; *status = info->si_status; }
}

int procref_waitid_pidfd(int pidfd, int nohang, int *exited, int *by_signal, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    do {
        rc = waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | (nohang ? WNOHANG : 0));
    } while (rc == -1 && errno == EINTR);
    if (rc == -1) return -1;
    fill_status(&info, exited, by_signal, status);
    return 0;
}

int procref_waitpid(pid_t pid, int nohang, int *exited, int *by_signal, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    do {
        rc = waitid(P_PID, (id_t)pid, &info, WEXITED | (nohang ? WNOHANG : 0));
    } while (rc == -1 && errno == EINTR);
    if (rc == -1) return -1;
    fill_status(&info, exited, by_signal, status);
    return 0;
}

pid_t procref_spawn(const char *path, char *const argv[], char *const envp[],
                    const procref_spawn_options *o) {
    if (o->failed_step != NULL) *o->failed_step = 0;
    if (o->cgroup_fd >= 0 || o->join_count > 0 || o->rlimit_count > 0 || o->umask_value >= 0 || o->group_count >= 0 ||
        o->gid >= 0 || o->uid >= 0 || o->listen_count > 0)
        return procref_spawn_in_cgroup(path, argv, envp, o);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) { errno = rc; return -1; }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) { posix_spawn_file_actions_destroy(&fa); errno = rc; return -1; }

    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (o->new_session) flags |= POSIX_SPAWN_SETSID;
    else if (o->new_process_group) { flags |= POSIX_SPAWN_SETPGROUP; posix_spawnattr_setpgroup(&attr, 0); }
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, flags);

    int std_fds[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int target = 0; target < 3 && rc == 0; target++) {
        if (std_fds[target] >= 0) rc = posix_spawn_file_actions_adddup2(&fa, std_fds[target], target);
        else rc = posix_spawn_file_actions_addopen(&fa, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0);
    }
    int first_closed = 3;
    if (rc == 0 && o->pass_fd >= 0) {
        rc = posix_spawn_file_actions_adddup2(&fa, o->pass_fd, 3);
        first_closed = 4;
        if (rc == 0 && o->pass_fd2 >= 0) {
            rc = posix_spawn_file_actions_adddup2(&fa, o->pass_fd2, 4);
            first_closed = 5;
        }
    }
    if (rc == 0 && o->cwd != NULL) rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, first_closed);

    pid_t pid = -1;
    if (rc == 0) rc = posix_spawn(&pid, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { errno = rc; return -1; }
    return pid;
}

int procref_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }


int procref_dup_cloexec(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 3); }

int procref_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int procref_set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl == -1) return -1;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int procref_signalfd_for_control_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

int procref_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n;
    do {
        n = read(fd, &info, sizeof info);
    } while (n == -1 && errno == EINTR);
    if (n != (ssize_t)sizeof info) return -1;
    return (int)info.ssi_signo;
}

/* The write end of the forwarding pipe; the handler only writes to it. */
static volatile int forwarding_write_fd = -1;

static void forwarding_handler(int signo, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    int record[2] = {signo, info != NULL && info->si_code == SI_KERNEL};
    (void)!write(forwarding_write_fd, record, sizeof record);
    errno = saved;
}

int procref_forwarding_pipe(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1) return -1;
    forwarding_write_fd = fds[1];
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = forwarding_handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&action.sa_mask);
    int signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, NULL) == -1) return -1;
    }
    return fds[0];
}

int procref_forwarding_read(int fd, int *from_kernel) {
    int record[2];
    ssize_t n;
    do {
        n = read(fd, record, sizeof record);
    } while (n == -1 && errno == EINTR);
    if (n != (ssize_t)sizeof record) return -1;
    *from_kernel = record[1];
    return record[0];
}

int64_t procref_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int procref_poll2(int fd0, int fd1, int timeout_ms, int *ready0, int *ready1) {
    struct pollfd fds[2] = {{.fd = fd0, .events = POLLIN}, {.fd = fd1, .events = POLLIN}};
    int rc = poll(fds, 2, timeout_ms);
    *ready0 = rc > 0 && fd0 >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    *ready1 = rc > 0 && fd1 >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    return rc;
}

int procref_poll3(int fd0, int fd1, int fd2, int timeout_ms, int *ready0, int *ready1, int *ready2) {
    struct pollfd fds[3] = {{.fd = fd0, .events = POLLIN}, {.fd = fd1, .events = POLLIN}, {.fd = fd2, .events = POLLIN}};
    int rc = poll(fds, 3, timeout_ms);
    int *ready[3] = {ready0, ready1, ready2};
    for (int i = 0; i < 3; i++)
        *ready[i] = rc > 0 && fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    return rc;
}

ssize_t procref_read(int fd, void *buf, size_t count) {
    ssize_t n;
    do {
        n = read(fd, buf, count);
    } while (n == -1 && errno == EINTR);
    return n;
}

ssize_t procref_write(int fd, const void *buf, size_t count) {
    ssize_t n;
    do {
        n = write(fd, buf, count);
    } while (n == -1 && errno == EINTR);
    return n;
}

int procref_close(int fd) { return close(fd); }
void procref_exit(int code) { _exit(code); }
int procref_errno(void) { return errno; }

long long procref_parse_int(const char *text, int *ok) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    *ok = (errno == 0 && end != text && *end == '\0');
    return v;
}

/* glibc passes (argc, argv, envp) to ELF constructors: Embedded Swift has no CommandLine. */
static int saved_argc;
static char **saved_argv;
/* Bytes argv[1...] took at start: `procref_set_arguments` may rewrite that much. Measured
   once, before any rewrite: the last argument's length is gone after the first one. */
static size_t saved_room;
__attribute__((constructor)) static void procref_capture_arguments(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
    if (argc >= 2) saved_room = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) - argv[1]);
}
int procref_argc(void) { return saved_argc; }
const char *procref_argv(int index) { return (index >= 0 && index < saved_argc) ? saved_argv[index] : NULL; }

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netdb.h>

int procref_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int procref_epoll_add(int epfd, int fd, uint64_t token) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int procref_epoll_remove(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int procref_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, events, max, timeout_ms);
    for (int i = 0; i < n; i++) tokens[i] = events[i].data.u64;
    return n;
}

int procref_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int procref_epoll_add_once(int epfd, int fd, int mode, uint64_t token) {
    uint32_t events = mode == 1 ? EPOLLOUT : mode == 2 ? EPOLLRDHUP : EPOLLIN;
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.u64 = token};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Non-blocking connect, then poll for writability until the deadline. */
static int connect_with_timeout(int fd, const struct sockaddr *addr, socklen_t len, int timeout_ms) {
    if (procref_set_nonblocking(fd) == -1) return -1;
    if (connect(fd, addr, len) == 0) return 0;
    if (errno != EINPROGRESS && errno != EAGAIN) return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int rc;
    do {
        rc = poll(&p, 1, timeout_ms);
    } while (rc == -1 && errno == EINTR);
    if (rc == 0) { errno = ETIMEDOUT; return -1; }
    if (rc < 0) return -1;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1) return -1;
    if (soerr != 0) { errno = soerr; return -1; }
    return 0;
}

int procref_tcp_connect(const char *host, const char *port, int timeout_ms) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) { errno = EHOSTUNREACH; return -1; }
    int connected = -1, saved = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai != NULL && connected < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd == -1) { saved = errno; continue; }
        if (connect_with_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms) == 0) connected = fd;
        else { saved = errno; close(fd); }
    }
    freeaddrinfo(res);
    if (connected < 0) errno = saved;
    return connected;
}

int procref_tcp_connect_begin(const char *host, const char *port, int index) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0) { errno = EHOSTUNREACH; return -1; }
    struct addrinfo *ai = res;
    for (int i = 0; ai != NULL && i < index; i++) ai = ai->ai_next;
    int fd = -1;
    if (ai == NULL) errno = ENOENT;
    else if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol)) != -1
             && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int procref_connect_result(int fd) {
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1) return -1;
    if (soerr != 0) { errno = soerr; return -1; }
    return 0;
}

static int fill_unix_address(const char *path, struct sockaddr_un *addr) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr->sun_path) { errno = ENAMETOOLONG; return -1; }
    strcpy(addr->sun_path, path);
    return 0;
}

int procref_unix_connect(const char *path, int timeout_ms) {
    struct sockaddr_un addr;
    if (fill_unix_address(path, &addr) == -1) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) return -1;
    if (connect_with_timeout(fd, (struct sockaddr *)&addr, sizeof addr, timeout_ms) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int procref_unix_connect_begin(const char *path) {
    struct sockaddr_un addr;
    if (fill_unix_address(path, &addr) == -1) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS && errno != EAGAIN) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int procref_unix_probe(const char *path, int timeout_ms) {
    int fd = procref_unix_connect(path, timeout_ms);
    if (fd == -1) return -1;
    close(fd);
    return 0;
}

int procref_unix_listen(const char *path, unsigned int mode, int backlog) {
    return procref_unix_listen_typed(path, mode, backlog, SOCK_STREAM);
}

int procref_unix_listen_typed(const char *path, unsigned int mode, int backlog, int type) {
    struct sockaddr_un addr;
    if (fill_unix_address(path, &addr) == -1) return -1;
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd == -1) return -1;
    /* umask narrows the file's mode at bind; chmod sets the exact mode before anyone can connect. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (rc == 0) rc = chmod(path, (mode_t)mode);
    if (rc == 0) rc = listen(fd, backlog);
    if (rc != 0) { int saved = errno; close(fd); errno = saved; return -1; }
    return fd;
}

#include <arpa/inet.h>
#include <netinet/in.h>

int procref_tcp_listen(const char *host, uint16_t port, int backlog, uint16_t *bound_port) {
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof storage);
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&storage;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&storage;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof *in6;
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&storage, len) == -1 || listen(fd, backlog) == -1) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0) {
        *bound_port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                      : ((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    return fd;
}

int procref_socketpair_cloexec(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

int procref_socketpair_datagram_cloexec(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds);
}

ssize_t procref_send_datagram(int fd, const void *buf, size_t count) {
    ssize_t n;
    do {
        n = send(fd, buf, count, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);
    return n;
}

int procref_notify_socket(const char *path, const char *message) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof address.sun_path) { errno = EINVAL; return -1; }
    memcpy(address.sun_path, path, length);
    if (path[0] == '@') address.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) return -1;
    ssize_t n = sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&address,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length));
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}

ssize_t procref_receive(int fd, void *buf, size_t count, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, timeout_ms);
    if (rc <= 0) return rc == 0 ? -2 : -1;
    ssize_t n;
    do {
        n = recv(fd, buf, count, MSG_DONTWAIT);
    } while (n == -1 && errno == EINTR);
    return n;
}

pid_t procref_getpid(void) { return getpid(); }

ssize_t procref_send_with_fd(int sock, const void *buf, size_t len, int fd) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        message.msg_control = control.buffer;
        message.msg_controllen = sizeof control.buffer;
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &message, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        return n;
    }
}

int procref_read_three_ints(int fd, long long *a, long long *b, long long *c) {
    int passed;
    int result = procref_read_three_ints_fd(fd, a, b, c, &passed);
    if (passed >= 0) close(passed);
    return result;
}

int procref_read_three_ints_fd(int fd, long long *a, long long *b, long long *c, int *passed) {
    /* procrefd writes the whole line at once and nothing after it until "acquired" is
       answered, so a read returns the line in one go (one syscall, not one per byte). A
       descriptor sent with it (SCM_RIGHTS) arrives with its first byte. */
    char line[128];
    size_t used = 0;
    *passed = -1;
    for (;;) {
        if (used + 1 >= sizeof line) return -1;
        struct iovec iov = {.iov_base = line + used, .iov_len = sizeof line - 1 - used};
        union {
            char buffer[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } control;
        struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
        ssize_t n = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
        if (n > 0) {
            struct cmsghdr *header = CMSG_FIRSTHDR(&message);
            if (header != NULL && header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS && *passed < 0) {
                memcpy(passed, CMSG_DATA(header), sizeof(int));
            }
        } else if (n < 0 && errno == ENOTSOCK) {
            n = read(fd, line + used, sizeof line - 1 - used);  /* a pipe: no descriptor can come */
        }
        if (n == 0) return used == 0 ? 1 : -1;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        used += (size_t)n;
        char *newline = memchr(line, '\n', used);
        if (newline != NULL) {
            if (newline != line + used - 1) return -1;
            used = (size_t)(newline - line);
            break;
        }
    }
    line[used] = '\0';
    char *end = NULL;
    errno = 0;
    *a = strtoll(line, &end, 10);
    if (errno || *end != ' ') return -1;
    *b = strtoll(end + 1, &end, 10);
    if (errno || *end != ' ') return -1;
    *c = strtoll(end + 1, &end, 10);
    if (errno || *end != '\0') return -1;
    return 0;
}

void procref_set_arguments(const char *text) {
    if (saved_argc < 2) return;
    char *start = saved_argv[1];
    size_t room = saved_room;
    size_t i = 0;
    for (; i < room && text[i] != '\0'; i++) start[i] = text[i] == ' ' ? '\0' : text[i];
    for (; i < room; i++) start[i] = '\0';
}

void procref_set_thread_name(const char *name) {
    char cut[16];
    snprintf(cut, sizeof cut, "%s", name);
    pthread_setname_np(pthread_self(), cut);
}

static int sigchld_write_end = -1;

static void on_sigchld(int signo) {
    (void)signo;
    int saved = errno;
    char byte = 0;
    (void)write(sigchld_write_end, &byte, 1); /* a full pipe already says "reap" */
    errno = saved;
}

int procref_sigchld_pipe(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1) return -1;
    sigchld_write_end = fds[1];
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigchld;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGCHLD, &action, NULL) == -1) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        sigchld_write_end = -1;
        errno = saved;
        return -1;
    }
    return fds[0];
}

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>

/* One family's listening TCP sockets, through NETLINK_SOCK_DIAG: the kernel returns only
 * sockets in LISTEN, so the cost does not grow with connections (or TIME_WAIT) as a read of
 * /proc/net/tcp does. Adds the inodes of those bound to `port` to out[*found...]. */
static int listening_inodes_of_family(int family, uint16_t port, uint64_t *out, int max, int *found) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -1;
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 request;
    } message;
    memset(&message, 0, sizeof message);
    message.header.nlmsg_len = sizeof message;
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.request.sdiag_family = (uint8_t)family;
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = 1u << TCP_LISTEN;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &message, sizeof message, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        close(fd);
        return -1;
    }
    long buffer[8192 / sizeof(long)];
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                close(fd);
                return 0;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                close(fd);
                errno = EPROTO;
                return -1;
            }
            struct inet_diag_msg *socket_info = NLMSG_DATA(h);
            if (ntohs(socket_info->id.idiag_sport) == port && *found < max) out[(*found)++] = socket_info->idiag_inode;
        }
    }
}

int procref_tcp_listening_inodes(uint16_t port, uint64_t *out, int max) {
    int found = 0;
    if (listening_inodes_of_family(AF_INET, port, out, max, &found) < 0) return -1;
    if (listening_inodes_of_family(AF_INET6, port, out, max, &found) < 0) return -1;
    return found;
}
