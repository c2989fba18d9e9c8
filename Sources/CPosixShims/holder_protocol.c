#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "procref_holder_protocol.h"

ssize_t procref_holder_write_line(int fd, const char *text) {
    char line[64];
    size_t n = strlen(text);
    if (n > sizeof line - 1) n = sizeof line - 1;
    memcpy(line, text, n);
    line[n] = '\n';
    return write(fd, line, n + 1);
}

ssize_t procref_holder_write_error(int fd, const char *what, int err) {
    char line[96];
    int n = snprintf(line, sizeof line, "%s %s %d\n", procref_holder_error, what, err);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    return write(fd, line, (size_t)n);
}

int procref_holder_is_release(const unsigned char *buffer, ssize_t n) {
    size_t length = strlen(procref_holder_release);
    return n > (ssize_t)length && memcmp(buffer, procref_holder_release, length) == 0 && buffer[length] == '\n';
}
