/* What reading a log costs before any parsing: count its newlines with
 * memchr, the file read the way postfix-agentx reads it (128 KiB read(2)
 * calls) or mapped, to see whether mapping saves the kernel's copy.
 * Compare user and sys time of the modes with /usr/bin/time:
 *   cc -O2 -o /tmp/read_floor benches/read_floor.c
 *   for m in read mmap populate windows; do
 *     /usr/bin/time -f "$m %U user %S sys" /tmp/read_floor FILE $m; done
 * Modes: read (128 KiB buffer), mmap (whole file, MADV_SEQUENTIAL),
 * populate (whole file, MAP_POPULATE), windows (4 MiB maps, unmapped after
 * use). Prints the number of lines. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char buf[128 * 1024];

static long count(const char *p, size_t len) {
    long lines = 0;
    const char *end = p + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

static long mapped(int fd, size_t size, size_t window, int flags) {
    long lines = 0;
    for (size_t off = 0; off < size; off += window) {
        size_t len = size - off < window ? size - off : window;
        char *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE | flags, fd, (off_t)off);
        if (p == MAP_FAILED) {
            perror("mmap");
            return -1;
        }
        madvise(p, len, MADV_SEQUENTIAL);
        lines += count(p, len);
        munmap(p, len);
    }
    return lines;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE read|mmap|populate|windows\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    size_t size = (size_t)st.st_size;
    const char *mode = argv[2];
    long lines = 0;
    if (strcmp(mode, "read") == 0) {
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) lines += count(buf, (size_t)n);
        if (n < 0) {
            perror("read");
            return 1;
        }
    } else if (strcmp(mode, "mmap") == 0) {
        lines = size ? mapped(fd, size, size, 0) : 0;
    } else if (strcmp(mode, "populate") == 0) {
        lines = size ? mapped(fd, size, size, MAP_POPULATE) : 0;
    } else if (strcmp(mode, "windows") == 0) {
        lines = mapped(fd, size, 4u << 20, 0);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (lines < 0) return 1;
    printf("%ld\n", lines);
    return 0;
}
