//! Network links: Ethernet frames between the guest kernel and a backend
//! (user-mode NAT, a virtual switch shared by several guests, a host TAP).

/// One network interface's link, as the guest kernel's NIC driver sees it.
///
/// Frames are whole Ethernet II frames without the FCS. The device never
/// blocks: [`NetDevice::send`] drops a frame the link cannot take now (as a
/// NIC with a full ring would), and [`NetDevice::recv`] returns `None` when
/// nothing is queued; the backend reports new frames as
/// [`crate::Interrupts::NET`]. Frames arriving from outside are untrusted:
/// the kernel's stack must drop malformed ones, never panic on them.
pub trait NetDevice {
    /// The interface's hardware address.
    fn mac(&self) -> [u8; 6];
    /// The largest frame the link carries (14-byte header included):
    /// 1514 for an MTU of 1500.
    fn max_frame(&self) -> usize {
        1514
    }
    /// Transmit `frame`, or drop it when the link is full or down.
    fn send(&mut self, frame: &[u8]);
    /// Take the next received frame into `buf` (at least
    /// [`NetDevice::max_frame`] bytes); its length, or `None` if no frame is
    /// queued. A frame longer than `buf` is dropped and the next one tried.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize>;
}
