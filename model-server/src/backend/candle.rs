//! A sentence-transformers BERT or XLM-RoBERTa model (all-MiniLM-L6-v2 first) on candle's CPU
//! backend: f32 weights read into memory (buffered, not mmapped; 91 MB for MiniLM, so the copy is
//! cheap), one forward pass per batch with an attention mask, then the model's head
//! ([`super::head`]): pooling and Dense modules for an embedder, the classifier's logits for a
//! cross-encoder.
//!
//! f32 by default: exact to sentence-transformers. [`CandleBert::quantize_int8`] turns the dense
//! layers int8 (`--dtype int8`), calibrated on a built-in corpus ([`CALIBRATION`]) at load.

use super::attention::FUSED_MAX_SEQ;
use super::bert::{Bert, Positions};
use super::head::{Classifier, EmbedHead};
use super::linear::Kernel;
use super::team::Team;
use super::{BackendError, EmbeddingBackend, KernelConfig};
use crate::model::{ModelFiles, read_json};
use crate::modules::{Architecture, Task};
use crate::tokenize::TextTokenizer;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;

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
    /// This CPU cannot run the precision asked for.
    #[error("{0}")]
    Unsupported(String),
    /// Calibrating `--dtype int8` failed.
    #[error("int8 calibration failed: {source}")]
    Calibration {
        /// Why.
        #[source]
        source: candle_core::Error,
    },
}

/// The texts `--dtype int8` calibrates on at load, one per line: varied English and a few other
/// languages, short and long, never the golden texts the fidelity test measures.
/// `bench/int8_fidelity.py` simulates the scheme on the same corpus.
pub const CALIBRATION: &str = include_str!("calibration.txt");

/// What a pass answers per text.
enum Head {
    /// A sentence vector.
    Embed(EmbedHead),
    /// A pair's logits.
    Classify(Classifier),
}

/// A sentence-transformers BERT-family model on the CPU.
pub struct CandleBert {
    model: Bert,
    head: Head,
    /// Width of the encoder's token vectors.
    hidden: usize,
    /// Length of each answer: the embedding's dimensions, or the classifier's labels.
    dimensions: usize,
    pad_id: u32,
    device: Device,
    kernels: KernelConfig,
}

impl CandleBert {
    /// Loads config and weights from a model directory, for the kernels `kernels` picks.
    ///
    /// # Errors
    /// [`LoadError`] naming the file that could not be read or did not fit.
    pub fn load(files: &ModelFiles, kernels: &KernelConfig) -> Result<Self, LoadError> {
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
        let pad_id = u32::try_from(config.pad_token_id).unwrap_or(0);
        let positions = Positions {
            offset: match files.modules.architecture {
                Architecture::Bert => 0,
                Architecture::XlmRoberta => pad_id as usize + 1,
            },
        };
        let model = Bert::load(vb.clone(), &config, positions, kernels).map_err(model_err)?;
        let hidden = config.hidden_size;
        let (head, dimensions) = match &files.modules.task {
            Task::Embed { pooling, dense, .. } => {
                let head = EmbedHead::load(*pooling, dense, hidden).map_err(model_err)?;
                let dimensions = head.dimensions();
                (Head::Embed(head), dimensions)
            }
            Task::Rerank { labels, .. } => {
                let head = Classifier::load(&vb, hidden, *labels).map_err(model_err)?;
                (Head::Classify(head), *labels)
            }
        };
        Ok(Self {
            model,
            head,
            hidden,
            dimensions,
            pad_id,
            device,
            kernels: *kernels,
        })
    }

    /// Quantizes every dense layer to int8 ([`super::quantized`]) after measuring each one's
    /// input channels over [`CALIBRATION`], tokenized by `tokenizer` (one pass per text, so no
    /// padding is measured); returns how many layers are int8 now.
    ///
    /// # Errors
    /// A CPU without AVX512-VNNI, or a pass that fails.
    pub fn quantize_int8(&mut self, tokenizer: &TextTokenizer) -> Result<usize, LoadError> {
        let calibration = CALIBRATION
            .lines()
            .map(|text| tokenizer.encode(0, text, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                LoadError::Unsupported(format!("cannot tokenize the calibration corpus: {e}"))
            })?;
        self.quantize_int8_on(&calibration)
    }

    fn quantize_int8_on(&mut self, calibration: &[Vec<u32>]) -> Result<usize, LoadError> {
        if !super::quantized::supported() {
            return Err(LoadError::Unsupported(
                "--dtype int8 needs a CPU with AVX512-VNNI (avx512f, avx512bw, avx512_vnni); \
                 this one has none: use --dtype f32"
                    .to_owned(),
            ));
        }
        let model_err = |source| LoadError::Calibration { source };
        let mut max: Vec<Vec<f32>> = (self.model.dense_shapes().iter())
            .map(|&(inputs, _)| vec![0f32; inputs])
            .collect();
        for ids in calibration {
            let tensor =
                Tensor::from_vec(ids.clone(), (1, ids.len()), &self.device).map_err(model_err)?;
            let mask = vec![1u32; ids.len()];
            let mut observe = |index: usize, x: &Tensor| {
                let seen = &mut max[index];
                for row in x.flatten_all()?.to_vec1::<f32>()?.chunks_exact(seen.len()) {
                    for (m, v) in seen.iter_mut().zip(row) {
                        *m = m.max(v.abs());
                    }
                }
                Ok(())
            };
            (self.model)
                .forward_observed(&tensor, &mask, None, &mut observe)
                .map_err(model_err)?;
        }
        self.model.quantize(&max, &self.kernels).map_err(model_err)
    }

    /// The kernel the f32 dense layers run on (shapes that are not whole panels use gemm).
    pub fn kernel(&self) -> Kernel {
        self.model.kernel()
    }

    /// Longest sequence the position embeddings cover (512 for all-MiniLM-L6-v2, 512 for
    /// XLM-RoBERTa's 514 rows less its offset of 2).
    pub fn max_position_embeddings(&self) -> usize {
        self.model.max_positions()
    }

    /// One text's answer from its `(seq, hidden)` block of last hidden states and its mask.
    fn answer(&self, tokens: &[f32], mask: &[u32]) -> Vec<f32> {
        match &self.head {
            Head::Embed(head) => head.apply(tokens, mask, self.hidden),
            Head::Classify(head) => head.apply(tokens, self.hidden),
        }
    }

    /// Embeds a batch on rayon's current pool. With one thread, or one text, it is one pass,
    /// inline. Otherwise the batch is cut into one shard per thread, each its own single-threaded
    /// pass: no hand-offs inside a pass, and each shard pads only to its own longest text.
    fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let threads = rayon::current_num_threads();
        if threads <= 1 || batch.len() < 2 {
            return self.pass(batch, None);
        }
        let shard = batch.len().div_ceil(threads);
        let shards: Vec<candle_core::Result<Vec<Vec<f32>>>> = {
            use rayon::prelude::*;
            batch
                .par_chunks(shard)
                .map(|texts| self.pass(texts, None))
                .collect()
        };
        let mut vectors = Vec::with_capacity(batch.len());
        for shard in shards {
            vectors.extend(shard?);
        }
        Ok(vectors)
    }

    /// One forward pass over `batch`: its texts back to back, or padded to the longest when
    /// one is longer than the fused attention takes.
    fn pass(&self, batch: &[&[u32]], team: Option<&Team>) -> candle_core::Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let cols = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        if (1..=FUSED_MAX_SEQ).contains(&cols) && batch.iter().all(|s| !s.is_empty()) {
            return self.packed_pass(batch, team);
        }
        let rows = batch.len();
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.resize(ids.len() + cols - seq.len(), self.pad_id);
            mask.resize(mask.len() + seq.len(), 1u32);
            mask.resize(mask.len() + cols - seq.len(), 0u32);
        }
        let ids = Tensor::from_vec(ids, (rows, cols), &self.device)?;
        // Always pass the mask: without it padding is attended to, and a padded batch drops to
        // cosine 0.42 against the reference (measured, ../shared/notes/rust-stack.md §5).
        let hidden = self
            .model
            .forward(&ids, &mask, team)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(hidden
            .chunks_exact(cols * self.hidden)
            .zip(mask.chunks_exact(cols))
            .map(|(tokens, mask)| self.answer(tokens, mask))
            .collect())
    }

    /// [`Self::pass`] with no padding ([`Bert::forward_packed`]): one row per token.
    fn packed_pass(
        &self,
        batch: &[&[u32]],
        team: Option<&Team>,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let hidden = self
            .model
            .forward_packed(batch, team)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        // Every row is a token: the mask keeps all of them.
        let every_token = [1u32; FUSED_MAX_SEQ];
        let mut rest = hidden.as_slice();
        let mut vectors = Vec::with_capacity(batch.len());
        for text in batch {
            let (tokens, next) = rest.split_at(text.len() * self.hidden);
            let mask = &every_token[..text.len()];
            vectors.push(self.answer(tokens, mask));
            rest = next;
        }
        Ok(vectors)
    }
}

impl EmbeddingBackend for CandleBert {
    fn embed(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError> {
        self.forward(batch)
            .map_err(|e| BackendError::Inference(e.to_string()))
    }

    fn embed_with_helper(
        &self,
        batch: &[&[u32]],
        team: &Team,
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        self.pass(batch, Some(team))
            .map_err(|e| BackendError::Inference(e.to_string()))
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}
