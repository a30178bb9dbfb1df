/* A static C guest program, built by `cargo xtask test` twice: with gcc
 * (glibc) and with musl-gcc (musl). Both must print the same thing natively
 * and inside the kernel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("hello from C\n");
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    /* Exercise the allocator (brk or mmap, depending on the libc). */
    size_t total = 0;
    for (int i = 0; i < 64; i++) {
        char *p = malloc(1000 * (i + 1));
        if (!p) { printf("malloc failed\n"); return 1; }
        memset(p, i, 1000 * (i + 1));
        total += (unsigned char)p[999 * (i + 1)];
        free(p);
    }
    char *big = malloc(4 << 20);
    if (!big) { printf("big malloc failed\n"); return 1; }
    memset(big, 7, 4 << 20);
    printf("checksum=%zu big=%d\n", total, big[(4 << 20) - 1]);
    free(big);
    printf("pid positive: %s\n", getpid() > 0 ? "yes" : "no");
    return argc > 1 ? atoi(argv[argc - 1]) : 0;
}
