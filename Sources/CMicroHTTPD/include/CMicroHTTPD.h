#ifndef PROCREF_CMICROHTTPD_H
#define PROCREF_CMICROHTTPD_H
/* libmicrohttpd, plus shims for its variadic functions, which Swift does not import. */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>

typedef struct procref_mhd_config {
    int listen_fd;                 /* an already listening socket (TCP or Unix) */
    unsigned int thread_pool_size; /* MHD worker threads */
    unsigned int connection_limit;
    unsigned int connection_timeout_seconds;
    unsigned int per_ip_connection_limit; /* 0: none */
    size_t connection_memory_limit;       /* bytes per connection for headers */
} procref_mhd_config;

/** Starts a daemon (internal epoll threads, suspend/resume allowed) on config->listen_fd.
 * `connection` (may be NULL) is told of each connection's start and close, with its
 * socket context to fill. */
struct MHD_Daemon *procref_mhd_start(const procref_mhd_config *config,
                                     MHD_AccessHandlerCallback handler, void *handler_cls,
                                     MHD_RequestCompletedCallback completed, void *completed_cls,
                                     MHD_NotifyConnectionCallback connection, void *connection_cls);

/** The socket context a connection callback stored, or NULL. */
void *procref_mhd_socket_context(struct MHD_Connection *connection);

/** The peer's credentials on a Unix socket (SO_PEERCRED); 0 on success, -1 otherwise. */
int procref_peer_credentials(int fd, uint32_t *uid, uint32_t *gid, int32_t *pid);

/** Writes the peer address ("127.0.0.1:5555", "[::1]:5555" or "unix") into buf. */
/* The connection's socket (valid while the connection lives), or -1. */
int procref_mhd_connection_fd(struct MHD_Connection *connection);
void procref_mhd_client_address(struct MHD_Connection *connection, char *buf, size_t size);

#endif
