# gdb commands for debugging the rustuml kernel process (kernel-skas,
# kernel-tt) with plain gdb or rust-gdb. Load with
#   gdb -x hal-uml-x86_64/gdb/rustuml.gdb -p PID
# or `source hal-uml-x86_64/gdb/rustuml.gdb` at the gdb prompt.
# docs/debugging.md shows a whole session.

set pagination off
set print pretty on

# Signals the kernel uses itself, which must reach it without stopping
# gdb: the timer kick (SIGALRM), stub and helper deaths (SIGCHLD), the
# console's window changes (SIGWINCH), closed sockets (SIGPIPE).
handle SIGALRM nostop noprint pass
handle SIGCHLD nostop noprint pass
handle SIGWINCH nostop noprint pass
handle SIGPIPE nostop noprint pass

# Rust's own pretty printers (String, Vec, BTreeMap...), from the toolchain
# that built the kernel, as rust-gdb loads them.
python
import os, subprocess
try:
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    printers = os.path.join(sysroot, "lib", "rustlib", "etc", "gdb_load_rust_pretty_printers.py")
    if os.path.isfile(printers):
        gdb.execute("source " + printers)
except OSError:
    pass
end

# Handlers are generic over the HAL, so each backend has its copy, named
# kernel_core::syscall::FAMILY::NAME<BACKEND>: find them by name.
python
import re

class RustumlBreakSyscall(gdb.Command):
    """Break in kernel-core's handler of system call NAME (every backend's
copy), e.g. `rustuml-break-syscall getppid`. Handlers are
kernel_core::syscall::FAMILY::NAME, one file per family."""

    def __init__(self):
        super().__init__("rustuml-break-syscall", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        name = arg.strip()
        if not re.fullmatch(r"[a-z_0-9]+", name):
            raise gdb.GdbError("usage: rustuml-break-syscall NAME (e.g. getppid, openat)")
        listing = gdb.execute("info functions ^kernel_core::syscall::[a-z_]*::%s<" % name, to_string=True)
        found = sorted(set(re.findall(r"fn (kernel_core::syscall::[a-z_]+::%s<[^(]*>)\(" % name, listing)))
        if not found:
            raise gdb.GdbError("no system call handler named %s" % name)
        for f in found:
            gdb.Breakpoint("'%s'" % f)

RustumlBreakSyscall()
end

define rustuml-task
  printf "pid %d (thread group %d), parent %d, process group %d, session %d\n", cx.t.pid, cx.t.tgid, cx.t.ppid, cx.t.pgid, cx.t.sid
  print cx.t.exe
  print cx.t.state
end
document rustuml-task
In a system call handler's frame: the calling guest task (pid, parent,
group, executable, state). Its variables survive only in a kernel built
without optimisation (`cargo build -p hal-uml-x86_64 --bin kernel-skas`,
target/debug/kernel-skas); in the release build use `bt` and breakpoints.
end

define rustuml-ctx
  print/x cx.t.ctx.regs
end
document rustuml-ctx
In a system call handler's frame: the calling task's user registers.
end
