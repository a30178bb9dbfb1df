//! procfs: directories filled from kernel state when the path walk enters
//! them, file contents generated when they are opened (like Linux's
//! `seq_file`, a snapshot taken at the start of reading).
//!
//! Generated inodes carry their meaning in the inode number (at or above
//! [`PROC_BASE`]); the proc root is an ordinary directory of a proc
//! superblock and is refilled on every entry.
#![allow(clippy::arc_with_non_send_sync)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt::Write;

use hal::{AddressSpace, Prot};

use super::inode::{Fs, Inode, InodeRef, Kind, Meta};
use super::mount::FsType;
use super::perm::task_cred;
use crate::mm::VmaKind;
use crate::task::{Pid, Task, TaskState};
use crate::Errno;

/// Generated proc inodes have numbers from here up.
pub const PROC_BASE: u64 = 1 << 40;
const FD_BASE: u64 = 1 << 48;

/// Files directly in `/proc`.
const STATIC: [&str; 12] =
    ["meminfo", "cpuinfo", "uptime", "loadavg", "filesystems", "version", "stat", "cmdline", "swaps", "vmstat", "partitions", "diskstats"];
/// Entries of `/proc/<pid>/` (index + 1 is the low bits of the inode number).
const PID_FILES: [&str; 18] = [
    "stat", "status", "cmdline", "environ", "maps", "statm", "comm", "mounts", "mountinfo", "exe", "cwd", "root", "fd",
    "smaps", "smaps_rollup", "auxv", "mem", "task",
];
/// The low inode bits of a `/proc/<pid>/task/<tid>` entry (past every PID_FILES index).
const TASK_LINK: u64 = 0x800;

/// What kernel state procfs reads from.
pub struct ProcCtx<'a, S: AddressSpace> {
    /// All tasks but the caller.
    pub tasks: &'a crate::task::ProcessTable<S>,
    /// The caller (out of the task table while its call runs).
    pub cur: &'a Task<S>,
    /// The VFS (mount table).
    pub fs: &'a Fs,
    /// Monotonic time since boot, ns.
    pub now_ns: u64,
    /// Wall-clock time, ns since the epoch.
    pub realtime_ns: u64,
    /// `uname -r`.
    pub release: &'a str,
    /// The frame allocator (`/proc/meminfo`, `smaps`).
    pub frames: &'a crate::mm::Frames,
    /// Bytes of kernel objects charged to guest memory (`Slab` in
    /// `/proc/meminfo`): see [`slab_bytes`].
    pub slab_bytes: u64,
    /// The IP stack (`/proc/net/*`).
    pub net: &'a crate::net::inet::StackRef,
    /// CPU-time accounting (`/proc/stat`).
    pub clock: &'a crate::time::account::KernelClock,
}

/// Nanoseconds per clock tick (`USER_HZ` = 100).
const NS_PER_TICK: u64 = 10_000_000;

/// The state letter `ps` shows and its name in `status`.
fn state_of<S: AddressSpace>(t: &Task<S>) -> (char, &'static str) {
    match t.state {
        TaskState::Zombie(_) => ('Z', "zombie"),
        _ if t.stopped => ('T', "stopped"),
        TaskState::Runnable => ('R', "running"),
        // A vfork parent cannot be interrupted until its child lets go.
        TaskState::Blocked(b) if matches!(b.on, crate::task::WaitOn::Vfork(_)) => ('D', "disk sleep"),
        TaskState::Blocked(_) => ('S', "sleeping"),
    }
}

/// `/proc/net` (a directory) and its files after it.
const PROC_NET: u64 = PROC_BASE + 110;
/// `/proc/sys`, `/proc/sys/net`, `/proc/sys/net/ipv4`.
const PROC_SYS: [u64; 3] = [PROC_BASE + 200, PROC_BASE + 201, PROC_BASE + 202];
/// `/proc/sys/net/ipv4/ip_forward` (writable).
const PROC_IP_FORWARD: u64 = PROC_BASE + 203;

enum Node {
    Root,
    Static(usize),
    PidDir(Pid),
    PidEntry(Pid, usize),
    Fd(Pid, u64),
}

fn decode(ino: u64) -> Node {
    if ino >= FD_BASE {
        let rest = ino - FD_BASE;
        return Node::Fd((rest >> 24) as Pid, rest & 0xff_ffff);
    }
    if ino >= PROC_BASE + (1 << 12) {
        let rest = ino - PROC_BASE;
        let pid = ((rest >> 12) - 1) as Pid;
        let what = (rest & 0xfff) as usize;
        return if what == 0 { Node::PidDir(pid) } else { Node::PidEntry(pid, what - 1) };
    }
    if ino >= PROC_BASE {
        return Node::Static((ino - PROC_BASE) as usize);
    }
    Node::Root
}

fn pid_ino(pid: Pid, what: u64) -> u64 {
    PROC_BASE + (((pid as u64) + 1) << 12) + what
}

fn node(ino: u64, sb: u32, kind: Kind, perm: u32) -> InodeRef {
    let nlink = if matches!(kind, Kind::Dir(_)) { 2 } else { 1 };
    Arc::new(Inode { ino, meta: RefCell::new(Meta::new(perm, 0, nlink)), kind, sb, mounted: RefCell::new(None), fsdata: None, charge: Default::default() })
}

fn empty_dir() -> Kind {
    Kind::Dir(RefCell::new(BTreeMap::new()))
}

fn empty_file(fs: &Fs, sb: u32) -> Kind {
    Kind::File(fs.new_file_data(sb))
}

impl<S: AddressSpace> ProcCtx<'_, S> {
    fn task(&self, pid: Pid) -> Option<&Task<S>> {
        if self.cur.pid == pid {
            Some(self.cur)
        } else {
            self.tasks.get(pid)
        }
    }

    /// (user, system, children's user, children's system) CPU ns and the
    /// number of live threads of `t`'s process.
    fn group_times(&self, t: &Task<S>) -> ([u64; 4], usize) {
        let mut v = [0u64; 4];
        let mut threads = 0;
        for o in self.all().into_iter().filter(|o| o.tgid == t.tgid) {
            v[0] += o.utime_ns;
            v[1] += o.stime_ns;
            v[2] += o.child_times.0;
            v[3] += o.child_times.1;
            threads += usize::from(!o.is_zombie());
        }
        (v, threads.max(1))
    }

    /// Every task, the caller included, in pid order.
    fn all(&self) -> Vec<&Task<S>> {
        let mut v: Vec<&Task<S>> = self.tasks.iter().collect();
        v.push(self.cur);
        v.sort_by_key(|t| t.pid);
        v
    }

    /// The path-walk hook: refill `dir` if it is a proc directory.
    pub fn refresh(&self, dir: &InodeRef) {
        if self.fs.fstype(dir.sb) != FsType::Proc {
            return;
        }
        let Kind::Dir(children) = &dir.kind else { return };
        let sb = dir.sb;
        let mut map: BTreeMap<String, InodeRef> = BTreeMap::new();
        match decode(dir.ino) {
            Node::Root => {
                for (i, name) in STATIC.iter().enumerate() {
                    map.insert(String::from(*name), node(PROC_BASE + i as u64, sb, empty_file(self.fs, sb), 0o444));
                }
                map.insert(String::from("self"), node(PROC_BASE + 100, sb, Kind::Symlink(format!("{}", self.cur.pid)), 0o777));
                map.insert(String::from("mounts"), node(PROC_BASE + 101, sb, Kind::Symlink(String::from("self/mounts")), 0o777));
                map.insert(String::from("net"), node(PROC_NET, sb, empty_dir(), 0o555));
                map.insert(String::from("sys"), node(PROC_SYS[0], sb, empty_dir(), 0o555));
                let mut ndirs = 0;
                for t in self.all() {
                    let d = node(pid_ino(t.pid, 0), sb, empty_dir(), 0o555);
                    let c = task_cred(t);
                    {
                        let mut m = d.meta.borrow_mut();
                        m.uid = c.uid;
                        m.gid = c.gid;
                    }
                    map.insert(format!("{}", t.pid), d);
                    ndirs += 1;
                }
                dir.meta.borrow_mut().nlink = 2 + ndirs;
            }
            Node::Static(_) if dir.ino == PROC_SYS[0] => {
                map.insert(String::from("net"), node(PROC_SYS[1], sb, empty_dir(), 0o555));
            }
            Node::Static(_) if dir.ino == PROC_SYS[1] => {
                map.insert(String::from("ipv4"), node(PROC_SYS[2], sb, empty_dir(), 0o555));
            }
            Node::Static(_) if dir.ino == PROC_SYS[2] => {
                map.insert(String::from("ip_forward"), node(PROC_IP_FORWARD, sb, empty_file(self.fs, sb), 0o644));
            }
            Node::Static(_) if dir.ino == PROC_NET => {
                for (j, name) in crate::net::inet::procnet::FILES.iter().enumerate() {
                    map.insert(String::from(*name), node(PROC_NET + 1 + j as u64, sb, empty_file(self.fs, sb), 0o444));
                }
            }
            Node::PidDir(pid) => {
                let Some(t) = self.task(pid) else {
                    children.borrow_mut().clear();
                    return;
                };
                let c = task_cred(t);
                for (i, name) in PID_FILES.iter().enumerate() {
                    let ino = pid_ino(pid, i as u64 + 1);
                    let n = match *name {
                        "exe" => node(ino, sb, Kind::Symlink(t.exe.clone()), 0o777),
                        "cwd" => node(ino, sb, Kind::Symlink(t.cwd.path()), 0o777),
                        "root" => node(ino, sb, Kind::Symlink(String::from("/")), 0o777),
                        "fd" => node(ino, sb, empty_dir(), 0o500),
                        "task" => node(ino, sb, empty_dir(), 0o555),
                        "environ" | "auxv" => node(ino, sb, empty_file(self.fs, sb), 0o400),
                        "mem" => node(ino, sb, empty_file(self.fs, sb), 0o600),
                        _ => node(ino, sb, empty_file(self.fs, sb), 0o444),
                    };
                    {
                        let mut m = n.meta.borrow_mut();
                        m.uid = c.uid;
                        m.gid = c.gid;
                    }
                    map.insert(String::from(*name), n);
                }
            }
            Node::PidEntry(pid, i) if PID_FILES.get(i) == Some(&"task") => {
                // Each thread's directory, as a link to `/proc/<tid>` (which
                // debuggers open as `/proc/<pid>/task/<tid>/mem`, `maps`).
                for t in self.all().into_iter().filter(|t| t.tgid == pid) {
                    let ino = pid_ino(t.pid, TASK_LINK);
                    map.insert(format!("{}", t.pid), node(ino, sb, Kind::Symlink(format!("/proc/{}", t.pid)), 0o777));
                }
            }
            Node::PidEntry(pid, i) if PID_FILES.get(i) == Some(&"fd") => {
                if let Some(t) = self.task(pid) {
                    for fd in t.fds.fds() {
                        let Ok(e) = t.fds.get(fd as u64) else { continue };
                        let target = if e.file.path.is_empty() || e.file.path == "pipe:" {
                            let what = if e.file.path == "pipe:" { "pipe" } else { "anon_inode" };
                            format!("{what}:[{}]", e.file.inode.ino)
                        } else {
                            e.file.path.clone()
                        };
                        let ino = FD_BASE + ((pid as u64) << 24) + fd as u64;
                        map.insert(format!("{fd}"), node(ino, sb, Kind::Symlink(target), 0o700));
                    }
                }
            }
            _ => return,
        }
        *children.borrow_mut() = map;
    }

    /// Where a magic `/proc/<pid>/fd/N` link leads: the open file's inode.
    pub fn magic(&self, link: &InodeRef) -> Option<InodeRef> {
        if link.ino < FD_BASE || self.fs.fstype(link.sb) != FsType::Proc {
            return None;
        }
        let Node::Fd(pid, fd) = decode(link.ino) else { return None };
        Some(self.task(pid)?.fds.get(fd).ok()?.file.inode.clone())
    }

    /// The contents of proc file `inode` (`None`: not a generated file).
    pub fn generate(&self, inode: &Inode) -> Option<Vec<u8>> {
        if self.fs.fstype(inode.sb) != FsType::Proc {
            return None;
        }
        let s = match decode(inode.ino) {
            Node::Static(_) if inode.ino == PROC_IP_FORWARD => {
                format!("{}\n", u8::from(self.net.try_borrow().ok()?.fwd.enabled))
            }
            Node::Static(_) if inode.ino > PROC_NET && inode.ino <= PROC_NET + crate::net::inet::procnet::FILES.len() as u64 => {
                let name = crate::net::inet::procnet::FILES.get((inode.ino - PROC_NET - 1) as usize)?;
                crate::net::inet::procnet::file(&*self.net.try_borrow().ok()?, name)?
            }
            Node::Static(i) => self.static_file(STATIC.get(i)?),
            Node::PidEntry(pid, i) if PID_FILES.get(i) == Some(&"auxv") => return Some(self.task(pid)?.auxv.clone()),
            Node::PidEntry(pid, i) => {
                let t = self.task(pid)?;
                self.pid_file(t, PID_FILES.get(i)?)?
            }
            _ => return None,
        };
        Some(s.into_bytes())
    }

    fn static_file(&self, name: &str) -> String {
        let mut s = String::new();
        let (total, free) = (self.frames.total_frames(), self.frames.free_frames());
        let kb = |pages: u64| pages * 4;
        let secs = self.now_ns / 1_000_000_000;
        let cs = (self.now_ns / 10_000_000) % 100;
        match name {
            "meminfo" => {
                // Guest frames: free, page cache (file data, tmpfs and
                // shared memory: `Cached`, of which `Shmem`), the rest
                // anonymous memory. Clean cache pages can be evicted, so
                // they count as available.
                let c = self.fs.caches.stats();
                // Kernel objects stand for frames too (the budget): they are
                // `Slab`, not anonymous memory.
                let slab_pages = self.slab_bytes.div_ceil(4096);
                let used = total.saturating_sub(free);
                let cached = c.pages.min(used);
                let anon = (used - cached).saturating_sub(slab_pages);
                let available = (free + c.clean).min(total);
                let slab_kb = self.slab_bytes / 1024;
                for (k, v) in [
                    ("MemTotal", kb(total)),
                    ("MemFree", kb(free)),
                    ("MemAvailable", kb(available)),
                    ("Buffers", 0),
                    ("Cached", kb(cached)),
                    ("SwapCached", 0),
                    ("Active", kb(anon + c.shmem)),
                    ("Inactive", kb(cached.saturating_sub(c.shmem))),
                    ("Active(anon)", kb(anon + c.shmem)),
                    ("Inactive(anon)", 0),
                    ("Active(file)", 0),
                    ("Inactive(file)", kb(cached.saturating_sub(c.shmem))),
                    ("Unevictable", 0),
                    ("Mlocked", 0),
                    ("SwapTotal", 0),
                    ("SwapFree", 0),
                    ("Dirty", kb(c.dirty)),
                    ("Writeback", 0),
                    ("AnonPages", kb(anon)),
                    ("Shmem", kb(c.shmem)),
                    ("KReclaimable", 0),
                    ("Slab", slab_kb),
                    ("SReclaimable", 0),
                    ("SUnreclaim", slab_kb),
                    ("CommitLimit", kb(total / 2)),
                    ("VmallocTotal", 0),
                    ("VmallocUsed", 0),
                    ("VmallocChunk", 0),
                    ("AnonHugePages", 0),
                    ("ShmemHugePages", 0),
                    ("HugePages_Total", 0),
                    ("HugePages_Free", 0),
                    ("Hugepagesize", 2048),
                ] {
                    if k.starts_with("HugePages_") {
                        let _ = writeln!(s, "{:<16}{:>8}", format!("{k}:"), v);
                    } else {
                        let _ = writeln!(s, "{:<16}{:>8} kB", format!("{k}:"), v);
                    }
                }
            }
            "cpuinfo" => {
                s.push_str(
                    "processor\t: 0\nvendor_id\t: RustUML\ncpu family\t: 6\nmodel\t\t: 0\nmodel name\t: Rust user-mode Linux virtual CPU\n\
                     stepping\t: 0\ncpu MHz\t\t: 1000.000\ncache size\t: 0 KB\nphysical id\t: 0\nsiblings\t: 1\ncore id\t\t: 0\n\
                     cpu cores\t: 1\napicid\t\t: 0\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 13\nwp\t\t: yes\n\
                     flags\t\t: fpu tsc cx8 cmov mmx fxsr sse sse2 syscall nx lm\nbogomips\t: 2000.00\nclflush size\t: 64\n\
                     cache_alignment\t: 64\naddress sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n",
                );
            }
            "uptime" => {
                let idle = self.now_ns.saturating_sub(self.clock.user_ns + self.clock.system_ns);
                let _ = writeln!(s, "{secs}.{cs:02} {}.{:02}", idle / 1_000_000_000, (idle / NS_PER_TICK) % 100);
            }
            "loadavg" => {
                let all = self.all();
                let last = all.iter().map(|t| t.pid).max().unwrap_or(1);
                let _ = writeln!(s, "0.00 0.00 0.00 1/{} {}", all.len(), last);
            }
            "filesystems" => {
                for t in FsType::all() {
                    let _ = writeln!(s, "{}\t{}", if t.needs_device() { "" } else { "nodev" }, t.name());
                }
            }
            "version" => {
                let _ = writeln!(s, "Linux version {} (rustuml@rustuml) (rustc) #1 SMP PREEMPT_DYNAMIC", self.release);
            }
            "stat" => {
                // One CPU: what the kernel charged to tasks is user and
                // system time, the rest is idle.
                let (user, system) = (self.clock.user_ns / NS_PER_TICK, self.clock.system_ns / NS_PER_TICK);
                let idle = (self.now_ns / NS_PER_TICK).saturating_sub(user + system);
                let btime = self.realtime_ns.saturating_sub(self.now_ns) / 1_000_000_000;
                let all = self.all();
                let running = all.iter().filter(|t| state_of(t).0 == 'R').count();
                let blocked = all.iter().filter(|t| state_of(t).0 == 'D').count();
                for cpu in ["cpu ", "cpu0"] {
                    let _ = writeln!(s, "{cpu} {user} 0 {system} {idle} 0 0 0 0 0 0");
                }
                let _ = write!(
                    s,
                    "intr 0\nctxt 0\nbtime {btime}\nprocesses {}\nprocs_running {}\nprocs_blocked {blocked}\nsoftirq 0\n",
                    all.len(),
                    running.max(1)
                );
            }
            "vmstat" => {
                // The counters `vmstat` reads (pages); no swap, no block I/O.
                let used = total.saturating_sub(free);
                for (k, v) in [
                    ("nr_free_pages", free),
                    ("nr_inactive_anon", 0),
                    ("nr_active_anon", used),
                    ("nr_inactive_file", 0),
                    ("nr_active_file", 0),
                    ("nr_unevictable", 0),
                    ("nr_mlock", 0),
                    ("nr_anon_pages", used),
                    ("nr_mapped", 0),
                    ("nr_file_pages", 0),
                    ("nr_dirty", 0),
                    ("nr_writeback", 0),
                    ("nr_shmem", 0),
                    ("nr_kernel_stack", 0),
                    ("nr_page_table_pages", 0),
                    ("pgpgin", 0),
                    ("pgpgout", 0),
                    ("pswpin", 0),
                    ("pswpout", 0),
                    ("pgfault", 0),
                    ("pgmajfault", 0),
                ] {
                    let _ = writeln!(s, "{k} {v}");
                }
            }
            "cmdline" => s.push_str("rustuml\n"),
            "swaps" => s.push_str("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"),
            "partitions" => s = self.fs.disks.partitions_text(),
            "diskstats" => s = self.fs.disks.diskstats_text(),
            _ => {}
        }
        s
    }

    fn pid_file(&self, t: &Task<S>, name: &str) -> Option<String> {
        let mut s = String::new();
        let comm = comm_of(t);
        let (state, state_name) = state_of(t);
        let (times, threads) = self.group_times(t);
        let [utime, stime, cutime, cstime] = times.map(|ns| ns / NS_PER_TICK);
        let (vsize, rss, stk) = t.mm.as_ref().map_or((0, 0, 0), |mm| {
            let v: u64 = mm.vmas().map(|v| v.end - v.start).sum();
            let st: u64 = mm.vmas().filter(|v| v.kind == VmaKind::Stack).map(|v| v.end - v.start).sum();
            (v, mm.resident_pages() as u64, st)
        });
        let c = task_cred(t);
        match name {
            "stat" => {
                let start = t.start_ns / NS_PER_TICK;
                let _ = writeln!(
                    s,
                    "{} ({}) {} {} {} {} 0 -1 4194304 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 {threads} 0 {} {} {} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
                    t.pid, comm, state, t.ppid, t.pgid, t.sid, start, vsize, rss
                );
            }
            "status" => {
                let _ = write!(
                    s,
                    "Name:\t{comm}\nUmask:\t{:04o}\nState:\t{state} ({state_name})\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{}\nTracerPid:\t0\n\
                     Uid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{g}\t{g}\t{g}\t{g}\nFDSize:\t64\nGroups:\t\nNStgid:\t{pid}\nNSpid:\t{pid}\nNSpgid:\t{}\nNSsid:\t{}\n\
                     VmPeak:\t{:>8} kB\nVmSize:\t{:>8} kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t{:>8} kB\nVmRSS:\t{:>8} kB\n\
                     RssAnon:\t{:>8} kB\nRssFile:\t       0 kB\nRssShmem:\t       0 kB\nVmData:\t{:>8} kB\nVmStk:\t{:>8} kB\nVmExe:\t       0 kB\n\
                     VmLib:\t       0 kB\nVmPTE:\t       0 kB\nVmSwap:\t       0 kB\nThreads:\t{threads}\nSigQ:\t0/4096\n\
                     SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n\
                     CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
                     NoNewPrivs:\t0\nSeccomp:\t0\nCpus_allowed:\t1\nCpus_allowed_list:\t0\nMems_allowed:\t1\nMems_allowed_list:\t0\n\
                     voluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n",
                    t.umask,
                    t.ppid,
                    t.pgid,
                    t.sid,
                    vsize / 1024,
                    vsize / 1024,
                    rss * 4,
                    rss * 4,
                    rss * 4,
                    vsize.saturating_sub(stk) / 1024,
                    stk / 1024,
                    pid = t.pid,
                    u = c.uid,
                    g = c.gid,
                );
            }
            // Zombies have no memory left: Linux shows an empty cmdline.
            // (The files are text here; non-UTF-8 argv bytes show as U+FFFD.)
            "cmdline" if !t.is_zombie() => s.push_str(&String::from_utf8_lossy(&t.cmdline)),
            "environ" if !t.is_zombie() => s.push_str(&String::from_utf8_lossy(&t.environ)),
            "cmdline" | "environ" => {}
            "comm" => {
                let _ = writeln!(s, "{comm}");
            }
            "statm" => {
                let _ = writeln!(s, "{} {} 0 0 0 {} 0", vsize / 4096, rss, vsize / 4096);
            }
            "maps" | "smaps" => {
                if let Some(mm) = t.mm.as_ref() {
                    for v in mm.vmas() {
                        map_line(&mut s, &v);
                        if name == "smaps" {
                            smaps_entry(&mut s, &v, &mm.vma_stats(v.start, v.end, self.frames));
                        }
                    }
                }
            }
            "smaps_rollup" => {
                if let Some(mm) = t.mm.as_ref() {
                    let (lo, hi) = mm.vmas().fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v.start), hi.max(v.end)));
                    let mut sum = crate::mm::VmaStats::default();
                    for v in mm.vmas() {
                        let st = mm.vma_stats(v.start, v.end, self.frames);
                        sum.rss += st.rss;
                        sum.pss += st.pss;
                        sum.shared_clean += st.shared_clean;
                        sum.shared_dirty += st.shared_dirty;
                        sum.private_clean += st.private_clean;
                        sum.private_dirty += st.private_dirty;
                        sum.anonymous += st.anonymous;
                    }
                    if lo < hi {
                        let _ = writeln!(s, "{:<73}[rollup]", format!("{lo:08x}-{hi:08x} ---p 00000000 00:00 0"));
                        smaps_figures(&mut s, &sum);
                    }
                }
            }
            "mounts" => s = self.fs.mounts_text(),
            "mountinfo" => {
                for m in &self.fs.mounts {
                    let ro = if self.fs.is_readonly(m.sb) { "ro" } else { "rw" };
                    // A disk file system shows its disk's number (as stat's st_dev).
                    let (maj, min) = self.fs.sbs.get(&m.sb).and_then(|x| x.disk.as_ref()).map_or((0, m.sb), |d| d.rdev());
                    let _ = writeln!(
                        s,
                        "{} {} {}:{} / {} {},relatime shared:{} - {} {} {}",
                        m.id,
                        m.parent,
                        maj,
                        min,
                        m.target,
                        ro,
                        m.id,
                        self.fs.fstype(m.sb).name(),
                        m.source,
                        ro
                    );
                }
            }
            _ => return None,
        }
        Some(s)
    }
}

/// Bytes of kernel objects (socket buffers, pipes, tasks...) charged to
/// guest memory (`crate::budget`): `Slab` and `SUnreclaim` of `/proc/meminfo`.
pub fn slab_bytes(frames: &crate::mm::Frames) -> u64 {
    frames.budget().kernel_bytes()
}

/// One line of `/proc/<pid>/maps` (and the head of an `smaps` entry).
fn map_line(s: &mut String, v: &crate::mm::VmaInfo) {
    let r = if v.prot.contains(Prot::READ) { 'r' } else { '-' };
    let w = if v.prot.contains(Prot::WRITE) { 'w' } else { '-' };
    let x = if v.prot.contains(Prot::EXEC) { 'x' } else { '-' };
    let p = if v.shared { 's' } else { 'p' };
    let (dev, ino) = v.file.as_ref().map_or((0, 0), |f| f.ident());
    let name: String = match (v.kind, &v.name) {
        (VmaKind::Heap, _) => String::from("[heap]"),
        (VmaKind::Stack, _) => String::from("[stack]"),
        (VmaKind::Vvar, _) => String::from("[vvar]"),
        (VmaKind::Vdso, _) => String::from("[vdso]"),
        (_, Some(n)) => String::from(&**n),
        (VmaKind::Anonymous, None) if v.shared => String::from("/dev/zero (deleted)"),
        _ => String::new(),
    };
    let line = format!("{:08x}-{:08x} {r}{w}{x}{p} {:08x} 00:{:02x} {ino}", v.start, v.end, v.offset, dev);
    if name.is_empty() {
        let _ = writeln!(s, "{line}");
    } else {
        let _ = writeln!(s, "{line:<73}{name}");
    }
}

/// The figures of an `smaps` entry.
fn smaps_figures(s: &mut String, st: &crate::mm::VmaStats) {
    for (k, v) in [
        ("Rss", st.rss),
        ("Pss", st.pss),
        ("Pss_Dirty", st.shared_dirty.min(st.pss) + st.private_dirty),
        ("Shared_Clean", st.shared_clean),
        ("Shared_Dirty", st.shared_dirty),
        ("Private_Clean", st.private_clean),
        ("Private_Dirty", st.private_dirty),
        ("Referenced", st.rss),
        ("Anonymous", st.anonymous),
        ("KSM", 0),
        ("LazyFree", 0),
        ("AnonHugePages", 0),
        ("ShmemPmdMapped", 0),
        ("FilePmdMapped", 0),
        ("Shared_Hugetlb", 0),
        ("Private_Hugetlb", 0),
        ("Swap", 0),
        ("SwapPss", 0),
        ("Locked", 0),
    ] {
        let _ = writeln!(s, "{:<16}{:>8} kB", format!("{k}:"), v / 1024);
    }
}

/// The body of one `smaps` entry (after its maps line).
fn smaps_entry(s: &mut String, v: &crate::mm::VmaInfo, st: &crate::mm::VmaStats) {
    let size = (v.end - v.start) / 1024;
    let _ = writeln!(s, "{:<16}{:>8} kB\n{:<16}{:>8} kB\n{:<16}{:>8} kB", "Size:", size, "KernelPageSize:", 4, "MMUPageSize:", 4);
    smaps_figures(s, st);
    let _ = writeln!(s, "THPeligible:    0");
    let mut flags = String::new();
    for (on, f) in [
        (v.prot.contains(Prot::READ), "rd"),
        (v.prot.contains(Prot::WRITE), "wr"),
        (v.prot.contains(Prot::EXEC), "ex"),
        (v.shared, "sh"),
        (true, "mr"),
        (v.may_write, "mw"),
        (true, "me"),
        (v.shared && v.may_write, "ms"),
        (v.growsdown, "gd"),
        (!v.shared && v.prot.contains(Prot::WRITE), "ac"),
    ] {
        if on {
            flags.push_str(f);
            flags.push(' ');
        }
    }
    let _ = writeln!(s, "VmFlags: {flags}");
}

/// The command name (`comm`): set at exec; before any exec (the kernel's own
/// first task) the executable's base name, at most 15 bytes.
pub fn comm_of<S: AddressSpace>(t: &Task<S>) -> String {
    if !t.comm.is_empty() {
        return t.comm.clone();
    }
    let base = t.exe.rsplit('/').next().unwrap_or("");
    let mut n = base.len().min(15);
    while !base.is_char_boundary(n) {
        n -= 1;
    }
    String::from(&base[..n])
}

/// Can proc file `inode` be opened for writing (a sysctl)?
pub fn is_writable(fs: &Fs, inode: &Inode) -> bool {
    fs.fstype(inode.sb) == FsType::Proc && (inode.ino == PROC_IP_FORWARD || mem_of(fs, inode).is_some())
}

/// A write of `bytes` to writable proc file `inode` takes effect (as
/// Linux's `proc_dointvec_minmax`: an integer in range, blanks around it).
pub fn store(net: &crate::net::inet::StackRef, fs: &Fs, inode: &Inode, bytes: &[u8]) -> Result<(), Errno> {
    if !is_writable(fs, inode) {
        return Ok(());
    }
    let text = core::str::from_utf8(bytes).map_err(|_| Errno::EINVAL)?.trim();
    let on = match text.parse::<i64>() {
        Ok(0) => false,
        Ok(1) => true,
        _ => return Err(Errno::EINVAL),
    };
    let mut s = net.try_borrow_mut().map_err(|_| Errno::EBUSY)?;
    s.fwd.enabled = on;
    s.dirty = true;
    Ok(())
}

/// The process whose memory `inode` is, if it is a `/proc/<pid>/mem`.
pub fn mem_of(fs: &Fs, inode: &Inode) -> Option<Pid> {
    if inode.ino < PROC_BASE || fs.fstype(inode.sb) != FsType::Proc {
        return None;
    }
    match decode(inode.ino) {
        Node::PidEntry(pid, i) if PID_FILES.get(i) == Some(&"mem") => Some(pid),
        _ => None,
    }
}

/// `EACCES`-free check that `inode` is a generated proc file (not writable).
pub fn is_proc_file(fs: &Fs, inode: &Inode) -> bool {
    fs.fstype(inode.sb) == FsType::Proc && matches!(inode.kind, Kind::File(_))
}

/// Errors for writes into procfs/sysfs: `EACCES` as Linux gives for files
/// without a write handler opened for writing by root.
pub fn write_denied() -> Errno {
    Errno::EACCES
}
