//! Device channels.

/// Which console output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The result of a non-blocking console read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRead {
    /// This many bytes were read.
    Data(usize),
    /// Nothing available now; readiness comes back as
    /// [`crate::Interrupts::CONSOLE`].
    WouldBlock,
    /// End of input (host stdin closed).
    Eof,
}

/// The console: host stdin/stdout/stderr on real backends.
pub trait Console {
    /// Write all of `data` to `stream`.
    fn write(&mut self, stream: ConsoleStream, data: &[u8]);
    /// Read what is available without blocking.
    fn read(&mut self, buf: &mut [u8]) -> ConsoleRead;
}
