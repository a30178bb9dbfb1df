//! `kernel-tt`: boot the kernel on the tt backend and run init.

/// Counted, and bounded by the guest's memory (see `hal_uml_host::heap`).
#[global_allocator]
static HEAP: hal_uml_host::heap::CountingAlloc = hal_uml_host::heap::CountingAlloc;

fn main() {
    hal_uml_host::cli::main(
        &hal_uml_host::cli::Backend {
            name: "kernel-tt",
            about: "A user-mode Linux-compatible kernel, traced-thread (tt) model: runs INIT from the root directory \
                    as the guest's first process, guest code in host processes that share the kernel's address space \
                    (no protection of kernel memory from the guest). Exits with init's status (its exit code, or 128 + signal).",
            sandbox: hal_uml_host::sandbox::Backend::Tt,
            // Only skas has a choice of trap mechanism.
            set_trap: None,
            // Nothing to prepare: tt spawns its guest processes itself.
            prepare_confinement: |_| true,
        },
        hal_uml_tt::TtHal::new,
    )
}
