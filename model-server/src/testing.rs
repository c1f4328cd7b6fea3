//! Test doubles shared by unit and integration tests: a deterministic fake backend with
//! injectable latency and failures, a tiny WordPiece tokenizer (one token per word), and a
//! helper that builds a ready [`AppState`] around them. Hidden from docs; not for production.

use crate::backend::{BackendError, EmbeddingBackend};
use crate::http::{AppState, HttpConfig, ModelCard, ServedModel};
use crate::infer::{Infer, InferTasks, Limits};
use crate::metrics::Metrics;
use crate::modules::Pooling;
use crate::tokenize::TextTokenizer;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Dimensions of [`FakeBackend`] vectors.
pub const FAKE_DIMENSIONS: usize = 8;

/// A backend whose vector depends only on a text's own token ids (so batching must not change
/// it), with a configurable delay per pass and a switch to fail.
pub struct FakeBackend {
    /// Sleep per forward pass (simulates inference time).
    pub delay: Duration,
    /// When set, every pass fails.
    pub fail: AtomicBool,
    /// Size of every pass so far, in order.
    pub passes: Mutex<Vec<usize>>,
    /// Passes started so far: tests wait on it ([`FakeBackend::passes_started`]) rather than
    /// sleeping and hoping the worker got there.
    pub started: tokio::sync::watch::Sender<usize>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            fail: AtomicBool::new(false),
            passes: Mutex::new(Vec::new()),
            started: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl FakeBackend {
    /// A backend that sleeps `delay` per pass.
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// Resolves once `n` passes have started.
    pub async fn passes_started(&self, n: usize) {
        let mut started = self.started.subscribe();
        // The sender lives as long as `self`: the wait cannot end in an error.
        let _ = started.wait_for(|&count| count >= n).await;
    }

    /// The vector this backend returns for `ids` (pooled, not normalised).
    pub fn vector_for(ids: &[u32]) -> Vec<f32> {
        (0..FAKE_DIMENSIONS)
            .map(|k| {
                ids.iter()
                    .enumerate()
                    .map(|(j, &id)| ((id as f32 + 1.0) * (k as f32 + 1.0) * (j as f32 + 1.0)).sin())
                    .sum::<f32>()
                    + 0.5
            })
            .collect()
    }
}

impl EmbeddingBackend for FakeBackend {
    fn embed(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError> {
        self.passes
            .lock()
            .expect("passes lock poisoned; this is a bug")
            .push(batch.len());
        self.started.send_modify(|count| *count += 1);
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(BackendError::Inference("injected failure".to_owned()));
        }
        Ok(batch.iter().map(|ids| Self::vector_for(ids)).collect())
    }

    fn dimensions(&self) -> usize {
        FAKE_DIMENSIONS
    }
}

/// A WordPiece tokenizer with a 12-word vocabulary: every other word is `[UNK]`, so a text has
/// one token per word or punctuation mark, plus `[CLS]` and `[SEP]`.
pub fn tiny_tokenizer(max_input_length: usize) -> TextTokenizer {
    let json = r###"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                     "strip_accents": null, "lowercase": true},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                           "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
      "decoder": null,
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "a": 5,
                          "cat": 6, "dog": 7, "sat": 8, "on": 9, "mat": 10, "load": 11}}
    }"###;
    let tokenizer = tokenizers::Tokenizer::from_str(json)
        .expect("the tiny tokenizer JSON is valid; this is a bug");
    TextTokenizer::new(tokenizer, max_input_length)
        .expect("tiny tokenizer settings are valid; this is a bug")
}

/// Limits for tests: 2 workers, small batches.
pub fn test_limits() -> Limits {
    Limits {
        max_batch_tokens: 4096,
        max_batch_size: 32,
        max_client_batch_size: 16,
        max_concurrent_requests: 8,
        inference_workers: 2,
        threads_per_worker: 1,
    }
}

/// HTTP settings for tests.
pub fn test_http_config(limits: Limits) -> HttpConfig {
    HttpConfig {
        model_name: "fake-model".to_owned(),
        limits,
        payload_limit: 64 * 1024,
        request_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        max_connections: 1024,
    }
}

/// A started pipeline around `backend` with the tiny tokenizer (max 16 tokens).
pub fn fake_model(
    backend: Arc<FakeBackend>,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> (ServedModel, InferTasks) {
    fake_model_as(backend, limits, metrics, ModelCard::embedder(Pooling::Mean))
}

/// [`fake_model`] serving as `card` says (a reranker, prompts).
pub fn fake_model_as(
    backend: Arc<FakeBackend>,
    limits: Limits,
    metrics: Arc<Metrics>,
    card: ModelCard,
) -> (ServedModel, InferTasks) {
    let (infer, tasks) = Infer::start(backend, tiny_tokenizer(16), limits, metrics)
        .expect("spawning test workers succeeds; this is a bug");
    (
        ServedModel {
            infer,
            dtype: "f32",
            card,
        },
        tasks,
    )
}

/// A ready [`AppState`] around `backend`. Must be called inside a tokio runtime.
pub fn ready_state(backend: Arc<FakeBackend>, limits: Limits) -> (AppState, InferTasks) {
    ready_state_as(backend, limits, ModelCard::embedder(Pooling::Mean))
}

/// [`ready_state`] serving as `card` says.
pub fn ready_state_as(
    backend: Arc<FakeBackend>,
    limits: Limits,
    card: ModelCard,
) -> (AppState, InferTasks) {
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(test_http_config(limits), metrics.clone());
    let (model, tasks) = fake_model_as(backend, limits, metrics, card);
    state.set_ready(model);
    (state, tasks)
}
