//! Turns texts into token ids with the model's own `tokenizer.json`, under the server's length
//! policy: no padding here (the backend pads each batch to its longest member), and truncation at
//! the model's maximum sequence length, or a refusal when the caller asked for `truncate: false`.
//!
//! all-MiniLM-L6-v2's `tokenizer.json` ships `truncation.max_length = 128` and `padding =
//! Fixed(128)`; sentence-transformers ignores both and truncates at `max_seq_length` (256), so we
//! replace them.

use std::path::Path;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Why a text could not be tokenized.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The text is longer than the model accepts and truncation was refused.
    #[error(
        "texts[{index}] is longer than the model's maximum of {max} tokens and truncate is false; \
         shorten it or send truncate: true"
    )]
    TooLong {
        /// Position of the text in the request.
        index: usize,
        /// The maximum input length in tokens.
        max: usize,
    },
    /// The tokenizer itself failed (e.g. a broken `tokenizer.json`).
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
}

/// The model's tokenizer with the server's truncation policy applied.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_input_length: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and truncates at `max_input_length` tokens (special tokens included).
    ///
    /// # Errors
    /// [`TokenizeError::Tokenizer`] when the file cannot be read or parsed.
    pub fn from_file(path: &Path, max_input_length: usize) -> Result<Self, TokenizeError> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| TokenizeError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(inner, max_input_length)
    }

    /// Wraps a tokenizer, replacing its padding and truncation settings.
    ///
    /// # Errors
    /// [`TokenizeError::Tokenizer`] when the truncation settings are rejected (e.g. a maximum
    /// shorter than the special tokens).
    pub fn new(mut inner: Tokenizer, max_input_length: usize) -> Result<Self, TokenizeError> {
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_input_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        Ok(Self {
            inner,
            max_input_length,
        })
    }

    /// Longest input in tokens, special tokens included.
    pub fn max_input_length(&self) -> usize {
        self.max_input_length
    }

    /// Token ids of one text, `[CLS] … [SEP]` included. `index` only names the text in errors.
    ///
    /// # Errors
    /// [`TokenizeError::TooLong`] when the text needed truncation and `truncate` is false.
    pub fn encode(
        &self,
        index: usize,
        text: &str,
        truncate: bool,
    ) -> Result<Vec<u32>, TokenizeError> {
        // `encode_fast` skips the character offsets, which embedding never needs.
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        if !truncate && !encoding.get_overflowing().is_empty() {
            return Err(TokenizeError::TooLong {
                index,
                max: self.max_input_length,
            });
        }
        Ok(encoding.get_ids().to_vec())
    }
}
