//! What a sentence-transformers model directory says the server must compute, read once at
//! start-up: the encoder's architecture (`config.json`'s `model_type`), whether it embeds or
//! scores pairs (`architectures`: `*ForSequenceClassification` is a cross-encoder), and for an
//! embedder the module stack of `modules.json` — `Transformer`, then `Pooling`
//! (`1_Pooling/config.json`), any `Dense` layers (`2_Dense/`), then `Normalize` — plus the
//! prompts of `config_sentence_transformers.json` and the length and casing of
//! `sentence_bert_config.json`.
//!
//! Anything the server would compute differently from sentence-transformers is refused here,
//! naming the file and the field: a module type it does not implement, a pooling mode it does not
//! implement or two at once, `include_prompt: false`, a Dense activation other than Tanh or
//! Identity, a position embedding type other than absolute, a model type other than BERT or
//! (XLM-)RoBERTa.

use crate::model::{ModelError, read_json};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The encoder family, from `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `bert`: positions from 0, token type ids (0, or 1 for a pair's second text).
    Bert,
    /// `xlm-roberta`, `roberta`: positions from `pad_token_id + 1`, one token type.
    XlmRoberta,
}

impl Architecture {
    /// The name `/info` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::XlmRoberta => "xlm-roberta",
        }
    }
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps, special tokens included.
    Mean,
    /// The first (`[CLS]` / `<s>`) token's vector.
    Cls,
    /// Each component's largest value over the kept tokens.
    Max,
    /// The last kept token's vector (`pooling_mode_lasttoken`).
    LastToken,
    /// The sum over the kept tokens divided by the square root of their count.
    MeanSqrtLen,
}

impl Pooling {
    /// The name `/info` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::LastToken => "lasttoken",
            Pooling::MeanSqrtLen => "mean_sqrt_len_tokens",
        }
    }
}

/// A Dense module's activation (`activation_function` in its `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// `torch.nn.modules.activation.Tanh` (sentence-transformers' default).
    Tanh,
    /// `torch.nn.modules.linear.Identity`.
    Identity,
}

/// One `Dense` module: `activation(W · x + b)` after pooling.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseModule {
    /// Its `model.safetensors` (`linear.weight`, `linear.bias`).
    pub weights: PathBuf,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// Whether it has `linear.bias`.
    pub bias: bool,
    /// Applied after the product.
    pub activation: DenseActivation,
}

/// A cross-encoder's score activation: sentence-transformers' `CrossEncoder` applies Sigmoid to a
/// one-label model's logit unless told otherwise (`config.json`'s
/// `sentence_transformers.activation_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreActivation {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// The raw logit.
    Identity,
}

/// What the model computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// A sentence embedder: pooling, Dense layers, then normalisation when `normalize`.
    Embed {
        /// The Pooling module.
        pooling: Pooling,
        /// Dense modules after pooling, in order.
        dense: Vec<DenseModule>,
        /// Whether the stack ends in `Normalize` (the default of a request's `normalize`).
        normalize: bool,
    },
    /// A cross-encoder: one score per (query, text) pair from the classifier head.
    Rerank {
        /// Outputs of the classifier: 1 (one relevance logit per pair); others are refused.
        labels: usize,
        /// Applied to the logit unless a request asks for raw scores.
        activation: ScoreActivation,
    },
}

impl Task {
    /// `embed` or `rerank`, as `/info` reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            Task::Embed { .. } => "embed",
            Task::Rerank { .. } => "rerank",
        }
    }
}

/// Prompts from `config_sentence_transformers.json`: named prefixes (`query: `) a request picks by
/// `prompt_name`, and the one used when it names none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompts {
    /// Name → prefix.
    pub named: BTreeMap<String, String>,
    /// `default_prompt_name` (or `--default-prompt-name`).
    pub default: Option<String>,
}

impl Prompts {
    /// The prefix `name` (or, with none, the default prompt) stands for; `Ok(None)` when no prompt
    /// applies.
    ///
    /// # Errors
    /// A name the model has no prompt for, with the names it has.
    pub fn prefix(&self, name: Option<&str>) -> Result<Option<&str>, String> {
        let Some(name) = name.or(self.default.as_deref()) else {
            return Ok(None);
        };
        self.named
            .get(name)
            .map(|p| Some(p.as_str()))
            .ok_or_else(|| {
                if self.named.is_empty() {
                    format!(
                        "prompt_name: this model has no prompts configured (asked for {name:?})"
                    )
                } else {
                    let names: Vec<&str> = self.named.keys().map(String::as_str).collect();
                    format!(
                        "prompt_name: no prompt named {name:?}; this model has {}",
                        names.join(", ")
                    )
                }
            })
    }
}

/// Everything [`read`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Modules {
    /// The encoder family.
    pub architecture: Architecture,
    /// Embed or rerank, and how.
    pub task: Task,
    /// Named prompts.
    pub prompts: Prompts,
    /// `sentence_bert_config.json`'s `max_seq_length`.
    pub max_seq_length: Option<usize>,
    /// `sentence_bert_config.json`'s `do_lower_case`: texts are lower-cased before tokenizing.
    pub lowercase: bool,
}

#[derive(Deserialize)]
struct ModelConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    position_embedding_type: Option<String>,
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
    sentence_transformers: Option<CrossEncoderConfig>,
}

#[derive(Deserialize)]
struct CrossEncoderConfig {
    activation_fn: Option<String>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    /// sentence-transformers ≥ 6: one mode name, or a list of them (concatenated).
    pooling_mode: Option<PoolingMode>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default = "yes")]
    include_prompt: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PoolingMode {
    One(String),
    Many(Vec<String>),
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    activation_function: Option<String>,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    /// Where sentence-transformers ≥ 6 keeps `max_seq_length` (a huge number when unset).
    model_max_length: Option<f64>,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize)]
struct SentenceTransformersConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
    /// A cross-encoder's score activation (sentence-transformers ≥ 6 keeps it here).
    activation_fn: Option<String>,
}

fn unsupported(path: &Path, field: &str, why: impl std::fmt::Display) -> ModelError {
    ModelError::Unsupported {
        path: path.to_path_buf(),
        field: field.to_owned(),
        why: why.to_string(),
    }
}

/// Reads the model directory's configuration files into [`Modules`].
///
/// # Errors
/// [`ModelError::Config`] for a file that cannot be parsed, [`ModelError::Unsupported`] naming
/// the file and field the server would not compute as sentence-transformers does.
pub fn read(dir: &Path) -> Result<Modules, ModelError> {
    let config_path = dir.join("config.json");
    let config: ModelConfig = read_json(&config_path)?;
    let architecture = match config.model_type.as_deref() {
        Some("bert") => Architecture::Bert,
        Some("xlm-roberta" | "roberta") => Architecture::XlmRoberta,
        other => {
            return Err(unsupported(
                &config_path,
                "model_type",
                format!(
                    "{} is not served; model-server runs bert, roberta and xlm-roberta encoders",
                    other.map_or("no model_type".to_owned(), |t| format!("{t:?}"))
                ),
            ));
        }
    };
    if let Some(kind) = config.position_embedding_type.as_deref()
        && kind != "absolute"
    {
        return Err(unsupported(
            &config_path,
            "position_embedding_type",
            format!("{kind:?} is not served; only \"absolute\" position embeddings are"),
        ));
    }
    let sbert_path = dir.join("sentence_bert_config.json");
    let sbert = if sbert_path.is_file() {
        Some(read_json::<SentenceBertConfig>(&sbert_path)?)
    } else {
        None
    };
    let st_path = dir.join("config_sentence_transformers.json");
    let mut activation_fn = (config.sentence_transformers.as_ref())
        .and_then(|s| s.activation_fn.clone())
        .map(|name| {
            (
                config_path.clone(),
                "sentence_transformers.activation_fn",
                name,
            )
        });
    let prompts = if st_path.is_file() {
        let st: SentenceTransformersConfig = read_json(&st_path)?;
        if let Some(name) = st.activation_fn {
            activation_fn = Some((st_path.clone(), "activation_fn", name));
        }
        if let Some(name) = &st.default_prompt_name
            && !st.prompts.contains_key(name)
        {
            return Err(unsupported(
                &st_path,
                "default_prompt_name",
                format!("{name:?} is not one of its prompts"),
            ));
        }
        Prompts {
            named: st.prompts,
            default: st.default_prompt_name,
        }
    } else {
        Prompts::default()
    };
    let cross_encoder = config
        .architectures
        .iter()
        .any(|a| a.ends_with("ForSequenceClassification"));
    let task = if cross_encoder {
        rerank_task(&config_path, &config, activation_fn)?
    } else {
        embed_task(dir)?
    };
    Ok(Modules {
        architecture,
        task,
        prompts,
        max_seq_length: match sbert.as_ref().and_then(|s| s.max_seq_length) {
            Some(length) => Some(length),
            None => tokenizer_max_length(dir)?,
        },
        lowercase: sbert.is_some_and(|s| s.do_lower_case),
    })
}

/// `tokenizer_config.json`'s `model_max_length` where it is a real bound (transformers writes
/// 1e30 for none): sentence-transformers ≥ 6 reads the maximum sequence length from it.
fn tokenizer_max_length(dir: &Path) -> Result<Option<usize>, ModelError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let config: TokenizerConfig = read_json(&path)?;
    Ok(config
        .model_max_length
        .filter(|n| (1.0..=1e6).contains(n))
        .map(|n| n as usize))
}

/// `activation_fn`: the file, field and value that name the score activation, if one does.
fn rerank_task(
    config_path: &Path,
    config: &ModelConfig,
    activation_fn: Option<(PathBuf, &str, String)>,
) -> Result<Task, ModelError> {
    let labels = config
        .num_labels
        .or(config.id2label.as_ref().map(BTreeMap::len))
        .unwrap_or(2);
    if labels != 1 {
        return Err(unsupported(
            config_path,
            "id2label",
            format!(
                "{labels} labels: model-server reranks with one-label cross-encoders (one relevance \
                 score per pair), as every sentence-transformers reranker is"
            ),
        ));
    }
    let activation = match activation_fn {
        None if labels == 1 => ScoreActivation::Sigmoid,
        None => ScoreActivation::Identity,
        Some((_, _, name)) if name.ends_with(".Sigmoid") => ScoreActivation::Sigmoid,
        Some((_, _, name)) if name.ends_with(".Identity") => ScoreActivation::Identity,
        Some((path, field, name)) => {
            return Err(unsupported(
                &path,
                field,
                format!("{name:?} is not served; Sigmoid and Identity are"),
            ));
        }
    };
    Ok(Task::Rerank { labels, activation })
}

/// The embedder's stack from `modules.json`; without one, what sentence-transformers assumes for
/// a bare checkpoint (Transformer, Pooling from `1_Pooling/` or mean) and normalisation on, as
/// this server has always answered by default.
fn embed_task(dir: &Path) -> Result<Task, ModelError> {
    let modules_path = dir.join("modules.json");
    let pooling_path = dir.join("1_Pooling/config.json");
    if !modules_path.is_file() {
        let pooling = if pooling_path.is_file() {
            read_pooling(&pooling_path)?
        } else {
            Pooling::Mean
        };
        return Ok(Task::Embed {
            pooling,
            dense: Vec::new(),
            normalize: true,
        });
    }
    let entries: Vec<ModuleEntry> = read_json(&modules_path)?;
    let mut pooling = None;
    let mut dense = Vec::new();
    let mut normalize = false;
    for (index, entry) in entries.iter().enumerate() {
        let field = || format!("[{index}].type");
        let kind = entry.kind.rsplit('.').next().unwrap_or(&entry.kind);
        let out_of_order = |after: &str| {
            unsupported(
                &modules_path,
                &field(),
                format!(
                    "{kind} after {after} is not served; the stack must be Transformer, Pooling, Dense…, Normalize"
                ),
            )
        };
        match kind {
            "Transformer" if index == 0 => {}
            "Pooling" if index == 1 => {
                pooling = Some(read_pooling(&dir.join(&entry.path).join("config.json"))?);
            }
            "Dense" if pooling.is_some() && !normalize => {
                dense.push(read_dense(&dir.join(&entry.path))?);
            }
            "Normalize" if pooling.is_some() && !normalize => normalize = true,
            "Transformer" | "Pooling" | "Dense" | "Normalize" => {
                let previous = entries[..index]
                    .last()
                    .map_or("nothing", |e| e.kind.rsplit('.').next().unwrap_or(&e.kind));
                return Err(out_of_order(previous));
            }
            _ => {
                return Err(unsupported(
                    &modules_path,
                    &field(),
                    format!(
                        "{:?} is not served; model-server runs Transformer, Pooling, Dense and Normalize modules",
                        entry.kind
                    ),
                ));
            }
        }
    }
    let Some(pooling) = pooling else {
        return Err(unsupported(
            &modules_path,
            "[1].type",
            "the stack has no Pooling module after its Transformer",
        ));
    };
    Ok(Task::Embed {
        pooling,
        dense,
        normalize,
    })
}

/// The files the stack in `dir`'s `modules.json` needs from folders of their own: each Pooling's
/// and Dense module's `config.json`, each Dense module's `model.safetensors`; none without a
/// `modules.json`. Paths are relative to `dir`, for downloading a Hub repo's modules.
///
/// # Errors
/// A `modules.json` that cannot be parsed, or a module path that is not a plain relative folder
/// (`..`, absolute): a downloaded `modules.json` must not write outside the model's folder.
pub fn module_files(dir: &Path) -> Result<Vec<String>, ModelError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        return Ok(Vec::new());
    }
    let entries: Vec<ModuleEntry> = read_json(&modules_path)?;
    let mut files = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let kind = entry.kind.rsplit('.').next().unwrap_or(&entry.kind);
        let needs: &[&str] = match kind {
            "Pooling" => &["config.json"],
            "Dense" => &["config.json", "model.safetensors"],
            _ => &[],
        };
        if needs.is_empty() || entry.path.is_empty() {
            continue;
        }
        let plain = Path::new(&entry.path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(unsupported(
                &modules_path,
                &format!("[{index}].path"),
                format!("{:?} is not a folder inside the model", entry.path),
            ));
        }
        files.extend(needs.iter().map(|file| format!("{}/{file}", entry.path)));
    }
    Ok(files)
}

fn read_pooling(path: &Path) -> Result<Pooling, ModelError> {
    let cfg: PoolingConfig = read_json(path)?;
    if !cfg.include_prompt {
        return Err(unsupported(
            path,
            "include_prompt",
            "false is not served: prompt tokens are pooled with the text's",
        ));
    }
    if cfg.pooling_mode_weightedmean_tokens {
        return Err(unsupported(
            path,
            "pooling_mode_weightedmean_tokens",
            "weighted-mean pooling is not served (cls, mean, max, lasttoken and mean_sqrt_len are)",
        ));
    }
    if let Some(mode) = &cfg.pooling_mode {
        let named = |name: &str| match name {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            "lasttoken" => Ok(Pooling::LastToken),
            "mean_sqrt_len_tokens" => Ok(Pooling::MeanSqrtLen),
            other => Err(unsupported(
                path,
                "pooling_mode",
                format!(
                    "{other:?} is not served (cls, mean, max, lasttoken and mean_sqrt_len_tokens are)"
                ),
            )),
        };
        return match mode {
            PoolingMode::One(name) => named(name),
            PoolingMode::Many(names) if names.len() == 1 => named(&names[0]),
            PoolingMode::Many(names) => Err(unsupported(
                path,
                "pooling_mode",
                format!(
                    "{names:?} together (their vectors concatenated) is not served; serve one mode"
                ),
            )),
        };
    }
    let modes = [
        (cfg.pooling_mode_cls_token, Pooling::Cls),
        (cfg.pooling_mode_mean_tokens, Pooling::Mean),
        (cfg.pooling_mode_max_tokens, Pooling::Max),
        (cfg.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        (cfg.pooling_mode_lasttoken, Pooling::LastToken),
    ];
    let on: Vec<Pooling> = modes
        .iter()
        .filter(|(on, _)| *on)
        .map(|&(_, p)| p)
        .collect();
    match on.as_slice() {
        [one] => Ok(*one),
        [] => Err(unsupported(
            path,
            "pooling_mode_*",
            "no pooling mode is set",
        )),
        many => Err(unsupported(
            path,
            "pooling_mode_*",
            format!(
                "{} are set together (their vectors concatenated); serve one mode",
                many.iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )),
    }
}

fn read_dense(dir: &Path) -> Result<DenseModule, ModelError> {
    let path = dir.join("config.json");
    let cfg: DenseConfig = read_json(&path)?;
    let activation = match cfg.activation_function.as_deref() {
        None => DenseActivation::Tanh,
        Some(name) if name.ends_with(".Tanh") => DenseActivation::Tanh,
        Some(name) if name.ends_with(".Identity") => DenseActivation::Identity,
        Some(name) => {
            return Err(unsupported(
                &path,
                "activation_function",
                format!("{name:?} is not served; Tanh and Identity are"),
            ));
        }
    };
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        return Err(ModelError::Unsupported {
            path: dir.to_path_buf(),
            field: "model.safetensors".to_owned(),
            why: "the Dense module's weights must be safetensors (pytorch_model.bin is not read); \
                  save the model again with sentence-transformers ≥ 3"
                .to_owned(),
        });
    }
    Ok(DenseModule {
        weights,
        in_features: cfg.in_features,
        out_features: cfg.out_features,
        bias: cfg.bias,
        activation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ms-modules-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, file: &str, text: &str) -> &Self {
            let path = self.0.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
            self
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const STACK: &str = r#"[
      {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
      {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
      {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]"#;

    #[test]
    fn a_full_stack_is_read_with_its_prompts() {
        let dir = Dir::new("full");
        dir.write("config.json", r#"{"model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"]}"#)
            .write("modules.json", STACK)
            .write("1_Pooling/config.json", r#"{"pooling_mode_max_tokens": true}"#)
            .write(
                "2_Dense/config.json",
                r#"{"in_features": 32, "out_features": 16, "bias": false, "activation_function": "torch.nn.modules.linear.Identity"}"#,
            )
            .write("2_Dense/model.safetensors", "")
            .write("sentence_bert_config.json", r#"{"max_seq_length": 128, "do_lower_case": true}"#)
            .write(
                "config_sentence_transformers.json",
                r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "passage"}"#,
            );
        let modules = read(&dir.0).unwrap();
        assert_eq!(modules.architecture, Architecture::XlmRoberta);
        assert_eq!(
            (modules.max_seq_length, modules.lowercase),
            (Some(128), true)
        );
        let Task::Embed {
            pooling,
            dense,
            normalize,
        } = &modules.task
        else {
            panic!("an embedder: {:?}", modules.task)
        };
        assert_eq!((*pooling, normalize), (Pooling::Max, &true));
        assert_eq!(
            (
                dense[0].in_features,
                dense[0].out_features,
                dense[0].bias,
                dense[0].activation
            ),
            (32, 16, false, DenseActivation::Identity)
        );
        assert_eq!(modules.prompts.prefix(None), Ok(Some("passage: ")));
        assert_eq!(modules.prompts.prefix(Some("query")), Ok(Some("query: ")));
        let error = modules.prompts.prefix(Some("doc")).unwrap_err();
        assert!(error.contains("passage, query"), "{error}");
    }

    #[test]
    fn cross_encoders_score_with_sigmoid_for_one_label() {
        let dir = Dir::new("cross");
        dir.write(
            "config.json",
            r#"{"model_type": "bert", "architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}}"#,
        );
        let modules = read(&dir.0).unwrap();
        assert_eq!(
            modules.task,
            Task::Rerank {
                labels: 1,
                activation: ScoreActivation::Sigmoid
            }
        );
        dir.write(
            "config.json",
            r#"{"model_type": "bert", "architectures": ["BertForSequenceClassification"], "num_labels": 1,
                "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Tanh"}}"#,
        );
        let error = read(&dir.0).unwrap_err().to_string();
        assert!(
            error.contains("sentence_transformers.activation_fn") && error.contains("config.json"),
            "{error}"
        );
    }

    #[test]
    fn what_is_not_served_is_refused_naming_file_and_field() {
        let refused = |files: &[(&str, &str)], file: &str, field: &str| {
            let dir = Dir::new("refused");
            dir.write("config.json", r#"{"model_type": "bert"}"#);
            for (name, text) in files {
                dir.write(name, text);
            }
            let error = read(&dir.0).unwrap_err().to_string();
            assert!(
                error.contains(file) && error.contains(field),
                "{file} {field}: {error}"
            );
        };
        refused(
            &[("config.json", r#"{"model_type": "gpt2"}"#)],
            "config.json",
            "model_type",
        );
        refused(
            &[(
                "config.json",
                r#"{"model_type": "bert", "position_embedding_type": "relative_key"}"#,
            )],
            "config.json",
            "position_embedding_type",
        );
        refused(
            &[(
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#,
            )],
            "1_Pooling/config.json",
            "pooling_mode_*",
        );
        refused(
            &[(
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": true, "include_prompt": false}"#,
            )],
            "1_Pooling/config.json",
            "include_prompt",
        );
        refused(
            &[(
                "1_Pooling/config.json",
                r#"{"pooling_mode_weightedmean_tokens": true}"#,
            )],
            "1_Pooling/config.json",
            "pooling_mode_weightedmean_tokens",
        );
        let odd_module = r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
            {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}]"#;
        refused(
            &[
                ("modules.json", odd_module),
                (
                    "1_Pooling/config.json",
                    r#"{"pooling_mode_mean_tokens": true}"#,
                ),
            ],
            "modules.json",
            "[2].type",
        );
        let dense_first = r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
            {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#;
        refused(&[("modules.json", dense_first)], "modules.json", "[1].type");
        refused(
            &[
                ("modules.json", STACK),
                (
                    "1_Pooling/config.json",
                    r#"{"pooling_mode_mean_tokens": true}"#,
                ),
                (
                    "2_Dense/config.json",
                    r#"{"in_features": 4, "out_features": 2}"#,
                ),
            ],
            "2_Dense",
            "model.safetensors",
        );
        refused(
            &[(
                "config_sentence_transformers.json",
                r#"{"prompts": {"query": "q: "}, "default_prompt_name": "doc"}"#,
            )],
            "config_sentence_transformers.json",
            "default_prompt_name",
        );
    }

    #[test]
    fn module_files_name_each_modules_own_files_and_refuse_escaping_paths() {
        let dir = Dir::new("files");
        dir.write("modules.json", STACK);
        assert_eq!(
            module_files(&dir.0).unwrap(),
            [
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "2_Dense/model.safetensors"
            ]
        );
        dir.write(
            "modules.json",
            r#"[{"path": "../../etc", "type": "sentence_transformers.models.Dense"}]"#,
        );
        let error = module_files(&dir.0).unwrap_err().to_string();
        assert!(error.contains("[0].path"), "{error}");
    }

    #[test]
    fn a_bare_checkpoint_pools_mean_and_normalizes() {
        let dir = Dir::new("bare");
        dir.write("config.json", r#"{"model_type": "bert"}"#);
        let modules = read(&dir.0).unwrap();
        assert_eq!(
            modules.task,
            Task::Embed {
                pooling: Pooling::Mean,
                dense: vec![],
                normalize: true
            }
        );
        assert_eq!(modules.prompts.prefix(None), Ok(None));
        let error = modules.prompts.prefix(Some("query")).unwrap_err();
        assert!(error.contains("no prompts configured"), "{error}");
    }
}
