//! The rerank routes of a cross-encoder: `POST /rerank` in TEI's shape and `POST /v1/rerank`
//! (also `/v2/rerank`) in Cohere's and Jina's. Both score every text against the query through
//! [`crate::infer::Infer::rerank`] (admitted, batched and bounded as embeddings are, with the same
//! error table) and answer best first. A score is sentence-transformers' `CrossEncoder.predict`:
//! the model's activation (Sigmoid for a one-label reranker) on its logit, or the logit itself
//! when TEI's `raw_scores` is true.

use super::AppState;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::modules::{ScoreActivation, Task};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// Body of TEI's `POST /rerank`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeiRerankRequest {
    /// The query every text is scored against.
    pub query: String,
    /// The texts to score.
    pub texts: Vec<String>,
    /// Answer the logits as they are, not through the model's activation (default false).
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text in its answer (default false).
    #[serde(default)]
    pub return_text: bool,
    /// Truncate pairs longer than the model's maximum (default true); when false they get 413.
    pub truncate: Option<bool>,
    /// Which end of a long pair is cut: only `Right` is served.
    pub truncation_direction: Option<String>,
}

/// One scored text of TEI's answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TeiRank {
    /// Position of the text in the request.
    pub index: usize,
    /// Its score.
    pub score: f32,
    /// The text, when `return_text` asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A document of Cohere's and Jina's requests: a string, or `{"text": …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Document {
    /// A bare string.
    Text(String),
    /// An object with the text.
    Object {
        /// The text.
        text: String,
    },
}

/// Body of `POST /v1/rerank` and `/v2/rerank` (Cohere, Jina).
#[derive(Debug, Deserialize)]
pub struct CohereRerankRequest {
    /// The model asked for; any name is answered by the one served.
    pub model: Option<String>,
    /// The query.
    pub query: String,
    /// The documents to score.
    pub documents: Vec<Document>,
    /// Answer only the best `top_n`.
    pub top_n: Option<usize>,
    /// Echo each document in its result.
    #[serde(default)]
    pub return_documents: bool,
}

/// One result of Cohere's and Jina's answers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CohereResult {
    /// Position of the document in the request.
    pub index: usize,
    /// Its score, through the model's activation.
    pub relevance_score: f32,
    /// The document, when `return_documents` asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<CohereDocument>,
}

/// An echoed document.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CohereDocument {
    /// Its text.
    pub text: String,
}

/// Tokens of Cohere's and Jina's answers.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RerankUsage {
    /// Tokens fed to the model, every pair's special tokens included.
    pub total_tokens: usize,
}

/// Answer of `POST /v1/rerank`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CohereRerankResponse {
    /// The served model's name.
    pub model: String,
    /// Best first.
    pub results: Vec<CohereResult>,
    /// Tokens fed.
    pub usage: RerankUsage,
}

/// `(index, score)` of each text against `query`, best first, each logit through the model's
/// activation unless `raw`; and the tokens fed.
async fn scores(
    state: &AppState,
    query: String,
    texts: Vec<String>,
    truncate: bool,
    raw: bool,
) -> Result<(Vec<(usize, f32)>, usize), ApiError> {
    let model = state.model().ok_or_else(ApiError::not_ready)?;
    let Task::Rerank { activation, .. } = model.card.task else {
        return Err(ApiError::validation(
            StatusCode::BAD_REQUEST,
            "this model is an embedder: it answers POST /embed and POST /v1/embeddings; rerank \
             needs a cross-encoder (a *ForSequenceClassification checkpoint)",
        ));
    };
    let answer = model.infer.rerank(query, texts, truncate).await?;
    let mut ranked: Vec<(usize, f32)> = answer
        .vectors
        .iter()
        .enumerate()
        .map(|(index, logits)| {
            let logit = logits.first().copied().unwrap_or(f32::NAN);
            let score = match activation {
                _ if raw => logit,
                ScoreActivation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
                ScoreActivation::Identity => logit,
            };
            (index, score)
        })
        .collect();
    // Best first; equal scores keep request order.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok((ranked, answer.prompt_tokens))
}

/// `POST /rerank`: TEI's shape, `[{"index", "score"}]` best first.
pub async fn tei(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TeiRerankRequest>,
) -> Result<Json<Vec<TeiRank>>, ApiError> {
    if (request.truncation_direction.as_deref()).is_some_and(|d| !d.eq_ignore_ascii_case("right")) {
        return Err(ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            "truncation_direction: only \"Right\" is served (long texts keep their start)",
        ));
    }
    let texts = request.texts;
    let echo = request.return_text.then(|| texts.clone());
    let truncate = request.truncate.unwrap_or(true);
    let (ranked, _) = scores(&state, request.query, texts, truncate, request.raw_scores).await?;
    Ok(Json(
        ranked
            .into_iter()
            .map(|(index, score)| TeiRank {
                index,
                score,
                text: echo.as_ref().map(|texts| texts[index].clone()),
            })
            .collect(),
    ))
}

/// `POST /v1/rerank` and `/v2/rerank`: Cohere's and Jina's shape, `{"results": [{"index",
/// "relevance_score"}]}` best first, cut to `top_n`.
pub async fn cohere(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CohereRerankRequest>,
) -> Result<Json<CohereRerankResponse>, ApiError> {
    if request.top_n == Some(0) {
        return Err(ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            "top_n: must be at least 1",
        ));
    }
    let texts: Vec<String> = (request.documents.into_iter())
        .map(|document| match document {
            Document::Text(text) | Document::Object { text } => text,
        })
        .collect();
    let echo = request.return_documents.then(|| texts.clone());
    let (mut ranked, total_tokens) = scores(&state, request.query, texts, true, false).await?;
    ranked.truncate(request.top_n.unwrap_or(usize::MAX));
    Ok(Json(CohereRerankResponse {
        model: state.config().model_name.clone(),
        results: ranked
            .into_iter()
            .map(|(index, relevance_score)| CohereResult {
                index,
                relevance_score,
                document: echo.as_ref().map(|texts| CohereDocument {
                    text: texts[index].clone(),
                }),
            })
            .collect(),
        usage: RerankUsage { total_tokens },
    }))
}
