//! The **tt** ("traced thread") backend of the `hal`: guest code runs in the
//! same host address space as the kernel, the legacy User-mode Linux model,
//! kept on purpose for A/B comparisons of cost and protection against the
//! skas backend (`hal-uml-x86_64`). See DESIGN.md, "Isolation".
//!
//! Not written yet: it gets its own issue (issue 4). For now the crate only
//! provides the `kernel-tt` binary, which says so and exits with status 2.

/// The message `kernel-tt` prints while the backend does not exist.
pub const NOT_IMPLEMENTED: &str =
    "kernel-tt: the tt backend is not implemented yet (issue 4); use --hal skas";

/// Exit status of `kernel-tt` while the backend does not exist (the same
/// status the kernels use for a start-up error).
pub const EXIT_NOT_IMPLEMENTED: i32 = 2;
