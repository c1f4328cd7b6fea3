//! A lean BERT encoder forward pass for CPU inference, with the weights of a
//! `candle_transformers::models::bert` checkpoint (same tensor names, same `Config`).
//!
//! Why not call `candle_transformers::models::bert::BertModel` directly: profiling the server at
//! saturation (perf, 2 cores) showed 42% of the time outside the matrix products, in small
//! elementwise passes that each allocate a tensor and walk memory once more. This module runs the
//! dense layers on weights packed once at load ([`super::linear`]: our AVX-512 kernel, or candle's
//! gemm on other CPUs), bias included, and fuses the rest:
//! - Q, K and V come from one matrix product against a concatenated weight (one gemm, not three),
//!   with the 1/sqrt(head size) score scale folded into the query weights at load time;
//! - the bias add and the exact (erf) GELU run in place in one pass, with a branch-free rational
//!   erf the compiler vectorizes (libm's scalar `erff` alone was 9.5% of the profile);
//! - bias + residual + LayerNorm run in place in one pass per row;
//! - attention over short sequences is one fused pass from the QKV rows ([`super::attention`]);
//!   longer ones use candle's batched gemm and its fused last-dimension softmax;
//! - token-type and position embeddings are pre-added into one table at load time.
//!
//! XLM-RoBERTa (and RoBERTa) is the same encoder with other names and two differences the
//! [`Positions`] of a checkpoint carry: positions count from `pad_token_id + 1`, and there is one
//! token type. A cross-encoder's pair marks its second text's tokens ([`crate::tokenize::SECOND_TEXT`])
//! so BERT gives them token type 1.
//!
//! Numerically it follows Hugging Face's `BertModel` / `XLMRobertaModel` in f32; the golden and
//! fidelity tests hold it to sentence-transformers' own vectors (every component within 1e-5).

use super::activation::Activation;
use super::attention::{FUSED_MAX_SEQ, FusedAttention};
use super::dense::Dense;
use super::kernels::simd::{self, wide_fn};
use super::linear::{Kernel, Linear};
use super::team::Team;
use super::{KernelConfig, quantized};
use crate::tokenize::{SECOND_TEXT, TOKEN_ID};
use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Module, Result, Tensor, bail};
use candle_nn::{Embedding, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

/// Where a checkpoint's positions start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    /// Row of the position table the first token reads: 0 for BERT, `pad_token_id + 1` for
    /// (XLM-)RoBERTa.
    pub offset: usize,
}

/// The encoder: embeddings, then `num_hidden_layers` transformer layers.
pub struct Bert {
    word_embeddings: Embedding,
    /// Row `t * max_positions + i`: position_embeddings[offset + i] + token_type_embeddings[t],
    /// for every token type `t` the checkpoint has (at most two are used).
    position_and_type: Tensor,
    /// Positions the table covers: `max_position_embeddings - offset`.
    max_positions: usize,
    /// Token types in the table (1, or 2 where a pair's second text reads type 1).
    token_types: usize,
    embeddings_norm: RowNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    /// The kernel the f32 dense layers were packed for.
    kernel: Kernel,
}

/// One transformer layer; each dense layer adds its bias itself ([`Linear`]).
struct Layer {
    /// hidden -> 3 * hidden: query (pre-scaled), key and value side by side.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: ResidualNorm,
    /// With the activation applied inside the product.
    intermediate: Dense,
    output: Dense,
    output_norm: ResidualNorm,
}

/// The dense layers of one transformer layer, in the order the pass runs them.
const DENSE_PER_LAYER: usize = 4;

impl Layer {
    fn dense_mut(&mut self) -> [&mut Dense; DENSE_PER_LAYER] {
        [
            &mut self.qkv,
            &mut self.attention_out,
            &mut self.intermediate,
            &mut self.output,
        ]
    }
}

/// Sees the input of every dense layer during a pass: `(layer * 4 + slot, input)`, slot in
/// [`Layer::dense_mut`]'s order. Calibration uses it to measure each layer's input channels.
pub type Observer<'a> = &'a mut dyn FnMut(usize, &Tensor) -> Result<()>;

impl Bert {
    /// Builds the encoder from a checkpoint (with or without the `bert.` or `roberta.` prefix a
    /// task model's weights carry), its dense layers packed for the kernel `kernels` picks.
    ///
    /// # Errors
    /// A missing or misshapen tensor, or an activation this module does not implement.
    pub fn load(
        vb: VarBuilder,
        config: &Config,
        positions: Positions,
        kernels: &KernelConfig,
    ) -> Result<Self> {
        let vb = match ["bert", "roberta"].into_iter().find(|prefix| {
            vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight"))
        }) {
            Some(prefix) => vb.pp(prefix),
            None => vb,
        };
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            bail!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            );
        }
        let activation = match config.hidden_act {
            HiddenAct::Gelu => Activation::GeluErf,
            HiddenAct::GeluApproximate => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        };
        let emb = vb.pp("embeddings");
        let word_embeddings = Embedding::new(
            emb.get((config.vocab_size, hidden), "word_embeddings.weight")?,
            hidden,
        );
        let Some(max_positions) = config.max_position_embeddings.checked_sub(positions.offset)
        else {
            bail!(
                "max_position_embeddings {} is below the position offset {}",
                config.max_position_embeddings,
                positions.offset
            );
        };
        let position_table = emb
            .get(
                (config.max_position_embeddings, hidden),
                "position_embeddings.weight",
            )?
            .narrow(0, positions.offset, max_positions)?;
        let token_type = emb.get(
            (config.type_vocab_size, hidden),
            "token_type_embeddings.weight",
        )?;
        let token_types = config.type_vocab_size.clamp(1, 2);
        let position_and_type = Tensor::cat(
            &(0..token_types)
                .map(|t| position_table.broadcast_add(&token_type.narrow(0, t, 1)?))
                .collect::<Result<Vec<_>>>()?,
            0,
        )?;
        let eps = config.layer_norm_eps as f32;
        let embeddings_norm = RowNorm::load(&emb.pp("LayerNorm"), hidden, eps)?;

        let head_size = hidden / config.num_attention_heads;
        let kernel = Kernel::detect(kernels.kernel);
        let huge_pages = kernels.huge_pages;
        let scale = 1.0 / (head_size as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let attn = vb.pp("attention");
                let q = attn.pp("self.query");
                let k = attn.pp("self.key");
                let v = attn.pp("self.value");
                let qkv_weight = Tensor::cat(
                    &[
                        (q.get((hidden, hidden), "weight")? * scale)?,
                        k.get((hidden, hidden), "weight")?,
                        v.get((hidden, hidden), "weight")?,
                    ],
                    0,
                )?;
                let qkv_bias = Tensor::cat(
                    &[
                        (q.get(hidden, "bias")? * scale)?,
                        k.get(hidden, "bias")?,
                        v.get(hidden, "bias")?,
                    ],
                    0,
                )?;
                let inter = config.intermediate_size;
                let dense = |vb: &VarBuilder, shape: (usize, usize)| -> Result<Linear> {
                    let bias = vb.get(shape.0, "bias")?.to_vec1()?;
                    Linear::new(&vb.get(shape, "weight")?, bias, kernel, huge_pages)
                };
                Ok(Layer {
                    qkv: Dense::F32(Linear::new(
                        &qkv_weight,
                        qkv_bias.to_vec1()?,
                        kernel,
                        huge_pages,
                    )?),
                    attention_out: Dense::F32(dense(&attn.pp("output.dense"), (hidden, hidden))?),
                    attention_norm: ResidualNorm::load(&attn.pp("output.LayerNorm"), hidden, eps)?,
                    intermediate: Dense::F32(
                        dense(&vb.pp("intermediate.dense"), (inter, hidden))?
                            .with_activation(activation),
                    ),
                    output: Dense::F32(dense(&vb.pp("output.dense"), (hidden, inter))?),
                    output_norm: ResidualNorm::load(&vb.pp("output.LayerNorm"), hidden, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word_embeddings,
            position_and_type,
            max_positions,
            token_types,
            embeddings_norm,
            layers,
            heads: config.num_attention_heads,
            head_size,
            kernel,
        })
    }

    /// Runs the encoder over a padded batch of token ids `(batch, seq)` with its attention mask
    /// (1 for tokens, 0 for padding) and returns the last hidden state, `(batch * seq, hidden)`.
    /// With a `team`, the dense layers' products are split with its helper thread.
    ///
    /// # Errors
    /// Shapes that do not fit the model (e.g. a sequence longer than the position table).
    pub fn forward(&self, ids: &Tensor, mask: &[u32], team: Option<&Team>) -> Result<Tensor> {
        self.forward_observed(ids, mask, team, &mut |_, _| Ok(()))
    }

    /// Runs the encoder over `texts` back to back, with no padding: the last hidden state has
    /// one row per token, `(Σ len, hidden)`, text `i`'s rows after text `i - 1`'s. Every layer
    /// but attention works row by row, so this is the padded pass's arithmetic less the padding
    /// rows (a pass of mixed lengths pads every text to its longest); each text's vectors are
    /// bit for bit the padded pass's.
    ///
    /// # Errors
    /// A text longer than [`FUSED_MAX_SEQ`] (pad those: [`Self::forward`]), or none at all.
    pub fn forward_packed(&self, texts: &[&[u32]], team: Option<&Team>) -> Result<Tensor> {
        let mut spans = Vec::with_capacity(texts.len());
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        for text in texts {
            if text.is_empty() || text.len() > FUSED_MAX_SEQ {
                bail!(
                    "packed pass: a text of {} tokens (1..={FUSED_MAX_SEQ} run packed)",
                    text.len()
                );
            }
            spans.push(ids.len()..ids.len() + text.len());
            ids.extend_from_slice(text);
            positions.extend(0..text.len() as u32);
        }
        if ids.is_empty() {
            bail!("packed pass: no texts");
        }
        let rows = ids.len();
        let attention = AttentionRows {
            mask: vec![0.0; rows],
            texts: spans,
            padded: None,
        };
        let embeddings = self.embeddings(ids, &positions)?;
        self.encode(embeddings, &attention, team, &mut |_, _| Ok(()))
    }

    /// Positions the encoder reads (the longest text it takes, special tokens included).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Word plus position-and-type embeddings of `ids`, the token in row `i` at
    /// `positions[i]`; an id marked [`SECOND_TEXT`] reads token type 1 where the model has it.
    fn embeddings(&self, mut ids: Vec<u32>, positions: &[u32]) -> Result<Tensor> {
        let device = self.position_and_type.device();
        let rows = ids.len();
        let mut table_rows = Vec::with_capacity(rows);
        for (id, &position) in ids.iter_mut().zip(positions) {
            if position as usize >= self.max_positions {
                bail!(
                    "a sequence of more than {} tokens (the model's positions)",
                    self.max_positions
                );
            }
            let second = *id & SECOND_TEXT != 0 && self.token_types > 1;
            table_rows.push(position + u32::from(second) * self.max_positions as u32);
            *id &= TOKEN_ID;
        }
        let words = self
            .word_embeddings
            .forward(&Tensor::from_vec(ids, rows, device)?)?;
        let positions = self
            .position_and_type
            .index_select(&Tensor::from_vec(table_rows, rows, device)?, 0)?;
        words + positions
    }

    /// [`Self::forward`], showing `observe` every dense layer's input.
    ///
    /// # Errors
    /// As [`Self::forward`], or what `observe` returns.
    pub fn forward_observed(
        &self,
        ids: &Tensor,
        mask: &[u32],
        team: Option<&Team>,
        observe: Observer,
    ) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let positions: Vec<u32> = (0..batch).flat_map(|_| 0..seq as u32).collect();
        let embeddings = self.embeddings(ids.flatten_all()?.to_vec1::<u32>()?, &positions)?;
        // Hugging Face's extended mask: 0 where attended, the dtype's minimum where padded.
        let additive: Vec<f32> = mask
            .iter()
            .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
            .collect();
        let padded = if seq > FUSED_MAX_SEQ {
            let tensor = Tensor::from_vec(additive.clone(), (batch, 1, 1, seq), ids.device())?;
            Some((batch, seq, tensor))
        } else {
            None
        };
        let attention = AttentionRows {
            mask: additive,
            texts: (0..batch).map(|b| b * seq..(b + 1) * seq).collect(),
            padded,
        };
        self.encode(embeddings, &attention, team, observe)
    }

    /// Embedding LayerNorm, then every layer, from the summed word and position embeddings.
    fn encode(
        &self,
        embeddings: Tensor,
        attention: &AttentionRows,
        team: Option<&Team>,
        observe: Observer,
    ) -> Result<Tensor> {
        embeddings.inplace_op1(&self.embeddings_norm)?;
        let mut x = embeddings;
        for (index, layer) in self.layers.iter().enumerate() {
            let mut observe_layer =
                |slot: usize, input: &Tensor| observe(index * DENSE_PER_LAYER + slot, input);
            x = self.layer(layer, &x, attention, team, &mut observe_layer)?;
        }
        Ok(x)
    }

    /// The dense layers' shapes `(inputs, outputs)`, in the order [`Observer`] numbers them.
    pub fn dense_shapes(&self) -> Vec<(usize, usize)> {
        let layers = self.layers.iter();
        layers
            .flat_map(|l| [&l.qkv, &l.attention_out, &l.intermediate, &l.output])
            .map(Dense::shape)
            .collect()
    }

    /// The kernel the f32 dense layers were packed for.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Quantizes every dense layer the int8 kernel takes, given each one's per-input-channel
    /// largest |x| (indexed as [`Observer`] numbers them), for the int8 kernel and pages
    /// `kernels` picks; returns how many are int8 now.
    ///
    /// # Errors
    /// A missing measurement, or a weight that cannot be read back.
    pub fn quantize(&mut self, channel_max: &[Vec<f32>], kernels: &KernelConfig) -> Result<usize> {
        let kernel = quantized::Kernel::best(kernels.int8_kernel);
        let dense = self.layers.iter_mut().flat_map(Layer::dense_mut);
        let mut quantized = 0;
        for (index, layer) in dense.enumerate() {
            let Some(max) = channel_max.get(index) else {
                bail!("int8: no calibration for dense layer {index}");
            };
            quantized += usize::from(layer.quantize(max, kernel, kernels.huge_pages)?);
        }
        Ok(quantized)
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        attention: &AttentionRows,
        team: Option<&Team>,
        observe: Observer,
    ) -> Result<Tensor> {
        observe(0, x)?;
        let hidden = self.heads * self.head_size;
        let qkv = layer.qkv.forward(x, team)?;
        let context = if let Some((batch, seq, additive)) = &attention.padded {
            let (batch, seq) = (*batch, *seq);
            // (batch * seq, 3 * hidden) -> three (batch, heads, seq, head_size) tensors.
            let qkv = qkv.reshape((batch, seq, 3, self.heads, self.head_size))?;
            let split = |i: usize| {
                qkv.narrow(2, i, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = q.matmul(&k.t()?)?.broadcast_add(additive)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((batch * seq, hidden))?
        } else {
            qkv.apply_op1_no_bwd(&FusedAttention {
                mask: &attention.mask,
                texts: &attention.texts,
                heads: self.heads,
                head_size: self.head_size,
                team,
            })?
        };

        observe(1, &context)?;
        let attended = layer.attention_out.forward(&context, team)?;
        attended.inplace_op2(x, &layer.attention_norm)?;
        observe(2, &attended)?;
        let inter = layer.intermediate.forward(&attended, team)?;
        observe(3, &inter)?;
        let out = layer.output.forward(&inter, team)?;
        out.inplace_op2(&attended, &layer.output_norm)?;
        Ok(out)
    }
}

/// Which rows of a pass attend to which: each text's rows, the additive mask per row (0 where
/// attended, `f32::MIN` on padding), and for padded texts longer than [`FUSED_MAX_SEQ`] the
/// `(batch, seq, mask)` candle's batched attention takes instead of the fused kernel.
struct AttentionRows {
    mask: Vec<f32>,
    texts: Vec<std::ops::Range<usize>>,
    padded: Option<(usize, usize, Tensor)>,
}

/// The contiguous f32 data of a tensor's storage, or an error naming the op.
fn rows_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: the tensor must be contiguous");
    };
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        _ => bail!("{op}: only f32 is implemented"),
    }
}

fn rows<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: the tensor must be contiguous");
    };
    match storage {
        CpuStorage::F32(data) => Ok(&data[start..end]),
        _ => bail!("{op}: only f32 is implemented"),
    }
}

/// LayerNorm over each row, in place: `(x - mean) / sqrt(var + eps) * gamma + beta`.
struct RowNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl RowNorm {
    fn load(vb: &VarBuilder, hidden: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            gamma: vb.get(hidden, "weight")?.to_vec1()?,
            beta: vb.get(hidden, "bias")?.to_vec1()?,
            eps,
        })
    }

    #[inline(always)]
    fn normalize(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = simd::sum(row) / n;
        let var = simd::squared_deviations(row, mean) / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

impl InplaceOp1 for RowNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        norm_rows(self, rows_mut(storage, layout, self.name())?);
        Ok(())
    }
}

wide_fn! {
    /// Each row of `data`, normalised.
    fn norm_rows(norm: &RowNorm, data: &mut [f32]) {
        for row in data.chunks_exact_mut(norm.gamma.len()) {
            norm.normalize(row);
        }
    }
}

wide_fn! {
    /// Each row of `data` plus its row of `residual`, normalised.
    fn add_and_norm_rows(norm: &RowNorm, data: &mut [f32], residual: &[f32]) {
        let width = norm.gamma.len();
        for (row, res) in data.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
            for (x, r) in row.iter_mut().zip(res) {
                *x += r;
            }
            norm.normalize(row);
        }
    }
}

/// A dense layer's tail: `x = LayerNorm(x + residual)`, in place, one pass per row (the bias
/// is already in, see [`Linear`]).
struct ResidualNorm(RowNorm);

impl ResidualNorm {
    fn load(vb: &VarBuilder, hidden: usize, eps: f32) -> Result<Self> {
        Ok(Self(RowNorm::load(vb, hidden, eps)?))
    }
}

impl InplaceOp2 for ResidualNorm {
    fn name(&self) -> &'static str {
        "residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let residual = rows(s2, l2, self.name())?;
        let data = rows_mut(s1, l1, self.name())?;
        if residual.len() != data.len() {
            bail!("{}: residual shape differs", self.name());
        }
        add_and_norm_rows(&self.0, data, residual);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_norm_centres_and_scales() {
        let norm = RowNorm {
            gamma: vec![1.0; 4],
            beta: vec![0.0; 4],
            eps: 1e-12,
        };
        let mut row = [1.0, 2.0, 3.0, 4.0];
        norm.normalize(&mut row);
        let mean: f32 = row.iter().sum::<f32>() / 4.0;
        let var: f32 = row.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{row:?}");
    }
}
