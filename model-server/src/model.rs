//! Finds a model's files and reads its sentence-transformers configuration.
//!
//! `--model` is either a local directory (what `scripts/setup.sh` unpacks under `models/`, or what
//! a pod mounts) or a Hugging Face Hub id such as `sentence-transformers/all-MiniLM-L6-v2`, which is
//! downloaded into a cache where the network allows. Either way the result is a [`ModelFiles`]:
//! paths plus what sentence-transformers' own files say the server computes ([`Modules`]: the
//! architecture, pooling, Dense layers, normalisation, prompts and the maximum sequence length,
//! which is 256 for all-MiniLM-L6-v2 even though its `tokenizer.json` says 128).

pub use crate::modules::{Modules, Pooling};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors while locating or reading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `--model` names neither an existing directory nor a Hub id.
    #[error(
        "model directory {0} does not exist: run `scripts/setup.sh` to fetch all-MiniLM-L6-v2 into \
         models/, or pass --model a directory holding config.json, model.safetensors and tokenizer.json"
    )]
    NotFound(PathBuf),
    /// A required file is missing from the model directory.
    #[error(
        "model directory {dir} has no {file}; it needs config.json, model.safetensors and tokenizer.json"
    )]
    MissingFile {
        /// The directory searched.
        dir: PathBuf,
        /// The missing file.
        file: &'static str,
    },
    /// A configuration file could not be read or parsed.
    #[error("cannot read {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A configuration file asks for something this server does not compute as
    /// sentence-transformers would.
    #[error("{path}: {field}: {why}", path = path.display())]
    Unsupported {
        /// The file (or directory).
        path: PathBuf,
        /// The field in it.
        field: String,
        /// What is asked and what is served.
        why: String,
    },
    /// Downloading from the Hub failed (no network, unknown repo, missing file).
    #[error(
        "cannot download {file} of {repo} from {endpoint}: {reason}. Where the network is closed, \
         fetch the model another way and pass --model a local directory (see scripts/setup.sh)"
    )]
    Download {
        /// The Hub repository id.
        repo: String,
        /// The file.
        file: String,
        /// The Hub endpoint used (`HF_ENDPOINT`).
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// Everything the server needs to know about a model on disk.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Directory the files are in.
    pub dir: PathBuf,
    /// `config.json` (the encoder's hyper-parameters).
    pub config: PathBuf,
    /// `model.safetensors` (weights).
    pub weights: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// What the sentence-transformers files say to compute.
    pub modules: Modules,
}

impl ModelFiles {
    /// The embedder's pooling; `None` for a cross-encoder.
    pub fn pooling(&self) -> Option<Pooling> {
        match self.modules.task {
            crate::modules::Task::Embed { pooling, .. } => Some(pooling),
            crate::modules::Task::Rerank { .. } => None,
        }
    }
}

const REQUIRED: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
const OPTIONAL: [&str; 5] = [
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "tokenizer_config.json",
];

/// Where and how Hub ids are downloaded.
#[derive(Clone)]
pub struct Hub {
    /// Base URL, `https://huggingface.co` unless `HF_ENDPOINT` names a mirror.
    pub endpoint: String,
    /// Bearer token for gated or private models (`HF_TOKEN`).
    pub token: Option<String>,
    /// Directory downloads are kept in, one folder per repo.
    pub cache_dir: PathBuf,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

/// Resolves `--model`: a local directory, else a Hub id downloaded through `hub`.
///
/// # Errors
/// [`ModelError`] naming the missing directory or file, or why the download failed.
pub fn resolve(model: &str, hub: &Hub) -> Result<ModelFiles, ModelError> {
    let local = Path::new(model);
    if local.is_dir() {
        return read_dir(local);
    }
    if looks_like_hub_id(model) {
        let dir = download(model, hub)?;
        return read_dir(&dir);
    }
    Err(ModelError::NotFound(local.to_path_buf()))
}

/// `owner/name` with no path-like parts: what the Hub accepts as a repo id.
fn looks_like_hub_id(model: &str) -> bool {
    let mut parts = model.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(owner) && ok(name)
}

/// Reads a model directory's files and sentence-transformers settings.
pub fn read_dir(dir: &Path) -> Result<ModelFiles, ModelError> {
    for file in REQUIRED {
        if !dir.join(file).is_file() {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                file,
            });
        }
    }
    let modules = crate::modules::read(dir)?;
    Ok(ModelFiles {
        dir: dir.to_path_buf(),
        config: dir.join("config.json"),
        weights: dir.join("model.safetensors"),
        tokenizer: dir.join("tokenizer.json"),
        modules,
    })
}

/// Reads and parses one JSON configuration file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let config_err = |source: Box<dyn std::error::Error + Send + Sync>| ModelError::Config {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(|e| config_err(e.into()))?;
    serde_json::from_slice(&bytes).map_err(|e| config_err(e.into()))
}

/// Downloads a Hub repo's model files into `<cache_dir>/<owner>--<name>/`, once: files already
/// there are kept, and a file appears only when complete.
fn download(repo: &str, hub: &Hub) -> Result<PathBuf, ModelError> {
    let endpoint = hub.endpoint.trim_end_matches('/').to_owned();
    let token = hub.token.as_deref();
    let dir = hub.cache_dir.join(repo.replace('/', "--"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let fail = |file: &str, reason: String| ModelError::Download {
        repo: repo.to_owned(),
        file: file.to_owned(),
        endpoint: endpoint.clone(),
        reason,
    };
    // Downloads `file` unless it is there already; a 404 on an optional one is skipped.
    let fetch = |file: &str, required: bool| -> Result<(), ModelError> {
        let target = dir.join(file);
        if target.is_file() {
            return Ok(());
        }
        let url = format!("{endpoint}/{repo}/resolve/main/{file}");
        let mut request = agent.get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::StatusCode(404)) if !required => return Ok(()),
            Err(e) => return Err(fail(file, e.to_string())),
        };
        let parent = target
            .parent()
            .expect("a file under the cache dir has a parent; this is a bug");
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(file, format!("create {}: {e}", parent.display())))?;
        // Write beside the target and rename, so an interrupted download never looks complete.
        let partial = target.with_extension("partial");
        let mut out = std::fs::File::create(&partial)
            .map_err(|e| fail(file, format!("create {}: {e}", partial.display())))?;
        std::io::copy(&mut response.body_mut().as_reader(), &mut out)
            .and_then(|_| out.flush())
            .map_err(|e| fail(file, e.to_string()))?;
        std::fs::rename(&partial, &target).map_err(|e| fail(file, e.to_string()))?;
        tracing::info!(repo, file, "downloaded model file");
        Ok(())
    };
    for file in REQUIRED {
        fetch(file, true)?;
    }
    for file in OPTIONAL {
        fetch(file, false)?;
    }
    // The files of the modules modules.json lists in their own folders (2_Dense/, …).
    for file in crate::modules::module_files(&dir)? {
        fetch(&file, true)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_told_from_paths() {
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(!looks_like_hub_id("models/all-MiniLM-L6-v2/extra"));
        assert!(!looks_like_hub_id("./models"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("plain"));
    }

    #[test]
    fn missing_directory_says_how_to_fetch() {
        let hub = Hub {
            endpoint: "http://127.0.0.1:1".into(),
            token: None,
            cache_dir: "/tmp".into(),
        };
        let err = resolve("no/such-dir/here", &hub).unwrap_err();
        assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = std::env::temp_dir().join(format!("ms-model-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let err = read_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pooling_modes_are_read() {
        let dir = std::env::temp_dir().join(format!("ms-pool-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        for f in REQUIRED {
            std::fs::write(dir.join(f), r#"{"model_type": "bert"}"#).unwrap();
        }
        std::fs::write(
            dir.join("sentence_bert_config.json"),
            r#"{"max_seq_length": 256}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true}"#,
        )
        .unwrap();
        let files = read_dir(&dir).unwrap();
        assert_eq!(
            (files.pooling(), files.modules.max_seq_length),
            (Some(Pooling::Cls), Some(256))
        );
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_max_tokens": true, "pooling_mode_cls_token": true}"#,
        )
        .unwrap();
        assert!(matches!(
            read_dir(&dir),
            Err(ModelError::Unsupported { field, .. }) if field == "pooling_mode_*"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
