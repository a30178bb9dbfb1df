//! The rows of the table: what each operation runs and how it is read.

use super::*;

/// A row of `host_tree.rs` (a command over the host's own tree, in ns).
pub(super) const fn host_tree_row(name: &'static str, label: &'static str) -> Op {
    Op {
        name,
        label,
        unit: "ns",
        better: Better::Lower,
        how: How::HostTree,
        target: None,
        macro_: true,
    }
}

/// A disk row of `bench_disk` (`/dev/ubda` in the guest, the image file natively).
pub(super) const fn disk_row(name: &'static str, label: &'static str, unit: &'static str, better: Better, full: usize, quick: usize) -> Op {
    Op { name, label, unit, better, how: How::Guest { prog: "bench_disk", full, quick, path: PathArg::Disk }, target: None, macro_: false }
}

pub(super) const OPS: &[Op] = &[
    disk_row("disk_randread_4k", "disk: 4 KiB random read (/dev/ubda)", "ns", Better::Lower, 20_000, 2_000),
    disk_row("disk_randwrite_4k", "disk: 4 KiB random write + fdatasync (/dev/ubda)", "ns", Better::Lower, 20_000, 2_000),
    disk_row("disk_seqread_1m", "disk: sequential 1 MiB reads (/dev/ubda)", "MB/s", Better::Higher, 8, 2),
    disk_row("disk_seqwrite_1m", "disk: sequential 1 MiB writes + fdatasync (/dev/ubda)", "MB/s", Better::Higher, 4, 1),
    Op {
        name: "null_syscall",
        label: "null system call (getppid)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 200_000,
            quick: 20_000,
            path: PathArg::None,
        },
        target: Some((3_000.0, 2_000.0)),
        macro_: false,
    },
    Op {
        name: "open_close",
        label: "open+close",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::File,
        },
        target: Some((8_000.0, 6_000.0)),
        macro_: false,
    },
    Op {
        name: "stat",
        label: "stat",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::File,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "pipe_rtt",
        label: "pipe round trip (2 processes)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 5_000,
            quick: 500,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "ctx_switch",
        label: "context switch (sched_yield hand-off, 2 processes, 1 CPU)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 5_000,
            quick: 200,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "fork_exit",
        label: "fork+exit+wait",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 300,
            quick: 30,
            path: PathArg::None,
        },
        target: Some((300_000.0, 300_000.0)),
        macro_: false,
    },
    Op {
        name: "fork_exec",
        label: "fork+exec+wait (static)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 60,
            quick: 8,
            path: PathArg::Program,
        },
        target: Some((1_000_000.0, 1_000_000.0)),
        macro_: false,
    },
    Op {
        name: "page_fault",
        label: "page fault (per 4 KiB page)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 16_384,
            quick: 2_048,
            path: PathArg::None,
        },
        target: Some((3_000.0, 3_000.0)),
        macro_: false,
    },
    Op {
        name: "mmap_munmap",
        label: "mmap+munmap (64 KiB)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "signal_rtt",
        label: "signal to self, handler, sigreturn",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "clock_gettime",
        label: "clock_gettime(CLOCK_MONOTONIC) (vDSO)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 2_000_000,
            quick: 200_000,
            path: PathArg::None,
        },
        target: Some((50.0, 50.0)),
        macro_: false,
    },
    Op {
        name: "nanosleep_hog",
        label: "nanosleep(1 ms) beside a CPU hog on the same CPU",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_ops",
            full: 500,
            quick: 50,
            path: PathArg::None,
        },
        target: Some((2_000_000.0, 2_000_000.0)),
        macro_: false,
    },
    Op {
        name: "file_rw",
        label: "file write+read, 64 KiB",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_ops",
            full: 20_000,
            quick: 1_000,
            path: PathArg::Dir,
        },
        target: Some((3_000.0, 3_000.0)),
        macro_: false,
    },
    Op {
        name: "pipe_bw",
        label: "pipe bandwidth, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_ops",
            full: 5_000,
            quick: 500,
            path: PathArg::None,
        },
        target: Some((1_500.0, 1_500.0)),
        macro_: false,
    },
    Op {
        name: "boot_first_output",
        label: "boot to first guest output",
        unit: "ns",
        better: Better::Lower,
        how: How::BootFirstOutput,
        target: Some((20_000_000.0, 20_000_000.0)),
        macro_: false,
    },
    Op {
        name: "boot_to_exit",
        label: "boot, run hello, exit",
        unit: "ns",
        better: Better::Lower,
        how: How::BootToExit,
        target: None,
        macro_: false,
    },
    Op {
        name: "boot_shell",
        label: "boot, sh -c exit, power off (full root)",
        unit: "ns",
        better: Better::Lower,
        how: How::BootShell,
        target: None,
        macro_: false,
    },
    Op {
        name: "idle_cpu",
        label: "idle guest, host CPU",
        unit: "%",
        better: Better::Lower,
        how: How::IdleCpu,
        target: Some((0.5, 0.5)),
        macro_: false,
    },
    Op {
        name: "spawn_loop",
        label: "macro: sh loop spawning /bin/true, per process",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 1_000,
            quick: 20,
            path: PathArg::None,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "tar_gz",
        label: "macro: tar czf + xzf of 128 files (1.8 MiB) in tmpfs",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 3,
            quick: 1,
            path: PathArg::Tmpfs,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "python_start",
        label: "macro: python3 -c pass",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 10,
            quick: 2,
            path: PathArg::None,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "futex_ping",
        label: "macro: futex ping-pong, 2 threads (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_macro",
            full: 20_000,
            quick: 2_000,
            path: PathArg::None,
        },
        target: None,
        macro_: true,
    },
    Op {
        name: "tcp_lo_rr",
        label: "TCP 1-byte request/response over 127.0.0.1, 2 processes (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_net",
            full: 5_000,
            quick: 300,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_lo_bw",
        label: "TCP bandwidth over 127.0.0.1, 2 processes, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_net",
            full: 200,
            quick: 30,
            path: PathArg::None,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_nat_rr",
        label: "TCP 1-byte request/response, guest client to host server via NAT (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Guest {
            prog: "bench_net",
            full: 5_000,
            quick: 300,
            path: PathArg::HostServer,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_nat_bw",
        label: "TCP bandwidth, guest client to host server via NAT, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Guest {
            prog: "bench_net",
            full: 1_000,
            quick: 30,
            path: PathArg::HostServer,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_fwd_rr",
        label: "TCP 1-byte request/response, host client to guest server via hostfwd (round trip)",
        unit: "ns",
        better: Better::Lower,
        how: How::Forwarded {
            full: 5_000,
            quick: 300,
        },
        target: None,
        macro_: false,
    },
    Op {
        name: "tcp_conn_first",
        label: "TCP connections/s over 127.0.0.1 (connect, accept, close), first tenth",
        unit: "conn/s",
        better: Better::Higher,
        how: How::Guest { prog: "bench_net", full: 20_000, quick: 500, path: PathArg::None },
        target: None,
        macro_: true,
    },
    Op {
        name: "tcp_conn_last",
        label: "TCP connections/s over 127.0.0.1 (connect, accept, close), last tenth",
        unit: "conn/s",
        better: Better::Higher,
        how: How::Guest { prog: "bench_net", full: 20_000, quick: 500, path: PathArg::None },
        target: None,
        macro_: true,
    },
    Op {
        name: "tcp_idle_conn_mem",
        label: "kernel memory per idle established TCP socket (loopback, both ends)",
        unit: "B",
        better: Better::Lower,
        how: How::KernelMem { full: 2_000, quick: 200 },
        target: Some((16_384.0, 16_384.0)),
        macro_: true,
    },
    Op {
        name: "tcp_idle_listener_mem",
        label: "kernel memory per idle TCP listener",
        unit: "B",
        better: Better::Lower,
        how: How::KernelMem { full: 2_000, quick: 200 },
        target: Some((8_192.0, 8_192.0)),
        macro_: true,
    },
    Op {
        name: "ctrl_c_prompt",
        label: "Ctrl-C to the shell's next prompt, a CPU hog running (pty)",
        unit: "ns",
        better: Better::Lower,
        how: How::CtrlC,
        target: Some((20e6, 20e6)),
        macro_: true,
    },
    Op {
        name: "switch_ping",
        label: "ping round trip between two idle guests on a virtual switch",
        unit: "ns",
        better: Better::Lower,
        how: How::SwitchPing,
        target: Some((300_000.0, 300_000.0)),
        macro_: true,
    },
    Op {
        name: "http_fwd_ab",
        label: "HTTP, threaded server in the guest via hostfwd, ab -c 50, 4 KiB answers",
        unit: "req/s",
        better: Better::Higher,
        how: How::Forwarded {
            full: 20_000,
            quick: 500,
        },
        target: Some((5_000.0, 5_000.0)),
        macro_: true,
    },
    host_tree_row("host_find_cold", "host tree: find /usr -type f | wc -l, fresh guest (boot included)"),
    host_tree_row("host_find_warm", "host tree: find /usr -type f, second walk in the same guest"),
    host_tree_row("host_cat_headers", "host tree: cat of 3,000 headers of /usr/include (boot included)"),
    host_tree_row("host_gcc_c", "host tree: gcc -O2 -c of a 300-line file (boot included)"),
    host_tree_row("host_git_status", "host tree: git status of this checkout (boot included)"),
    host_tree_row("host_python_start", "host tree: the host's python3 -c pass (boot included)"),
    host_tree_row("do_boot", "host tree: do to the exit of the host's /bin/true"),
    Op {
        name: "tcp_fwd_bw",
        label: "TCP bandwidth, host client to guest server via hostfwd, 64 KiB writes",
        unit: "MB/s",
        better: Better::Higher,
        how: How::Forwarded {
            full: 1_000,
            quick: 30,
        },
        target: None,
        macro_: false,
    },
];

/// Whether `op` is a network row (`bench_net`): the peers skip these.
pub(super) fn is_net(op: &Op) -> bool {
    matches!(op.how, How::Forwarded { .. } | How::KernelMem { .. })
        || matches!(
            op.how,
            How::Guest {
                prog: "bench_net",
                ..
            }
        )
}

/// Whether `op` needs the guest's user-mode NAT interface (`--net user`).
pub(super) fn needs_nat(op: &Op) -> bool {
    matches!(
        op.how,
        How::Guest {
            path: PathArg::HostServer,
            ..
        }
    )
}

/// Names of every operation, in table order (what a well-formed JSON has).
pub fn op_names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.name).collect()
}
