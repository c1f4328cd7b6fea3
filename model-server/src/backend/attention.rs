//! Fused multi-head self-attention for short sequences, straight from the QKV projection:
//! `softmax(q·kᵀ + mask)·v` per (text, head), reading q, k and v in place from the
//! `(batch * seq, 3 * hidden)` rows the one QKV matrix product wrote and writing the context
//! rows `(batch * seq, hidden)` the output projection reads.
//!
//! Why: through candle, attention is 3 strided copies (split heads), a transpose, 2 batched
//! matrix products that run as one small gemm call per (text, head) — 144 calls per 16-token
//! sentence on all-MiniLM-L6-v2 — a broadcast add, a softmax and another copy (merge heads); at
//! 16 tokens each call does ~16 K multiply-adds, so the time went to call overhead and memory
//! passes, not to arithmetic. Here it is one pass with no allocation but the output. Attention is
//! O(seq²): past [`FUSED_MAX_SEQ`] tokens the gemm path wins again and is used instead.
//!
//! Numerics: f32 throughout with the max-subtracted softmax Hugging Face's BERT computes; only
//! the order of the additions differs from gemm's (the golden tests hold both paths to
//! sentence-transformers' vectors).
//!
//! With a [`Team`] (a lone pass), half the heads run on the helper thread. The kernel itself is
//! [`super::kernels::attention`]; this module is its candle op.

use super::team::Team;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use std::ops::Range;

pub use super::kernels::attention::FUSED_MAX_SEQ;

/// The attention of one pass; applied to the QKV rows with `apply_op1_no_bwd`. Each text
/// attends over its own rows only, so a pass may hold its texts padded to one length (with the
/// mask marking the padding) or back to back with no padding at all.
pub struct FusedAttention<'a> {
    /// Additive mask per row: 0 where attended, `f32::MIN` on padding.
    pub mask: &'a [f32],
    /// Each text's rows, in order, covering every row; none longer than [`FUSED_MAX_SEQ`].
    pub texts: &'a [Range<usize>],
    /// Attention heads.
    pub heads: usize,
    /// Width of each head (query scale already folded into the query weights).
    pub head_size: usize,
    /// With a team, half the heads run on its helper thread.
    pub team: Option<&'a Team<'a>>,
}

impl CustomOp1 for FusedAttention<'_> {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let heads = self.heads;
        let hidden = heads * self.head_size;
        let rows = self.texts.last().map_or(0, |t| t.end);
        let stride = 3 * hidden;
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("fused-attention: the QKV rows must be contiguous");
        };
        let CpuStorage::F32(data) = storage else {
            bail!("fused-attention: only f32 is implemented");
        };
        let qkv = &data[start..end];
        let contiguous = self.texts.windows(2).all(|w| w[0].end == w[1].start)
            && self.texts.first().is_none_or(|t| t.start == 0);
        let longest = self.texts.iter().map(ExactSizeIterator::len).max();
        if qkv.len() != rows * stride
            || self.mask.len() != rows
            || !contiguous
            || longest.is_some_and(|n| n > FUSED_MAX_SEQ)
        {
            bail!(
                "fused-attention: {} values and {} mask entries for {} texts of {rows} rows x {stride}",
                qkv.len(),
                self.mask.len(),
                self.texts.len()
            );
        }
        let out = super::kernels::attention::attend(
            qkv,
            self.mask,
            self.texts,
            heads,
            self.head_size,
            self.team,
        );
        Ok((CpuStorage::F32(out), Shape::from((rows, hidden))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The fused kernel agrees with the same attention through candle's tensor ops (split heads,
    /// batched matmul, masked softmax, merge heads) on random data with padding.
    #[test]
    fn matches_attention_through_tensor_ops() -> Result<()> {
        let (batch, seq, heads, head_size) = (3, 7, 4, 8);
        let hidden = heads * head_size;
        let mut state = 0x1234_5678u32;
        let values: Vec<f32> = (0..batch * seq * 3 * hidden)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        let lengths = [7, 3, 5];
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..seq).map(move |j| if j < n { 0.0 } else { f32::MIN }))
            .collect();
        let padded: Vec<Range<usize>> = (0..batch).map(|b| b * seq..(b + 1) * seq).collect();
        let qkv = Tensor::from_vec(values.clone(), (batch * seq, 3 * hidden), &Device::Cpu)?;
        let fused = qkv.apply_op1_no_bwd(&FusedAttention {
            mask: &mask,
            texts: &padded,
            heads,
            head_size,
            team: None,
        })?;
        let helper = crate::backend::team::Helper::spawn("test-helper".into()).unwrap();
        let split = helper.pass(|team| {
            qkv.apply_op1_no_bwd(&FusedAttention {
                mask: &mask,
                texts: &padded,
                heads,
                head_size,
                team: Some(team),
            })
        })?;
        let same = (&fused - &split)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert_eq!(same, 0.0, "split over the helper changes nothing");

        // The same texts back to back, without their padding rows: the same context, bit for bit.
        let stride = 3 * hidden;
        let mut packed_values = Vec::new();
        let mut packed = Vec::new();
        for (b, &n) in lengths.iter().enumerate() {
            let start = packed.last().map_or(0, |r: &Range<usize>| r.end);
            packed.push(start..start + n);
            packed_values.extend_from_slice(&values[b * seq * stride..(b * seq + n) * stride]);
        }
        let rows = packed.last().unwrap().end;
        let packed_qkv = Tensor::from_vec(packed_values, (rows, stride), &Device::Cpu)?;
        let packed_context = packed_qkv
            .apply_op1_no_bwd(&FusedAttention {
                mask: &vec![0.0; rows],
                texts: &packed,
                heads,
                head_size,
                team: None,
            })?
            .to_vec2::<f32>()?;
        let padded_context = fused.to_vec2::<f32>()?;
        for (b, text) in packed.iter().enumerate() {
            for (i, row) in text.clone().enumerate() {
                assert_eq!(
                    packed_context[row],
                    padded_context[b * seq + i],
                    "text {b} row {i}"
                );
            }
        }

        let split = |i: usize| -> Result<Tensor> {
            qkv.reshape((batch, seq, 3, heads, head_size))?
                .narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let additive = Tensor::from_vec(mask.clone(), (batch, 1, 1, seq), &Device::Cpu)?;
        let probs =
            candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?.broadcast_add(&additive)?)?;
        let reference = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch * seq, hidden))?;
        let diff = (fused - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max abs diff {diff}");
        Ok(())
    }
}
