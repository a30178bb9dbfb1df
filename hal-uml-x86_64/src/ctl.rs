//! `rustuml-ctl`: drive named guests (`umid=NAME` / `--name NAME`) through
//! their control sockets, the idea of UML's `uml_mconsole`.
//!
//! - `rustuml-ctl list`: the running guests, with pid, uptime, memory and
//!   process count (control directories of killed kernels are removed).
//! - `rustuml-ctl NAME COMMAND [ARG]`: one request; the answer's body on
//!   stdout. Commands: `rustuml-ctl NAME help`.
//!
//! - `rustuml-ctl replay FILE [--speed N]`: play a terminal session that
//!   `tty_log_dir=` recorded back on stdout, with its timing (N times
//!   faster; pauses longer than 10 s are cut to 10 s).
//!
//! A bad command line, an unknown guest or an error answer: one line on
//! stderr and exit status 2.

use hal_uml_host::control;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

const USAGE: &str = "usage: rustuml-ctl list | rustuml-ctl replay FILE [--speed N] | rustuml-ctl NAME COMMAND [ARG] (COMMAND: version, info, halt, reboot, cad, \
sysrq KEY, stop, go, proc PATH, ps, stats, log, help)";

/// How long a guest has to answer (a stopped guest still answers).
const TIMEOUT: Duration = Duration::from_secs(20);

fn fail(msg: &str) -> ! {
    eprintln!("rustuml-ctl: {msg}");
    exit(2)
}

/// Send `line` to the guest at `dir` and return the answer's body, or the
/// one-line error.
fn request(dir: &Path, line: &str) -> Result<Vec<u8>, String> {
    let s = UnixStream::connect(dir.join("control")).map_err(|e| format!("cannot connect: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    (&s).write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("sending: {e}"))?;
    let mut r = BufReader::new(&s);
    let mut head = String::new();
    r.read_line(&mut head).map_err(|e| format!("reading the answer: {e}"))?;
    if let Some(why) = head.strip_prefix("error: ") {
        return Err(why.trim_end().to_string());
    }
    let len: usize = head
        .strip_prefix("ok ")
        .and_then(|n| n.trim_end().parse().ok())
        .ok_or_else(|| if head.is_empty() { "no answer (the guest went away)".to_string() } else { format!("bad answer: {}", head.trim_end()) })?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| format!("reading the answer: {e}"))?;
    Ok(body)
}

fn guest_dir(name: &str) -> PathBuf {
    if let Err(e) = control::check_name(name) {
        fail(&e);
    }
    let Some(base) = control::base_dir() else { fail("no $XDG_RUNTIME_DIR or $HOME to find guests in") };
    let dir = base.join(name);
    if !dir.is_dir() {
        fail(&format!("no guest named {name} (see rustuml-ctl list)"));
    }
    if control::is_stale(&dir) {
        let _ = control::remove_dir(&dir);
        fail(&format!("no guest named {name}: its kernel is gone (stale control directory removed)"));
    }
    dir
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{}M", b >> 20),
        b => format!("{}K", b >> 10),
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        s if s >= 86400 => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}m{:02}s", s / 60, s % 60),
    }
}

fn list() {
    let Some(base) = control::base_dir() else { fail("no $XDG_RUNTIME_DIR or $HOME to find guests in") };
    let mut names: Vec<String> = match std::fs::read_dir(&base) {
        Ok(rd) => rd.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| control::check_name(n).is_ok()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    println!("{:<20} {:>8} {:>9} {:>15} {:>6} STATE", "NAME", "PID", "UPTIME", "MEMORY", "PROCS");
    for name in names {
        let dir = base.join(&name);
        let pid = control::read_pid(&dir);
        match request(&dir, "info") {
            Ok(body) => {
                let body = String::from_utf8_lossy(&body);
                let get = |k: &str| body.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).unwrap_or("").to_string();
                let num = |k: &str| get(k).parse::<u64>().unwrap_or(0);
                let mem = format!("{}/{}", human(num("mem_used")), human(num("mem_total")));
                let pid = pid.map_or("-".into(), |p| p.to_string());
                println!("{:<20} {:>8} {:>9} {:>15} {:>6} {}", name, pid, uptime(num("uptime_ms")), mem, num("processes"), get("state"));
            }
            Err(_) if control::is_stale(&dir) => {
                let _ = control::remove_dir(&dir);
                eprintln!("rustuml-ctl: removed the stale control directory of {name} (its kernel is gone)");
            }
            Err(e) => println!("{:<20} {:>8} {:>9} {:>15} {:>6} not answering: {e}", name, pid.map_or("-".into(), |p| p.to_string()), "-", "-", "-"),
        }
    }
}

/// The value of `"key":` in one of our JSON lines: a number, or a string
/// unescaped to bytes (each `\u00XX` one byte).
fn field(line: &str, key: &str) -> Option<Vec<u8>> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        let mut out = Vec::new();
        let mut it = s.chars();
        while let Some(c) = it.next() {
            match c {
                '"' => return Some(out),
                '\\' => match it.next()? {
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'u' => {
                        let h: String = it.by_ref().take(4).collect();
                        out.push(u8::try_from(u32::from_str_radix(&h, 16).ok()?).ok()?);
                    }
                    c => out.push(c as u8),
                },
                c => out.push(c as u8),
            }
        }
        return None;
    }
    Some(rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect::<String>().into_bytes())
}

fn replay(args: &[String]) {
    let (file, speed) = match args {
        [f] => (f, 1.0),
        [f, s, n] | [s, n, f] if s == "--speed" => match n.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => (f, v),
            _ => fail(&format!("--speed {n}: expected a positive number")),
        },
        _ => fail("usage: rustuml-ctl replay FILE [--speed N]"),
    };
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| fail(&format!("{file}: {e}")));
    let mut out = std::io::stdout().lock();
    let mut last: Option<f64> = None;
    for (i, line) in text.lines().enumerate() {
        let parsed = (|| {
            let t: f64 = String::from_utf8(field(line, "time")?).ok()?.parse().ok()?;
            Some((t, field(line, "dir")?, field(line, "data")?))
        })();
        let Some((t, dir, data)) = parsed else { fail(&format!("{file}:{}: not a tty_log record", i + 1)) };
        if let Some(prev) = last {
            let wait = ((t - prev) / speed).clamp(0.0, 10.0);
            if wait > 0.0005 {
                let _ = out.flush();
                std::thread::sleep(Duration::from_secs_f64(wait));
            }
        }
        last = Some(t);
        // What the terminal showed: the programs' output (input shows as
        // its echo, which is output).
        if dir == b"out" {
            let _ = out.write_all(&data);
        }
    }
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("-h") | Some("--help") => {
            println!("{USAGE}");
            exit(if args.is_empty() { 2 } else { 0 })
        }
        Some("list") if args.len() == 1 => list(),
        Some("list") => fail("list takes no argument"),
        Some("replay") => replay(&args[1..]),
        Some(_) if args.len() < 2 => fail(USAGE),
        Some(name) => {
            let dir = guest_dir(name);
            let line = args[1..].join(" ");
            if line.contains(['\n', '\r']) || line.len() > control::MAX_LINE {
                fail("the command must be one line (at most 4096 bytes)");
            }
            match request(&dir, &line) {
                Ok(body) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&body);
                    let _ = out.flush();
                }
                Err(e) => fail(&format!("{name}: {e}")),
            }
        }
    }
}
