//! The block product on AMX tiles (Intel Sapphire Rapids and later), for blocks of users: one
//! `tdpbf16ps` multiplies a 16-user × 16-pair tile by a 16-pair × 16-item tile, 8,192 bfloat16
//! products, where `vdpbf16ps` does 32. Same panels and the same rounding as `bf16` (products of
//! two bfloat16 are exact in f32, each step rounds one addition, subnormals flush to zero), so
//! the selector's bound holds unchanged.
//!
//! The stable compiler has no AMX intrinsics, so the few instructions are inline assembly. The
//! kernel needs the tiles' register state, which Linux grants per process on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`): [`available`] asks once and says no when refused, or
//! when `RECOMMENDER_RANK_AMX=0` turns it off.

use std::sync::OnceLock;

use super::panels::{USERS, WIDTH};

/// Factor pairs per tile row: a panel's pairs are padded to a multiple of this.
pub const PAIRS: usize = 16;
/// Users per pass: two tiles of 16 rows.
pub const PASS: usize = 32;

/// Whether this CPU, its kernel and the environment allow the AMX kernel; asked once.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::env::var("RECOMMENDER_RANK_AMX").map_or(true, |v| v != "0") && request()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request() -> bool {
    use std::arch::x86_64::__cpuid_count;
    const ARCH_REQ_XCOMP_PERM: libc::c_int = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    // A safe function in recent releases, unsafe in older ones within rust-version.
    #[allow(unused_unsafe)]
    // SAFETY: as above.
    let leaf = unsafe { __cpuid_count(7, 0) };
    let (amx_bf16, amx_tile) = ((leaf.edx >> 22) & 1 == 1, (leaf.edx >> 24) & 1 == 1);
    if !(amx_bf16 && amx_tile && super::bf16::available()) {
        return false;
    }
    // SAFETY: a plain system call with integer arguments; on refusal it returns -1.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request() -> bool {
    false
}

/// The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes (C: 16 users × 16 f32
/// sums; A: 16 users × 16 pairs; B: 16 pairs × 16 items).
#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// The tiles configured for this thread while it lives; released on drop.
pub struct Tiles(());

impl Tiles {
    /// `None` unless [`available`].
    pub fn new() -> Option<Self> {
        if !available() {
            return None;
        }
        let mut config = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            config.colsb[t] = 64;
            config.rows[t] = 16;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AMX is available (checked above) and the configuration is valid for
        // palette 1; the compiler never uses tile registers, so nothing else depends on them.
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
        }
        Some(Tiles(()))
    }

    /// Sums of one panel (`panel`: `stride` pairs × [`WIDTH`] item words) for [`PASS`] users
    /// whose rows of `stride` words start at `rows`, into `out[u][j]`, `u < PASS`.
    pub fn pass(&mut self, rows: &[u32], stride: usize, panel: &[u32], out: &mut [[f32; WIDTH]]) {
        assert!(stride.is_multiple_of(PAIRS) && rows.len() >= PASS * stride);
        assert!(panel.len() >= stride * WIDTH && out.len() >= PASS);
        const { assert!(WIDTH == 32 && PASS == 2 * 16 && PASS.is_multiple_of(USERS)) };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: every tile load reads 16 rows of 64 bytes inside the slices checked above
        // (A: users 0..32 × pairs c*16..c*16+16 of rows; B: pairs c*16..c*16+16 × 32 items of
        // the panel), and the stores write 16 rows of 64 bytes inside `out`'s 32 × 128 bytes.
        unsafe {
            use std::arch::asm;
            let a_stride = stride * 4;
            let (a0, a1) = (rows.as_ptr(), rows.as_ptr().add(16 * stride));
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for c in 0..stride / PAIRS {
                let b = panel.as_ptr().add(c * PAIRS * WIDTH);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(c * PAIRS),
                    a1 = in(reg) a1.add(c * PAIRS),
                    b0 = in(reg) b,
                    b1 = in(reg) b.add(16),
                    sa = in(reg) a_stride,
                    sb = in(reg) WIDTH * 4,
                    options(nostack, readonly)
                );
            }
            let o = out.as_mut_ptr().cast::<f32>();
            asm!(
                "tilestored [{o0} + {s}*1], tmm0",
                "tilestored [{o1} + {s}*1], tmm1",
                "tilestored [{o2} + {s}*1], tmm2",
                "tilestored [{o3} + {s}*1], tmm3",
                o0 = in(reg) o,
                o1 = in(reg) o.add(16),
                o2 = in(reg) o.add(16 * WIDTH),
                o3 = in(reg) o.add(16 * WIDTH + 16),
                s = in(reg) WIDTH * 4,
                options(nostack)
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (rows, panel, out);
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: releases the configuration `new` loaded.
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, nomem));
        }
    }
}
