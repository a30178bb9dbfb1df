//! Resource exhaustion: `exhaust KIND [MAX]` grows one kind of kernel
//! object until the kernel refuses (or MAX objects exist), while a
//! heartbeat child keeps ticking in the same guest.
//!
//! Kinds: `listeners` (TCP listening sockets), `conns` (open loopback TCP
//! connections, both ends kept), `closed` (MAX connections opened and closed
//! at once, one after the other: every one must succeed), `udp` (bound UDP
//! sockets), `pipes` (pipes filled to the brim), `epoll` (epoll instances,
//! each watching a pipe), `timers` (timerfds), `threads` (threads that
//! sleep), `mmaps` (one-page anonymous mappings, touched), `vmas` (mappings
//! never touched), `unix` (AF_UNIX socket pairs with full queues), `netlink`
//! (netlink sockets), `files` (empty files in /tmp), `links` (hard links to
//! one file in /tmp).
//!
//! Prints `exhaust KIND: N objects, stopped by ERRNO` (or `..., reached MAX`)
//! and `heartbeat: ok` if the heartbeat kept ticking through it and after.
//! Exit status 0 when the heartbeat survived, 1 when it did not, 2 on a
//! bad argument.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::raw::c_char;
use userland_tests::{args, describe_status, errno, errno_name, exit_now, fork, mmap_anon, say, sleep_ms, wait_for, PAGE};

/// Grow one object; Err(errno) when the kernel refuses.
fn grow(kind: &str, st: &mut State) -> Result<(), i32> {
    // SAFETY (whole function): plain system calls on values we own.
    unsafe {
        match kind {
            "listeners" => {
                let s = sock(libc::SOCK_STREAM)?;
                let a = loopback(0);
                chk(libc::bind(s, (&a as *const libc::sockaddr_in).cast(), LEN))?;
                chk(libc::listen(s, 1))?;
            }
            "conns" | "closed" => {
                let l = st.listener()?;
                let c = sock(libc::SOCK_STREAM)?;
                let a = loopback(st.port);
                chk(libc::connect(c, (&a as *const libc::sockaddr_in).cast(), LEN))?;
                let s = chk(libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()))?;
                if kind == "closed" {
                    // The server answers and closes first, as an HTTP/1.0 server does.
                    libc::write(s, b"x".as_ptr().cast(), 1);
                    libc::close(s);
                    let mut b = [0u8; 4];
                    libc::read(c, b.as_mut_ptr().cast(), 4);
                    libc::close(c);
                }
            }
            "udp" => {
                let s = sock(libc::SOCK_DGRAM)?;
                let a = loopback(0);
                chk(libc::bind(s, (&a as *const libc::sockaddr_in).cast(), LEN))?;
            }
            "pipes" => {
                let mut fds = [0; 2];
                chk(libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK))?;
                fill(fds[1])?;
            }
            "epoll" => {
                let p = st.pipe()?;
                let ep = chk(libc::epoll_create1(0))?;
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
                chk(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, p, &mut ev))?;
            }
            "timers" => {
                let t = chk(libc::timerfd_create(libc::CLOCK_MONOTONIC, 0))?;
                let spec = libc::itimerspec {
                    it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                    it_value: libc::timespec { tv_sec: 3600, tv_nsec: 0 },
                };
                chk(libc::timerfd_settime(t, 0, &spec, std::ptr::null_mut()))?;
            }
            "threads" => {
                let b = std::thread::Builder::new().stack_size(64 << 10);
                if b.spawn(|| loop {
                    sleep_ms(1000);
                })
                .is_err()
                {
                    return Err(errno().max(libc::EAGAIN));
                }
            }
            "mmaps" => {
                // Alternate protections so neighbours never merge into one mapping.
                let prot = if st.n % 2 == 0 { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
                let p = mmap_anon(PAGE, prot, libc::MAP_PRIVATE)?;
                if prot & libc::PROT_WRITE != 0 {
                    p.write_volatile(1);
                } else {
                    let _ = p.read_volatile();
                }
            }
            "vmas" => {
                // Mappings never touched: only the kernel's tables grow.
                let prot = if st.n % 2 == 0 { libc::PROT_READ } else { libc::PROT_NONE };
                mmap_anon(PAGE, prot, libc::MAP_PRIVATE)?;
            }
            "unix" => {
                let mut sv = [0; 2];
                chk(libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, sv.as_mut_ptr()))?;
                fill(sv[0])?;
            }
            "netlink" => {
                chk(libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE))?;
            }
            "files" | "links" => {
                let name = std::ffi::CString::new(format!("/tmp/x{}", st.n)).map_err(|_| libc::EINVAL)?;
                if kind == "files" {
                    let fd = chk(libc::open(name.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL, 0o600))?;
                    libc::close(fd);
                } else {
                    if st.n == 0 {
                        let fd = chk(libc::open(c"/tmp/linked".as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600))?;
                        libc::close(fd);
                    }
                    chk(libc::link(c"/tmp/linked".as_ptr(), name.as_ptr()))?;
                }
            }
            _ => return Err(-1),
        }
    }
    Ok(())
}

/// Write to nonblocking `fd` until it would block.
fn fill(fd: i32) -> Result<(), i32> {
    let buf = [7u8; 4096];
    loop {
        // SAFETY: writing from our buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            return if e == libc::EAGAIN { Ok(()) } else { Err(e) };
        }
    }
}

const LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
        sin_zero: [0; 8],
    }
}

fn chk(r: i32) -> Result<i32, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn sock(ty: i32) -> Result<i32, i32> {
    // SAFETY: socket(2) with constant arguments.
    chk(unsafe { libc::socket(libc::AF_INET, ty, 0) })
}

#[derive(Default)]
struct State {
    n: u64,
    listen: Option<i32>,
    port: u16,
    pipe: Option<i32>,
}

impl State {
    fn listener(&mut self) -> Result<i32, i32> {
        if let Some(l) = self.listen {
            return Ok(l);
        }
        let l = sock(libc::SOCK_STREAM)?;
        let a = loopback(0);
        let mut got = loopback(0);
        let mut len = LEN;
        // SAFETY: bind/listen/getsockname on our socket with valid buffers.
        unsafe {
            let one = 1i32;
            libc::setsockopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4);
            chk(libc::bind(l, (&a as *const libc::sockaddr_in).cast(), LEN))?;
            chk(libc::listen(l, 128))?;
            chk(libc::getsockname(l, (&mut got as *mut libc::sockaddr_in).cast(), &mut len))?;
        }
        self.port = u16::from_be(got.sin_port);
        self.listen = Some(l);
        Ok(l)
    }
    fn pipe(&mut self) -> Result<i32, i32> {
        if let Some(p) = self.pipe {
            return Ok(p);
        }
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into our array.
        chk(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        self.pipe = Some(fds[0]);
        Ok(fds[0])
    }
}

/// A counter in memory shared with the heartbeat child.
fn shared_counter() -> *mut u64 {
    match mmap_anon(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED) {
        Ok(p) => p.cast(),
        Err(e) => {
            say!("exhaust: cannot map the heartbeat counter: {}", errno_name(e));
            std::process::exit(1);
        }
    }
}

fn beats(c: *mut u64) -> u64 {
    // SAFETY: `c` points at the shared page mapped above.
    unsafe { c.read_volatile() }
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: i32, argv: *const *const c_char) -> i32 {
    // SAFETY: argc/argv come from the C runtime.
    let args = unsafe { args(argc, argv) };
    let kind = args.get(1).cloned().unwrap_or_default();
    let max: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let known = ["listeners", "conns", "closed", "udp", "pipes", "epoll", "timers", "threads", "mmaps", "vmas", "unix", "netlink", "files", "links"];
    if !known.contains(&kind.as_str()) {
        say!("usage: exhaust {{{}}} [MAX]", known.join("|"));
        return 2;
    }
    let lim = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
    // SAFETY: setrlimit with a valid struct (as root in the guest it succeeds).
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let counter = shared_counter();
    let beat = fork();
    if beat == 0 {
        loop {
            // SAFETY: the shared counter page.
            unsafe { counter.write_volatile(counter.read_volatile() + 1) };
            sleep_ms(10);
        }
    }
    sleep_ms(50);
    let before = beats(counter);
    // The grower is a child of its own, so that the guest's OOM killer may
    // take it (as Linux would) while this process still checks the heartbeat.
    let grower = fork();
    if grower == 0 {
        let mut st = State::default();
        let mut stop = None;
        while st.n < max {
            match grow(&kind, &mut st) {
                Ok(()) => st.n += 1,
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            }
        }
        match stop {
            Some(e) => say!("exhaust {kind}: {} objects, stopped by {}", st.n, errno_name(e)),
            None => say!("exhaust {kind}: {} objects, reached the maximum", st.n),
        }
        // Hold everything while the heartbeat is checked once more.
        let during = beats(counter);
        sleep_ms(300);
        exit_now(if beats(counter) > during { 0 } else { 1 });
    }
    let status = wait_for(grower).map(|(_, s)| s).unwrap_or(-1);
    if libc::WIFSIGNALED(status) {
        say!("exhaust {kind}: grower killed by {}", describe_status(status));
    }
    sleep_ms(100);
    let after = beats(counter);
    // SAFETY: killing our own child.
    unsafe { libc::kill(beat, libc::SIGKILL) };
    let ok = after > before && !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0);
    if ok {
        say!("heartbeat: ok");
        0
    } else {
        say!("heartbeat: stopped ({before} {after}, grower {})", describe_status(status));
        1
    }
}
