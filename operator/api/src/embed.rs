//! Request and response bodies of the model server's HTTP API.
//!
//! Three request shapes are accepted, so existing clients work unchanged:
//! - the Python tutorial's `POST /embed` `{"texts": [...]}` → [`EmbedResponse`];
//! - Text Embeddings Inference's `POST /embed` `{"inputs": "..." | [...], "normalize", "truncate"}`
//!   → a bare JSON array of vectors, as TEI answers;
//! - OpenAI's `POST /v1/embeddings` `{"input", "model", "encoding_format"}` →
//!   [`OpenAiEmbeddingsResponse`].
//!
//! Errors are always [`ErrorResponse`] (TEI's `{"error", "error_type"}` shape).

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Body of `POST /embed` (and TEI's `POST /`): exactly one of `texts` (tutorial shape) or
/// `inputs` (TEI shape), with TEI's options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// Texts to embed (the Python tutorial's field). The answer is an [`EmbedResponse`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texts: Option<Vec<String>>,
    /// One text or a list of texts (TEI's field). The answer is a bare array of vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    /// L2-normalise each vector (default: whether the model's stack ends in sentence-transformers'
    /// Normalize module; true for a model without `modules.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    /// Truncate texts longer than the model's maximum sequence length (default true); when false,
    /// such a text is refused with 413 instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// TEI: which end of a long text is cut, `Right` (the only one served) or `Left`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation_direction: Option<String>,
    /// TEI: a named prompt (from the model's `config_sentence_transformers.json`) prepended to
    /// each text; default: the model's default prompt, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_name: Option<String>,
    /// TEI: vector length wanted; must be the model's own (no Matryoshka truncation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
}

/// One text or many: TEI's `inputs` and OpenAI's `input`.
///
/// Deserialisation is hand-written so that a wrong element type is reported precisely ("expected a
/// string") instead of serde's "did not match any variant of untagged enum".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Inputs {
    /// A single text.
    One(String),
    /// A list of texts, answered in the same order.
    Many(Vec<String>),
}

impl Inputs {
    /// The texts as a list, in input order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Inputs::One(text) => vec![text],
            Inputs::Many(texts) => texts,
        }
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputsVisitor;

        impl<'de> Visitor<'de> for InputsVisitor {
            type Value = Inputs;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Inputs, E> {
                Ok(Inputs::One(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Inputs, E> {
                Ok(Inputs::One(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
                let mut texts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(text) = seq.next_element::<TextItem>()? {
                    texts.push(text.0);
                }
                Ok(Inputs::Many(texts))
            }
        }

        deserializer.deserialize_any(InputsVisitor)
    }
}

/// One element of a text list; rejects token ids with a message saying what to send instead.
struct TextItem(String);

impl<'de> Deserialize<'de> for TextItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = TextItem;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (token-id inputs are not supported; send text)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextItem, E> {
                Ok(TextItem(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<TextItem, E> {
                Ok(TextItem(v))
            }
        }

        deserializer.deserialize_string(TextVisitor)
    }
}

/// Answer to the tutorial-shaped `POST /embed {"texts": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// One vector per input text, in input order.
    pub embeddings: Vec<Vec<f32>>,
    /// The served model's name.
    pub model: String,
    /// Length of each vector.
    pub dimensions: usize,
}

/// Body of `POST /v1/embeddings` (OpenAI-compatible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiEmbeddingsRequest {
    /// One text or a list of texts.
    pub input: Inputs,
    /// Model name; informational (the server serves one model and answers with its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32 bytes, what OpenAI's Python client asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Output dimensions; only the model's own dimension count is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// End-user id; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// How `/v1/embeddings` encodes each vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

/// Answer to `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiEmbeddingsResponse {
    /// Always `"list"`.
    pub object: String,
    /// One entry per input, in input order.
    pub data: Vec<OpenAiEmbedding>,
    /// The served model's name.
    pub model: String,
    /// Token counts.
    pub usage: Usage,
}

/// One vector of an [`OpenAiEmbeddingsResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiEmbedding {
    /// Always `"embedding"`.
    pub object: String,
    /// The vector, as floats or base64.
    pub embedding: EmbeddingData,
    /// Position of the input this vector belongs to.
    pub index: usize,
}

/// A vector as `/v1/embeddings` encodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingData {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Token usage of an embeddings call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens fed to the model, special tokens included.
    pub prompt_tokens: usize,
    /// Same as `prompt_tokens` for embeddings.
    pub total_tokens: usize,
}

/// Body of `GET /health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ready` (200) once the model is loaded and warmed up, `not_ready` (503) before.
    pub status: HealthStatus,
}

/// Readiness of the model server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Model loaded and warmed up: requests are served.
    Ready,
    /// Still loading or warming up: embedding requests get 503.
    NotReady,
}

/// Precision of model-server's dense layers: its `--dtype`, a ModelEndpoint's
/// `spec.server.dtype`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// f32 throughout.
    F32,
    /// int8 products on AVX512-VNNI, calibrated at load.
    Int8,
}

impl Dtype {
    /// The value of model-server's `--dtype` / `DTYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Int8 => "int8",
        }
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

fn embed_task() -> String {
    "embed".to_owned()
}

/// Body of `GET /info`: what is served and under which limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// The served model's name.
    pub model_id: String,
    /// Length of each vector (0 while the model is loading).
    pub dimensions: usize,
    /// Longest input in tokens, special tokens included; longer texts are truncated or refused.
    pub max_input_length: usize,
    /// Pooling of token vectors into one sentence vector (`mean`, `cls`, `max`, `lasttoken`,
    /// `mean_sqrt_len_tokens`; `none` for a reranker).
    pub pooling: String,
    /// The encoder family (`bert`, `xlm-roberta`); `unknown` while loading and from older servers.
    #[serde(default = "unknown")]
    pub architecture: String,
    /// What the model answers: `embed` (vectors at `/embed`, `/v1/embeddings`) or `rerank`
    /// (scores at `/rerank`, `/v1/rerank`); `embed` from older servers.
    #[serde(default = "embed_task")]
    pub task: String,
    /// Named prompts (`prompt_name` on `/embed`), each the prefix it adds.
    #[serde(default)]
    pub prompts: std::collections::BTreeMap<String, String>,
    /// The prompt a request that names none gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_prompt_name: Option<String>,
    /// Precision of the dense layers (`f32`, or `int8` with `--dtype int8`); `unknown` while
    /// loading, and from servers older than the field.
    #[serde(default = "unknown")]
    pub dtype: String,
    /// Most padded tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most texts in one forward pass.
    pub max_batch_size: usize,
    /// Most texts in one request.
    pub max_client_batch_size: usize,
    /// Most requests admitted at once (queued or running); more get 429.
    pub max_concurrent_requests: usize,
    /// Forward passes that run in parallel.
    pub inference_workers: usize,
    /// Threads each forward pass uses.
    pub threads_per_worker: usize,
    /// Whether the model is loaded and warmed up.
    pub ready: bool,
    /// The server's version.
    pub version: String,
}

/// Body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong, for a person: names the field or the limit involved.
    pub error: String,
    /// Machine-readable class of the error.
    pub error_type: ErrorType,
}

/// Class of an [`ErrorResponse`], TEI's vocabulary plus `not_ready` and `not_found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is malformed or breaks a limit (4xx).
    Validation,
    /// The server is at its admission limit (429): retry after `Retry-After`.
    Overloaded,
    /// The model is still loading (503).
    NotReady,
    /// No such route (404) or method (405).
    NotFound,
    /// The request took longer than the server's request timeout (408).
    Timeout,
    /// Inference failed (500).
    Backend,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_request_accepts_both_shapes() {
        let tutorial: EmbedRequest = serde_json::from_str(r#"{"texts":["a","b"]}"#).unwrap();
        assert_eq!(tutorial.texts, Some(vec!["a".into(), "b".into()]));
        let tei: EmbedRequest =
            serde_json::from_str(r#"{"inputs":"a","normalize":false,"truncate":false}"#).unwrap();
        assert_eq!(tei.inputs, Some(Inputs::One("a".into())));
        assert_eq!((tei.normalize, tei.truncate), (Some(false), Some(false)));
        let many: EmbedRequest = serde_json::from_str(r#"{"inputs":["a","b"]}"#).unwrap();
        assert_eq!(many.inputs.unwrap().into_vec(), vec!["a", "b"]);
    }

    #[test]
    fn non_string_items_are_named() {
        let err = serde_json::from_str::<EmbedRequest>(r#"{"inputs":["a",3]}"#).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        let err = serde_json::from_str::<EmbedRequest>(r#"{"texts":["a",null]}"#).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        let err = serde_json::from_str::<EmbedRequest>(r#"{"text":["a"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `text`"), "{err}");
    }

    #[test]
    fn openai_shapes_round_trip() {
        let req: OpenAiEmbeddingsRequest =
            serde_json::from_str(r#"{"input":["x"],"model":"m","encoding_format":"base64"}"#)
                .unwrap();
        assert_eq!(req.encoding_format, Some(EncodingFormat::Base64));
        let err =
            serde_json::from_str::<OpenAiEmbeddingsRequest>(r#"{"input":[[1,2]]}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("token-id inputs are not supported"),
            "{err}"
        );
        let health = serde_json::to_string(&HealthResponse {
            status: HealthStatus::NotReady,
        });
        assert_eq!(health.unwrap(), r#"{"status":"not_ready"}"#);
    }
}
