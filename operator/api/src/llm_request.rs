//! What an LLM task sends: an OpenAI-compatible chat or text completion ([`LlmRequest`]), its
//! prompt (synthetic of a given token length, [`PromptTokens`], or the team's dataset), and
//! whether the answer streams (server-sent events, the default: the runner then times the first
//! token and the gaps between tokens). vLLM, SGLang, TGI, llama.cpp, Ollama and OpenAI-compatible
//! gateways all speak these two shapes.

use serde::{Deserialize, Serialize};

/// Default path of a chat task (OpenAI's).
pub const CHAT_PATH: &str = "/v1/chat/completions";
/// Default path of a completion task (OpenAI's legacy completions).
pub const COMPLETION_PATH: &str = "/v1/completions";
/// Most output tokens a task may ask for.
pub const MAX_OUTPUT_TOKENS: u32 = 131_072;
/// Most prompt tokens a synthetic prompt may have.
pub const MAX_PROMPT_TOKENS: u32 = 131_072;

/// An OpenAI-compatible LLM request (`chat` or `completion`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmRequest {
    /// Path (default `/v1/chat/completions` for `chat`, `/v1/completions` for `completion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The model to ask for (OpenAI's `model`; some servers ignore it, most require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 256)))]
    pub model: Option<String>,
    /// Most tokens to generate (`max_tokens`, default 128).
    #[serde(default = "default_max_tokens")]
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 131072)))]
    pub max_tokens: u32,
    /// Stream the answer as server-sent events (default true): time to first token, the gaps
    /// between tokens and time per output token are then measured. A request that does not
    /// stream has its whole latency as time to first token, and no inter-token figures.
    #[serde(default = "default_stream")]
    pub stream: bool,
    /// Sampling temperature (`temperature`; default: the server's). 0 makes answers repeatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(range(min = 0, max = 2)))]
    pub temperature: Option<f64>,
    /// Synthetic prompts from the seeded corpus, of an estimated length drawn between these
    /// token counts. Left out: prompts come from `spec.dataset` (JSONL lines with `prompt` or
    /// `messages`) when the test has one, else synthetic ones of 64 to 256 tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptTokens>,
}

fn default_max_tokens() -> u32 {
    128
}

fn default_stream() -> bool {
    true
}

/// The token length of synthetic prompts (estimated: whitespace words and word pieces; the
/// server's own count, from `usage`, is what the report gives as input tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptTokens {
    /// Fewest tokens (≥ 1).
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 131072)))]
    pub min_tokens: u32,
    /// Most tokens (≥ `minTokens`).
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 131072)))]
    pub max_tokens: u32,
}

/// Synthetic prompt length when neither `prompt` nor a dataset says.
pub const DEFAULT_PROMPT_TOKENS: PromptTokens = PromptTokens {
    min_tokens: 64,
    max_tokens: 256,
};

impl LlmRequest {
    /// A streaming request of at most `max_tokens` tokens, other fields at their defaults.
    pub fn streaming(max_tokens: u32) -> Self {
        Self {
            path: None,
            model: None,
            max_tokens,
            stream: true,
            temperature: None,
            prompt: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_stream_128_tokens() {
        let r: LlmRequest = serde_json::from_str(r#"{"model":"m"}"#).unwrap();
        assert_eq!((r.max_tokens, r.stream, r.path), (128, true, None));
        let r: LlmRequest =
            serde_json::from_str(r#"{"stream":false,"prompt":{"minTokens":10,"maxTokens":20}}"#)
                .unwrap();
        assert!(!r.stream);
        assert_eq!(r.prompt.unwrap().max_tokens, 20);
        assert!(serde_json::from_str::<LlmRequest>(r#"{"maxToken":1}"#).is_err());
    }
}
