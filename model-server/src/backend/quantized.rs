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

//!
//! The kernels themselves (VNNI here, AMX where the CPU has it) are `kernels::int8` and
//! `kernels::amx`; this module quantizes the weights and is the layers' candle op.

use super::Int8Kernel;
use super::activation::Activation;
use super::kernels::int8::{self as kernel, Line, NR, Packed};
use super::linear::input_rows;
use super::pages::PageBuf;
use super::team::Team;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

pub use super::kernels::int8::{GROUP, OUTLIERS, supported};

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
    /// [`Int8Kernel::Vnni`] forces VNNI (to compare the two side by side).
    pub fn best(choice: Int8Kernel) -> Kernel {
        if choice == Int8Kernel::Auto && super::kernels::amx::enabled() {
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
    /// Quantizes a row-major `(inputs, outputs)` matrix for `kernel` (VNNI where AMX is not
    /// enabled), its panels on huge pages when `huge_pages`. `channel_max` is each input
    /// channel's largest |x| on the calibration corpus; the [`OUTLIERS`] largest stay f32.
    ///
    /// # Errors
    /// A shape [`fits`] refuses, or lengths that do not match it.
    pub fn new(
        matrix: &[f32],
        inputs: usize,
        outputs: usize,
        bias: Vec<f32>,
        channel_max: &[f32],
        kernel: Kernel,
        huge_pages: bool,
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
        let mut panels = PageBuf::filled(panel_count * quads * 3, Line([0; 64]), huge_pages);
        for p in 0..panel_count {
            for q in 0..quads {
                let bytes: &mut [i8] = Line::bytes_mut(&mut panels[(p * quads + q) * 3..][..3]);
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
            kernel: Kernel::Vnni,
        }
        .with_kernel(kernel))
    }

    /// `(inputs, outputs)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.inputs, self.outputs)
    }

    /// The same layer on `kernel` (which must be [`Kernel::Vnni`] or what [`Kernel::best`]
    /// found: AMX only where it is enabled).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        if kernel == Kernel::Vnni || super::kernels::amx::enabled() {
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

/// The product as a candle op, so it reads `x` in place and hands back a new tensor.
struct QuantizedProduct<'a> {
    layer: &'a QuantizedLinear,
    team: Option<&'a Team<'a>>,
}

impl QuantizedLinear {
    /// The layer as the kernel reads it.
    fn packed(&self) -> Packed<'_> {
        Packed {
            inputs: self.inputs,
            outputs: self.outputs,
            outliers: &self.outliers,
            outlier_weights: &self.outlier_weights,
            bias: &self.bias,
            panels: &self.panels,
            scales: &self.scales,
            correction: &self.correction,
            activation: self.activation,
            kernel: self.kernel,
        }
    }
}

impl CustomOp1 for QuantizedProduct<'_> {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let layer = self.layer;
        let (rows, x) = input_rows(self.name(), storage, layout, layer.inputs)?;
        let y = kernel::product(&layer.packed(), x, rows, self.team);
        Ok((CpuStorage::F32(y), Shape::from((rows, layer.outputs))))
    }
}

/// Rows of `x` quantized as the layer's products quantize them.
#[cfg(test)]
fn quantize_rows(x: &[f32], rows: usize, layer: &QuantizedLinear) -> kernel::Rows {
    kernel::quantize_rows(x, rows, layer.inputs, &layer.outliers)
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
        let best = Kernel::best(Int8Kernel::Auto);
        for (inputs, outputs) in [(128, 48), (384, 96), (256, 144)] {
            let mut matrix = noise(inputs * outputs, 3);
            // A column with one large weight, and two input channels hundreds of times the rest.
            matrix[5 * outputs + 7] = 40.0;
            let mut channel_max = vec![1.0; inputs];
            channel_max[3] = 300.0;
            channel_max[inputs - 1] = 200.0;
            let bias = noise(outputs, 5);
            let layer = QuantizedLinear::new(
                &matrix,
                inputs,
                outputs,
                bias.clone(),
                &channel_max,
                best,
                true,
            )?;
            assert!(layer.outliers.contains(&3) && layer.outliers.contains(&(inputs - 1)));
            // Both kernels where the CPU has AMX (it is the default there), VNNI elsewhere.
            assert_eq!(
                layer.kernel() == Kernel::Amx,
                super::super::kernels::amx::enabled()
            );
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
        let error = QuantizedLinear::new(
            &[0.0; 100 * 48],
            100,
            48,
            vec![0.0; 48],
            &[1.0; 100],
            Kernel::Vnni,
            true,
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("groups of 128"), "{error}");
    }
}
