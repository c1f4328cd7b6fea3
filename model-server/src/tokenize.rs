//! Turns texts into token ids with the model's own `tokenizer.json`, under the server's length
//! policy: no padding here (the backend pads each batch to its longest member), and truncation at
//! the model's maximum sequence length, or a refusal when the caller asked for `truncate: false`.
//!
//! all-MiniLM-L6-v2's `tokenizer.json` ships `truncation.max_length = 128` and `padding =
//! Fixed(128)`; sentence-transformers ignores both and truncates at `max_seq_length` (256), so we
//! replace them.
//!
//! A cross-encoder reads a (query, text) pair as one sequence ([`TextTokenizer::encode_pair`]):
//! the tokenizer's pair template (`[CLS] q [SEP] t [SEP]`, `<s> q </s></s> t </s>`), both texts
//! cut longest-first to fit. Its token type ids travel with the ids: a token of the second text
//! carries the [`SECOND_TEXT`] bit, which the encoder reads as token type 1 and strips ([`TOKEN_ID`]).

use std::path::Path;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Bytes of text kept per token of the maximum input length. WordPiece text averages 4–6 bytes
/// per token (a word and its space), so a cut at 128 bytes per token keeps ~20x more text than
/// the model reads and the first `max_input_length` tokens are those of the whole text; only a
/// text sparser than one token per 128 bytes (runs of whitespace, words of over 100 characters,
/// which are one `[UNK]` each) is embedded from its first bytes alone.
pub const MAX_BYTES_PER_TOKEN: usize = 128;

/// `text` cut to at most `max_bytes` at a char boundary, and back to the last whitespace before
/// it so no word is split (a split word would tokenize differently); whether it was cut.
pub fn cut(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if let Some(space) = text[..end].rfind(char::is_whitespace) {
        end = space;
    }
    (&text[..end], true)
}

/// Marks a token id as part of a pair's second text (token type 1). Vocabularies are far below
/// 2^31 entries, so the bit is free; the encoder masks it off with [`TOKEN_ID`].
pub const SECOND_TEXT: u32 = 1 << 31;

/// The bits of a marked id that are the token id.
pub const TOKEN_ID: u32 = !SECOND_TEXT;

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
    lowercase: bool,
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
            lowercase: false,
        })
    }

    /// Lower-cases every text before tokenizing, as sentence-transformers does for a model whose
    /// `sentence_bert_config.json` says `do_lower_case`.
    #[must_use]
    pub fn lowercasing(mut self, lowercase: bool) -> Self {
        self.lowercase = lowercase;
        self
    }

    /// Longest input in tokens, special tokens included.
    pub fn max_input_length(&self) -> usize {
        self.max_input_length
    }

    /// Longest text, in bytes, that is tokenized whole; longer texts are cut first (see
    /// [`cut`]).
    pub fn max_text_bytes(&self) -> usize {
        self.max_input_length.saturating_mul(MAX_BYTES_PER_TOKEN)
    }

    /// Token ids of one text, `[CLS] … [SEP]` included. `index` only names the text in errors.
    /// A text longer than [`Self::max_text_bytes`] is cut there (at a word boundary) before it
    /// is tokenized, so its cost is bounded whatever its size.
    ///
    /// # Errors
    /// [`TokenizeError::TooLong`] when the text needed truncation (or was cut) and `truncate`
    /// is false.
    pub fn encode(
        &self,
        index: usize,
        text: &str,
        truncate: bool,
    ) -> Result<Vec<u32>, TokenizeError> {
        let (text, was_cut) = cut(text, self.max_text_bytes());
        let lowered;
        let text = if self.lowercase {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        // `encode_fast` skips the character offsets, which embedding never needs.
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        if !truncate && (was_cut || !encoding.get_overflowing().is_empty()) {
            return Err(TokenizeError::TooLong {
                index,
                max: self.max_input_length,
            });
        }
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of the pair (`query`, `text`) as a cross-encoder reads it, the second text's ids
    /// marked [`SECOND_TEXT`] where the tokenizer gives them token type 1. Both texts are cut as
    /// [`Self::encode`] cuts one, then truncated longest-first to the maximum input length.
    ///
    /// # Errors
    /// [`TokenizeError::TooLong`] (naming `index`) when the pair needed truncation and `truncate`
    /// is false.
    pub fn encode_pair(
        &self,
        index: usize,
        query: &str,
        text: &str,
        truncate: bool,
    ) -> Result<Vec<u32>, TokenizeError> {
        let (query, query_cut) = cut(query, self.max_text_bytes());
        let (text, text_cut) = cut(text, self.max_text_bytes());
        let (query, text) = if self.lowercase {
            (query.to_lowercase(), text.to_lowercase())
        } else {
            (query.to_owned(), text.to_owned())
        };
        let encoding = self
            .inner
            .encode_fast((query, text), true)
            .map_err(|e| TokenizeError::Tokenizer(e.to_string()))?;
        if !truncate && (query_cut || text_cut || !encoding.get_overflowing().is_empty()) {
            return Err(TokenizeError::TooLong {
                index,
                max: self.max_input_length,
            });
        }
        Ok(encoding
            .get_ids()
            .iter()
            .zip(encoding.get_type_ids())
            .map(|(&id, &kind)| if kind == 0 { id } else { id | SECOND_TEXT })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_texts_are_cut_at_a_word_boundary_within_the_bound() {
        assert_eq!(cut("short text", 100), ("short text", false));
        let (kept, was_cut) = cut("alpha beta gamma", 13);
        assert_eq!((kept, was_cut), ("alpha beta", true));
        // Never inside a multi-byte character, even without whitespace.
        let (kept, was_cut) = cut("ééééé", 5);
        assert!(was_cut && kept.len() <= 5 && kept.chars().all(|c| c == 'é'));
        let huge = "word ".repeat(200_000);
        let (kept, _) = cut(&huge, 32 * 1024);
        assert!(kept.len() <= 32 * 1024 && kept.ends_with("word"));
    }
}
