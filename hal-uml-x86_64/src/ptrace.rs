//! The `PTRACE_SYSEMU` trap mechanism: the kernel thread traces every stub.
//!
//! Running guest code in a traced process — register and FPU transfer,
//! `waitpid` decoding into a [`Trap`], the `SIGSEGV` detour that learns a
//! fault's access kind, timer kicks — is the host layer's
//! [`Tracer`], shared with the tt backend.
//! What is skas's: spawning stubs, and applying map operations in them.
//!
//! Guest code only ever runs under `PTRACE_SYSEMU`, so every `syscall` it
//! executes — including one in the stub's own code — stops the stub before
//! the host runs it, and the host never executes it. Stub code runs with
//! `PTRACE_CONT` only when the tracer has itself pointed `rip` at it.

use crate::stub::{self, Layout, OPS_ADDR, OPS_PER_BATCH};
use crate::timer::TimerShared;
use crate::{Mechanism, Op};
use hal::{HalError, Trap, UserContext};
pub use hal_uml_host::tracer::{wait_for_stop, Stats, Tracee, Tracer};
use hal_uml_host::sys::{self, SharedMemfd};
use hal_uml_host::tracer::{set_regs, wait, Wait};
use std::io;

/// The fd number under which a stub sees the physical-memory memfd.
pub const PHYS_FD: i32 = 3;

/// The memory a ptrace stub reads its operation list from: written here,
/// read-only there, so no host call reaches into another process to pass it.
#[derive(Debug)]
struct OpsPage(SharedMemfd);

impl OpsPage {
    fn new() -> io::Result<OpsPage> {
        SharedMemfd::new(c"rustuml-skas-ops", stub::COMM_OPS_SIZE as usize, false).map(OpsPage)
    }

    /// Put `ops` where the stub's executor reads them.
    fn write(&self, ops: &[Op]) {
        let bytes = std::mem::size_of_val(ops);
        assert!(bytes <= stub::OPS_SIZE as usize);
        // SAFETY: the list follows the control page in our mapping and holds OPS_SIZE bytes (checked); the stub only reads it while stopped.
        unsafe { std::ptr::copy_nonoverlapping(ops.as_ptr().cast::<u8>(), self.0.as_ptr().add(4096), bytes) };
    }
}

/// A ptrace stub: the traced process and the page it reads its operation
/// list from. The process dies (field order) before its page is unmapped.
#[derive(Debug)]
pub struct PtraceStub {
    tracee: Tracee,
    ops: OpsPage,
}

impl PtraceStub {
    /// The host pid.
    pub fn pid(&self) -> i32 {
        self.tracee.pid()
    }

    /// Whether the process is gone (it was reaped).
    pub fn is_dead(&self) -> bool {
        self.tracee.is_dead()
    }
}

/// The ptrace mechanism: spawns stubs and switches into them.
pub struct PtraceMechanism {
    phys_fd: i32,
    image_fd: i32,
    layout: Layout,
    kernel_pid: i32,
    /// The shared tracing code and its counters.
    pub tracer: Tracer,
}

impl PtraceMechanism {
    /// Prepare the mechanism: write the stub image to a memfd.
    /// Stubs pin themselves to `stub_cpu` once set up, and take
    /// `SCHED_BATCH` if `batch` (they share the kernel's CPU).
    pub fn new(phys_fd: i32, stub_cpu: Option<usize>, batch: bool) -> io::Result<Self> {
        let (image, layout) = stub::build_image_with(false, stub_cpu, batch);
        let image_fd = image_memfd(&image)?;
        let kernel_pid = sys::getpid();
        Ok(PtraceMechanism { phys_fd, image_fd, layout, kernel_pid, tracer: Tracer::default() })
    }

    /// The stub's routine addresses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// A close-on-exec memfd holding the stub image, sealed (nothing can change
/// it any more) and registered with this thread's stub zygote (see
/// [`crate::spawn::register_image`]). Close it with [`crate::spawn::close_image`].
pub fn image_memfd(image: &[u8]) -> io::Result<i32> {
    let image_fd = sys::sealed_memfd(c"rustuml-skas-stub", image, crate::spawn::IMAGE_SEALS)?;
    crate::spawn::register_image(image_fd);
    Ok(image_fd)
}

impl Drop for PtraceMechanism {
    fn drop(&mut self) {
        crate::spawn::close_image(self.image_fd);
    }
}

impl Mechanism for PtraceMechanism {
    type Stub = PtraceStub;

    fn spawn(&mut self) -> Result<PtraceStub, HalError> {
        let ops = OpsPage::new().map_err(|_| HalError::OutOfResources)?;
        let fds = crate::spawn::ChildFds { phys: self.phys_fd, image: self.image_fd, comm: Some(ops.0.fd()) };
        let pid = crate::spawn::spawn(self.kernel_pid, fds, true, None).map_err(|_| HalError::OutOfResources)?;
        let mut stub = PtraceStub { tracee: Tracee::unstarted(pid), ops };
        // The exec stop.
        match wait(pid) {
            Ok(Wait::Stopped(libc::SIGTRAP, 0)) => {}
            _ => {
                stub.tracee.lost(None);
                return Err(HalError::OutOfResources);
            }
        }
        if stub.tracee.set_options().is_err() {
            stub.tracee.lost(None);
            return Err(HalError::OutOfResources);
        }
        let done = self.layout.entry_done;
        let r = match self.tracer.run_routine(&mut stub.tracee, 0, done) {
            Ok(r) => r,
            Err(_) => return Err(HalError::OutOfResources),
        };
        if r.r15 != 0 {
            stub.tracee.lost(None);
            return Err(HalError::OutOfResources);
        }
        stub.tracee.set_template(r);
        self.tracer.stats.stubs += 1;
        Ok(stub)
    }

    fn apply(&mut self, stub: &mut PtraceStub, ops: &[Op]) -> Result<(), Trap> {
        if let Some(t) = stub.tracee.gone() {
            return Err(t);
        }
        for chunk in ops.chunks(OPS_PER_BATCH) {
            stub.ops.write(chunk);
            let mut regs = *stub.tracee.template();
            regs.rip = self.layout.exec;
            regs.rbx = OPS_ADDR;
            regs.r12 = chunk.len() as u64;
            regs.orig_rax = u64::MAX;
            if set_regs(stub.tracee.pid(), &regs).is_err() {
                return Err(stub.tracee.lost(None));
            }
            self.tracer.stats.map_batches += 1;
            self.tracer.stats.map_ops += chunk.len() as u64;
            let done = self.layout.exec_done;
            let r = self.tracer.run_routine(&mut stub.tracee, 0, done)?;
            if r.rax != 0 {
                // The host refused (ENOMEM, VMA limit): the mirror is now
                // incomplete, so this address space cannot run any more.
                return Err(stub.tracee.lost(None));
            }
        }
        Ok(())
    }

    fn run(&mut self, stub: &mut PtraceStub, ctx: &mut UserContext, timer: &TimerShared) -> Trap {
        let done = self.layout.segv_done;
        self.tracer.run_guest(&mut stub.tracee, ctx, timer, done)
    }
}
