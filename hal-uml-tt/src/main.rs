//! `kernel-tt`: boot the kernel on the tt backend and run init.

/// Counted, and bounded by the guest's memory (see `hal_uml_x86_64::heap`).
#[global_allocator]
static HEAP: hal_uml_x86_64::heap::CountingAlloc = hal_uml_x86_64::heap::CountingAlloc;

fn main() {
    hal_uml_x86_64::cli::main(
        "kernel-tt",
        "A user-mode Linux-compatible kernel, traced-thread (tt) model: runs INIT from the root directory \
         as the guest's first process, guest code in host processes that share the kernel's address space \
         (no protection of kernel memory from the guest). Exits with init's status (its exit code, or 128 + signal).",
        hal_uml_tt::TtHal::new,
    )
}
