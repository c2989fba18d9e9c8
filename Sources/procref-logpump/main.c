/* procref-logpump PATH MAX_BYTES KEEP
 *
 * A service's output, from its standard input (a pipe whose write end the service holds as
 * its stdout and stderr), appended to PATH. When PATH reaches MAX_BYTES it is rotated by
 * renaming, as supervisord's stdout_logfile_maxbytes and backups do: PATH.(KEEP-1) becomes
 * PATH.KEEP, ..., PATH becomes PATH.1, and a new PATH is started (KEEP 0: PATH is emptied
 * instead). MAX_BYTES 0 never rotates.
 *
 * It runs in its own session, outside the service's cgroup, and outlives procrefd (like a
 * lease holder): the service can always write. It ends when every write end is closed, that
 * is when the service and everything it started are gone, after writing what was left.
 * Exit codes: 0 end of input, 2 bad arguments, 3 the log cannot be opened. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *path;
static unsigned long long max_bytes;
static int keep;

static int open_log(unsigned long long *size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    struct stat info;
    *size = fstat(fd, &info) == 0 ? (unsigned long long)info.st_size : 0;
    return fd;
}

/* Renames the backups up by one and PATH to PATH.1, or empties PATH (KEEP 0); returns the
 * new log's descriptor. */
static int rotate(int fd, unsigned long long *size) {
    close(fd);
    if (keep == 0) {
        fd = open(path, O_WRONLY | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
        *size = 0;
        return fd >= 0 ? fd : open_log(size);
    }
    char from[PATH_MAX], to[PATH_MAX];
    for (int index = keep - 1; index >= 1; index--) {
        snprintf(from, sizeof from, "%s.%d", path, index);
        snprintf(to, sizeof to, "%s.%d", path, index + 1);
        rename(from, to); /* a missing backup is fine */
    }
    snprintf(to, sizeof to, "%s.1", path);
    rename(path, to);
    return open_log(size);
}

static int write_all(int fd, const char *bytes, size_t count) {
    while (count > 0) {
        ssize_t n = write(fd, bytes, count);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        bytes += n;
        count -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    char *end;
    path = argv[1];
    errno = 0;
    max_bytes = strtoull(argv[2], &end, 10);
    if (errno != 0 || *end != 0) return 2;
    long parsed = strtol(argv[3], &end, 10);
    if (*end != 0 || parsed < 0 || parsed > 100) return 2;
    keep = (int)parsed;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    unsigned long long size;
    int fd = open_log(&size);
    if (fd < 0) return 3;
    static char buffer[64 * 1024];
    for (;;) {
        ssize_t n = read(0, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        /* A line that would cross the bound stays whole in the file it began in. */
        size_t offset = 0;
        while (offset < (size_t)n) {
            size_t count = (size_t)n - offset;
            if (max_bytes > 0 && size + count >= max_bytes) {
                size_t room = size < max_bytes ? (size_t)(max_bytes - size) : 0;
                const char *newline = memrchr(buffer + offset, '\n', room < count ? room : count);
                if (newline != NULL) count = (size_t)(newline - (buffer + offset)) + 1;
                else if (size > 0) count = 0; /* no line ends before the bound: rotate first */
            }
            if (count > 0) {
                if (write_all(fd, buffer + offset, count) != 0) { /* a full disk: drop, go on reading */ }
                size += count;
                offset += count;
            }
            if (max_bytes > 0 && (size >= max_bytes || count == 0)) {
                fd = rotate(fd, &size);
                if (fd < 0) return 3;
            }
        }
    }
    close(fd);
    return 0;
}
