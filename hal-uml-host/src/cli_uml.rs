//! UML's own boot words next to our `--` flags, and the disks they attach.
//!
//! A UML user starts a guest with `linux mem=512M ubd0=cow.img,debian.img
//! eth0=user init=/bin/sh`; the kernel binaries accept those words before
//! INIT and turn them into the equivalent flags before `clap` sees the
//! command line:
//!
//! | UML word | our flag |
//! | --- | --- |
//! | `mem=SIZE` | `--mem SIZE` |
//! | `ubdN[r][s]=FILE` / `ubdN=COW,BACKING` | `--ubd N[r][s]=FILE[,BACKING]` |
//! | `ethN=SPEC` | `--net SPEC` (in the order of N) |
//! | `root=/dev/ubdX` | `--root-dev ubdX` (ext4, read-write) |
//! | `init=PATH` | INIT |
//! | `umid=NAME` | `--name NAME` (control directory, `rustuml-ctl`) |
//! | `conN=SPEC` / `con=SPEC` | `--con N=SPEC` / `--con SPEC` |
//! | `tty_log_dir=DIR` | `--tty-log-dir DIR` |
//! | `audit_log=FILE` | `--audit-log FILE` (not a UML word) |
//!
//! Any other `word=value` before INIT is refused with one line (it would
//! otherwise be taken for the program to run). The translation itself is
//! [`crate::cli_args::translate`], so that `cargo xtask run` checks the
//! words too; the disks they attach are opened here.

/// The disk number of `--root-dev DEV` (`ubda`, `/dev/ubda`), which one of
/// `ubd` (the `--ubd` specs) must attach.
pub fn root_disk_index(dev: &str, ubd: &[String]) -> Result<u32, String> {
    let name = dev.strip_prefix("/dev/").unwrap_or(dev);
    let index = match name.strip_prefix("ubd").map(str::as_bytes) {
        Some([c]) if c.is_ascii_lowercase() && c - b'a' < 16 => u32::from(c - b'a'),
        _ => return Err(format!("root={dev}: expected a disk name, /dev/ubda to /dev/ubdp")),
    };
    let attached = ubd.iter().filter_map(|s| s.split_once('=')).any(|(k, _)| k.trim_end_matches(['r', 's', 'd', 'c']).parse() == Ok(index));
    if !attached {
        return Err(format!("root={dev}: no disk {index} attached (give ubd{index}=IMAGE or --ubd {index}=IMAGE)"));
    }
    Ok(index)
}

/// An attached disk: its number and device.
pub type Disk = (u32, Box<dyn hal::BlockDevice>);

/// Open every `--ubd` disk (before the kernel confines itself: at run time
/// it only reads and writes the descriptors opened here). The error is one
/// line naming the disk.
pub fn open_disks(specs: &[String]) -> Result<Vec<Disk>, String> {
    let mut disks: Vec<Disk> = Vec::new();
    for spec in specs {
        let Some((key, value)) = spec.split_once('=') else {
            return Err(format!("--ubd {spec}: expected N=FILE or N=COW,BACKING (N from 0 to 15)"));
        };
        let d = drivers::block::parse_spec(key, value)?;
        if disks.iter().any(|(i, _)| *i == d.index) {
            return Err(format!("ubd{}: attached twice", d.index));
        }
        disks.push((d.index, drivers::block::open(&d)?));
    }
    Ok(disks)
}

/// con0's channel spec, and the opened channels of lines 1 to 6.
pub type Consoles = (Option<drivers::console_chan::ChanSpec>, Vec<(u32, drivers::console_chan::Channel)>);

/// The console channels of `--con` specs: con0's (applied by
/// [`apply_con0`]) and lines 1 to 6's, opened.
pub fn open_consoles(specs: &[String]) -> Result<Consoles, String> {
    use drivers::console_chan::{parse, ChanSpec, Channel};
    let mut all: Option<ChanSpec> = None;
    let mut given: [Option<ChanSpec>; 7] = Default::default();
    for s in specs {
        let (n, spec) = match s.split_once('=') {
            Some((n, spec)) => match n.parse::<usize>() {
                Ok(n) if n <= 6 => (Some(n), spec),
                _ => return Err(format!("--con {s}: the line number must be 0 (the console) to 6")),
            },
            None => (None, s.as_str()),
        };
        let c = parse(spec).map_err(|e| format!("--con {s}: {e}"))?;
        match n {
            Some(n) if given[n].is_some() => return Err(format!("con{n}= given twice")),
            Some(0) if !matches!(c, ChanSpec::Fd(..) | ChanSpec::Null) => {
                return Err(format!("--con {s}: the console (con0) takes fd:N,fd:M or null"));
            }
            Some(n) if n > 0 && matches!(c, ChanSpec::Fd(..)) => return Err(format!("--con {s}: fd: channels are for con0 only")),
            Some(n) => given[n] = Some(c),
            None if all.is_some() => return Err("con= given twice".into()),
            None if matches!(c, ChanSpec::Port(_)) => return Err(format!("--con {s}: a port serves one line: give conN=port:...")),
            None => all = Some(c),
        }
    }
    let con0 = given[0].take().or_else(|| all.clone().filter(|c| matches!(c, ChanSpec::Fd(..) | ChanSpec::Null)));
    let mut lines = Vec::new();
    for (n, g) in given.iter().enumerate().skip(1) {
        let spec = match (g, &all) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) if !matches!(c, ChanSpec::Fd(..)) => c.clone(),
            _ => continue,
        };
        let ch = Channel::open(&spec).map_err(|e| format!("con{n}: {e}"))?;
        lines.push((n as u32, ch));
    }
    Ok((con0, lines))
}

/// Put con0's channel on the host descriptors the console uses (0 for
/// input, 1 for output), before the console is made.
pub fn apply_con0(spec: &drivers::console_chan::ChanSpec) -> Result<(), String> {
    use drivers::console_chan::ChanSpec;
    let (i, o) = match *spec {
        ChanSpec::Fd(i, o) => (i, o),
        ChanSpec::Null => {
            let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| format!("con0=null: {e}"))?;
            let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
            (fd, fd)
        }
        _ => return Err("con0: takes fd:N,fd:M or null".into()),
    };
    for (from, to) in [(i, 0), (o, 1)] {
        if from == to {
            continue;
        }
        // SAFETY: dup2 onto the standard descriptors; a bad `from` is reported.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(format!("con0=fd:{i},fd:{o}: fd {from}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli_args::translate;
    use clap::{Arg, ArgAction, Command};
    use std::ffi::OsString;

    fn cmd() -> Command {
        Command::new("k")
            .arg(Arg::new("mem").long("mem"))
            .arg(Arg::new("hostname").long("hostname"))
            .arg(Arg::new("no-sandbox").long("no-sandbox").action(ArgAction::SetTrue))
    }

    fn tr(args: &[&str]) -> Result<Vec<String>, String> {
        let argv = std::iter::once("k").chain(args.iter().copied()).map(OsString::from).collect();
        translate(argv, &cmd()).map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn uml_words_become_flags() {
        assert_eq!(
            tr(&["mem=512M", "ubd0=cow,img", "eth0=user", "init=/bin/sh", "--no-sandbox"]).unwrap(),
            ["k", "--net", "user", "--mem", "512M", "--ubd", "0=cow,img", "--no-sandbox", "/bin/sh"]
        );
        // Words after INIT are init's; option values are left alone.
        assert_eq!(tr(&["--hostname", "mem=x", "/bin/echo", "ubd0=a"]).unwrap(), ["k", "--hostname", "mem=x", "/bin/echo", "ubd0=a"]);
        assert_eq!(tr(&["ubd1r=img", "init=/bin/echo", "--", "hi"]).unwrap(), ["k", "--ubd", "1r=img", "--", "/bin/echo", "hi"]);
        assert!(tr(&["uid=x"]).unwrap_err().contains("uid=x"));
        assert_eq!(tr(&["umid=web", "/bin/sh"]).unwrap(), ["k", "--name", "web", "/bin/sh"]);
        assert_eq!(tr(&["con=null", "con1=pts"]).unwrap(), ["k", "--con", "null", "--con", "1=pts"]);
        assert_eq!(tr(&["root=/dev/ubda", "ubd0=img"]).unwrap(), ["k", "--root-dev", "/dev/ubda", "--ubd", "0=img"]);
        let ubd = ["0r=a".to_string(), "1=b,c".to_string()];
        assert_eq!((root_disk_index("/dev/ubda", &ubd), root_disk_index("ubdb", &ubd)), (Ok(0), Ok(1)));
        assert!(root_disk_index("ubdc", &ubd).is_err() && root_disk_index("/dev/sda", &ubd).is_err());
        assert!(tr(&["eth1=user"]).is_err());
        assert_eq!(tr(&["eth1=tap,ifname=t", "eth0=user", "/bin/sh"]).unwrap(), ["k", "--net", "user", "--net", "tap,ifname=t", "/bin/sh"]);
        assert!(tr(&["init=/a", "init=/b"]).is_err());
    }
}
