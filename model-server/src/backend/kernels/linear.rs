//! The f32 packed-panel product behind [`crate::backend::linear`]: `y = x · W + b` (then the
//! layer's activation) on weights packed in column panels of [`NR`] floats, each `inputs` rows
//! deep, 64-byte aligned ([`Line`]s). [`product`] is the safe entry: it checks the CPU and every
//! length, then runs the AVX-512 micro-kernel over raw tile pointers, half the panels on a
//! [`Team`]'s helper when the product is worth it.

use super::team::Team;
use super::tiles::{Out, activate_columns, each_row_tile, split_panels};
use crate::backend::activation::Activation;

/// Depth of one pass over the rows: 8 rows x 384 floats = 12 KiB of `x`, which stays in L1 while a
/// panel of the weights streams past it.
pub const KC: usize = 384;

pub use avx512::NR;

/// One cache line of floats; the packed panels are made of these so every panel row is aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line(pub [f32; 16]);

/// A packed layer as [`product`] reads it.
pub struct Packed<'a> {
    /// Width of `x`.
    pub inputs: usize,
    /// Width of `y`: a whole number of panels.
    pub outputs: usize,
    /// Panel p holds columns `p*NR..(p+1)*NR`, `inputs` rows of NR floats.
    pub panels: &'a [Line],
    /// One per output.
    pub bias: &'a [f32],
    /// Applied to each part of the product as it is finished.
    pub activation: Option<Activation>,
}

/// Whether this CPU runs the micro-kernel (AVX-512F).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `y = x · W + b` (and the activation) for contiguous `x` of `rows` rows, every panel; with a
/// team, half the panels go to its helper.
///
/// # Panics
/// When the lengths do not fit the layer, or on a CPU without AVX-512F (the layer's kernel is
/// chosen with [`supported`], so neither happens).
pub fn product(layer: &Packed, x: &[f32], rows: usize, team: Option<&Team>) -> Vec<f32> {
    let (k, n) = (layer.inputs, layer.outputs);
    assert!(x.len() == rows * k && n.is_multiple_of(NR));
    assert!(layer.panels.len() * 16 == k * n && layer.bias.len() == n);
    assert!(supported(), "the packed f32 kernel needs AVX-512F");
    let len = rows * n;
    let mut y = Vec::<f32>::with_capacity(len);
    let out = Out(y.as_mut_ptr());
    // SAFETY: the asserts above bound every tile to `x`, the panels, the bias and `y`'s `len`
    // floats, and the CPU has AVX-512F; the ranges `split_panels` hands out partition the panels,
    // so two threads write disjoint columns.
    unsafe {
        split_panels(n / NR, rows * k * n, team, |range| {
            panel_range(x, rows, layer, out, range)
        });
    }
    // SAFETY: the first depth block of every tile starts from the bias and stores all its
    // outputs before any later block reads them, and the tiles cover every row and column, so
    // all `len` floats are written.
    unsafe { y.set_len(len) };
    y
}

/// The columns of panels `range`, every row, every depth block.
///
/// # Safety
/// `x` holds `rows * inputs` floats, `layer.panels` the packed weight, `out` points at
/// `rows * outputs` floats, and no other thread writes these columns; the CPU has AVX-512F.
unsafe fn panel_range(
    x: &[f32],
    rows: usize,
    layer: &Packed,
    out: Out,
    range: std::ops::Range<usize>,
) {
    use avx512::tile;
    let (k, n) = (layer.inputs, layer.outputs);
    let x = x.as_ptr();
    let weights = layer.panels.as_ptr().cast::<f32>();
    for k0 in (0..k).step_by(KC) {
        let depth = KC.min(k - k0);
        for p in range.clone() {
            // SAFETY: all pointer arithmetic below stays inside its buffer (p < n / NR,
            // k0 + depth <= k, and the row tiles cover rows 0..rows), and the CPU has AVX-512F:
            // the caller's contract.
            unsafe {
                let b = weights.add((p * k + k0) * NR);
                let (start, stride) = if k0 == 0 {
                    (layer.bias.as_ptr().add(p * NR), 0)
                } else {
                    (out.0.add(p * NR).cast_const(), n)
                };
                let tile_at = |row: usize| Tile {
                    a: x.add(row * k + k0),
                    lda: k,
                    b,
                    depth,
                    start: start.add(row * stride),
                    start_stride: stride,
                    c: out.0.add(row * n + p * NR),
                    ldc: n,
                };
                each_row_tile!(rows, tile_at, tile);
            }
        }
    }
    if let Some(activation) = layer.activation {
        // SAFETY: these columns of every row are this thread's, and finished.
        unsafe { activate_columns(out, rows, n, range.start * NR..range.end * NR, activation) };
    }
}

/// One tile's operands: `c[r][0..NR] = start[r][0..NR] + a[r][0..depth] · b[0..depth][0..NR]`.
struct Tile {
    /// First row of `x` at this depth block; rows `lda` floats apart.
    a: *const f32,
    lda: usize,
    /// The panel at this depth block: `depth` rows of NR floats, 64-byte aligned.
    b: *const f32,
    depth: usize,
    /// What the accumulators start from: the bias (stride 0) or the partial sums in `c`.
    start: *const f32,
    start_stride: usize,
    /// Where the tile's rows go, `ldc` floats apart.
    c: *mut f32,
    ldc: usize,
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    //! Placeholder so the panel code type-checks off x86-64; [`super::supported`] is false there,
    //! so [`super::product`] never reaches it.
    pub const NR: usize = 48;
    use super::Tile;
    /// # Safety
    /// Never called: it panics.
    pub unsafe fn tile<const ROWS: usize>(_: &Tile) {
        unreachable!("the AVX-512 kernel exists only on x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The AVX-512 micro-kernel: a tile of up to 8 rows x 48 columns (24 zmm accumulators, three
    //! weight vectors per step, each row's value broadcast from memory into the multiply-add).
    //! The depth loop is unrolled by four steps over row pointers taken once per tile: that took
    //! the product of a 64 x 384 by 384 x 1536 layer from 155 to 166 GFLOP/s on one core (AVX-512
    //! Xeon; 211 is its FMA peak), with the same multiply-adds in the same order.
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps};
    use std::arch::x86_64::{_mm512_load_ps, _mm512_storeu_ps};

    use super::Tile;

    /// Panel width: three 16-float vectors.
    pub const NR: usize = 48;

    /// Computes one tile of `ROWS` rows.
    ///
    /// # Safety
    /// Every pointer in `tile` covers the rows and columns described there; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const ROWS: usize>(tile: &Tile) {
        // SAFETY: the caller bounds every row and column this reads or writes; `b` is 64-byte
        // aligned (panels of `Line`s), as the aligned loads need.
        unsafe {
            let mut acc: [[__m512; 3]; ROWS] = [[_mm512_set1_ps(0.0); 3]; ROWS];
            for (r, acc) in acc.iter_mut().enumerate() {
                let start = tile.start.add(r * tile.start_stride);
                for (j, v) in acc.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(start.add(16 * j));
                }
            }
            let rows: [*const f32; ROWS] = std::array::from_fn(|r| tile.a.add(r * tile.lda));
            let step = |acc: &mut [[__m512; 3]; ROWS], kk: usize| {
                let b = tile.b.add(kk * NR);
                let b0 = _mm512_load_ps(b);
                let b1 = _mm512_load_ps(b.add(16));
                let b2 = _mm512_load_ps(b.add(32));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*rows[r].add(kk));
                    acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
                    acc[2] = _mm512_fmadd_ps(a, b2, acc[2]);
                }
            };
            let mut kk = 0;
            while kk + 4 <= tile.depth {
                step(&mut acc, kk);
                step(&mut acc, kk + 1);
                step(&mut acc, kk + 2);
                step(&mut acc, kk + 3);
                kk += 4;
            }
            while kk < tile.depth {
                step(&mut acc, kk);
                kk += 1;
            }
            for (r, acc) in acc.iter().enumerate() {
                let c = tile.c.add(r * tile.ldc);
                for (j, v) in acc.iter().enumerate() {
                    _mm512_storeu_ps(c.add(16 * j), *v);
                }
            }
        }
    }
}
