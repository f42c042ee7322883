//! Whether this process can create an io_uring, the one kernel facility the broker cannot run without
//! (glommio drives every socket through it).

use serde::Serialize;

use crate::hostfs::HostFs;

/// `struct io_uring_params` (include/uapi/linux/io_uring.h): 10 u32 fields then two 40-byte offset
/// blocks, 120 bytes. Only zeroes go in (the kernel rejects non-zero reserved fields) and only
/// `features` is read back, so the layout is kept as opaque 64-bit words, which also gives the 8-byte
/// alignment of the offset blocks' `user_addr`.
#[repr(C)]
struct IoUringParams {
    words: [u64; 15],
}

impl IoUringParams {
    /// `features` is the 6th u32 (after sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle).
    fn features(&self) -> u32 {
        let bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        u32::from_ne_bytes([bytes[20], bytes[21], bytes[22], bytes[23]])
    }
}

/// The outcome of trying io_uring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoUringReport {
    /// io_uring_setup(2) with a 4-entry ring succeeded.
    pub available: bool,
    /// errno of the failed setup.
    pub errno: Option<i32>,
    /// The error text of the failed setup.
    pub error: Option<String>,
    /// The kernel's IORING_FEAT_* bits of the successful setup.
    pub features: Option<u32>,
    /// `/proc/sys/kernel/io_uring_disabled` (Linux 6.6+): 0 enabled, 1 only for root and
    /// `io_uring_group`, 2 disabled. `None` when the knob does not exist.
    pub disabled_sysctl: Option<u64>,
}

/// Creates (and immediately closes) a small io_uring, and reads the kernel's io_uring switch.
pub fn probe(fs: &HostFs) -> IoUringReport {
    let disabled_sysctl = fs.read_u64("proc/sys/kernel/io_uring_disabled");
    let mut params = IoUringParams { words: [0; 15] };
    // SAFETY: io_uring_setup reads and writes exactly one io_uring_params, which `params` is (zeroed,
    // 120 bytes); the returned descriptor is closed below and never used otherwise.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            4 as libc::c_uint,
            &mut params as *mut IoUringParams,
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by io_uring_setup and is owned here only.
        unsafe { libc::close(fd as libc::c_int) };
        IoUringReport {
            available: true,
            errno: None,
            error: None,
            features: Some(params.features()),
            disabled_sysctl,
        }
    } else {
        let err = std::io::Error::last_os_error();
        IoUringReport {
            available: false,
            errno: err.raw_os_error(),
            error: Some(err.to_string()),
            features: None,
            disabled_sysctl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IoUringParams>(), 120);
    }

    #[test]
    fn features_is_the_sixth_word() {
        let mut p = IoUringParams { words: [0; 15] };
        // Little- or big-endian, the 6th u32 is the high or low half of the 3rd u64.
        let mut bytes = [0u8; 8];
        bytes[4..8].copy_from_slice(&0x1234u32.to_ne_bytes());
        p.words[2] = u64::from_ne_bytes(bytes);
        assert_eq!(p.features(), 0x1234);
    }

    #[test]
    fn probe_reports_one_way_or_the_other() {
        let r = probe(&HostFs::real());
        assert_eq!(r.available, r.errno.is_none());
        assert_eq!(r.available, r.features.is_some());
    }
}
