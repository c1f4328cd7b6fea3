//! Route handlers: parse the request shape, call [`crate::infer::Infer`], shape the answer.

use super::error::ApiError;
use super::extract::ApiJson;
use super::{AppState, ServedModel};
use crate::infer::{EmbedOptions, Embeddings};
use crate::modules::Task;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use loadgate_api::embed::{
    EmbedRequest, EmbedResponse, EmbeddingData, EncodingFormat, HealthResponse, HealthStatus,
    InfoResponse, OpenAiEmbedding, OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse, Usage,
};

fn served(state: &AppState) -> Result<&ServedModel, ApiError> {
    state.model().ok_or_else(ApiError::not_ready)
}

/// The served model when it is an embedder, with whether its stack normalises; a reranker is
/// answered 400 naming the routes it serves.
pub(super) fn embedder(state: &AppState) -> Result<(&ServedModel, bool), ApiError> {
    let model = served(state)?;
    match model.card.task {
        Task::Embed { normalize, .. } => Ok((model, normalize)),
        Task::Rerank { .. } => Err(ApiError::validation(
            StatusCode::BAD_REQUEST,
            "this model is a cross-encoder (reranker): it scores (query, text) pairs at POST /rerank \
             and POST /v1/rerank, and embeds nothing",
        )),
    }
}

/// `texts` with the prompt `name` (or the model's default prompt) prefixed, as
/// sentence-transformers' `encode(prompt_name=…)` does.
fn prompted(
    model: &ServedModel,
    name: Option<&str>,
    texts: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let prefix = (model.card.prompts.prefix(name))
        .map_err(|message| ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, message))?;
    Ok(match prefix {
        Some(prefix) if !prefix.is_empty() => texts
            .into_iter()
            .map(|text| format!("{prefix}{text}"))
            .collect(),
        _ => texts,
    })
}

/// `POST /embed` (and `POST /`, where TEI's clients post: `huggingface_hub`'s
/// `InferenceClient(model=URL).feature_extraction`, LangChain's TEI integration): the tutorial's
/// `{"texts"}` (answered with [`EmbedResponse`]) or TEI's `{"inputs"}` (answered with a bare
/// array of vectors, as TEI does).
pub async fn embed(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<EmbedRequest>,
) -> Result<Response, ApiError> {
    let EmbedRequest {
        texts,
        inputs,
        normalize,
        truncate,
        truncation_direction,
        prompt_name,
        dimensions,
    } = request;
    let unprocessable = |m: &str| ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, m);
    if truncation_direction
        .as_deref()
        .is_some_and(|d| !d.eq_ignore_ascii_case("right"))
    {
        return Err(unprocessable(
            "truncation_direction: only \"Right\" is served (long texts keep their start)",
        ));
    }
    let (texts, tutorial_shape) = match (texts, inputs) {
        (Some(texts), None) => (texts, true),
        (None, Some(inputs)) => (inputs.into_vec(), false),
        (Some(_), Some(_)) => {
            return Err(unprocessable("send either `texts` or `inputs`, not both"));
        }
        (None, None) => {
            return Err(unprocessable(
                "missing `texts` (a list of strings) or `inputs` (a string or a list of strings)",
            ));
        }
    };
    let (model, model_normalizes) = embedder(&state)?;
    let options = EmbedOptions {
        normalize: normalize.unwrap_or(model_normalizes),
        truncate: truncate.unwrap_or(true),
    };
    let texts = prompted(model, prompt_name.as_deref(), texts)?;
    if let Some(asked) = dimensions
        && asked != model.infer.dimensions()
    {
        return Err(unprocessable(&format!(
            "dimensions: this model produces {}-dimensional vectors, not {asked}",
            model.infer.dimensions()
        )));
    }
    let Embeddings { vectors, .. } = model.infer.embed(texts, options).await?;
    if tutorial_shape {
        let body = EmbedResponse {
            embeddings: vectors,
            model: state.config().model_name.clone(),
            dimensions: model.infer.dimensions(),
        };
        Ok(Json(body).into_response())
    } else {
        Ok(Json(vectors).into_response())
    }
}

/// `POST /v1/embeddings`: OpenAI-compatible.
pub async fn openai_embeddings(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<OpenAiEmbeddingsRequest>,
) -> Result<Json<OpenAiEmbeddingsResponse>, ApiError> {
    let (model, normalize) = embedder(&state)?;
    let dimensions = model.infer.dimensions();
    if let Some(asked) = request.dimensions
        && asked != dimensions
    {
        return Err(ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "dimensions: this model produces {dimensions}-dimensional vectors, not {asked}"
            ),
        ));
    }
    let texts = prompted(model, None, request.input.into_vec())?;
    let options = EmbedOptions {
        normalize,
        truncate: true,
    };
    let Embeddings {
        vectors,
        prompt_tokens,
    } = model.infer.embed(texts, options).await?;
    let base64 = request.encoding_format == Some(EncodingFormat::Base64);
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| OpenAiEmbedding {
            object: "embedding".to_owned(),
            embedding: if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingData::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingData::Float(vector)
            },
            index,
        })
        .collect();
    Ok(Json(OpenAiEmbeddingsResponse {
        object: "list".to_owned(),
        data,
        model: state.config().model_name.clone(),
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

/// `GET /health`: 200 `ready` once the model is loaded and warmed up, 503 `not_ready` before.
/// Never waits behind inference, so a liveness probe with a short timeout stays green under load.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    if state.model().is_some() {
        (
            StatusCode::OK,
            Json(HealthResponse {
                status: HealthStatus::Ready,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthResponse {
                status: HealthStatus::NotReady,
            }),
        )
    }
}

/// `GET /info`: the served model and the limits it runs under.
pub async fn info(State(state): State<AppState>) -> Json<InfoResponse> {
    let config = state.config();
    let model = state.model();
    let limits = model.map(|m| m.infer.limits()).unwrap_or(config.limits);
    Json(InfoResponse {
        model_id: config.model_name.clone(),
        dimensions: model.map_or(0, |m| m.infer.dimensions()),
        max_input_length: model.map_or(0, |m| m.infer.max_input_length()),
        pooling: model
            .map_or("unknown", |m| match &m.card.task {
                Task::Embed { pooling, .. } => pooling.as_str(),
                Task::Rerank { .. } => "none",
            })
            .to_owned(),
        architecture: model.map_or("unknown", |m| m.card.architecture).to_owned(),
        task: model.map_or("embed", |m| m.card.task.kind()).to_owned(),
        prompts: model
            .map(|m| m.card.prompts.named.clone())
            .unwrap_or_default(),
        default_prompt_name: model.and_then(|m| m.card.prompts.default.clone()),
        dtype: model.map_or("unknown", |m| m.dtype).to_owned(),
        max_batch_tokens: limits.max_batch_tokens,
        max_batch_size: limits.max_batch_size,
        max_client_batch_size: limits.max_client_batch_size,
        max_concurrent_requests: limits.max_concurrent_requests,
        inference_workers: limits.inference_workers,
        threads_per_worker: limits.threads_per_worker,
        ready: model.is_some(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// `GET /metrics`: Prometheus / OpenMetrics text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
}
