//! The int8 products behind [`crate::backend::quantized`] (the scheme is described there): the
//! packed layout's constants and [`Line`]s, the per-row u8 quantization of the activations, and
//! [`product`], the safe entry, which checks the CPU and every length before the VNNI
//! micro-kernel (here) or the AMX one ([`super::amx`]) runs over raw tile pointers.

use super::team::Team;
use super::tiles::{Out, activate_columns, each_row_tile, split_panels};
use crate::backend::activation::Activation;
use crate::backend::quantized::Kernel;

/// Inputs per weight scale.
pub const GROUP: usize = 128;
/// Input channels kept in f32.
pub const OUTLIERS: usize = 16;
/// Output columns per packed panel: three 16-lane vectors.
pub const NR: usize = 48;

/// Whether this CPU runs the int8 kernel (AVX-512 F/BW with VNNI).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// 64 bytes, 64-byte aligned: the packed weights are made of these.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line(pub [i8; 64]);

impl Line {
    /// `lines` as bytes, in order.
    pub fn bytes_mut(lines: &mut [Line]) -> &mut [i8] {
        let len = lines.len() * 64;
        // SAFETY: `Line` is `repr(C)` over `[i8; 64]` with no padding, so the lines are `len`
        // initialized bytes, borrowed mutably for as long as `lines` is; any byte is a valid i8.
        unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i8>(), len) }
    }
}

/// A quantized layer as [`product`] reads it.
pub struct Packed<'a> {
    /// Width of `x`: whole groups.
    pub inputs: usize,
    /// Width of `y`: whole panels.
    pub outputs: usize,
    /// The [`OUTLIERS`] input channels multiplied in f32, ascending.
    pub outliers: &'a [usize],
    /// Panel p: `OUTLIERS` rows of NR f32 weights (the outlier channels' rows of `W`).
    pub outlier_weights: &'a [f32],
    /// One per output.
    pub bias: &'a [f32],
    /// Panel p, quad q: NR columns x 4 inputs (`4q..4q+4`), byte `4c + t` = `w[4q + t][c]`.
    pub panels: &'a [Line],
    /// `[group][column]`: the weight scale.
    pub scales: &'a [f32],
    /// Per column: what one unit of zero point adds to the column's product.
    pub correction: &'a [f32],
    /// Applied to each part of the product as it is finished.
    pub activation: Option<Activation>,
    /// Which instructions run the integer products.
    pub kernel: Kernel,
}

impl Packed<'_> {
    /// Panics unless every buffer has the length the layer's shape gives it.
    fn check(&self) {
        let (k, n) = (self.inputs, self.outputs);
        assert!(k.is_multiple_of(GROUP) && k > OUTLIERS && n.is_multiple_of(NR));
        let panels = n / NR;
        assert!(self.panels.len() == panels * (k / 4) * 3);
        assert!(self.outlier_weights.len() == panels * OUTLIERS * NR);
        assert!(self.outliers.len() == OUTLIERS);
        assert!(self.bias.len() == n && self.correction.len() == n);
        assert!(self.scales.len() == k / GROUP * n);
    }
}

/// Rows of activations in u8: `x ≈ scale * (q - zero)`, outlier channels taken out (as 0).
pub struct Rows {
    /// `rows * inputs` bytes.
    pub q: Vec<u8>,
    /// One per row.
    pub zero: Vec<i32>,
    /// One per row.
    pub scale: Vec<f32>,
    /// `rows * OUTLIERS`: the outlier channels' f32 values.
    pub outliers: Vec<f32>,
}

/// `rows` rows of `x`, `inputs` wide, quantized per row; `outliers` are the channels kept f32.
///
/// # Panics
/// `x` shorter than `rows * inputs`, `inputs` not whole vectors of 16, an outlier channel out of
/// range, or a CPU without AVX-512 F/BW and VNNI.
pub fn quantize_rows(x: &[f32], rows: usize, inputs: usize, outliers: &[usize]) -> Rows {
    assert!(supported(), "the int8 kernel needs AVX-512 F/BW and VNNI");
    let k = inputs;
    let mut out = Rows {
        q: vec![0; rows * k],
        zero: vec![0; rows],
        scale: vec![0.0; rows],
        outliers: vec![0.0; rows * OUTLIERS],
    };
    let mut scratch = vec![0f32; k];
    for r in 0..rows {
        scratch.copy_from_slice(&x[r * k..][..k]);
        let kept = &mut out.outliers[r * OUTLIERS..][..OUTLIERS];
        for (v, &i) in kept.iter_mut().zip(outliers) {
            *v = std::mem::take(&mut scratch[i]);
        }
        // SAFETY: the assert above checked the CPU; `quantize_row` asserts the lengths.
        let (scale, zero) = unsafe { vnni::quantize_row(&scratch, &mut out.q[r * k..][..k]) };
        out.scale[r] = scale;
        out.zero[r] = zero;
    }
    out
}

/// `y = x · W + b` (and the activation) for contiguous f32 `x` of `rows` rows; with a team, half
/// the panels go to its helper.
///
/// # Panics
/// When the lengths do not fit the layer, on a CPU without AVX-512 F/BW and VNNI, or with
/// [`Kernel::Amx`] where AMX is not enabled ([`super::amx::enabled`]).
pub fn product(layer: &Packed, x: &[f32], rows: usize, team: Option<&Team>) -> Vec<f32> {
    layer.check();
    assert!(x.len() == rows * layer.inputs);
    let quantized = quantize_rows(x, rows, layer.inputs, layer.outliers);
    assert!(
        layer.kernel == Kernel::Vnni || super::amx::enabled(),
        "the AMX kernel runs only where AMX is enabled"
    );
    let (k, n) = (layer.inputs, layer.outputs);
    let len = rows * n;
    let mut y = Vec::<f32>::with_capacity(len);
    let out = Out(y.as_mut_ptr());
    // SAFETY: `check`, the asserts and `quantize_rows` bound every tile to the buffers (`y` has
    // `len` floats); the ranges `split_panels` hands out partition the panels, so two threads write
    // disjoint columns; the CPU has VNNI (`quantize_rows` checked), and AMX when it runs AMX.
    unsafe {
        split_panels(n / NR, rows * k * n, team, |range| {
            panel_range(&quantized, rows, layer, out, range)
        });
    }
    // SAFETY: every tile stores all its outputs before it reads any (its prologue), and the
    // tiles cover every row and every panel's columns, so all `len` floats are written.
    unsafe { y.set_len(len) };
    y
}

/// The columns of panels `range`, every row, on the layer's kernel.
///
/// # Safety
/// `x` holds `rows` quantized rows of the layer's width, the layer's buffers fit its shape,
/// `out` points at `rows * outputs` floats, no other thread writes these columns, and the CPU
/// runs the layer's kernel.
unsafe fn panel_range(
    x: &Rows,
    rows: usize,
    layer: &Packed,
    out: Out,
    range: std::ops::Range<usize>,
) {
    // SAFETY: `tile_at`'s pointer arithmetic stays inside the buffers: p < n / NR and the row
    // tiles cover rows 0..rows, which the caller's buffers hold.
    let tile_at = |p: usize, row: usize| unsafe { tile_at(x, layer, out, p, row) };
    match layer.kernel {
        Kernel::Vnni => {
            for p in range.clone() {
                // SAFETY: as above; the CPU has VNNI.
                unsafe { each_row_tile!(rows, |row| tile_at(p, row), vnni_tile) };
            }
        }
        // SAFETY: as above; the caller runs `Kernel::Amx` only where AMX is enabled.
        Kernel::Amx => unsafe { super::amx::panels(rows, range.clone(), tile_at) },
    }
    if let Some(activation) = layer.activation {
        // SAFETY: these columns of every row are this thread's, and finished.
        unsafe {
            activate_columns(
                out,
                rows,
                layer.outputs,
                range.start * NR..range.end * NR,
                activation,
            )
        };
    }
}

/// The VNNI kernel, named for [`each_row_tile`].
///
/// # Safety
/// As [`vnni::tile`].
unsafe fn vnni_tile<const ROWS: usize>(tile: &Tile) {
    // SAFETY: the caller's.
    unsafe { vnni::tile::<ROWS>(tile) }
}

/// The operands of the tile at `row` of panel `p`.
///
/// # Safety
/// `p` is a panel of the layer and `row` a row of `x`, `out` holds its rows.
unsafe fn tile_at(x: &Rows, layer: &Packed, out: Out, p: usize, row: usize) -> Tile {
    let (k, n) = (layer.inputs, layer.outputs);
    let quads = k / 4;
    // SAFETY: the caller's bounds keep every offset inside its buffer.
    unsafe {
        Tile {
            q: x.q.as_ptr().add(row * k),
            k,
            zero: x.zero.as_ptr().add(row),
            scale: x.scale.as_ptr().add(row),
            outliers: x.outliers.as_ptr().add(row * OUTLIERS),
            weights: layer.panels.as_ptr().add(p * quads * 3).cast::<i8>(),
            outlier_weights: layer.outlier_weights.as_ptr().add(p * OUTLIERS * NR),
            bias: layer.bias.as_ptr().add(p * NR),
            scales: layer.scales.as_ptr().add(p * NR),
            correction: layer.correction.as_ptr().add(p * NR),
            n,
            c: out.0.add(row * n + p * NR),
        }
    }
}

/// One tile's operands: rows `0..ROWS` from these pointers, the panel's NR columns.
pub(super) struct Tile {
    /// Quantized rows, `k` bytes apart; `zero`, `scale`: one per row.
    pub(super) q: *const u8,
    pub(super) k: usize,
    pub(super) zero: *const i32,
    pub(super) scale: *const f32,
    /// `OUTLIERS` f32 per row.
    pub(super) outliers: *const f32,
    /// The panel: `k / 4` quads of 192 bytes, 64-byte aligned.
    pub(super) weights: *const i8,
    /// The panel's `OUTLIERS x NR` f32 weights.
    pub(super) outlier_weights: *const f32,
    /// The panel's first column of `bias`, `correction`, and `scales` (groups `n` apart).
    pub(super) bias: *const f32,
    pub(super) scales: *const f32,
    pub(super) correction: *const f32,
    pub(super) n: usize,
    /// Where row 0 of the tile goes; rows `n` floats apart.
    pub(super) c: *mut f32,
}

#[cfg(not(target_arch = "x86_64"))]
mod vnni {
    //! Placeholder so the module type-checks off x86-64; [`super::supported`] is false there.
    use super::Tile;
    /// # Safety
    /// Never called: it panics.
    pub unsafe fn tile<const ROWS: usize>(_: &Tile) {
        unreachable!("the VNNI kernel exists only on x86-64")
    }
    /// # Safety
    /// Never called: it panics.
    pub unsafe fn quantize_row(_: &[f32], _: &mut [u8]) -> (f32, i32) {
        unreachable!("the VNNI kernel exists only on x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    //! The VNNI micro-kernel: up to 8 rows x 48 columns of i32 sums (24 zmm), three weight
    //! vectors per quad of inputs, each row's four bytes broadcast into `VPDPBUSD`.
    use super::{GROUP, NR, OUTLIERS, Tile};
    use std::arch::x86_64::{
        __m512i, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps, _mm512_load_si512,
        _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_si512,
        _mm512_storeu_ps,
    };

    /// `q = clamp(round(x / scale) + zero, 0, 255)` with `scale = (max - min) / 255` and
    /// `zero = round(-min / scale)` over the row (and 0); returns `(scale, zero)`. Rounding is to
    /// nearest even, as the simulation's `torch.round`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW (the lengths are asserted: `row` and `q` the same, a multiple of
    /// 16).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
        use std::arch::x86_64::{
            _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT, _mm_storeu_si128, _mm512_add_ps,
            _mm512_cvtps_epi32, _mm512_cvtusepi32_epi8, _mm512_max_ps, _mm512_min_ps,
            _mm512_reduce_max_ps, _mm512_reduce_min_ps, _mm512_roundscale_ps, _mm512_setzero_ps,
        };
        assert!(row.len() == q.len() && row.len().is_multiple_of(16));
        // SAFETY: every load and store below is one whole vector inside `row` or `q`.
        unsafe {
            let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for chunk in row.chunks_exact(16) {
                let v = _mm512_loadu_ps(chunk.as_ptr());
                lo = _mm512_min_ps(lo, v);
                hi = _mm512_max_ps(hi, v);
            }
            let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
            let scale = ((hi - lo) / 255.0).max(1e-12);
            let zero = (-lo / scale).round_ties_even();
            let (inv, zero_v) = (_mm512_set1_ps(1.0 / scale), _mm512_set1_ps(zero));
            let (floor, ceiling) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
            for (chunk, out) in row.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
                let v = _mm512_mul_ps(_mm512_loadu_ps(chunk.as_ptr()), inv);
                let v =
                    _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                let v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, zero_v), floor), ceiling);
                let bytes = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v));
                _mm_storeu_si128(out.as_mut_ptr().cast(), bytes);
            }
            (scale, zero as i32)
        }
    }

    /// Starts rows `0..rows` of a tile in `c`: bias - row scale * zero * correction + the
    /// outlier channels' f32 product.
    ///
    /// # Safety
    /// As [`tile`], for `rows` rows.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn start_rows(tile: &Tile, rows: usize) {
        // SAFETY: the caller bounds every row and column this reads or writes.
        unsafe {
            for r in 0..rows {
                let minus_zero = _mm512_set1_ps(-(*tile.scale.add(r)) * *tile.zero.add(r) as f32);
                let mut acc = [0, 16, 32].map(|j| {
                    _mm512_fmadd_ps(
                        minus_zero,
                        _mm512_loadu_ps(tile.correction.add(j)),
                        _mm512_loadu_ps(tile.bias.add(j)),
                    )
                });
                for o in 0..OUTLIERS {
                    let a = _mm512_set1_ps(*tile.outliers.add(r * OUTLIERS + o));
                    let w = tile.outlier_weights.add(o * NR);
                    for (j, v) in acc.iter_mut().enumerate() {
                        *v = _mm512_fmadd_ps(a, _mm512_loadu_ps(w.add(16 * j)), *v);
                    }
                }
                let c = tile.c.add(r * tile.n);
                for (j, v) in acc.iter().enumerate() {
                    _mm512_storeu_ps(c.add(16 * j), *v);
                }
            }
        }
    }

    /// Adds row `r`'s integer sums of group `g` (its 48 columns) to `c`, scaled by the row's
    /// and the columns' scales.
    ///
    /// # Safety
    /// As [`tile`], for row `r` and group `g`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn add_group_row(tile: &Tile, g: usize, r: usize, sums: &[__m512i; 3]) {
        // SAFETY: the caller bounds the row, the group and the panel's columns.
        unsafe {
            let scales = tile.scales.add(g * tile.n);
            let row_scale = _mm512_set1_ps(*tile.scale.add(r));
            let c = tile.c.add(r * tile.n);
            for (j, v) in sums.iter().enumerate() {
                let scale = _mm512_mul_ps(row_scale, _mm512_loadu_ps(scales.add(16 * j)));
                let sum = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(*v),
                    scale,
                    _mm512_loadu_ps(c.add(16 * j)),
                );
                _mm512_storeu_ps(c.add(16 * j), sum);
            }
        }
    }

    /// Computes one tile of `ROWS` rows into `c`.
    ///
    /// # Safety
    /// Every pointer in `tile` covers the rows and columns described there; the CPU has AVX-512
    /// F/BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile<const ROWS: usize>(tile: &Tile) {
        // SAFETY: the caller bounds every row and column this reads or writes; the weights are
        // 64-byte aligned (panels of `Line`s), as the aligned loads need.
        unsafe {
            start_rows(tile, ROWS);
            for g in 0..tile.k / GROUP {
                let mut acc: [[__m512i; 3]; ROWS] = [[_mm512_setzero_si512(); 3]; ROWS];
                let first_quad = g * GROUP / 4;
                for quad in first_quad..first_quad + GROUP / 4 {
                    let w = tile.weights.add(quad * 3 * 64);
                    let w0 = _mm512_load_si512(w.cast());
                    let w1 = _mm512_load_si512(w.add(64).cast());
                    let w2 = _mm512_load_si512(w.add(128).cast());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let bytes = tile.q.add(r * tile.k + 4 * quad).cast::<i32>();
                        let a = _mm512_set1_epi32(bytes.read_unaligned());
                        acc[0] = _mm512_dpbusd_epi32(acc[0], a, w0);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], a, w1);
                        acc[2] = _mm512_dpbusd_epi32(acc[2], a, w2);
                    }
                }
                for (r, sums) in acc.iter().enumerate() {
                    add_group_row(tile, g, r, sums);
                }
            }
        }
    }
}
