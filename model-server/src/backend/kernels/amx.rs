//! The int8 product on AMX (Intel's Advanced Matrix Extensions, Sapphire Rapids and later):
//! `TDPBUSD` multiplies a 16 x 64 tile of u8 activations by a 16 x 64 tile of s8 weights into a
//! 16 x 16 tile of i32 sums, 16,384 multiply-adds an instruction, against `VPDPBUSD`'s 64. It
//! runs the same scheme as [`crate::backend::quantized`] on the same packed panels: a panel's quad
//! `q` is 192 bytes, three lines of 16 columns x 4 inputs, so line `j` of 16 consecutive quads,
//! 192 bytes apart, is exactly the B tile `TDPBUSD` takes for columns `16j..16j+16`. Nothing is
//! repacked; a tile of rows is 16 rows of the quantized activations, `k` bytes apart.
//!
//! Per panel and 16 rows, each group of [`GROUP`] inputs is two A tiles times three B tiles into
//! three C tiles (rows x 48 columns), stored to that group's 3 KiB of scratch; once every group
//! is in, [`finish`] scales them in registers, eight rows at a time, and adds the bias, the zero
//! point's correction and the f32 outlier product before the one store.
//!
//! Linux hands AMX's 8 KiB tile state to a process only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`enabled`] asks once, and the
//! kernel is chosen only when the CPU has AMX-INT8 and the request was granted. Each thread
//! loads its tile configuration before its tiles and releases them after.
//!
//! What it owns: the AMX instructions (inline assembly) and the system call that enables them;
//! [`super::int8::product`] is the safe way in.

use super::int8::{GROUP, Tile};
use std::ops::Range;
use std::sync::OnceLock;

/// True when this CPU has AMX-TILE and AMX-INT8 and Linux granted this process their state.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            // CPUID leaf 7, EDX: AMX-TILE (bit 24), AMX-INT8 (bit 25).
            let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
            let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
            tile && int8 && std::arch::is_x86_feature_detected!("avx512bw") && request_tile_state()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        false
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: true when granted.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call; it reads its two integer arguments and touches no memory.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(target_arch = "x86_64")]
/// Rows per tile.
const TILE_ROWS: usize = 16;

#[cfg(target_arch = "x86_64")]
/// The 64-byte tile configuration `LDTILECFG` reads: palette 1; tmm0–2 the C tiles (`rows` x
/// 16 i32), tmm3 the A tile (`rows` x 64 u8), tmm4–6 the B tiles (16 quads x 64 bytes).
#[repr(C, align(64))]
struct Config([u8; 64]);

#[cfg(target_arch = "x86_64")]
impl Config {
    fn new(rows: usize) -> Self {
        debug_assert!((1..=TILE_ROWS).contains(&rows));
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        for t in 0..7 {
            // Every tile row is 64 bytes.
            bytes[16 + 2 * t] = 64;
            bytes[48 + t] = if t >= 4 { TILE_ROWS as u8 } else { rows as u8 };
        }
        Self(bytes)
    }
}

#[cfg(target_arch = "x86_64")]
/// One group's three C tiles, row-major: row `r`'s 48 i32 at `r * 48`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Sums([i32; TILE_ROWS * 48]);

/// Placeholder off x86-64, where [`enabled`] is false.
///
/// # Safety
/// Never called: it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn panels(_: usize, _: Range<usize>, _: impl Fn(usize, usize) -> Tile) {
    unreachable!("AMX exists only on x86-64")
}

#[cfg(target_arch = "x86_64")]
/// Panels `panels` of every row: 16-row tiles, then one of the rows left; `tile_at(p, row)`
/// gives the operands of the tile at `row` of panel `p`.
///
/// # Safety
/// [`enabled`] is true; `tile_at` gives tiles whose pointers cover their rows (16, or the rows
/// left) and the panel's columns, which no other thread writes.
pub(super) unsafe fn panels(
    rows: usize,
    panels: Range<usize>,
    tile_at: impl Fn(usize, usize) -> Tile,
) {
    if panels.is_empty() || rows == 0 {
        return;
    }
    let full = rows / TILE_ROWS * TILE_ROWS;
    // Every group's sums of one tile (36 KiB at 1536 inputs: L1), scaled once they are all in.
    let groups = tile_at(panels.start, 0).k / GROUP;
    let mut sums = vec![Sums([0; TILE_ROWS * 48]); groups];
    // SAFETY: the caller's bounds, and AMX is enabled; each configuration is loaded before the
    // tiles it shapes, and the tiles are released at the end.
    unsafe {
        if full > 0 {
            configure(&Config::new(TILE_ROWS));
            for p in panels.clone() {
                for row in (0..full).step_by(TILE_ROWS) {
                    tile(&tile_at(p, row), TILE_ROWS, &mut sums);
                }
            }
        }
        if full < rows {
            configure(&Config::new(rows - full));
            for p in panels {
                tile(&tile_at(p, full), rows - full, &mut sums);
            }
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(target_arch = "x86_64")]
/// # Safety
/// AMX is enabled.
unsafe fn configure(config: &Config) {
    // SAFETY: `config` is 64 readable bytes; palette 1 with these shapes is valid on every AMX
    // CPU (16 rows of 64 bytes at most).
    unsafe {
        std::arch::asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
    }
}

#[cfg(target_arch = "x86_64")]
/// One tile of `rows` rows (the loaded configuration's) x the panel's 48 columns into `c`: every
/// group's integer sums on the tiles, then [`finish`] in registers, eight rows at a time.
///
/// # Safety
/// As [`panels`], with the configuration for `rows` loaded; `sums` has one entry per group.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tile(tile: &Tile, rows: usize, sums: &mut [Sums]) {
    const QUAD_BYTES: usize = 192;
    // SAFETY: the caller bounds every row and column; the A tiles read `rows` rows of 64 bytes
    // inside the group, the B tiles 16 quads of the panel, the stores fill one `Sums` each.
    unsafe {
        for (g, group) in sums.iter_mut().enumerate() {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                options(nostack, nomem)
            );
            for half in 0..GROUP / 64 {
                let first = g * GROUP + 64 * half;
                let a = tile.q.add(first);
                let b = tile.weights.add(first / 4 * QUAD_BYTES);
                std::arch::asm!(
                    "tileloadd tmm3, [{a} + {a_stride} * 1]",
                    "tileloadd tmm4, [{b0} + {b_stride} * 1]",
                    "tileloadd tmm5, [{b1} + {b_stride} * 1]",
                    "tileloadd tmm6, [{b2} + {b_stride} * 1]",
                    "tdpbusd tmm0, tmm3, tmm4",
                    "tdpbusd tmm1, tmm3, tmm5",
                    "tdpbusd tmm2, tmm3, tmm6",
                    a = in(reg) a,
                    a_stride = in(reg) tile.k,
                    b0 = in(reg) b,
                    b1 = in(reg) b.add(64),
                    b2 = in(reg) b.add(128),
                    b_stride = in(reg) QUAD_BYTES,
                    options(nostack, readonly),
                );
            }
            let out = group.0.as_mut_ptr();
            std::arch::asm!(
                "tilestored [{c0} + {stride} * 1], tmm0",
                "tilestored [{c1} + {stride} * 1], tmm1",
                "tilestored [{c2} + {stride} * 1], tmm2",
                c0 = in(reg) out,
                c1 = in(reg) out.add(16),
                c2 = in(reg) out.add(32),
                stride = in(reg) 48usize * 4,
                options(nostack),
            );
        }
        let mut row = 0;
        while row + 8 <= rows {
            finish::<8>(tile, sums, row);
            row += 8;
        }
        match rows - row {
            0 => {}
            1 => finish::<1>(tile, sums, row),
            2 => finish::<2>(tile, sums, row),
            3 => finish::<3>(tile, sums, row),
            4 => finish::<4>(tile, sums, row),
            5 => finish::<5>(tile, sums, row),
            6 => finish::<6>(tile, sums, row),
            _ => finish::<7>(tile, sums, row),
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Rows `first..first + R` of the tile from every group's sums:
/// `c = bias - scale * zero * correction + scale * Σ_g (column scale_g * sum_g) + outliers · W`,
/// all of a row's 48 columns in registers until the one store.
///
/// # Safety
/// As [`tile`], for these rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn finish<const R: usize>(tile: &Tile, sums: &[Sums], first: usize) {
    use super::int8::{NR, OUTLIERS};
    use std::arch::x86_64::{
        _mm512_cvtepi32_ps, _mm512_fmadd_ps, _mm512_load_si512, _mm512_loadu_ps, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_storeu_ps,
    };
    // SAFETY: the caller bounds the rows, the groups and the panel's columns.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 3]; R];
        for (g, group) in sums.iter().enumerate() {
            let scales = tile.scales.add(g * tile.n);
            let scale = [0, 16, 32].map(|j| _mm512_loadu_ps(scales.add(j)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = group.0.as_ptr().add((first + r) * 48);
                for (j, v) in acc.iter_mut().enumerate() {
                    let sum = _mm512_cvtepi32_ps(_mm512_load_si512(row.add(16 * j).cast()));
                    *v = _mm512_fmadd_ps(sum, scale[j], *v);
                }
            }
        }
        let bias = [0, 16, 32].map(|j| _mm512_loadu_ps(tile.bias.add(j)));
        let correction = [0, 16, 32].map(|j| _mm512_loadu_ps(tile.correction.add(j)));
        for (r, acc) in acc.iter_mut().enumerate() {
            let row_scale = *tile.scale.add(first + r);
            let minus_zero = _mm512_set1_ps(-row_scale * *tile.zero.add(first + r) as f32);
            let row_scale = _mm512_set1_ps(row_scale);
            for (j, v) in acc.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(
                    row_scale,
                    *v,
                    _mm512_fmadd_ps(minus_zero, correction[j], bias[j]),
                );
            }
        }
        for o in 0..OUTLIERS {
            let w = tile.outlier_weights.add(o * NR);
            let w = [0, 16, 32].map(|j| _mm512_loadu_ps(w.add(j)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*tile.outliers.add((first + r) * OUTLIERS + o));
                for (j, v) in acc.iter_mut().enumerate() {
                    *v = _mm512_fmadd_ps(a, w[j], *v);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let c = tile.c.add((first + r) * tile.n);
            for (j, v) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(16 * j), *v);
            }
        }
    }
}
