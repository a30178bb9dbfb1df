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
//! | `root=/dev/ubdX` | `--root-dev ubdX` (ext4, read-only) |
//! | `init=PATH` | INIT |
//!
//! Any other `word=value` before INIT is refused with one line (it would
//! otherwise be taken for the program to run).

use std::ffi::OsString;

/// Turn UML words in `argv` (which starts with the program name) into flags.
/// `cmd` is the parser, asked which `--long` options take a value (so that
/// `--hostname mem=x` is left alone).
pub fn translate(argv: Vec<OsString>, cmd: &clap::Command) -> Result<Vec<OsString>, String> {
    let takes_value = |long: &str| {
        cmd.get_arguments().any(|a| a.get_long() == Some(long) && a.get_action().takes_values())
    };
    let mut it = argv.into_iter();
    let mut out: Vec<OsString> = it.next().into_iter().collect();
    let mut init: Option<OsString> = None;
    let mut nets: Vec<(u32, String)> = Vec::new();
    // Where the first positional argument (INIT) went, once one is seen.
    let mut positional: Option<usize> = None;
    while let Some(arg) = it.next() {
        if positional.is_some() {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str().map(str::to_owned) else {
            positional = Some(out.len());
            out.push(arg);
            continue;
        };
        if s == "--" {
            positional = Some(out.len() + 1);
            out.push(arg);
            continue;
        }
        if let Some(long) = s.strip_prefix("--") {
            out.push(arg);
            if !long.contains('=') && takes_value(long) {
                if let Some(v) = it.next() {
                    out.push(v);
                }
            }
            continue;
        }
        if s.starts_with('-') {
            out.push(arg);
            continue;
        }
        let Some((key, value)) = s.split_once('=') else {
            positional = Some(out.len());
            out.push(arg);
            continue;
        };
        if let Some(rest) = key.strip_prefix("ubd").filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
            out.push("--ubd".into());
            out.push(format!("{rest}={value}").into());
        } else if key == "mem" {
            out.push("--mem".into());
            out.push(value.into());
        } else if key == "root" {
            out.push("--root-dev".into());
            out.push(value.into());
        } else if key == "init" {
            if init.replace(value.into()).is_some() {
                return Err("init= given twice".into());
            }
        } else if let Some(n) = key.strip_prefix("eth").and_then(|n| n.parse::<u32>().ok()) {
            if nets.iter().any(|(m, _)| *m == n) {
                return Err(format!("{key}= given twice"));
            }
            nets.push((n, value.to_string()));
        } else {
            return Err(format!(
                "unknown boot word `{s}` (UML words understood: mem=, ubdN=, ethN=, root=, init=; see --help)"
            ));
        }
    }
    nets.sort();
    // Flags go right after the program name, before any `--` or INIT.
    for (i, (n, spec)) in nets.into_iter().enumerate().rev() {
        if n as usize != i {
            return Err(format!("eth{n}= given without eth{i}= (interfaces are numbered from eth0 in order)"));
        }
        out.splice(1..1, [OsString::from("--net"), spec.into()]);
        positional = positional.map(|p| p + 2);
    }
    if let Some(init) = init {
        match positional {
            // `init=PATH ARGS...` (ARGS after `--` or words that are not
            // options): PATH runs with them.
            Some(p) => out.insert(p.min(out.len()), init),
            None => out.push(init),
        }
    }
    Ok(out)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

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
        assert!(tr(&["umid=x"]).unwrap_err().contains("umid=x"));
        assert_eq!(tr(&["root=/dev/ubda", "ubd0=img"]).unwrap(), ["k", "--root-dev", "/dev/ubda", "--ubd", "0=img"]);
        let ubd = ["0r=a".to_string(), "1=b,c".to_string()];
        assert_eq!((root_disk_index("/dev/ubda", &ubd), root_disk_index("ubdb", &ubd)), (Ok(0), Ok(1)));
        assert!(root_disk_index("ubdc", &ubd).is_err() && root_disk_index("/dev/sda", &ubd).is_err());
        assert!(tr(&["eth1=user"]).is_err());
        assert_eq!(tr(&["eth1=tap,ifname=t", "eth0=user", "/bin/sh"]).unwrap(), ["k", "--net", "user", "--net", "tap,ifname=t", "/bin/sh"]);
        assert!(tr(&["init=/a", "init=/b"]).is_err());
    }
}
