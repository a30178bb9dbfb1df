//! `kernel-skas`: boot the kernel on the skas backend and run init.

/// Counted, and bounded by the guest's memory (see `hal_uml_x86_64::heap`).
#[global_allocator]
static HEAP: hal_uml_x86_64::heap::CountingAlloc = hal_uml_x86_64::heap::CountingAlloc;

fn main() {
    hal_uml_x86_64::cli::main(
        "kernel-skas",
        "A user-mode Linux-compatible kernel: runs INIT from the root directory as the guest's first \
         process, each guest address space in its own host stub process. Exits with init's status \
         (its exit code, or 128 + signal).",
        hal_uml_x86_64::SkasHal::new,
    )
}
