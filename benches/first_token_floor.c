/* The floor for a log parser that keys on the first word after a Postfix
 * tag: the least any such parser does per line, and nothing more. Per line:
 * test the timestamp's shape (RFC 3164 or RFC 3339), find the host's end,
 * compare "postfix/", find the pid's '[' and ']', take the 8 bytes after
 * "]: " together with the program's first 8 bytes and count them in a
 * 256-slot histogram. No queue ids, no fields, no validation of names,
 * digits or queue ids: the real parser does all of those.
 * Lines are read like postfix-agentx reads them: 128 KiB read(2) calls.
 * Usage: first_token_floor FILE   (prints: lines, Postfix lines, checksum) */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char buf[128 * 1024];
static uint64_t histogram[256];

static uint64_t word_at(const char *line, size_t len, size_t at) {
    uint64_t w = 0;
    if (at + 8 <= len) memcpy(&w, line + at, 8);
    return w;
}

static size_t find(const char *line, size_t len, size_t from, char c) {
    if (from >= len) return len;
    const char *p = memchr(line + from, c, len - from);
    return p ? (size_t)(p - line) : len;
}

static int line_event(const char *line, size_t len) {
    size_t host;
    if (len > 16 && line[3] == ' ' && line[15] == ' ') {
        host = 16;
    } else if (len > 20 && line[4] == '-' && line[10] == 'T') {
        host = find(line, len, 19, ' ') + 1;
    } else {
        return 0;
    }
    size_t tag = find(line, len, host, ' ') + 1;
    uint64_t postfix;
    memcpy(&postfix, "postfix/", 8);
    if (word_at(line, len, tag) != postfix) return 0;
    size_t open = find(line, len, tag, '[');
    size_t close = find(line, len, open, ']');
    if (close + 3 > len) return 0;
    uint64_t h = (word_at(line, len, close + 3) ^ word_at(line, len, tag + 8)) * 0x9E3779B97F4A7C15ull;
    histogram[h >> 56]++;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: first_token_floor FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    size_t have = 0;
    unsigned long long lines = 0, postfix = 0;
    for (;;) {
        ssize_t got = read(fd, buf + have, sizeof buf - have);
        if (got < 0) {
            perror("read");
            return 1;
        }
        if (got == 0) break;
        have += (size_t)got;
        size_t pos = 0;
        const char *nl;
        while ((nl = memchr(buf + pos, '\n', have - pos))) {
            size_t end = (size_t)(nl - buf);
            postfix += line_event(buf + pos, end - pos);
            lines++;
            pos = end + 1;
        }
        if (pos == 0 && have == sizeof buf) pos = have; /* a line longer than the buffer: skip it */
        memmove(buf, buf + pos, have - pos);
        have -= pos;
    }
    uint64_t sum = 0;
    for (int i = 0; i < 256; i++) sum += histogram[i] * (uint64_t)(i + 1);
    printf("%llu lines, %llu Postfix lines, checksum %llu\n", lines, postfix, (unsigned long long)sum);
    return 0;
}
