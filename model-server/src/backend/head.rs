//! What turns the encoder's last hidden state into an answer, per text: for an embedder its
//! pooling and Dense modules ([`EmbedHead`]), for a cross-encoder the classifier on the first
//! token ([`Classifier`]). Both run once per text on vectors of the hidden width, so plain f32
//! loops serve them; the encoder's layers are where the time goes.

use crate::modules::{DenseActivation, DenseModule, Pooling};
use candle_core::{DType, Device, Result, bail};
use candle_nn::VarBuilder;

/// A dense layer `y = W · x + b` on one vector, f32, row-major `(outputs, inputs)` weights as
/// PyTorch keeps them.
struct Affine {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Affine {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize, bias: bool) -> Result<Self> {
        let weight = vb
            .get((outputs, inputs), "weight")?
            .flatten_all()?
            .to_vec1()?;
        let bias = if bias {
            vb.get(outputs, "bias")?.to_vec1()?
        } else {
            vec![0.0; outputs]
        };
        Ok(Self {
            weight,
            bias,
            inputs,
        })
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.inputs)
            .zip(&self.bias)
            .map(|(row, b)| row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b)
            .collect()
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }
}

/// One Dense module of a sentence-transformers stack.
struct DenseLayer {
    affine: Affine,
    tanh: bool,
}

/// An embedder's head: pooling, then each Dense module in order.
pub struct EmbedHead {
    pooling: Pooling,
    dense: Vec<DenseLayer>,
    dimensions: usize,
}

impl EmbedHead {
    /// The head for `pooling` over `hidden`-wide token vectors and the Dense modules `dense`
    /// (each read from its own safetensors file).
    ///
    /// # Errors
    /// A Dense module whose weights are missing or whose widths do not chain.
    pub fn load(pooling: Pooling, dense: &[DenseModule], hidden: usize) -> Result<Self> {
        let mut width = hidden;
        let mut layers = Vec::with_capacity(dense.len());
        for module in dense {
            if module.in_features != width {
                bail!(
                    "{}: in_features {} does not take the {width}-wide vectors before it",
                    module.weights.display(),
                    module.in_features
                );
            }
            let bytes = std::fs::read(&module.weights).map_err(|e| {
                candle_core::Error::msg(format!("{}: {e}", module.weights.display()))
            })?;
            let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)?;
            layers.push(DenseLayer {
                affine: Affine::load(
                    &vb.pp("linear"),
                    module.in_features,
                    module.out_features,
                    module.bias,
                )?,
                tanh: module.activation == DenseActivation::Tanh,
            });
            width = module.out_features;
        }
        Ok(Self {
            pooling,
            dense: layers,
            dimensions: width,
        })
    }

    /// Length of the vectors it answers.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The pooling it runs.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// One text's vector from its `(seq, hidden)` block of last hidden states and its mask.
    pub fn apply(&self, tokens: &[f32], mask: &[u32], hidden: usize) -> Vec<f32> {
        let mut vector = pool(self.pooling, tokens, mask, hidden);
        for layer in &self.dense {
            vector = layer.affine.apply(&vector);
            if layer.tanh {
                vector.iter_mut().for_each(|v| *v = v.tanh());
            }
        }
        vector
    }
}

/// A cross-encoder's classifier: the first token's vector through a hidden-wide dense layer and
/// tanh (BERT's `pooler`, XLM-RoBERTa's `classifier.dense`), then the output layer (BERT's
/// `classifier`, XLM-RoBERTa's `classifier.out_proj`): one logit per label.
pub struct Classifier {
    pre: Affine,
    out: Affine,
}

impl Classifier {
    /// Reads the head from the checkpoint's root, whichever of the two layouts it has.
    ///
    /// # Errors
    /// Neither layout's tensors are there, or they are misshapen.
    pub fn load(vb: &VarBuilder, hidden: usize, labels: usize) -> Result<Self> {
        if vb.contains_tensor("bert.pooler.dense.weight") {
            Ok(Self {
                pre: Affine::load(&vb.pp("bert.pooler.dense"), hidden, hidden, true)?,
                out: Affine::load(&vb.pp("classifier"), hidden, labels, true)?,
            })
        } else if vb.contains_tensor("classifier.out_proj.weight") {
            Ok(Self {
                pre: Affine::load(&vb.pp("classifier.dense"), hidden, hidden, true)?,
                out: Affine::load(&vb.pp("classifier.out_proj"), hidden, labels, true)?,
            })
        } else {
            bail!(
                "no classifier head: a cross-encoder needs bert.pooler.dense + classifier (BERT) or \
                 classifier.dense + classifier.out_proj (XLM-RoBERTa)"
            )
        }
    }

    /// Logits per label.
    pub fn labels(&self) -> usize {
        self.out.outputs()
    }

    /// One pair's logits from its `(seq, hidden)` block of last hidden states.
    pub fn apply(&self, tokens: &[f32], hidden: usize) -> Vec<f32> {
        let mut first = self.pre.apply(&tokens[..hidden]);
        first.iter_mut().for_each(|v| *v = v.tanh());
        self.out.apply(&first)
    }
}

/// One sequence's vector from its last hidden states as sentence-transformers' `Pooling` computes
/// it over the tokens the mask keeps (padding excluded). `tokens` is the sequence's
/// `(seq, dimensions)` block, row-major; the kept tokens come first (right padding).
pub fn pool(pooling: Pooling, tokens: &[f32], mask: &[u32], dimensions: usize) -> Vec<f32> {
    let rows = tokens.chunks_exact(dimensions);
    let kept = || {
        rows.clone()
            .zip(mask)
            .filter(|(_, m)| **m != 0)
            .map(|(t, _)| t)
    };
    match pooling {
        Pooling::Cls => tokens[..dimensions].to_vec(),
        Pooling::LastToken => kept().next_back().unwrap_or(&tokens[..dimensions]).to_vec(),
        Pooling::Max => {
            let mut max = vec![f32::NEG_INFINITY; dimensions];
            for token in kept() {
                for (m, v) in max.iter_mut().zip(token) {
                    *m = m.max(*v);
                }
            }
            max
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let mut sum = vec![0f32; dimensions];
            let mut count = 0f32;
            for token in kept() {
                for (s, v) in sum.iter_mut().zip(token) {
                    *s += v;
                }
                count += 1.0;
            }
            let count = count.max(1e-9);
            let divisor = if pooling == Pooling::Mean {
                count
            } else {
                count.sqrt()
            };
            sum.iter_mut().for_each(|s| *s /= divisor);
            sum
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pooling_mode_keeps_only_masked_tokens() {
        // Three tokens of width 2, the last one padding.
        let tokens = [1.0, -4.0, 3.0, 2.0, 100.0, 100.0];
        let mask = [1, 1, 0];
        assert_eq!(pool(Pooling::Cls, &tokens, &mask, 2), vec![1.0, -4.0]);
        assert_eq!(pool(Pooling::Mean, &tokens, &mask, 2), vec![2.0, -1.0]);
        assert_eq!(pool(Pooling::Max, &tokens, &mask, 2), vec![3.0, 2.0]);
        assert_eq!(pool(Pooling::LastToken, &tokens, &mask, 2), vec![3.0, 2.0]);
        let root2 = 2f32.sqrt();
        assert_eq!(
            pool(Pooling::MeanSqrtLen, &tokens, &mask, 2),
            vec![4.0 / root2, -2.0 / root2]
        );
    }

    #[test]
    fn affine_is_weight_times_input_plus_bias() {
        let affine = Affine {
            weight: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            bias: vec![0.5, -0.5],
            inputs: 3,
        };
        assert_eq!(affine.apply(&[1.0, 0.0, -1.0]), vec![-1.5, -2.5]);
        assert_eq!(affine.outputs(), 2);
    }
}
