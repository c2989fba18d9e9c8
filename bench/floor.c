/*
 * floor: what the kernel alone charges a server per lease request on this machine.
 *
 * It models procrefd's fast path without procrefd: one server thread per keep-alive TCP
 * connection reads a request, makes a round trip with its own helper process over a Unix
 * socket pair (as procrefd does with a pooled holder: a line out, poll, a line back), and
 * writes a fixed answer. No HTTP parsing, no SQLite, no Swift. Clients run in another
 * process, one thread and one connection each, as bench/loadgen.c does.
 *
 *   floor CLIENTS SECONDS
 *
 * Prints one JSON object: requests, requests_per_s, and the server process's CPU
 * (utime+stime, its threads only) per request and per cycle (two requests: an acquire and
 * a release). Built and run by bench/run.py.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char request[] = "POST /v1/services/ready/leases HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n{\"ttl_ms\":60000}";
static const char answer[] = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"
                             "{\"id\":\"l_0000000000000000000000000\",\"count\":2,\"holder_pid\":12345}";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int read_exactly(int fd, char *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

/* The helper: answers every line with one line, as a pooled holder does. */
static void helper(int fd) {
    char line[64];
    while (read(fd, line, sizeof line) > 0)
        if (write(fd, "acquired\n", 9) != 9) break;
    _exit(0);
}

struct connection {
    int client;
    int helper;
};

static void *serve(void *arg) {
    struct connection *c = arg;
    char buf[sizeof request];
    char line[64];
    while (read_exactly(c->client, buf, sizeof request - 1) == 0) {
        if (write(c->helper, "6586384 60000 0\n", 16) != 16) break;
        struct pollfd p = {.fd = c->helper, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1 || recv(c->helper, line, sizeof line, MSG_DONTWAIT) <= 0) break;
        if (write(c->client, answer, sizeof answer - 1) != (ssize_t)(sizeof answer - 1)) break;
    }
    return NULL;
}

static int port;
static double deadline;
static long counts[1024];

static void *client(void *arg) {
    long index = (long)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) return NULL;
    char buf[sizeof answer];
    while (now() < deadline) {
        if (write(fd, request, sizeof request - 1) != (ssize_t)(sizeof request - 1)) break;
        if (read_exactly(fd, buf, sizeof answer - 1) != 0) break;
        counts[index]++;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor CLIENTS SECONDS\n");
        return 2;
    }
    int clients = atoi(argv[1]);
    double seconds = atof(argv[2]);
    if (clients < 1 || clients > 1024 || seconds <= 0) return 2;
    signal(SIGPIPE, SIG_IGN);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1024) != 0) return 1;
    getsockname(listener, (struct sockaddr *)&address, &length);
    port = ntohs(address.sin_port);

    /* Counts come back through a pipe from the client process. */
    int results[2];
    if (pipe(results) != 0) return 1;
    pid_t clients_pid = fork();
    if (clients_pid == 0) {
        close(listener);
        deadline = now() + seconds;
        pthread_t threads[1024];
        for (long i = 0; i < clients; i++) pthread_create(&threads[i], NULL, client, (void *)i);
        long total = 0;
        for (long i = 0; i < clients; i++) {
            pthread_join(threads[i], NULL);
            total += counts[i];
        }
        if (write(results[1], &total, sizeof total) != sizeof total) _exit(1);
        _exit(0);
    }

    struct connection connections[1024];
    pthread_t threads[1024];
    pid_t helpers[1024];
    for (int i = 0; i < clients; i++) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return 1;
        helpers[i] = fork();
        if (helpers[i] == 0) {
            close(pair[0]);
            helper(pair[1]);
        }
        close(pair[1]);
        connections[i].helper = pair[0];
        connections[i].client = accept(listener, NULL, NULL);
        int one = 1;
        setsockopt(connections[i].client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double begun = now();
    for (int i = 0; i < clients; i++) pthread_create(&threads[i], NULL, serve, &connections[i]);
    long total = 0;
    if (read(results[0], &total, sizeof total) != sizeof total) return 1;
    double elapsed = now() - begun;
    getrusage(RUSAGE_SELF, &after);
    for (int i = 0; i < clients; i++) {
        shutdown(connections[i].client, SHUT_RDWR);
        close(connections[i].helper);
    }
    for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < clients; i++) waitpid(helpers[i], NULL, 0);
    waitpid(clients_pid, NULL, 0);

    double cpu = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1e6 + (after.ru_utime.tv_usec - before.ru_utime.tv_usec) +
                 (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1e6 + (after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    if (total <= 0) return 1;
    printf("{\"requests\": %ld, \"requests_per_s\": %.1f, \"server_cpu_us_per_request\": %.1f, \"server_cpu_us_per_cycle\": %.1f}\n",
           total, total / elapsed, cpu / total, 2 * cpu / total);
    return 0;
}
