/* The floor for counting a hashed Postfix queue: open each directory and
 * read it with getdents64 into a 64 KiB buffer, counting regular files.
 * No name checks. With --stat, also statx each file (size, mtime, btime) and
 * sum sizes: the floor for bytes and oldest arrival.
 * Usage: getdents_floor [--stat] QUEUE_DIR/deferred */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static char buf[64 * 1024];
static int do_stat;
static unsigned long long bytes;

static long count(int dirfd, int depth) {
    long n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, dirfd, buf, sizeof buf);
        if (got <= 0)
            break;
        /* Subdirectories are opened after this buffer is consumed. */
        char subdirs[64][2];
        int nsub = 0;
        for (long off = 0; off < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *) (buf + off);
            off += d->d_reclen;
            if (d->d_type == DT_REG) {
                n++;
                if (do_stat) {
                    struct statx st;
                    if (statx(dirfd, d->d_name, AT_SYMLINK_NOFOLLOW,
                              STATX_SIZE | STATX_MTIME | STATX_BTIME, &st) == 0)
                        bytes += st.stx_size;
                }
            }
            else if (d->d_type == DT_DIR && d->d_name[0] != '.' && d->d_name[1] == 0
                     && depth == 0 && nsub < 64) {
                subdirs[nsub][0] = d->d_name[0];
                subdirs[nsub][1] = 0;
                nsub++;
            }
        }
        for (int i = 0; i < nsub; i++) {
            int fd = openat(dirfd, subdirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (fd >= 0) {
                n += count(fd, depth + 1);
                close(fd);
            }
        }
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--stat") == 0) {
        do_stat = 1;
        argv++;
        argc--;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s [--stat] DIR\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    printf("%ld\n", count(fd, 0));
    return 0;
}
