//! Dense layers, `x · W + b`, on weights packed once at load time into the layout our own
//! micro-kernel (`kernels::linear`) streams: column panels of `NR` (48) floats, each `in`
//! rows deep, 64-byte aligned. The kernel is picked at run time: AVX-512 where the CPU has
//! `avx512f`, else candle's gemm (which itself picks AVX2/FMA or SSE), so one binary runs on any
//! x86-64 CPU; `--kernel gemm` (`MODEL_SERVER_KERNEL=gemm`) forces gemm.
//!
//! Why not candle's `matmul` everywhere: gemm packs the right-hand side (the weights) on every
//! call, and at the shapes an embedding server sees (16..512 rows against 384..1536-wide weights)
//! that packing, its dispatch and its thread hand-offs cost as much as the arithmetic: a lone
//! 16-token sentence ran at about 74 GFLOP/s on one core. Weights never change, so they are packed
//! once; the bias is folded into the accumulators' start; rows are never packed (8 rows of
//! up to [`KC`] floats sit in L1, and AVX-512 broadcasts them straight from memory).
//!
//! Numerics: f32 multiply-adds in order along `in`, exactly as a plain dot product; the tests hold
//! every kernel to an f64 reference, and the golden tests hold the model to sentence-transformers.
//!
//! Threads: given a [`Team`], a product big enough to pay for the hand-off gives half its column
//! panels to the team's helper thread. The backend forms a team only when one pass has the cores
//! to itself (see `backend::candle`).

use super::F32Kernel;
use super::activation::Activation;
use super::kernels::linear::{self as kernel, Line, NR, Packed};
use super::pages::PageBuf;
use super::team::Team;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};

pub use super::kernels::linear::KC;

/// Which code computes the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Our packed-panel AVX-512 micro-kernel.
    Avx512,
    /// candle's matmul (gemm), for CPUs without AVX-512 and shapes that do not fill whole panels.
    Gemm,
}

impl Kernel {
    /// The fastest kernel this CPU runs, unless `choice` asks for candle's gemm (to compare the
    /// two side by side, or to test the fallback on an AVX-512 machine).
    pub fn detect(choice: F32Kernel) -> Self {
        if choice == F32Kernel::Gemm {
            return Kernel::Gemm;
        }
        if kernel::supported() {
            return Kernel::Avx512;
        }
        Kernel::Gemm
    }

    /// A short name for logs and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512-packed",
            Kernel::Gemm => "gemm",
        }
    }
}

/// A dense layer: weight, bias, and the kernel that runs it.
pub struct Linear {
    inputs: usize,
    outputs: usize,
    bias: Vec<f32>,
    activation: Option<Activation>,
    weights: Weights,
}

enum Weights {
    /// Column panels: panel p holds columns `p*NR..(p+1)*NR`, `inputs` rows of NR floats.
    Panels(PageBuf<Line>),
    /// The `(in, out)` matrix for candle's matmul.
    Matrix(Tensor),
}

impl Linear {
    /// Packs a PyTorch-layout `(out, in)` weight and its bias for `kernel`, on huge pages when
    /// `huge_pages` ([`PageBuf`]). Shapes whose output width is not a whole number of panels use
    /// candle's gemm whatever the kernel.
    ///
    /// # Errors
    /// A weight that is not 2-D f32, or a bias of another length.
    pub fn new(weight: &Tensor, bias: Vec<f32>, kernel: Kernel, huge_pages: bool) -> Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        if bias.len() != outputs {
            bail!(
                "linear: bias has {} values for {outputs} outputs",
                bias.len()
            );
        }
        let by_input = weight.t()?.contiguous()?;
        let weights = if kernel == Kernel::Avx512 && outputs.is_multiple_of(NR) {
            let matrix = by_input.flatten_all()?.to_vec1::<f32>()?;
            Weights::Panels(pack_panels(&matrix, inputs, outputs, huge_pages))
        } else {
            Weights::Matrix(by_input)
        };
        Ok(Self {
            inputs,
            outputs,
            bias,
            activation: None,
            weights,
        })
    }

    /// The same layer followed by `activation`, applied to each part of the product as it is
    /// finished (on the thread that computed it).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = Some(activation);
        self
    }

    /// `(inputs, outputs)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.inputs, self.outputs)
    }

    /// The bias, one value per output.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The activation applied after the product, if any.
    pub fn activation(&self) -> Option<Activation> {
        self.activation
    }

    /// The weight unpacked to a row-major `(inputs, outputs)` matrix (for quantizing it).
    ///
    /// # Errors
    /// When candle cannot read the gemm path's matrix back.
    pub fn matrix(&self) -> Result<Vec<f32>> {
        match &self.weights {
            Weights::Matrix(w) => w.flatten_all()?.to_vec1::<f32>(),
            Weights::Panels(panels) => {
                const LINES: usize = NR / 16;
                let (k, n) = (self.inputs, self.outputs);
                let mut matrix = vec![0f32; k * n];
                for p in 0..n / NR {
                    for kk in 0..k {
                        let src = &panels[(p * k + kk) * LINES..][..LINES];
                        let dst = &mut matrix[kk * n + p * NR..][..NR];
                        for (chunk, line) in dst.chunks_exact_mut(16).zip(src) {
                            chunk.copy_from_slice(&line.0);
                        }
                    }
                }
                Ok(matrix)
            }
        }
    }

    /// The kernel this layer actually runs.
    pub fn kernel(&self) -> Kernel {
        match self.weights {
            Weights::Panels(_) => Kernel::Avx512,
            Weights::Matrix(_) => Kernel::Gemm,
        }
    }

    /// `x · W + b` for contiguous `x` of shape `(rows, in)`; returns `(rows, out)`. With a
    /// `team`, a large enough product gives half its panels to the team's helper.
    ///
    /// # Errors
    /// `x` of another width, not contiguous, or not f32.
    pub fn forward(&self, x: &Tensor, team: Option<&Team>) -> Result<Tensor> {
        match &self.weights {
            Weights::Matrix(w) => {
                let y = x.matmul(w)?;
                y.inplace_op1(&BiasActivation(&self.bias, self.activation))?;
                Ok(y)
            }
            Weights::Panels(panels) => x.apply_op1_no_bwd(&PanelProduct {
                layer: self,
                panels,
                team,
            }),
        }
    }
}

/// Rearranges a row-major `(inputs, outputs)` matrix into NR-wide column panels.
fn pack_panels(matrix: &[f32], inputs: usize, outputs: usize, huge_pages: bool) -> PageBuf<Line> {
    const LINES: usize = NR / 16;
    let panels = outputs / NR;
    let mut packed = PageBuf::filled(panels * inputs * LINES, Line([0.0; 16]), huge_pages);
    for p in 0..panels {
        for k in 0..inputs {
            let src = &matrix[k * outputs + p * NR..][..NR];
            let dst = &mut packed[(p * inputs + k) * LINES..][..LINES];
            for (line, chunk) in dst.iter_mut().zip(src.chunks_exact(16)) {
                line.0.copy_from_slice(chunk);
            }
        }
    }
    packed
}

/// `y = activation(y + bias)` on every row, for the gemm path.
struct BiasActivation<'a>(&'a [f32], Option<Activation>);

impl candle_core::InplaceOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("bias: the tensor must be contiguous");
        };
        let CpuStorage::F32(data) = storage else {
            bail!("bias: only f32 is implemented");
        };
        for row in data[start..end].chunks_exact_mut(self.0.len()) {
            for (y, b) in row.iter_mut().zip(self.0) {
                *y += b;
            }
            if let Some(activation) = self.1 {
                activation.apply(row);
            }
        }
        Ok(())
    }
}

/// The packed product as a candle op, so it reads `x` in place and hands back a new tensor.
struct PanelProduct<'a> {
    layer: &'a Linear,
    panels: &'a [Line],
    team: Option<&'a Team<'a>>,
}

impl CustomOp1 for PanelProduct<'_> {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let layer = self.layer;
        let (rows, x) = input_rows(self.name(), storage, layout, layer.inputs)?;
        let packed = Packed {
            inputs: layer.inputs,
            outputs: layer.outputs,
            panels: self.panels,
            bias: &layer.bias,
            activation: layer.activation,
        };
        let y = kernel::product(&packed, x, rows, self.team);
        Ok((CpuStorage::F32(y), Shape::from((rows, layer.outputs))))
    }
}

/// A product's input as candle hands it to the op: `(rows, data)` of a contiguous f32 matrix
/// `inputs` wide, or an error naming `op`.
pub(super) fn input_rows<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
    inputs: usize,
) -> Result<(usize, &'a [f32])> {
    let (rows, width) = layout.shape().dims2()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: the input must be contiguous");
    };
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: only f32 input is implemented");
    };
    if width != inputs {
        bail!("{op}: input has {width} columns, the layer takes {inputs}");
    }
    Ok((rows, &data[start..end]))
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

    /// Every kernel this CPU can run against an f64 reference, over row counts that hit every
    /// remainder tile, depths below, at and across [`KC`], and a width that is no whole panel.
    #[test]
    fn every_kernel_matches_an_f64_reference() -> Result<()> {
        let mut kernels = vec![Kernel::Gemm];
        if Kernel::detect(F32Kernel::Auto) == Kernel::Avx512 {
            kernels.push(Kernel::Avx512);
        }
        let helper = super::super::team::Helper::spawn("test-helper".into()).unwrap();
        for kernel in kernels {
            // Depths of 102 and 1001 (blocks of 384, 384 and 233) end in part of an unrolled step.
            for (inputs, outputs) in [(384, 96), (102, 48), (1001, 144), (64, 40)] {
                let weight = noise(outputs * inputs, 7);
                let bias = noise(outputs, 11);
                let w = Tensor::from_vec(weight.clone(), (outputs, inputs), &Device::Cpu)?;
                let layer = Linear::new(&w, bias.clone(), kernel, true)?;
                let activated =
                    Linear::new(&w, bias.clone(), kernel, true)?.with_activation(Activation::Relu);
                let whole_panels = outputs % 48 == 0;
                assert_eq!(
                    layer.kernel(),
                    if whole_panels { kernel } else { Kernel::Gemm }
                );
                for rows in [1, 7, 8, 9, 16, 17] {
                    let x = noise(rows * inputs, rows as u32);
                    let xt = Tensor::from_vec(x.clone(), (rows, inputs), &Device::Cpu)?;
                    let y = helper.pass(|team| layer.forward(&xt, Some(team)))?;
                    let y = y.flatten_all()?.to_vec1::<f32>()?;
                    let relu = helper.pass(|team| activated.forward(&xt, Some(team)))?;
                    let relu = relu.flatten_all()?.to_vec1::<f32>()?;
                    for (r, v) in relu.iter().zip(&y) {
                        assert_eq!(*r, v.max(0.0), "{kernel:?}: activation after the product");
                    }
                    for r in 0..rows {
                        for o in 0..outputs {
                            let terms = (0..inputs).map(|i| {
                                f64::from(x[r * inputs + i]) * f64::from(weight[o * inputs + i])
                            });
                            let exact = f64::from(bias[o]) + terms.clone().sum::<f64>();
                            // The worst case of any f32 summation order: n * unit roundoff * Σ|terms|.
                            let bound = (inputs + 1) as f64
                                * f64::from(f32::EPSILON)
                                * (f64::from(bias[o].abs()) + terms.map(f64::abs).sum::<f64>());
                            let got = f64::from(y[r * outputs + o]);
                            assert!(
                                (got - exact).abs() <= bound,
                                "{kernel:?} {rows}x{inputs}x{outputs} [{r},{o}]: {got} vs {exact}"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_packed_weight_unpacks_to_the_matrix() -> Result<()> {
        let (outputs, inputs) = (96, 20);
        let weight = noise(outputs * inputs, 3);
        let w = Tensor::from_vec(weight.clone(), (outputs, inputs), &Device::Cpu)?;
        for kernel in [Kernel::Gemm, Kernel::detect(F32Kernel::Auto)] {
            let matrix = Linear::new(&w, vec![0.0; outputs], kernel, true)?.matrix()?;
            for k in 0..inputs {
                for o in 0..outputs {
                    assert_eq!(
                        matrix[k * outputs + o],
                        weight[o * inputs + k],
                        "{kernel:?}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_bias_of_the_wrong_length_is_refused() {
        let w = Tensor::zeros((48, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let error = Linear::new(&w, vec![0.0; 47], Kernel::detect(F32Kernel::Auto), true)
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("47 values for 48 outputs"),
            "{error}"
        );
    }
}
