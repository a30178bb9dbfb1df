//! `kernel-skas`: boot the kernel on the skas backend and run init.

/// Counted, and bounded by the guest's memory (see `hal_uml_host::heap`).
#[global_allocator]
static HEAP: hal_uml_host::heap::CountingAlloc = hal_uml_host::heap::CountingAlloc;

fn main() {
    hal_uml_host::cli::main(
        &hal_uml_host::cli::Backend {
            name: "kernel-skas",
            about: "A user-mode Linux-compatible kernel: runs INIT from the root directory as the guest's first \
                    process, each guest address space in its own host stub process. Exits with init's status \
                    (its exit code, or 128 + signal).",
            sandbox: hal_uml_host::sandbox::Backend::Skas,
            set_trap: Some(hal_uml_x86_64::set_trap_option),
            prepare_confinement: hal_uml_x86_64::spawn::prepare_confinement,
        },
        hal_uml_x86_64::SkasHal::new,
    )
}
