//! all-MiniLM-L6-v2 (any sentence-transformers BERT) on candle's CPU backend: f32 weights loaded
//! without `unsafe` (buffered, not mmapped; 91 MB, so the copy is cheap), one forward pass per
//! batch with an attention mask, then mean or CLS pooling exactly as sentence-transformers pools.
//!
//! f32 on purpose: candle-transformers 0.11.1's BERT turns its mask into NaN in f16/bf16, and both
//! measured slower than f32 on these CPUs (../shared/notes/rust-stack.md §3).

use super::{BackendError, EmbeddingBackend};
use crate::model::{ModelFiles, Pooling, read_json};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

/// Loading the model failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `config.json` is unreadable or not a BERT config.
    #[error(transparent)]
    Config(#[from] crate::model::ModelError),
    /// The weights file could not be read.
    #[error("cannot read weights {path}: {source}")]
    Weights {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The weights do not fit the configuration.
    #[error("cannot build the model from {path}: {source}")]
    Model {
        /// The weights file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: candle_core::Error,
    },
}

/// A sentence-transformers BERT model on the CPU.
pub struct CandleBert {
    model: BertModel,
    max_position_embeddings: usize,
    pooling: Pooling,
    dimensions: usize,
    pad_id: u32,
    device: Device,
}

impl CandleBert {
    /// Loads config and weights from a model directory.
    ///
    /// # Errors
    /// [`LoadError`] naming the file that could not be read or did not fit.
    pub fn load(files: &ModelFiles) -> Result<Self, LoadError> {
        let config: Config = read_json(&files.config)?;
        let device = Device::Cpu;
        let weights = std::fs::read(&files.weights).map_err(|source| LoadError::Weights {
            path: files.weights.clone(),
            source,
        })?;
        let model_err = |source| LoadError::Model {
            path: files.weights.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(model_err)?;
        let model = BertModel::load(vb, &config).map_err(model_err)?;
        Ok(Self {
            model,
            max_position_embeddings: config.max_position_embeddings,
            pooling: files.pooling,
            dimensions: config.hidden_size,
            pad_id: u32::try_from(config.pad_token_id).unwrap_or(0),
            device,
        })
    }

    /// Longest sequence the position embeddings cover (512 for all-MiniLM-L6-v2).
    pub fn max_position_embeddings(&self) -> usize {
        self.max_position_embeddings
    }

    fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let rows = batch.len();
        let cols = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.resize(ids.len() + cols - seq.len(), self.pad_id);
            mask.resize(mask.len() + seq.len(), 1u32);
            mask.resize(mask.len() + cols - seq.len(), 0u32);
        }
        let ids = Tensor::from_vec(ids, (rows, cols), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, cols), &self.device)?;
        let type_ids = ids.zeros_like()?;
        // Always pass the mask: without it padding is attended to, and a padded batch drops to
        // cosine 0.42 against the reference (measured, ../shared/notes/rust-stack.md §5).
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.i((.., 0))?,
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        pooled.to_vec2::<f32>()
    }
}

impl EmbeddingBackend for CandleBert {
    fn embed(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(batch)
            .map_err(|e| BackendError::Inference(e.to_string()))
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}
