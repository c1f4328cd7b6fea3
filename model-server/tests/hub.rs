//! `--model owner/name`: model files are downloaded from a Hub endpoint (here a fake Hub on
//! loopback), cached, and reused; an unreachable Hub fails with a message that says what to do.

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use model_server::model::{self, Hub, ModelError, Pooling};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct FakeHub {
    files: HashMap<String, &'static str>,
    hits: AtomicUsize,
}

async fn resolve_file(
    State(hub): State<Arc<FakeHub>>,
    UrlPath((owner, name, file)): UrlPath<(String, String, String)>,
) -> Result<&'static str, StatusCode> {
    hub.hits.fetch_add(1, Ordering::SeqCst);
    if format!("{owner}/{name}") != "acme/tiny-bert" {
        return Err(StatusCode::NOT_FOUND);
    }
    hub.files.get(&file).copied().ok_or(StatusCode::NOT_FOUND)
}

async fn start_fake_hub(files: &[(&str, &'static str)]) -> (String, Arc<FakeHub>) {
    let hub = Arc::new(FakeHub {
        files: files.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        hits: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/{owner}/{name}/resolve/main/{*file}", get(resolve_file))
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hub)
}

fn temp_cache(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ms-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_ids_are_downloaded_once_and_cached() {
    let (endpoint, fake) = start_fake_hub(&[
        ("config.json", r#"{"model_type": "bert"}"#),
        ("model.safetensors", "weights"),
        ("tokenizer.json", "{}"),
        (
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token": true}"#,
        ),
        ("sentence_bert_config.json", r#"{"max_seq_length": 128}"#),
    ])
    .await;
    let hub = Hub {
        endpoint,
        token: Some("hf_test".into()),
        cache_dir: temp_cache("ok"),
    };
    let first = {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || model::resolve("acme/tiny-bert", &hub))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        (first.pooling(), first.modules.max_seq_length),
        (Some(Pooling::Cls), Some(128))
    );
    assert_eq!(std::fs::read_to_string(&first.weights).unwrap(), "weights");
    // 5 files served + modules.json, config_sentence_transformers.json and tokenizer_config.json
    // answered 404 (optional, skipped).
    assert_eq!(fake.hits.load(Ordering::SeqCst), 8);

    let again = {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || model::resolve("acme/tiny-bert", &hub))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(again.dir, first.dir);
    assert_eq!(
        fake.hits.load(Ordering::SeqCst),
        11,
        "only the absent optional files are asked again"
    );

    let unknown = tokio::task::spawn_blocking(move || model::resolve("acme/other", &hub))
        .await
        .unwrap();
    let err = unknown.unwrap_err();
    assert!(
        matches!(err, ModelError::Download { ref file, .. } if file == "config.json"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_says_to_use_a_local_directory() {
    let hub = Hub {
        endpoint: "http://127.0.0.1:1".into(),
        token: None,
        cache_dir: temp_cache("down"),
    };
    let err = tokio::task::spawn_blocking(move || {
        model::resolve("sentence-transformers/all-MiniLM-L6-v2", &hub)
    })
    .await
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot download config.json"), "{err}");
    assert!(err.contains("local directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modules_of_modules_json_are_downloaded_from_their_folders() {
    let modules = r#"[
      {"path": "", "type": "sentence_transformers.models.Transformer"},
      {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
      {"path": "2_Dense", "type": "sentence_transformers.models.Dense"},
      {"path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]"#;
    let (endpoint, _fake) = start_fake_hub(&[
        ("config.json", r#"{"model_type": "xlm-roberta"}"#),
        ("model.safetensors", "weights"),
        ("tokenizer.json", "{}"),
        ("modules.json", modules),
        ("1_Pooling/config.json", r#"{"pooling_mode": "mean"}"#),
        (
            "2_Dense/config.json",
            r#"{"in_features": 384, "out_features": 256}"#,
        ),
        ("2_Dense/model.safetensors", "dense weights"),
    ])
    .await;
    let hub = Hub {
        endpoint,
        token: None,
        cache_dir: temp_cache("modules"),
    };
    let files = tokio::task::spawn_blocking(move || model::resolve("acme/tiny-bert", &hub))
        .await
        .unwrap()
        .unwrap();
    let dense = files.dir.join("2_Dense/model.safetensors");
    assert_eq!(std::fs::read_to_string(dense).unwrap(), "dense weights");
    let model_server::modules::Task::Embed {
        dense, normalize, ..
    } = &files.modules.task
    else {
        panic!("an embedder: {:?}", files.modules.task)
    };
    assert_eq!(
        (dense.len(), dense[0].out_features, *normalize),
        (1, 256, true)
    );
}
