// Tests of a kernel binary, shared by kernel-skas and kernel-tt: each
// includes this file after defining `KERNEL` (its path) and `NAME`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kernel(args: &[&str]) -> Output {
    Command::new(KERNEL).args(args).output().unwrap()
}

fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with(&format!("{NAME}: ")), "{e}");
    e
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{NAME}-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// `write(1, msg, 13); exit(7)` as position-dependent code at 0x400078.
core::arch::global_asm!(
    ".pushsection .rodata.cli_guest,\"a\",@progbits",
    "cli_guest: mov $1, %edi; lea 1f(%rip), %rsi; mov $14, %edx; mov $1, %eax; syscall",
    "mov $7, %edi; mov $60, %eax; syscall; ud2",
    "1: .ascii \"hi from guest\\n\"",
    "cli_guest_end:",
    ".popsection",
    options(att_syntax)
);
extern "C" {
    static cli_guest: u8;
    static cli_guest_end: u8;
}

/// A minimal static ELF: header, one PT_LOAD, the code above.
fn tiny_elf() -> Vec<u8> {
    // SAFETY: both labels delimit the one block above.
    let code = unsafe {
        let s = core::ptr::addr_of!(cli_guest);
        core::slice::from_raw_parts(s, core::ptr::addr_of!(cli_guest_end) as usize - s as usize)
    };
    let mut e = vec![0u8; 0x78];
    e[0..4].copy_from_slice(b"\x7fELF");
    e[4] = 2;
    e[5] = 1;
    e[6] = 1;
    let put = |e: &mut Vec<u8>, o: usize, v: &[u8]| e[o..o + v.len()].copy_from_slice(v);
    put(&mut e, 16, &2u16.to_le_bytes());
    put(&mut e, 18, &62u16.to_le_bytes());
    put(&mut e, 20, &1u32.to_le_bytes());
    put(&mut e, 24, &0x400078u64.to_le_bytes());
    put(&mut e, 32, &64u64.to_le_bytes());
    put(&mut e, 52, &64u16.to_le_bytes());
    put(&mut e, 54, &56u16.to_le_bytes());
    put(&mut e, 56, &1u16.to_le_bytes());
    let total = (0x78 + code.len()) as u64;
    put(&mut e, 64, &1u32.to_le_bytes()); // PT_LOAD
    put(&mut e, 68, &5u32.to_le_bytes()); // R+X
    put(&mut e, 72, &0u64.to_le_bytes());
    put(&mut e, 80, &0x400000u64.to_le_bytes());
    put(&mut e, 88, &0x400000u64.to_le_bytes());
    put(&mut e, 96, &total.to_le_bytes());
    put(&mut e, 104, &total.to_le_bytes());
    put(&mut e, 112, &0x1000u64.to_le_bytes());
    e.extend_from_slice(code);
    e
}

#[test]
fn help_lists_the_options() {
    let o = kernel(&["--help"]);
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    for opt in ["--mem", "--root", "--trace-syscalls", "--uname-release", "--hostname", "--trap", "INIT", "ARGS"] {
        assert!(h.contains(opt), "{opt} missing from --help:\n{h}");
    }
}

#[test]
fn bad_input_is_one_line_and_status_2() {
    let d = tempdir("bad");
    one_line_error(&kernel(&["--root", "/nonexistent/rustuml-root", "/bin/sh"]));
    one_line_error(&kernel(&["--root", d.to_str().unwrap(), "/tests/none"]));
    one_line_error(&kernel(&["/tests/none"]));
    let o = kernel(&["--mem", "lots", "--root", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--mem"));
    std::fs::remove_dir_all(&d).unwrap();
}

/// The `--trap` options to run each case under: both mechanisms for
/// kernel-skas; none for kernel-tt, which has only ptrace.
fn trap_modes() -> Vec<Vec<&'static str>> {
    if NAME == "kernel-tt" {
        vec![vec![]]
    } else {
        vec![vec!["--trap", "seccomp"], vec!["--trap", "ptrace"]]
    }
}

#[test]
fn runs_a_static_program_as_init() {
    let d = tempdir("run");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    let init = d.join("bin/tiny");
    std::fs::write(&init, tiny_elf()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Under each trap mechanism; kernel-tt has none to choose and says so.
    for trap in trap_modes() {
        let mut args = vec!["--mem", "16M"];
        args.extend(trap.iter().copied());
        args.extend(["--root", d.to_str().unwrap(), "--", "/bin/tiny", "-x"]);
        let o = kernel(&args);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hi from guest\n", "{trap:?}: {o:?}");
        assert_eq!(o.status.code(), Some(7), "{trap:?}: {o:?}");
    }
    if NAME == "kernel-tt" {
        let o = kernel(&["--trap", "ptrace", "--root", d.to_str().unwrap(), "/bin/tiny"]);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("only kernel-skas"), "{o:?}");
    }
    let o = kernel(&["--trap", "magic", "--root", d.to_str().unwrap(), "/bin/tiny"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(Path::new(&d).exists());
    std::fs::remove_dir_all(&d).unwrap();
}

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    char *p = malloc(4 << 20);
    for (int i = 0; i < (4 << 20); i += 4096) p[i] = (char)i;
    printf("argc=%d argv1=%s\n", argc, argc > 1 ? argv[1] : "-");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) { p[0] = 42; printf("child sees %d\n", p[4096]); fflush(stdout); _exit(3); }
    int st = 0;
    waitpid(c, &st, 0);
    printf("child exited %d, parent sees %d\n", WEXITSTATUS(st), p[0]);
    return 5;
}
"#;

/// A static C program (glibc static, glibc static-PIE, musl static), built
/// with the host's compilers when they are installed, runs as init with the
/// same output and status as natively.
#[test]
fn runs_static_c_programs_like_the_host() {
    let d = tempdir("c");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    let src = d.join("prog.c");
    std::fs::write(&src, C_PROGRAM).unwrap();
    let mut ran = 0;
    for (cc, flags, name) in [("gcc", "-static", "glibc"), ("gcc", "-static-pie", "glibc-pie"), ("musl-gcc", "-static", "musl")] {
        let out = d.join("bin").join(name);
        let built = Command::new(cc).args(["-O2", flags, "-o"]).arg(&out).arg(&src).output();
        if !built.as_ref().is_ok_and(|o| o.status.success()) {
            println!("{cc} {flags}: not available, skipped");
            continue;
        }
        let native = Command::new(&out).arg("x").output().unwrap();
        for trap in trap_modes() {
            let prog = format!("/bin/{name}");
            let mut args = trap.clone();
            args.extend(["--root", d.to_str().unwrap(), "--", &prog, "x"]);
            let guest = kernel(&args);
            let what = format!("{name} ({trap:?})");
            assert_eq!(String::from_utf8_lossy(&guest.stdout), String::from_utf8_lossy(&native.stdout), "{what}: {guest:?}");
            assert_eq!(guest.status.code(), Some(5), "{what}: {guest:?}");
        }
        ran += 1;
    }
    println!("{NAME}: {ran} static C programs ran like natively");
    std::fs::remove_dir_all(&d).unwrap();
}
