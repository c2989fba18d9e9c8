#define _GNU_SOURCE
#include "procref_door.h"
#include "CPosixShims.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

int procref_socketpair_seqpacket_cloexec(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

int procref_door_accept(int listen_fd) {
    int fd;
    do {
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd == -1 && errno == EINTR);
    return fd;
}

int procref_door_pipe(int fds[2]) { return pipe2(fds, O_NONBLOCK | O_CLOEXEC); }

int procref_door_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }

ssize_t procref_door_splice(int from, int to, size_t len) {
    ssize_t n;
    do {
        n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n == -1 && errno == EINTR);
    return n;
}

int procref_door_shutdown_write(int fd) { return shutdown(fd, SHUT_WR); }

int procref_door_epoll_set(int epfd, int fd, int add, int readable, int writable, uint64_t token) {
    struct epoll_event ev = {.events = (readable ? EPOLLIN | EPOLLRDHUP : 0) | (writable ? EPOLLOUT : 0), .data.u64 = token};
    return epoll_ctl(epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

int procref_door_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event ready[128];
    if (max > 128) max = 128;
    int n;
    do {
        n = epoll_wait(epfd, ready, max, timeout_ms);
    } while (n == -1 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        tokens[i] = ready[i].data.u64;
        uint32_t e = ready[i].events;
        events[i] = ((e & (EPOLLIN | EPOLLRDHUP)) ? 1u : 0u) | ((e & EPOLLOUT) ? 2u : 0u) | ((e & (EPOLLHUP | EPOLLERR)) ? 4u : 0u);
    }
    return n;
}

ssize_t procref_door_receive(int sock, void *buf, size_t len, int *fd) {
    *fd = -1;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
    ssize_t n;
    do {
        n = recvmsg(sock, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n == -1 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&message); h != NULL; h = CMSG_NXTHDR(&message, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS && h->cmsg_len >= CMSG_LEN(sizeof(int))) {
            memcpy(fd, CMSG_DATA(h), sizeof(int));
        }
    }
    return n;
}

int procref_door_semop(int semid, int delta) {
    struct sembuf op = {.sem_num = 0, .sem_op = (short)delta, .sem_flg = SEM_UNDO};
    int r;
    do {
        r = semop(semid, &op, 1);
    } while (r == -1 && errno == EINTR);
    return r;
}

static int fill_address(const char *path, struct sockaddr_un *addr) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof addr->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(addr->sun_path, path, len);
    return 0;
}

int procref_door_connect_messages(const char *path) {
    struct sockaddr_un addr;
    if (fill_address(path, &addr) == -1) return -1;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int procref_door_listen_messages(const char *path, unsigned int mode, int backlog) {
    return procref_unix_listen_typed(path, mode, backlog, SOCK_SEQPACKET | SOCK_NONBLOCK);
}

int procref_door_peer(int fd, uid_t *uid, pid_t *pid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    *pid = credentials.pid;
    return 0;
}

int procref_door_set_gone(int semid) {
    if (semctl(semid, 0, GETVAL) >= 0) return 0;
    return errno == EINVAL || errno == EIDRM ? 1 : 0;
}

int procref_door_bound_port(int fd) {
    struct sockaddr_storage storage;
    socklen_t len = sizeof storage;
    if (getsockname(fd, (struct sockaddr *)&storage, &len) != 0) return -1;
    if (storage.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&storage)->sin_port);
    if (storage.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&storage)->sin6_port);
    errno = EAFNOSUPPORT;
    return -1;
}

int procref_door_peer_text(int fd, char *buf, size_t len) {
    struct sockaddr_storage storage;
    socklen_t size = sizeof storage;
    if (len < 64 || getpeername(fd, (struct sockaddr *)&storage, &size) != 0) return -1;
    char host[INET6_ADDRSTRLEN];
    if (storage.ss_family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&storage;
        if (inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host) == NULL) return -1;
        return snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in4->sin_port));
    }
    if (storage.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&storage;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL) return -1;
        return snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
    return snprintf(buf, len, "unix");
}
