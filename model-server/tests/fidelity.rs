//! Every architecture, pooling, head and prompt path model-server serves, against
//! sentence-transformers' own answers: the tiny checkpoints `tests/fidelity/make_tiny.py` makes
//! with transformers from a config and a seed (BERT and XLM-RoBERTa embedders with CLS, max and
//! mean pooling, a Dense layer, prompts, with and without Normalize; a BERT and an XLM-RoBERTa
//! cross-encoder), each served through the real load path and HTTP routes:
//! - f32: token counts equal, every component and every score within 1e-5;
//! - int8 (on CPUs with AVX512-VNNI; elsewhere it must be refused): cosine ≥ 0.999 to the
//!   reference vectors, scores and logits within 2% (of the logit's size where it is over 1).
//!
//! The models live in `$LOADGATE_TINY_MODELS` (default `target/tiny-models`, which
//! `scripts/test.sh` fills); without them this fails, saying how to make them.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use model_server::config::Args;
use model_server::http::{AppState, app};
use model_server::infer::InferTasks;
use model_server::metrics::Metrics;
use model_server::testing::test_http_config;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

#[derive(Deserialize)]
struct Reference {
    kind: String,
    texts: Vec<String>,
    tokens: Vec<usize>,
    #[serde(default)]
    normalized: bool,
    #[serde(default)]
    cases: Vec<EmbedCase>,
    #[serde(default)]
    query: String,
    #[serde(default)]
    scores: Vec<f32>,
    #[serde(default)]
    logits: Vec<f32>,
}

#[derive(Deserialize)]
struct EmbedCase {
    prompt_name: Option<String>,
    embeddings: Vec<Vec<f32>>,
}

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("LOADGATE_TINY_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tiny-models"));
    assert!(
        dir.join("bert-reranker/reference.json").is_file(),
        "the tiny fidelity models are not in {}: make them with \
         `bench/setup-python.sh && bench/.venv/bin/python model-server/tests/fidelity/make_tiny.py {}` \
         (scripts/test.sh does), or set LOADGATE_TINY_MODELS",
        dir.display(),
        dir.display()
    );
    dir
}

fn reference(model: &str) -> Reference {
    let path = models_dir().join(model).join("reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The model served as `model-server --model DIR FLAGS…` serves it, behind the real router.
async fn serve(model: &str, flags: &[&str]) -> Result<(Router, InferTasks), String> {
    let dir = models_dir().join(model);
    let mut argv = vec!["model-server", "--model", dir.to_str().unwrap()];
    argv.extend_from_slice(flags);
    let args = Args::try_parse_from(argv).unwrap();
    let limits = args.limits();
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(test_http_config(limits), metrics.clone());
    let (served, tasks) = model_server::load_model(args, limits, metrics, Instant::now())
        .await
        .map_err(|e| format!("{e:#}"))?;
    state.set_ready(served);
    Ok((app(state), tasks))
}

async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn get(app: &Router, path: &str) -> Value {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn vectors(answer: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(answer.clone()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Largest component difference over all texts, and the lowest cosine.
fn compare(got: &[Vec<f32>], want: &[Vec<f32>]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    let mut max_diff = 0f32;
    let mut min_cos = 1f32;
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "dimensions");
        for (x, y) in g.iter().zip(w) {
            max_diff = max_diff.max((x - y).abs());
        }
        min_cos = min_cos.min(cosine(g, w));
    }
    (max_diff, min_cos)
}

/// The embedder's vectors for every prompt case (all texts in one request, and the token count
/// of each text alone), within `tolerance` per component or, with `min_cosine`, by cosine.
async fn check_embedder(model: &str, flags: &[&str], tolerance: f32, min_cosine: f32) {
    let reference = reference(model);
    assert_eq!(reference.kind, "embed");
    let (app, _tasks) = serve(model, flags).await.unwrap();
    for case in &reference.cases {
        let mut body = json!({"inputs": reference.texts});
        if let Some(name) = &case.prompt_name {
            body["prompt_name"] = json!(name);
        }
        let (status, answer) = post(&app, "/embed", body).await;
        assert_eq!(status, StatusCode::OK, "{model}: {answer}");
        let (max_diff, min_cos) = compare(&vectors(&answer), &case.embeddings);
        println!(
            "fidelity {model} {flags:?} prompt {:?}: max |diff| {max_diff:.2e}, min cosine {min_cos:.7}",
            case.prompt_name
        );
        assert!(
            max_diff <= tolerance && min_cos >= min_cosine,
            "{model} prompt {:?}: max |diff| {max_diff:e} (≤ {tolerance:e}), min cosine {min_cos} (≥ {min_cosine})",
            case.prompt_name
        );
    }
    // Token counts, text by text, from the OpenAI route's usage (no prompt: the default is none).
    for (text, tokens) in reference.texts.iter().zip(&reference.tokens) {
        let (status, answer) = post(&app, "/v1/embeddings", json!({"input": text})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["usage"]["prompt_tokens"],
            json!(tokens),
            "{model}: tokens of {text:?}"
        );
    }
}

/// The cross-encoder's scores on both rerank routes: through the model's activation within
/// `tolerance`, and raw (`raw_scores`) within `tolerance` relative to the logit's size (at least 1).
async fn check_reranker(model: &str, flags: &[&str], tolerance: f32) {
    let reference = reference(model);
    assert_eq!(reference.kind, "rerank");
    let (app, _tasks) = serve(model, flags).await.unwrap();
    for (raw, want) in [(false, &reference.scores), (true, &reference.logits)] {
        let body = json!({"query": reference.query, "texts": reference.texts, "raw_scores": raw});
        let (status, answer) = post(&app, "/rerank", body).await;
        assert_eq!(status, StatusCode::OK, "{model}: {answer}");
        let ranks = answer.as_array().unwrap();
        assert_eq!(ranks.len(), want.len());
        let mut max_diff = 0f32;
        let mut previous = f32::INFINITY;
        for rank in ranks {
            let index = rank["index"].as_u64().unwrap() as usize;
            let score = rank["score"].as_f64().unwrap() as f32;
            assert!(score <= previous, "{model}: answered best first");
            previous = score;
            max_diff = max_diff.max((score - want[index]).abs() / want[index].abs().max(1.0));
        }
        println!("fidelity {model} {flags:?} raw_scores {raw}: max |diff| {max_diff:.2e}");
        assert!(
            max_diff <= tolerance,
            "{model} raw {raw}: max |diff| {max_diff:e} > {tolerance:e}"
        );
    }
    let body = json!({"query": reference.query, "documents": reference.texts, "top_n": 3, "return_documents": true});
    let (status, answer) = post(&app, "/v1/rerank", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "top_n");
    let mut best: Vec<(usize, f32)> = reference.scores.iter().copied().enumerate().collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1));
    for result in results {
        let index = result["index"].as_u64().unwrap() as usize;
        let score = result["relevance_score"].as_f64().unwrap() as f32;
        assert!(
            (score - reference.scores[index]).abs() <= tolerance,
            "{result}"
        );
        assert_eq!(result["document"]["text"], json!(reference.texts[index]));
    }
    // The pair's token count, text by text (Cohere's usage).
    for (text, tokens) in reference.texts.iter().zip(&reference.tokens) {
        let body = json!({"query": reference.query, "documents": [text]});
        let (_, answer) = post(&app, "/v1/rerank", body).await;
        assert_eq!(
            answer["usage"]["total_tokens"],
            json!(tokens),
            "{model}: tokens of {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bert_cls_pooling_with_prompts_matches_sentence_transformers() {
    check_embedder("bert-cls-prompts", &[], 1e-5, 0.99999).await;
    let (app, _tasks) = serve("bert-cls-prompts", &[]).await.unwrap();
    let info = get(&app, "/info").await;
    assert_eq!(
        (
            &info["architecture"],
            &info["task"],
            &info["pooling"],
            &info["prompts"]["query"]
        ),
        (
            &json!("bert"),
            &json!("embed"),
            &json!("cls"),
            &json!("query: ")
        ),
        "{info}"
    );
    assert_eq!(
        info["max_input_length"],
        json!(128),
        "from tokenizer_config.json"
    );
    let (status, answer) = post(&app, "/embed", json!({"inputs": "x", "prompt_name": "doc"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["error"].as_str().unwrap().contains("passage, query"),
        "{answer}"
    );
    let (status, answer) = post(&app, "/rerank", json!({"query": "q", "texts": ["a"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("embedder"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_prompt_applies_to_requests_that_name_none() {
    let reference = reference("bert-cls-prompts");
    let query = reference
        .cases
        .iter()
        .find(|c| c.prompt_name.as_deref() == Some("query"))
        .unwrap();
    let (app, _tasks) = serve("bert-cls-prompts", &["--default-prompt-name", "query"])
        .await
        .unwrap();
    let (_, answer) = post(&app, "/v1/embeddings", json!({"input": reference.texts})).await;
    let got: Vec<Vec<f32>> = (answer["data"].as_array().unwrap().iter())
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    let (max_diff, _) = compare(&got, &query.embeddings);
    assert!(
        max_diff <= 1e-5,
        "the query prompt by default: {max_diff:e}"
    );
    let error = serve("bert-cls-prompts", &["--default-prompt-name", "doc"])
        .await
        .err()
        .unwrap();
    assert!(
        error.contains("--default-prompt-name") && error.contains("doc"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bert_max_pooling_without_normalize_matches_sentence_transformers() {
    assert!(!reference("bert-max").normalized);
    check_embedder("bert-max", &[], 1e-5, 0.99999).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlm_roberta_mean_pooling_and_dense_match_sentence_transformers() {
    check_embedder("xlmr-mean-dense", &[], 1e-5, 0.99999).await;
    let (app, _tasks) = serve("xlmr-mean-dense", &[]).await.unwrap();
    let info = get(&app, "/info").await;
    assert_eq!(
        (&info["architecture"], &info["dimensions"], &info["pooling"]),
        (&json!("xlm-roberta"), &json!(256), &json!("mean")),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bert_cross_encoder_scores_match_sentence_transformers() {
    check_reranker("bert-reranker", &[], 1e-5).await;
    let (app, _tasks) = serve("bert-reranker", &[]).await.unwrap();
    let info = get(&app, "/info").await;
    assert_eq!(
        (&info["task"], &info["pooling"]),
        (&json!("rerank"), &json!("none")),
        "{info}"
    );
    let (status, answer) = post(&app, "/embed", json!({"inputs": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("/rerank"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlm_roberta_cross_encoder_scores_match_sentence_transformers() {
    check_reranker("xlmr-reranker", &[], 1e-5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_stays_close_on_every_architecture_or_is_refused() {
    if !model_server::backend::quantized::supported() {
        let error = serve("xlmr-mean-dense", &["--dtype", "int8"])
            .await
            .err()
            .unwrap();
        assert!(error.contains("AVX512-VNNI"), "{error}");
        println!("this CPU has no AVX512-VNNI: tested that --dtype int8 is refused");
        return;
    }
    let int8 = ["--dtype", "int8"];
    check_embedder("bert-cls-prompts", &int8, 1.0, 0.999).await;
    check_embedder("xlmr-mean-dense", &int8, 1.0, 0.999).await;
    check_reranker("bert-reranker", &int8, 0.02).await;
    check_reranker("xlmr-reranker", &int8, 0.02).await;
}
