//! Named guests and their control socket (`umid=NAME`, `--name NAME`).
//!
//! A named guest has a control directory, `$XDG_RUNTIME_DIR/rustuml/NAME/`
//! (else `~/.rustuml/NAME/`), mode 0700, holding `pid` (the kernel's host
//! pid) and `control`, a Unix stream socket (mode 0600) on which
//! `rustuml-ctl` sends one-line requests. The directory is removed when the
//! kernel exits, through `exit`, a panic, or SIGTERM/SIGINT/SIGHUP; one left
//! by a killed kernel (nobody answers on its socket and its pid is gone) is
//! removed when the name is next used. A name a live guest holds is refused.
//!
//! The socket is served by the event hub's thread ([`crate::host`]): it
//! accepts, reads and splits lines without ever blocking, and hands each
//! complete line to the kernel as [`hal::Interrupts::CONTROL`]; the kernel
//! thread answers with [`ControlServer::reply`]. One request per client is
//! with the kernel at a time (the next waits in the client's buffer), a line
//! longer than [`MAX_LINE`] gets an error and the connection is closed, a
//! client that does not read its answers is dropped once [`MAX_OUT`] bytes
//! wait for it, and at most [`MAX_CLIENTS`] are connected at once. Only the
//! owner's uid (checked with `SO_PEERCRED`, besides the modes) is served.
//!
//! Without a name a guest has no control directory (nothing to clean up,
//! nothing to collide on); `rustuml-ctl` only sees named guests.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Longest request line, in bytes (the newline not counted).
pub const MAX_LINE: usize = 4096;
/// Most bytes of answers waiting for one client before it is dropped.
pub const MAX_OUT: usize = 16 << 20;
/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 32;

/// Where the control directories of this user's guests live:
/// `$XDG_RUNTIME_DIR/rustuml`, else `$HOME/.rustuml`.
pub fn base_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("rustuml"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".rustuml"))
}

/// A guest name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name == "list" || name == "replay" {
        return Err(format!("'{name}' is a rustuml-ctl command, not usable as a guest name"));
    }
    if ok {
        Ok(())
    } else {
        Err(format!("'{name}' is not a guest name (1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-')"))
    }
}

/// Is host process `pid` alive? (EPERM: alive, someone else's.)
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// The pid recorded in control directory `dir`, if any.
pub fn read_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("pid")).ok()?.trim().parse().ok()
}

/// Does a kernel answer on `dir`'s control socket? (Connect only.)
pub fn answers(dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(dir.join("control")).is_ok()
}

/// A control directory nobody serves any more: no answer on its socket and
/// its recorded pid gone (or never written).
pub fn is_stale(dir: &Path) -> bool {
    !answers(dir) && !read_pid(dir).is_some_and(pid_alive)
}

/// Remove a stale control directory (its two files, then itself).
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    for f in ["control", "pid"] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::remove_dir(dir)
}

/// The directory being served, for the exit paths (async-signal-safe:
/// descriptors and a name made before any signal can come).
static DIR_FD: AtomicI32 = AtomicI32::new(-1);
static PARENT_FD: AtomicI32 = AtomicI32::new(-1);
static OWNER: AtomicI32 = AtomicI32::new(0);
static NAME: OnceLock<CString> = OnceLock::new();
/// Handlers that were installed before ours, chained to.
static PREV_TERM: OnceLock<[libc::sigaction; 3]> = OnceLock::new();
const CLEANUP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Remove the control directory, once, and only from the process that made
/// it (the stubs' zygote, forked from the kernel, inherits the `atexit`
/// hook). Async-signal-safe: unlinkat on descriptors held open.
pub fn cleanup() {
    // SAFETY: getpid has no preconditions.
    if OWNER.load(Ordering::SeqCst) != unsafe { libc::getpid() } {
        return;
    }
    let dir = DIR_FD.swap(-1, Ordering::SeqCst);
    if dir < 0 {
        return;
    }
    // SAFETY: unlinkat on descriptors we hold, with static NUL-terminated names.
    unsafe {
        libc::unlinkat(dir, c"control".as_ptr(), 0);
        libc::unlinkat(dir, c"pid".as_ptr(), 0);
        if let Some(name) = NAME.get() {
            libc::unlinkat(PARENT_FD.load(Ordering::SeqCst), name.as_ptr(), libc::AT_REMOVEDIR);
        }
    }
}

extern "C" fn cleanup_at_exit() {
    cleanup();
}

extern "C" fn cleanup_on_signal(sig: libc::c_int) {
    cleanup();
    let i = CLEANUP_SIGNALS.iter().position(|&s| s == sig);
    if let (Some(i), Some(prev)) = (i, PREV_TERM.get()) {
        let p = prev[i];
        if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN {
            // The earlier handler (the console's: restore the terminal, then
            // die of the signal) goes on from here.
            // SAFETY: it was installed as a plain one-argument handler for this signal.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
            f(sig);
            return;
        }
        if p.sa_sigaction == libc::SIG_IGN {
            return;
        }
    }
    // SAFETY: back to the default action, then die of the signal as before.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_exit_hooks() {
    // SAFETY: registering a plain extern "C" fn with atexit.
    unsafe { libc::atexit(cleanup_at_exit) };
    let mut prev: [libc::sigaction; 3] =
        // SAFETY: a zeroed sigaction is a valid value to be overwritten.
        unsafe { std::mem::zeroed() };
    for (i, &sig) in CLEANUP_SIGNALS.iter().enumerate() {
        // SAFETY: a zeroed sigaction with our handler, flags and an empty mask; the old one is read into `prev[i]`.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = cleanup_on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, &mut prev[i]);
        }
    }
    let _ = PREV_TERM.set(prev);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        cleanup();
        hook(info);
    }));
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    let c = cstr(p)?;
    // SAFETY: `c` is NUL-terminated; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Make `name`'s control directory and bind its socket; the returned
/// listening socket is non-blocking. The one-line error says why not (the
/// name taken by a live guest, no place for the directory, ...). From now
/// on the directory goes when the process exits.
pub fn create(name: &str) -> Result<OwnedFd, String> {
    check_name(name)?;
    let base = base_dir().ok_or("no $XDG_RUNTIME_DIR or $HOME for the control directory")?;
    let e = |what: &str, err: io::Error| format!("{what} {}: {err}", base.display());
    std::fs::create_dir_all(&base).map_err(|err| e("cannot create", err))?;
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let md = std::fs::symlink_metadata(&base).map_err(|err| e("cannot inspect", err))?;
        // SAFETY: getuid has no preconditions.
        if !md.is_dir() || md.uid() != unsafe { libc::getuid() } {
            return Err(format!("{} is not a directory of yours", base.display()));
        }
        if md.mode() & 0o077 != 0 {
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).map_err(|err| e("cannot chmod", err))?;
        }
    }
    let dir = base.join(name);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // Made complete (socket bound, pid written) under a name nobody looks
    // at, then renamed into place: whoever sees NAME sees both files, so a
    // guest starting up is never taken for a stale one.
    let tmp = base.join(format!(".new-{name}-{pid}"));
    let _ = remove_dir(&tmp);
    std::fs::create_dir(&tmp).map_err(|err| format!("cannot create {}: {err}", tmp.display()))?;
    let made = (|| -> Result<OwnedFd, String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).map_err(|err| err.to_string())?;
        let sock_path = tmp.join("control");
        let listener = std::os::unix::net::UnixListener::bind(&sock_path).map_err(|err| format!("cannot bind {}: {err}", sock_path.display()))?;
        listener.set_nonblocking(true).map_err(|err| err.to_string())?;
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600)).map_err(|err| err.to_string())?;
        std::fs::write(tmp.join("pid"), format!("{pid}\n")).map_err(|err| format!("cannot write {}/pid: {err}", tmp.display()))?;
        let mut tries = 0;
        loop {
            let (from, to) = (cstr(&tmp).map_err(|e| e.to_string())?, cstr(&dir).map_err(|e| e.to_string())?);
            // SAFETY: both paths are NUL-terminated. RENAME_NOREPLACE: never over another guest's directory.
            let r = unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
            if r == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) || tries > 0 {
                return Err(format!("cannot create {}: {err}", dir.display()));
            }
            tries += 1;
            if !is_stale(&dir) {
                let pid = read_pid(&dir).map(|p| format!(" (pid {p})")).unwrap_or_default();
                return Err(format!("the name {name} is in use by a running guest{pid}"));
            }
            remove_dir(&dir).map_err(|err| format!("cannot remove the stale {}: {err}", dir.display()))?;
            eprintln!("rustuml: removed the stale control directory {} (its kernel is gone)", dir.display());
        }
        let dfd = open_dir(&dir).map_err(|err| err.to_string())?;
        let pfd = open_dir(&base).map_err(|err| err.to_string())?;
        OWNER.store(pid, Ordering::SeqCst);
        let _ = NAME.set(CString::new(name).map_err(|_| "bad name".to_string())?);
        PARENT_FD.store(std::os::fd::IntoRawFd::into_raw_fd(pfd), Ordering::SeqCst);
        DIR_FD.store(std::os::fd::IntoRawFd::into_raw_fd(dfd), Ordering::SeqCst);
        Ok(OwnedFd::from(listener))
    })();
    match made {
        Ok(fd) => {
            install_exit_hooks();
            Ok(fd)
        }
        Err(err) => {
            let _ = remove_dir(&tmp);
            Err(err)
        }
    }
}

/// epoll tags of the control socket (listening) and its clients (+ id).
pub const TAG_LISTEN: u64 = 2;
/// Client `id` has tag `TAG_CLIENT + id`.
pub const TAG_CLIENT: u64 = 1 << 48;

struct Client {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// A request of this client is with the kernel.
    busy: bool,
    /// The peer closed its side (or broke the rules): drop once answered.
    closing: bool,
}

struct State {
    epfd: RawFd,
    clients: BTreeMap<u64, Client>,
    next: u64,
    queue: VecDeque<(u64, String)>,
}

/// The control socket's server (see the module comment).
pub struct ControlServer {
    listen: OwnedFd,
    uid: u32,
    state: Mutex<State>,
}

static SERVER: OnceLock<Arc<ControlServer>> = OnceLock::new();
/// The console lines' channels, for `config conN`: (line, description).
static CHANNELS: OnceLock<Vec<(u32, String)>> = OnceLock::new();

/// Record the console channels (`--con`) for `config conN` requests.
pub fn set_channels(c: Vec<(u32, String)>) {
    let _ = CHANNELS.set(c);
}

/// `config [conN]`, answered here (the host knows its channels; the
/// kernel has nothing to add): `conN=CHANNEL` lines.
fn config_answer(arg: &str) -> Vec<u8> {
    let all = CHANNELS.get().map(Vec::as_slice).unwrap_or(&[]);
    let body: String = if arg.is_empty() {
        all.iter().map(|(n, d)| format!("con{n}={d}\n")).collect()
    } else if let Some((n, d)) = all.iter().find(|(n, _)| format!("con{n}") == arg) {
        format!("con{n}={d}\n")
    } else if arg.strip_prefix("con").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| (1..=6).contains(&n)) {
        format!("{arg}=none\n")
    } else {
        return format!("error: config {}: not supported (config conN shows a console line's channel; hot-plug of disks and links is not done)\n", arg.escape_default()).into_bytes();
    };
    let mut a = format!("ok {}\n", body.len()).into_bytes();
    a.extend_from_slice(body.as_bytes());
    a
}

/// Serve `listen` (from [`create`]) from the event hub made after this call.
pub fn serve(listen: OwnedFd) {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let s = ControlServer { listen, uid, state: Mutex::new(State { epfd: -1, clients: BTreeMap::new(), next: 1, queue: VecDeque::new() }) };
    let _ = SERVER.set(Arc::new(s));
}

/// The server, if this kernel has a name.
pub fn server() -> Option<&'static Arc<ControlServer>> {
    SERVER.get()
}

fn epoll_set(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32, tag: u64) {
    let mut ev = libc::epoll_event { events, u64: tag };
    // SAFETY: `ev` is a valid epoll_event.
    unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) };
}

/// Write what can be written now; false if the peer is gone.
fn flush(c: &mut Client) -> bool {
    while !c.out.is_empty() {
        // SAFETY: sending from a valid buffer; MSG_NOSIGNAL: no SIGPIPE.
        let n = unsafe { libc::send(c.fd.as_raw_fd(), c.out.as_ptr().cast(), c.out.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n > 0 {
            c.out.drain(..n as usize);
            continue;
        }
        let e = io::Error::last_os_error().raw_os_error();
        if n < 0 && e == Some(libc::EINTR) {
            continue;
        }
        return n < 0 && e == Some(libc::EAGAIN);
    }
    true
}

impl State {
    /// Interest in `id`'s socket: input while it may send a request, output
    /// while answers wait.
    fn rearm(&mut self, id: u64) {
        let Some(c) = self.clients.get(&id) else { return };
        if c.closing {
            // A peer that hung up reports EPOLLHUP whatever we ask for:
            // watch only for room to write, and only while answers wait.
            if c.out.is_empty() {
                epoll_set(self.epfd, libc::EPOLL_CTL_DEL, c.fd.as_raw_fd(), 0, 0);
            } else {
                epoll_set(self.epfd, libc::EPOLL_CTL_MOD, c.fd.as_raw_fd(), libc::EPOLLOUT as u32, TAG_CLIENT + id);
            }
            return;
        }
        let mut ev = 0u32;
        if !c.busy && c.inbuf.len() <= MAX_LINE {
            ev |= libc::EPOLLIN as u32;
        }
        if !c.out.is_empty() {
            ev |= libc::EPOLLOUT as u32;
        }
        epoll_set(self.epfd, libc::EPOLL_CTL_MOD, c.fd.as_raw_fd(), ev, TAG_CLIENT + id);
    }

    fn drop_client(&mut self, id: u64) {
        if let Some(c) = self.clients.remove(&id) {
            epoll_set(self.epfd, libc::EPOLL_CTL_DEL, c.fd.as_raw_fd(), 0, 0);
        }
    }

    /// Queue `id`'s next complete line for the kernel, if it has one and
    /// none is pending; answer bad lines here. True if one was queued.
    fn next_request(&mut self, id: u64) -> bool {
        let mut queued = false;
        let Some(c) = self.clients.get_mut(&id) else { return false };
        while !c.busy {
            match c.inbuf.iter().position(|&b| b == b'\n') {
                Some(i) if i <= MAX_LINE => {
                    let mut line: Vec<u8> = c.inbuf.drain(..=i).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    match String::from_utf8(line) {
                        Ok(l) if l.trim().is_empty() => {}
                        Ok(l) if l.trim() == "config" || l.trim_start().starts_with("config ") => {
                            let arg = l.trim().strip_prefix("config").unwrap_or("").trim().to_string();
                            c.out.extend_from_slice(&config_answer(&arg));
                        }
                        Ok(l) => {
                            c.busy = true;
                            self.queue.push_back((id, l));
                            queued = true;
                        }
                        Err(_) => c.out.extend_from_slice(b"error: the request is not UTF-8 text\n"),
                    }
                }
                Some(_) | None if c.inbuf.len() > MAX_LINE => {
                    c.out.extend_from_slice(format!("error: request line longer than {MAX_LINE} bytes\n").as_bytes());
                    c.inbuf.clear();
                    c.closing = true;
                    break;
                }
                _ => break,
            }
        }
        let alive = flush(c);
        if !alive || (c.closing && !c.busy && c.out.is_empty()) {
            self.drop_client(id);
        } else {
            self.rearm(id);
        }
        queued
    }
}

impl ControlServer {
    /// Add the listening socket to the hub's epoll set `epfd`.
    pub fn attach(&self, epfd: RawFd) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).epfd = epfd;
        epoll_set(epfd, libc::EPOLL_CTL_ADD, self.listen.as_raw_fd(), libc::EPOLLIN as u32, TAG_LISTEN);
    }

    /// The hub saw `events` on `tag`'s descriptor. True if a request is now
    /// queued for the kernel.
    pub fn on_event(&self, tag: u64, events: u32) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if tag == TAG_LISTEN {
            self.accept_all(&mut st);
            return false;
        }
        let id = tag - TAG_CLIENT;
        let Some(c) = st.clients.get_mut(&id) else { return false };
        if events & libc::EPOLLOUT as u32 != 0 && !flush(c) {
            st.drop_client(id);
            return false;
        }
        if events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 && c.busy {
            // Gone while the kernel works on its request (and reported
            // again and again until the descriptor leaves the set).
            c.closing = true;
        }
        if events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 && !c.busy && !c.closing {
            let mut buf = [0u8; 8192];
            loop {
                let room = (MAX_LINE + 1).saturating_sub(c.inbuf.len()).min(buf.len());
                if room == 0 {
                    break;
                }
                // SAFETY: reading into a valid buffer of at least `room` bytes.
                let n = unsafe { libc::recv(c.fd.as_raw_fd(), buf.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
                if n > 0 {
                    c.inbuf.extend_from_slice(&buf[..n as usize]);
                    continue;
                }
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                if n == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                    // End of requests: answer what is complete, then go.
                    c.closing = true;
                }
                break;
            }
            // A last line without its newline still counts at the end.
            if c.closing && !c.inbuf.is_empty() && !c.inbuf.ends_with(b"\n") && c.inbuf.len() <= MAX_LINE {
                c.inbuf.push(b'\n');
            }
        }
        st.next_request(id)
    }

    fn accept_all(&self, st: &mut State) {
        loop {
            // SAFETY: accept4 without an address; the result is checked.
            let fd = unsafe { libc::accept4(self.listen.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) };
            if fd < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            // SAFETY: a descriptor accept4 just returned.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
            let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
            // SAFETY: SO_PEERCRED fills one ucred of `len` bytes.
            let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
            let refuse = |msg: &[u8]| {
                // SAFETY: a best-effort send from a valid buffer.
                unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
            };
            if r != 0 || (cred.uid != self.uid && cred.uid != 0) {
                refuse(b"error: not the guest's owner\n");
                continue;
            }
            if st.clients.len() >= MAX_CLIENTS {
                refuse(b"error: too many control clients\n");
                continue;
            }
            let id = st.next;
            st.next += 1;
            epoll_set(st.epfd, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), libc::EPOLLIN as u32, TAG_CLIENT + id);
            st.clients.insert(id, Client { fd, inbuf: Vec::new(), out: Vec::new(), busy: false, closing: false });
        }
    }

    /// The next request for the kernel.
    pub fn take(&self) -> Option<(u64, String)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).queue.pop_front()
    }

    /// The kernel's answer to `id`'s request; the client's next line (if
    /// it sent one already) is queued at once.
    pub fn reply(&self, id: u64, answer: &[u8]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = st.clients.get_mut(&id) else { return };
        c.busy = false;
        if c.out.len() + answer.len() > MAX_OUT {
            st.drop_client(id);
            return;
        }
        c.out.extend_from_slice(answer);
        st.next_request(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web-1", "x.y_z", &"n".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-x", "a/b", "a b", &"n".repeat(65), "é", "list", "replay"] {
            let e = check_name(bad).unwrap_err();
            assert!(!e.contains('\n'));
        }
    }
}
