//! int8 dense layers for `--dtype int8`: the products run on AVX512-VNNI's `VPDPBUSD` (64
//! u8 x s8 multiply-adds per instruction, four times the f32 FMA's 16), the rest of the model
//! stays f32.
//!
//! The scheme is the one `bench/int8_fidelity.py` found to hold cosine ≥ 0.999 to
//! sentence-transformers (a plain per-column int8 reaches only 0.986):
//! - weights: symmetric int8 with one scale per output column *and group of [`GROUP`] inputs*,
//!   so a column's few large weights do not flatten the rest of it;
//! - activations: asymmetric u8 per row (per token), `x ≈ scale * (q - zero)`, which is what
//!   `VPDPBUSD`'s unsigned operand takes; the zero point comes back out through the weights'
//!   column sums (`Σ (q - zero) w = Σ q w - zero Σ w`), folded over the groups at load into one
//!   f32 per column, so the kernel subtracts it once per output, not once per group;
//! - the [`OUTLIERS`] input channels with the largest activations on a calibration corpus (BERT
//!   has a few, hundreds of times the others, LLM.int8's observation) are left out of the int8
//!   product and multiplied in f32, so they do not take the row's range.
//!
//! Integer sums are exact, so the kernel computes the simulation's numbers up to f32 rounding of
//! the scales and of the zero-point correction (golden cosine 0.99952 against the simulation's
//! 0.99950). Each tile keeps its output rows in `c` (L1) across groups: start = bias + outlier
//! product - row scale * zero * correction (f32), then per group
//! `c += (row scale * column scale) * Σ q w`.

#![allow(unsafe_code)] // VNNI intrinsics and raw tile pointers; each unsafe block states its bounds.

use super::activation::Activation;
use super::pages::PageBuf;
use super::team::Team;
use super::tiles::{Out, activate_columns, each_row_tile, input_rows, split_panels};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

/// Inputs per weight scale.
pub const GROUP: usize = 128;
/// Input channels kept in f32.
pub const OUTLIERS: usize = 16;
/// Output columns per packed panel: three 16-lane vectors.
pub(super) const NR: usize = 48;

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

/// Which instructions run a layer's integer products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX512-VNNI's `VPDPBUSD`, 8 rows x 48 columns in zmm registers.
    Vnni,
    /// AMX's `TDPBUSD` on 16 x 64-byte tiles (Sapphire Rapids and later): 16 rows x 48 columns
    /// per tile triple, 16 x 16 x 64 multiply-adds an instruction.
    Amx,
}

impl Kernel {
    /// Its name in logs and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vnni => "int8-vnni",
            Kernel::Amx => "int8-amx",
        }
    }

    /// AMX where the CPU has it and the kernel lets this process use it, else VNNI.
    /// `MODEL_SERVER_INT8_KERNEL=vnni` forces VNNI (to compare the two side by side).
    pub fn best() -> Kernel {
        let forced_vnni = std::env::var("MODEL_SERVER_INT8_KERNEL").is_ok_and(|v| v == "vnni");
        if !forced_vnni && super::amx::enabled() {
            Kernel::Amx
        } else {
            Kernel::Vnni
        }
    }
}

/// Whether a layer of this shape can be quantized: whole groups and whole panels.
pub fn fits(inputs: usize, outputs: usize) -> bool {
    inputs.is_multiple_of(GROUP) && inputs > OUTLIERS && outputs.is_multiple_of(NR)
}

/// 64 bytes, 64-byte aligned: the packed weights are made of these.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([i8; 64]);

/// An int8 dense layer, `x · W + b` with `W` quantized as the module says.
pub struct QuantizedLinear {
    inputs: usize,
    outputs: usize,
    /// Input channels multiplied in f32, ascending.
    outliers: Vec<usize>,
    /// Panel p: `OUTLIERS` rows of NR f32 weights (the outlier channels' rows of `W`).
    outlier_weights: Vec<f32>,
    bias: Vec<f32>,
    /// Panel p, quad q: NR columns x 4 inputs (`4q..4q+4`), byte `4c + t` = `w[4q + t][c]`.
    panels: PageBuf<Line>,
    /// `[group][column]`: the weight scale.
    scales: Vec<f32>,
    /// Per column: Σ over groups of scale * (Σ of the column's quantized weights in the group),
    /// what one unit of zero point adds to the column's product.
    correction: Vec<f32>,
    activation: Option<Activation>,
    kernel: Kernel,
}

impl QuantizedLinear {
    /// Quantizes a row-major `(inputs, outputs)` matrix. `channel_max` is each input channel's
    /// largest |x| on the calibration corpus; the [`OUTLIERS`] largest stay f32.
    ///
    /// # Errors
    /// A shape [`fits`] refuses, or lengths that do not match it.
    pub fn new(
        matrix: &[f32],
        inputs: usize,
        outputs: usize,
        bias: Vec<f32>,
        channel_max: &[f32],
    ) -> Result<Self> {
        if !fits(inputs, outputs) {
            bail!(
                "int8: a {inputs}x{outputs} layer is not whole groups of {GROUP} and panels of {NR}"
            );
        }
        if matrix.len() != inputs * outputs || bias.len() != outputs || channel_max.len() != inputs
        {
            bail!("int8: weight, bias or calibration lengths do not fit {inputs}x{outputs}");
        }
        let mut by_size: Vec<usize> = (0..inputs).collect();
        by_size.sort_by(|&a, &b| channel_max[b].total_cmp(&channel_max[a]).then(a.cmp(&b)));
        let mut outliers = by_size[..OUTLIERS].to_vec();
        outliers.sort_unstable();
        let is_outlier = {
            let mut mask = vec![false; inputs];
            outliers.iter().for_each(|&i| mask[i] = true);
            mask
        };
        let weight = |k: usize, c: usize| {
            if is_outlier[k] {
                0.0
            } else {
                matrix[k * outputs + c]
            }
        };
        let groups = inputs / GROUP;
        let mut scales = vec![0f32; groups * outputs];
        let mut sums = vec![0i32; groups * outputs];
        let mut quantized = vec![0i8; inputs * outputs];
        for g in 0..groups {
            for c in 0..outputs {
                let ks = g * GROUP..(g + 1) * GROUP;
                let max = ks.clone().map(|k| weight(k, c).abs()).fold(0f32, f32::max);
                let scale = (max / 127.0).max(1e-12);
                scales[g * outputs + c] = scale;
                for k in ks {
                    let q = (weight(k, c) / scale)
                        .round_ties_even()
                        .clamp(-127.0, 127.0) as i8;
                    quantized[k * outputs + c] = q;
                    sums[g * outputs + c] += i32::from(q);
                }
            }
        }
        let panel_count = outputs / NR;
        let quads = inputs / 4;
        let mut panels = PageBuf::filled(panel_count * quads * 3, Line([0; 64]));
        for p in 0..panel_count {
            for q in 0..quads {
                let bytes: &mut [i8] = bytemuck_lines(&mut panels[(p * quads + q) * 3..][..3]);
                for c in 0..NR {
                    for t in 0..4 {
                        bytes[4 * c + t] = quantized[(4 * q + t) * outputs + p * NR + c];
                    }
                }
            }
        }
        let correction = (0..outputs)
            .map(|c| {
                (0..groups)
                    .map(|g| f64::from(scales[g * outputs + c]) * f64::from(sums[g * outputs + c]))
                    .sum::<f64>() as f32
            })
            .collect();
        let mut outlier_weights = vec![0f32; panel_count * OUTLIERS * NR];
        for p in 0..panel_count {
            for (o, &k) in outliers.iter().enumerate() {
                outlier_weights[(p * OUTLIERS + o) * NR..][..NR]
                    .copy_from_slice(&matrix[k * outputs + p * NR..][..NR]);
            }
        }
        Ok(Self {
            inputs,
            outputs,
            outliers,
            outlier_weights,
            bias,
            panels,
            scales,
            correction,
            activation: None,
            kernel: Kernel::best(),
        })
    }

    /// `(inputs, outputs)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.inputs, self.outputs)
    }

    /// The same layer on `kernel` (which must be [`Kernel::Vnni`] or what [`Kernel::best`]
    /// found: AMX only where it is enabled).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        if kernel == Kernel::Vnni || super::amx::enabled() {
            self.kernel = kernel;
        }
        self
    }

    /// The kernel its products run on.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The same layer followed by `activation`.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = Some(activation);
        self
    }

    /// `x · W + b` for contiguous f32 `x` of shape `(rows, in)`; returns `(rows, out)`. With a
    /// `team`, a large enough product gives half its panels to the team's helper.
    ///
    /// # Errors
    /// `x` of another width, not contiguous, or not f32; a CPU without VNNI.
    pub fn forward(&self, x: &Tensor, team: Option<&Team>) -> Result<Tensor> {
        if !supported() {
            bail!("int8: this CPU has no AVX512-VNNI");
        }
        x.apply_op1_no_bwd(&QuantizedProduct { layer: self, team })
    }
}

/// The three lines of one (panel, quad) as bytes.
fn bytemuck_lines(lines: &mut [Line]) -> &mut [i8] {
    let len = lines.len() * 64;
    // SAFETY: `Line` is `repr(C)` over `[i8; 64]` with no padding, so the lines are `len` bytes.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i8>(), len) }
}

/// One row's activations in u8: `x ≈ scale * (q - zero)`, outlier channels taken out (as 0).
struct Rows {
    /// `rows * inputs` bytes.
    q: Vec<u8>,
    zero: Vec<i32>,
    scale: Vec<f32>,
    /// `rows * OUTLIERS`: the outlier channels' f32 values.
    outliers: Vec<f32>,
}

fn quantize_rows(x: &[f32], rows: usize, layer: &QuantizedLinear) -> Rows {
    let k = layer.inputs;
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
        for (v, &i) in kept.iter_mut().zip(&layer.outliers) {
            *v = std::mem::take(&mut scratch[i]);
        }
        // SAFETY: `forward` checked the CPU; `k` is whole groups, so whole vectors.
        let (scale, zero) = unsafe { vnni::quantize_row(&scratch, &mut out.q[r * k..][..k]) };
        out.scale[r] = scale;
        out.zero[r] = zero;
    }
    out
}

/// The product as a candle op, so it reads `x` in place and hands back a new tensor.
struct QuantizedProduct<'a> {
    layer: &'a QuantizedLinear,
    team: Option<&'a Team<'a>>,
}

impl CustomOp1 for QuantizedProduct<'_> {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let layer = self.layer;
        let (rows, x) = input_rows(self.name(), storage, layout, layer.inputs)?;
        let quantized = quantize_rows(x, rows, layer);
        let len = rows * layer.outputs;
        let mut y = Vec::<f32>::with_capacity(len);
        product(&quantized, rows, layer, self.team, y.as_mut_ptr(), len);
        // SAFETY: every tile stores all its outputs before it reads any (its prologue), and the
        // tiles cover every row and every panel's columns, so all `len` floats are written.
        unsafe { y.set_len(len) };
        Ok((CpuStorage::F32(y), Shape::from((rows, layer.outputs))))
    }
}

/// `y = x · W + b` into the `len` floats at `y` (uninitialized is fine: all are written first).
fn product(
    x: &Rows,
    rows: usize,
    layer: &QuantizedLinear,
    team: Option<&Team>,
    y: *mut f32,
    len: usize,
) {
    let (k, n) = (layer.inputs, layer.outputs);
    assert!(x.q.len() == rows * k && len == rows * n && supported());
    let out = Out(y);
    // SAFETY: the assert bounds every tile to the buffers; the ranges `split_panels` hands out
    // partition the panels, so two threads write disjoint columns; the CPU has VNNI.
    unsafe {
        split_panels(n / NR, rows * k * n, team, |range| {
            panel_range(x, rows, layer, out, range)
        });
    }
}

/// The columns of panels `range`, every row, on the layer's kernel.
///
/// # Safety
/// `x` holds `rows` quantized rows of the layer's width, `out` points at `rows * outputs`
/// floats, no other thread writes these columns, and the CPU runs the layer's kernel.
unsafe fn panel_range(
    x: &Rows,
    rows: usize,
    layer: &QuantizedLinear,
    out: Out,
    range: std::ops::Range<usize>,
) {
    // SAFETY (all pointer arithmetic in `tile_at`): p < n / NR and the row tiles cover rows
    // 0..rows, so every tile lies inside its buffer.
    let tile_at = |p: usize, row: usize| unsafe { tile_at(x, layer, out, p, row) };
    match layer.kernel {
        Kernel::Vnni => {
            for p in range.clone() {
                // SAFETY: as above; the CPU has VNNI.
                unsafe { each_row_tile!(rows, |row| tile_at(p, row), vnni_tile) };
            }
        }
        // SAFETY: as above; `Kernel::Amx` is only chosen where AMX is enabled.
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
unsafe fn vnni_tile<const ROWS: usize>(tile: &Tile) {
    // SAFETY: the caller's.
    unsafe { vnni::tile::<ROWS>(tile) }
}

/// The operands of the tile at `row` of panel `p`.
///
/// # Safety
/// `p` is a panel of the layer and `row` a row of `x`, `out` holds its rows.
unsafe fn tile_at(x: &Rows, layer: &QuantizedLinear, out: Out, p: usize, row: usize) -> Tile {
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
    pub unsafe fn tile<const ROWS: usize>(_: &Tile) {
        unreachable!("the VNNI kernel exists only on x86-64")
    }
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
    /// `row` and `q` have the same length, a multiple of 16; the CPU has AVX-512 F/BW.
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
        // SAFETY: the caller bounds every row and column this reads or writes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The scheme computed plainly, in f64 from the layer's own quantized weights: what the
    /// kernel must reproduce up to f32 rounding.
    fn reference(layer: &QuantizedLinear, matrix: &[f32], x: &[f32], rows: usize) -> Vec<f64> {
        let (k, n) = (layer.inputs, layer.outputs);
        let quantized = quantize_rows(x, rows, layer);
        let mut y = vec![0f64; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let mut sum = f64::from(layer.bias[c]);
                for &i in &layer.outliers {
                    sum += f64::from(x[r * k + i]) * f64::from(matrix[i * n + c]);
                }
                for g in 0..k / GROUP {
                    let scale = layer.scales[g * n + c];
                    for i in g * GROUP..(g + 1) * GROUP {
                        if layer.outliers.contains(&i) {
                            continue;
                        }
                        // Rounded in f32 as `new` rounds it: f64 may break a tie the other way.
                        let w = (matrix[i * n + c] / scale)
                            .round_ties_even()
                            .clamp(-127.0, 127.0);
                        let q = f64::from(quantized.q[r * k + i]) - f64::from(quantized.zero[r]);
                        sum += f64::from(quantized.scale[r]) * f64::from(scale) * q * f64::from(w);
                    }
                }
                y[r * n + c] = sum;
            }
        }
        y
    }

    #[test]
    fn the_kernel_computes_the_scheme_and_the_scheme_tracks_f32() -> Result<()> {
        if !supported() {
            eprintln!("this CPU has no AVX512-VNNI: the int8 kernel is not run here");
            return Ok(());
        }
        let helper = super::super::team::Helper::spawn("test-helper".into()).unwrap();
        for (inputs, outputs) in [(128, 48), (384, 96), (256, 144)] {
            let mut matrix = noise(inputs * outputs, 3);
            // A column with one large weight, and two input channels hundreds of times the rest.
            matrix[5 * outputs + 7] = 40.0;
            let mut channel_max = vec![1.0; inputs];
            channel_max[3] = 300.0;
            channel_max[inputs - 1] = 200.0;
            let bias = noise(outputs, 5);
            let layer = QuantizedLinear::new(&matrix, inputs, outputs, bias.clone(), &channel_max)?;
            assert!(layer.outliers.contains(&3) && layer.outliers.contains(&(inputs - 1)));
            // Both kernels where the CPU has AMX (it is the default there), VNNI elsewhere.
            assert_eq!(layer.kernel() == Kernel::Amx, super::super::amx::enabled());
            let mut kernels = vec![layer.kernel()];
            if layer.kernel() == Kernel::Amx {
                kernels.push(Kernel::Vnni);
            }
            let mut layer = layer;
            for (kernel, rows) in kernels
                .into_iter()
                .flat_map(|k| [1, 7, 8, 9, 15, 16, 17, 32, 33, 49].map(|rows| (k, rows)))
            {
                layer = layer.with_kernel(kernel);
                let mut x = noise(rows * inputs, rows as u32 + 1);
                for r in 0..rows {
                    x[r * inputs + 3] = 250.0 * (r as f32 - 3.0);
                    x[r * inputs + inputs - 1] = -150.0;
                }
                let xt = Tensor::from_vec(x.clone(), (rows, inputs), &Device::Cpu)?;
                let y = helper.pass(|team| layer.forward(&xt, Some(team)))?;
                let y = y.flatten_all()?.to_vec1::<f32>()?;
                let want = reference(&layer, &matrix, &x, rows);
                for r in 0..rows {
                    for c in 0..outputs {
                        let got = f64::from(y[r * outputs + c]);
                        let want = want[r * outputs + c];
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{kernel:?} {rows}x{inputs}x{outputs} [{r},{c}]: {got} vs {want}"
                        );
                        let exact = f64::from(bias[c])
                            + (0..inputs)
                                .map(|i| {
                                    f64::from(x[r * inputs + i])
                                        * f64::from(matrix[i * outputs + c])
                                })
                                .sum::<f64>();
                        // int8 error: a few percent of the row's typical magnitude, no more.
                        assert!(
                            (got - exact).abs() <= 0.05 * inputs as f64 / 8.0,
                            "int8 far from f32 at [{r},{c}]: {got} vs {exact}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_layer_that_is_not_whole_groups_is_refused() {
        let error = QuantizedLinear::new(&[0.0; 100 * 48], 100, 48, vec![0.0; 48], &[1.0; 100])
            .err()
            .unwrap();
        assert!(error.to_string().contains("groups of 128"), "{error}");
    }
}
