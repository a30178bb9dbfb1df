//! The checksums ext4 keeps on its metadata: CRC32C (Castagnoli, as
//! ext4's `ext4_chksum`: no inversion before or after, the caller passes
//! the running value) for `metadata_csum`, and CRC16 (ANSI, reflected) for
//! the older `uninit_bg` group descriptor checksum.

const fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const fn crc16_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u16;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xa001 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC32C: [u32; 256] = crc32c_table();
static CRC16: [u16; 256] = crc16_table();

/// Continue a CRC32C over `data` (ext4's `ext4_chksum(crc, data)`).
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Continue a CRC16 over `data` (Linux's `crc16`).
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = CRC16[((crc ^ u16::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The standard check value of CRC-32C is that of the inverted form.
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
        // CRC-16/ARC of "123456789" (initial 0).
        assert_eq!(crc16(0, b"123456789"), 0xbb3d);
    }
}
