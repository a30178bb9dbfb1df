/* ptrace and process_vm_* edge cases: each line is "what: result", the
 * same natively and in the guest (no pids, no addresses). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <stddef.h>
#include <unistd.h>

static volatile long secret = 0x1122334455667788L;

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s: %s\n", what, strerrorname_np(errno));
    else
        printf("%s: ok\n", what);
    fflush(stdout);
}

static const char *status_str(int st) {
    static char b[64];
    if (WIFEXITED(st)) snprintf(b, sizeof b, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(b, sizeof b, "killed %s", sigabbrev_np(WTERMSIG(st)));
    else if (WIFSTOPPED(st)) snprintf(b, sizeof b, "stopped %s event %d%s", sigabbrev_np(WSTOPSIG(st) & 0x7f), st >> 16, (WSTOPSIG(st) & 0x80) ? " sysgood" : "");
    else snprintf(b, sizeof b, "?%x", st);
    return b;
}

static int code_fn(int x) { return x * 3; }

/* A child that is traced and stopped: TRACEME + raise(SIGSTOP). */
static pid_t traced_child(void (*body)(void)) {
    pid_t p = fork();
    if (p == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        body();
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    printf("first stop: %s\n", status_str(st));
    return p;
}

static void idle(void) { for (;;) pause(); }
static void getpid_twice(void) {
    long r = syscall(SYS_getpid);
    printf("child getpid after tracer's edit: %ld\n", r);
    fflush(stdout);
    _exit(0);
}
static void forker(void) {
    pid_t c = fork();
    if (c == 0) _exit(7);
    int st;
    waitpid(c, &st, 0);
    _exit(WEXITSTATUS(st));
}
static void execer(void) {
    execl("/bin/true", "true", (char *)0);
    _exit(99);
}

int main(void) {
    int st;
    setvbuf(stdout, 0, _IOLBF, 0);
    if (getpid() != 1) report("attach init", ptrace(PTRACE_ATTACH, 1, 0, 0));
    else printf("attach init: EPERM\n");
    report("attach self", ptrace(PTRACE_ATTACH, getpid(), 0, 0));
    report("attach nobody", ptrace(PTRACE_ATTACH, 999999, 0, 0));
    report("cont untraced", ptrace(PTRACE_CONT, getppid(), 0, 0));
    report("bad request", ptrace(0x7777, getppid(), 0, 0));

    /* Memory and registers of a stopped tracee. */
    pid_t c = traced_child(idle);
    errno = 0;
    long w = ptrace(PTRACE_PEEKDATA, c, (void *)&secret, 0);
    printf("peek secret: %s\n", w == 0x1122334455667788L ? "match" : "MISMATCH");
    report("peek null", ptrace(PTRACE_PEEKDATA, c, (void *)0, 0));
    report("peek kernel half", ptrace(PTRACE_PEEKDATA, c, (void *)0xffff800000000000UL, 0));
    report("poke null", ptrace(PTRACE_POKEDATA, c, (void *)0, 1));
    long orig = ptrace(PTRACE_PEEKTEXT, c, (void *)code_fn, 0);
    report("poke read-only text", ptrace(PTRACE_POKETEXT, c, (void *)code_fn, 0xcc));
    long now = ptrace(PTRACE_PEEKTEXT, c, (void *)code_fn, 0);
    printf("text after poke: %s\n", (now & 0xff) == 0xcc ? "int3" : "unchanged");
    printf("own text unchanged: %s\n", *(unsigned char *)code_fn != 0xcc ? "yes" : "NO");
    ptrace(PTRACE_POKETEXT, c, (void *)code_fn, orig);
    struct user_regs_struct regs;
    report("getregs", ptrace(PTRACE_GETREGS, c, 0, &regs));
    report("getregs bad buffer", ptrace(PTRACE_GETREGS, c, 0, (void *)8));
    report("setregs", ptrace(PTRACE_SETREGS, c, 0, &regs));
    errno = 0;
    long dr7 = ptrace(PTRACE_PEEKUSER, c, (void *)offsetof(struct user, u_debugreg[7]), 0);
    printf("peekuser dr7: %ld %s\n", dr7, errno ? strerrorname_np(errno) : "");
    report("peekuser unaligned", ptrace(PTRACE_PEEKUSER, c, (void *)3, 0));
    report("peekuser past end", ptrace(PTRACE_PEEKUSER, c, (void *)(sizeof(struct user) + 8), 0));
    struct user_fpregs_struct fp;
    report("getfpregs", ptrace(PTRACE_GETFPREGS, c, 0, &fp));
    printf("fp mxcsr: %#x\n", fp.mxcsr & 0xffc0);
    report("setoptions bad", ptrace(PTRACE_SETOPTIONS, c, 0, (void *)0x80000000L));
    report("cont bad signal", ptrace(PTRACE_CONT, c, 0, (void *)100));
    /* process_vm_readv and /proc/PID/mem of the tracee. */
    long got = 0;
    struct iovec l = {&got, sizeof got}, r = {(void *)&secret, sizeof got};
    long n = process_vm_readv(c, &l, 1, &r, 1, 0);
    printf("process_vm_readv: %ld %s\n", n, got == 0x1122334455667788L ? "match" : "MISMATCH");
    struct iovec bad = {(void *)16, 8};
    report("process_vm_readv unmapped", process_vm_readv(c, &l, 1, &bad, 1, 0));
    report("process_vm_readv flags", process_vm_readv(c, &l, 1, &r, 1, 1));
    report("process_vm_readv nobody", process_vm_readv(999999, &l, 1, &r, 1, 0));
    long put = 42;
    struct iovec lp = {&put, sizeof put};
    n = process_vm_writev(c, &lp, 1, &r, 1, 0);
    printf("process_vm_writev: %ld peek %ld\n", n, ptrace(PTRACE_PEEKDATA, c, (void *)&secret, 0));
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", c);
    int fd = open(path, O_RDWR);
    report("open /proc/PID/mem", fd);
    long m = 0;
    n = pread(fd, &m, 8, (off_t)(unsigned long)&secret);
    printf("pread mem: %ld %ld\n", n, m);
    long v = 77;
    n = pwrite(fd, &v, 8, (off_t)(unsigned long)&secret);
    printf("pwrite mem: %ld peek %ld\n", n, ptrace(PTRACE_PEEKDATA, c, (void *)&secret, 0));
    n = pwrite(fd, &v, 8, (off_t)(unsigned long)code_fn);
    printf("pwrite mem into text: %ld\n", n);
    report("pread mem unmapped", pread(fd, &m, 8, 16));
    close(fd);
    /* Killed while stopped. */
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    printf("killed while stopped: %s\n", status_str(st));
    report("ptrace after death", ptrace(PTRACE_CONT, c, 0, 0));

    /* Syscall stops: skip getpid, set its result. */
    c = traced_child(getpid_twice);
    ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACESYSGOOD);
    for (int i = 0; i < 40; i++) {
        ptrace(PTRACE_SYSCALL, c, 0, 0);
        waitpid(c, &st, 0);
        if (!WIFSTOPPED(st)) break;
        ptrace(PTRACE_GETREGS, c, 0, &regs);
        if (regs.orig_rax == SYS_getpid) {
            printf("enter stop: %s rax=%lld\n", status_str(st), (long long)regs.rax);
            regs.orig_rax = -1;
            ptrace(PTRACE_SETREGS, c, 0, &regs);
            ptrace(PTRACE_SYSCALL, c, 0, 0);
            waitpid(c, &st, 0);
            ptrace(PTRACE_GETREGS, c, 0, &regs);
            printf("exit stop: %s rax=%lld\n", status_str(st), (long long)regs.rax);
            regs.rax = 4242;
            ptrace(PTRACE_SETREGS, c, 0, &regs);
            ptrace(PTRACE_CONT, c, 0, 0);
            break;
        }
    }
    waitpid(c, &st, 0);
    printf("syscall child: %s\n", status_str(st));

    /* Fork events: the grandchild is attached and starts stopped. */
    c = traced_child(forker);
    ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACEFORK | PTRACE_O_TRACEEXIT);
    ptrace(PTRACE_CONT, c, 0, 0);
    waitpid(c, &st, 0);
    printf("fork event: %s\n", status_str(st));
    unsigned long msg = 0;
    ptrace(PTRACE_GETEVENTMSG, c, 0, &msg);
    pid_t gc = msg;
    waitpid(gc, &st, __WALL);
    printf("grandchild: %s\n", status_str(st));
    ptrace(PTRACE_CONT, gc, 0, 0);
    waitpid(gc, &st, __WALL);
    printf("grandchild exit event: %s\n", status_str(st));
    ptrace(PTRACE_CONT, gc, 0, 0);
    waitpid(gc, &st, __WALL);
    printf("grandchild end: %s\n", status_str(st));
    ptrace(PTRACE_CONT, c, 0, 0);
    waitpid(c, &st, 0);
    printf("child signal stop: %s\n", status_str(st));
    ptrace(PTRACE_CONT, c, 0, 0);
    waitpid(c, &st, 0);
    printf("child exit event: %s\n", status_str(st));
    ptrace(PTRACE_GETEVENTMSG, c, 0, &msg);
    printf("exit event msg: %#lx\n", msg);
    ptrace(PTRACE_CONT, c, 0, 0);
    waitpid(c, &st, 0);
    printf("child end: %s\n", status_str(st));

    /* Exec: the legacy SIGTRAP. */
    c = traced_child(execer);
    ptrace(PTRACE_CONT, c, 0, 0);
    waitpid(c, &st, 0);
    printf("after exec: %s\n", status_str(st));
    ptrace(PTRACE_CONT, c, 0, 0);
    waitpid(c, &st, 0);
    printf("exec child: %s\n", status_str(st));

    /* The tracer exits: its tracee goes on (detached), or dies with EXITKILL. */
    for (int exitkill = 0; exitkill < 2; exitkill++) {
        int pfd[2];
        pipe(pfd);
        pid_t tracer = fork();
        if (tracer == 0) {
            pid_t t = fork();
            if (t == 0) {
                close(pfd[0]);
                ptrace(PTRACE_TRACEME, 0, 0, 0);
                raise(SIGSTOP);
                /* Runs once the tracer is gone (detached). */
                write(pfd[1], "x", 1);
                _exit(5);
            }
            waitpid(t, &st, 0);
            if (exitkill) ptrace(PTRACE_SETOPTIONS, t, 0, PTRACE_O_EXITKILL);
            _exit(0); /* leaves the tracee in its stop */
        }
        close(pfd[1]);
        waitpid(tracer, &st, 0);
        char b;
        ssize_t got = read(pfd[0], &b, 1);
        printf("tracer exit%s: tracee %s\n", exitkill ? " with EXITKILL" : "", got == 1 ? "ran on" : "is gone");
        close(pfd[0]);
    }

    /* A loop: B traces A while A traces B (Linux allows it; rustuml
     * refuses with EPERM: the one line that differs). */
    {
        int pfd[2];
        pipe(pfd);
        pid_t me = getpid();
        pid_t b = fork();
        if (b == 0) {
            /* B: wait for A to attach, then try to attach A. */
            char x;
            read(pfd[0], &x, 1);
            long r = ptrace(PTRACE_SEIZE, me, 0, 0);
            printf("loop attach: %s\n", r < 0 ? strerrorname_np(errno) : "ok");
            fflush(stdout);
            _exit(0);
        }
        report("attach B", ptrace(PTRACE_SEIZE, b, 0, 0));
        write(pfd[1], "x", 1);
        for (;;) {
            if (waitpid(b, &st, __WALL) < 0) break;
            if (WIFEXITED(st) || WIFSIGNALED(st)) break;
            int sig = WSTOPSIG(st);
            ptrace(PTRACE_CONT, b, 0, (st >> 16) ? 0 : sig);
        }
        printf("B: %s\n", status_str(st));
    }
    return 0;
}
