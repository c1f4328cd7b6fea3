//! The inference backend boundary: a synchronous trait that turns a batch of token-id sequences
//! into pooled sentence vectors. The candle BERT implementation lives in [`candle`]; tests use
//! [`crate::testing::FakeBackend`]. Backends are called from the inference worker threads
//! ([`crate::infer`]), never from the async runtime.

mod activation;
mod amx;
mod attention;
mod bert;
pub mod candle;
mod dense;
pub mod linear;
pub mod pages;
pub mod quantized;
mod simd;
pub mod team;
mod tiles;

/// Inference failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The model's forward pass returned an error.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The forward pass panicked. The worker survives and answers every request of the batch.
    #[error("inference panicked: {0}. This is a bug")]
    Panicked(String),
}

/// A model that embeds batches of token-id sequences.
pub trait EmbeddingBackend: Send + Sync + 'static {
    /// One pooled (not normalised) vector per sequence, in order. Sequences may differ in length;
    /// the backend pads them itself.
    ///
    /// # Errors
    /// [`BackendError::Inference`] when the forward pass fails.
    fn embed(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError>;

    /// [`Self::embed`] as one pass that may split its work with `team`'s helper thread, which is
    /// free for the length of the pass. Backends without intra-pass threads ignore it.
    ///
    /// # Errors
    /// As [`Self::embed`].
    fn embed_with_helper(
        &self,
        batch: &[&[u32]],
        team: &team::Team,
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        let _ = team;
        self.embed(batch)
    }

    /// Length of each vector.
    fn dimensions(&self) -> usize;
}
