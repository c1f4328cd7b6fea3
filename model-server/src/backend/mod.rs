//! The inference backend boundary: a synchronous trait that turns a batch of token-id sequences
//! into pooled sentence vectors. The candle BERT implementation lives in [`candle`]; tests use
//! [`crate::testing::FakeBackend`]. Backends are called from the inference worker threads
//! ([`crate::infer`]), never from the async runtime.
//!
//! What the compiler cannot check for the backend (SIMD and AMX kernels, raw tile pointers, the
//! helper thread's hand-off, huge-page buffers) is all in [`kernels`], behind safe functions.
//! How the kernels run is [`KernelConfig`], read once at start-up.

mod activation;
mod attention;
mod bert;
pub mod candle;
mod dense;
pub mod head;
#[allow(unsafe_code)] // the one module allowed it: see its docs.
pub mod kernels;
pub mod linear;
pub mod quantized;

pub use kernels::{pages, team};

/// Which code the f32 matrix products run on (`--kernel`, `MODEL_SERVER_KERNEL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum F32Kernel {
    /// The fastest this CPU runs: the AVX-512 packed-panel kernel where the CPU has avx512f,
    /// else candle's gemm.
    #[default]
    Auto,
    /// candle's gemm everywhere (to compare the two side by side, or to test the fallback on an
    /// AVX-512 machine).
    Gemm,
}

/// Which instructions run `--dtype int8`'s integer products (`--int8-kernel`,
/// `MODEL_SERVER_INT8_KERNEL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Int8Kernel {
    /// AMX where the CPU has it and Linux lets this process use it, else AVX512-VNNI.
    #[default]
    Auto,
    /// AVX512-VNNI everywhere (to compare it with AMX side by side).
    Vnni,
}

/// How the backend's kernels run: the kernel knobs, read once at start-up (from the flags, see
/// [`crate::config::KernelArgs`], or [`KernelConfig::from_env`]) and handed to
/// [`candle::CandleBert::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelConfig {
    /// The f32 products' kernel.
    pub kernel: F32Kernel,
    /// The int8 products' kernel.
    pub int8_kernel: Int8Kernel,
    /// Whether the packed weights ask for 2 MiB pages ([`pages::PageBuf`]).
    pub huge_pages: bool,
}

impl Default for KernelConfig {
    /// The fastest kernels this CPU runs, on huge pages.
    fn default() -> Self {
        Self {
            kernel: F32Kernel::Auto,
            int8_kernel: Int8Kernel::Auto,
            huge_pages: true,
        }
    }
}

impl KernelConfig {
    /// The knobs from `MODEL_SERVER_KERNEL`, `MODEL_SERVER_INT8_KERNEL` and
    /// `MODEL_SERVER_HUGE_PAGES` (defaults where unset), parsed as the server's flags parse them:
    /// for code that builds a backend without the command line (tests, examples). Read it once.
    ///
    /// # Errors
    /// A variable set to a value the flag does not take.
    pub fn from_env() -> Result<Self, clap::Error> {
        crate::config::KernelArgs::from_env().map(|args| args.config())
    }
}

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
