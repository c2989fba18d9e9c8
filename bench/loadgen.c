/*
 * loadgen: a small native HTTP/1.1 keep-alive load generator for lease cycles.
 *
 * A Python asyncio client tops out near 5k two-request cycles/s on this machine and adds
 * its own latency, so the lease-cycle figures of bench/run.py come from this program.
 * One thread per client, each with one keep-alive TCP connection (TCP_NODELAY), doing
 * acquire + release in a loop; a cycle's latency is the time from sending the acquire to
 * reading the whole release answer.
 *
 *   loadgen procrefd PORT CLIENTS SECONDS TOKEN SERVICE
 *   loadgen etcd     PORT CLIENTS SECONDS
 *
 * Prints one JSON object: cycles, seconds, cycles_per_s, p50_ms, p99_ms (whole cycle),
 * acquire_p50_ms (the acquire alone), errors.
 * Built by bench/run.py with `cc -O2 -pthread`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_PROCREFD, MODE_ETCD };

static enum mode mode;
static int port;
static double seconds;
static const char *token = "";
static const char *service = "ready";
static double deadline;

struct worker {
    pthread_t thread;
    double *latencies;
    double *acquire_latencies;
    size_t count, capacity;
    long errors;
    char buffer[65536];
    size_t buffered;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int connect_loopback(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t n = send(fd, data, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

static int fill(int fd, struct worker *w) {
    if (w->buffered >= sizeof w->buffer - 1) return -1;
    ssize_t n;
    do n = recv(fd, w->buffer + w->buffered, sizeof w->buffer - 1 - w->buffered, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    w->buffered += (size_t)n;
    w->buffer[w->buffered] = 0;
    return 0;
}

/* Reads one response; copies its body (NUL-terminated) into `body`. Returns the status or -1. */
static int read_response(int fd, struct worker *w, char *body, size_t body_size) {
    char *end;
    while ((end = strstr(w->buffer, "\r\n\r\n")) == NULL)
        if (fill(fd, w) != 0) return -1;
    size_t header_length = (size_t)(end - w->buffer) + 4;
    int status = atoi(w->buffer + 9);
    long length = -1;
    int chunked = 0;
    for (char *line = strstr(w->buffer, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "content-length:", 15) == 0) length = atol(line + 15);
        if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked") < strstr(line, "\r\n")) chunked = 1;
    }
    size_t used = header_length, out = 0;
    if (chunked) {
        for (;;) {
            char *line_end;
            while ((line_end = strstr(w->buffer + used, "\r\n")) == NULL)
                if (fill(fd, w) != 0) return -1;
            long size = strtol(w->buffer + used, NULL, 16);
            size_t start = (size_t)(line_end - w->buffer) + 2;
            while (w->buffered < start + (size_t)size + 2)
                if (fill(fd, w) != 0) return -1;
            if (out + (size_t)size < body_size) {
                memcpy(body + out, w->buffer + start, (size_t)size);
                out += (size_t)size;
            }
            used = start + (size_t)size + 2;
            if (size == 0) break;
        }
    } else {
        if (length < 0) length = 0;
        while (w->buffered < header_length + (size_t)length)
            if (fill(fd, w) != 0) return -1;
        out = (size_t)length < body_size ? (size_t)length : body_size - 1;
        memcpy(body, w->buffer + header_length, out);
        used = header_length + (size_t)length;
    }
    body[out] = 0;
    memmove(w->buffer, w->buffer + used, w->buffered - used);
    w->buffered -= used;
    w->buffer[w->buffered] = 0;
    return status;
}

/* Copies the string value of "key" in a flat JSON object into `value`. */
static int json_string(const char *json, const char *key, char *value, size_t size) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(json, quoted);
    if (!at) return -1;
    at += strlen(quoted);
    while (*at == ' ' || *at == ':') at++;
    if (*at++ != '"') return -1;
    size_t n = 0;
    while (*at && *at != '"' && n + 1 < size) value[n++] = *at++;
    value[n] = 0;
    return n > 0 ? 0 : -1;
}

static int request(int fd, struct worker *w, const char *method, const char *path, const char *body,
                   char *answer, size_t answer_size) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, *token ? "Authorization: Bearer " : "", token, *token ? "\r\n" : "",
                     strlen(body), body);
    if (n <= 0 || (size_t)n >= sizeof head || send_all(fd, head, (size_t)n) != 0) return -1;
    return read_response(fd, w, answer, answer_size);
}

/* One acquire + release. Returns 0 on success. */
static int cycle(int fd, struct worker *w, double *acquired_at) {
    char answer[8192], id[128], path[256], body[256];
    if (mode == MODE_PROCREFD) {
        snprintf(path, sizeof path, "/v1/services/%s/leases", service);
        if (request(fd, w, "POST", path, "{\"ttl_ms\":60000}", answer, sizeof answer) != 201) return -1;
        *acquired_at = now();
        if (json_string(answer, "id", id, sizeof id) != 0) return -1;
        snprintf(path, sizeof path, "/v1/leases/%s", id);
        return request(fd, w, "DELETE", path, "", answer, sizeof answer) == 200 ? 0 : -1;
    }
    if (request(fd, w, "POST", "/v3/lease/grant", "{\"TTL\":60}", answer, sizeof answer) != 200) return -1;
    *acquired_at = now();
    if (json_string(answer, "ID", id, sizeof id) != 0) return -1;
    snprintf(body, sizeof body, "{\"ID\":\"%s\"}", id);
    return request(fd, w, "POST", "/v3/lease/revoke", body, answer, sizeof answer) == 200 ? 0 : -1;
}

static void *run(void *argument) {
    struct worker *w = argument;
    int fd = connect_loopback();
    while (now() < deadline) {
        if (fd < 0) {
            w->errors++;
            usleep(10000);
            fd = connect_loopback();
            continue;
        }
        double begun = now(), acquired_at = 0;
        if (cycle(fd, w, &acquired_at) != 0) {
            w->errors++;
            close(fd);
            fd = -1;
            w->buffered = 0;
            w->buffer[0] = 0;
            continue;
        }
        if (w->count == w->capacity) {
            w->capacity = w->capacity ? w->capacity * 2 : 4096;
            w->latencies = realloc(w->latencies, w->capacity * sizeof *w->latencies);
            w->acquire_latencies = realloc(w->acquire_latencies, w->capacity * sizeof *w->acquire_latencies);
            if (!w->latencies || !w->acquire_latencies) abort();
        }
        w->acquire_latencies[w->count] = (acquired_at - begun) * 1000;
        w->latencies[w->count++] = (now() - begun) * 1000;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen procrefd PORT CLIENTS SECONDS TOKEN SERVICE | loadgen etcd PORT CLIENTS SECONDS\n");
        return 2;
    }
    mode = strcmp(argv[1], "etcd") == 0 ? MODE_ETCD : MODE_PROCREFD;
    port = atoi(argv[2]);
    int clients = atoi(argv[3]);
    seconds = atof(argv[4]);
    if (mode == MODE_PROCREFD) {
        if (argc < 7) return 2;
        token = argv[5];
        service = argv[6];
    }
    if (clients < 1 || clients > 1024 || seconds <= 0) return 2;
    struct worker *workers = calloc((size_t)clients, sizeof *workers);
    if (!workers) return 1;
    double started = now();
    deadline = started + seconds;
    for (int i = 0; i < clients; i++) pthread_create(&workers[i].thread, NULL, run, &workers[i]);
    size_t total = 0;
    long errors = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(workers[i].thread, NULL);
        total += workers[i].count;
        errors += workers[i].errors;
    }
    double elapsed = now() - started;
    double *all = malloc((total ? total : 1) * sizeof *all);
    double *acquires = malloc((total ? total : 1) * sizeof *acquires);
    size_t at = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + at, workers[i].latencies, workers[i].count * sizeof *all);
        memcpy(acquires + at, workers[i].acquire_latencies, workers[i].count * sizeof *acquires);
        at += workers[i].count;
        free(workers[i].latencies);
        free(workers[i].acquire_latencies);
    }
    qsort(all, total, sizeof *all, compare);
    qsort(acquires, total, sizeof *acquires, compare);
    double p50 = total ? all[(size_t)(0.50 * (total - 1))] : -1;
    double p99 = total ? all[(size_t)(0.99 * (total - 1))] : -1;
    double acquire_p50 = total ? acquires[(size_t)(0.50 * (total - 1))] : -1;
    printf("{\"cycles\": %zu, \"seconds\": %.3f, \"cycles_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"acquire_p50_ms\": %.3f, \"errors\": %ld}\n",
           total, elapsed, total / elapsed, p50, p99, acquire_p50, errors);
    free(all);
    free(acquires);
    free(workers);
    return errors > 0 && total == 0 ? 1 : 0;
}
