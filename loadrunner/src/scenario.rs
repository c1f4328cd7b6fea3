//! The task mix a user runs: weighted picks of [`Task`]s and their request payloads, in each
//! task's API shape ([`crate::wire`]), with texts from the built-in corpus or the team's
//! [`Dataset`].

use crate::client::{Limits, MAX_RESPONSE_BYTES, Redirects};
use crate::corpus::Corpus;
use crate::dataset::Dataset;
use crate::llm_wire::{self, Prompt};
use crate::quality::QualityPlan;
use crate::rng::Rng;
use crate::wire::{self, Expect};
use bytes::Bytes;
use loadgate_api::llm_request::{DEFAULT_PROMPT_TOKENS, LlmRequest};
use loadgate_api::load::{Task, TaskRequest};

/// A spec the runner cannot run, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// No tasks, or every weight zero.
    #[error("tasks: at least one task needs a weight above 0")]
    NoWeight,
    /// An embed task whose text counts are impossible.
    #[error("tasks[{index}].request.embed: minTexts must be ≥ 1 and ≤ maxTexts (got {min}..{max})")]
    TextCounts {
        /// Task position.
        index: usize,
        /// `minTexts`.
        min: u32,
        /// `maxTexts`.
        max: u32,
    },
    /// A path that does not start with `/`.
    #[error("tasks[{index}].request: path {path:?} must start with '/'")]
    Path {
        /// Task position.
        index: usize,
        /// The path.
        path: String,
    },
}

/// One request ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Index of its task.
    pub task: usize,
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// JSON body for POST.
    pub body: Option<Bytes>,
    /// Texts it asks to embed (0 but for embed tasks).
    pub texts: u32,
    /// A quality sample: the reference texts it sends, whose answers are checked.
    pub check: Option<Vec<usize>>,
    /// Its task's redirects and answer size.
    pub limits: Limits,
    /// What its answer must hold.
    pub expect: Expect,
    /// An LLM task's request: read as a stream or a whole completion, timed per token.
    pub llm: Option<LlmPlan>,
}

/// How an LLM request's answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmPlan {
    /// A chat (else a completion).
    pub chat: bool,
    /// It asked for a stream.
    pub stream: bool,
    /// The prompt's estimated tokens (the input count when the server gives none).
    pub prompt_tokens: u64,
}

/// The validated task mix.
#[derive(Debug, Clone)]
pub struct Scenario {
    tasks: Vec<Task>,
    cumulative: Vec<u64>,
    corpus: Corpus,
    dataset: Option<std::sync::Arc<Dataset>>,
    quality: Option<std::sync::Arc<QualityPlan>>,
}

impl Scenario {
    /// Validates `tasks` and builds the corpus from `seed`.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the offending field.
    pub fn new(tasks: Vec<Task>, seed: u64) -> Result<Self, ScenarioError> {
        for (index, task) in tasks.iter().enumerate() {
            if !task.request.path().starts_with('/') {
                return Err(ScenarioError::Path {
                    index,
                    path: task.request.path().to_owned(),
                });
            }
            if let TaskRequest::Embed(e) = &task.request
                && (e.min_texts == 0 || e.min_texts > e.max_texts)
            {
                return Err(ScenarioError::TextCounts {
                    index,
                    min: e.min_texts,
                    max: e.max_texts,
                });
            }
        }
        let cumulative: Vec<u64> = tasks
            .iter()
            .scan(0u64, |sum, t| {
                *sum += u64::from(t.weight);
                Some(*sum)
            })
            .collect();
        if cumulative.last().copied().unwrap_or(0) == 0 {
            return Err(ScenarioError::NoWeight);
        }
        Ok(Self {
            tasks,
            cumulative,
            corpus: Corpus::new(seed, 1024),
            dataset: None,
            quality: None,
        })
    }

    /// Draws texts from `dataset` instead of the built-in corpus.
    pub fn with_dataset(mut self, dataset: Dataset) -> Self {
        self.dataset = Some(std::sync::Arc::new(dataset));
        self
    }

    /// The dataset texts are drawn from, when the run has one.
    pub fn dataset(&self) -> Option<&Dataset> {
        self.dataset.as_deref()
    }

    /// One text: from the dataset, else the corpus.
    fn text(&self, rng: &mut Rng) -> &str {
        match &self.dataset {
            Some(d) => &d.texts[rng.below(d.texts.len() as u64) as usize],
            None => self.corpus.pick(rng),
        }
    }

    /// Samples embed requests for `plan`'s quality check.
    pub fn checking_quality(mut self, plan: QualityPlan) -> Self {
        self.quality = Some(std::sync::Arc::new(plan));
        self
    }

    /// The quality check, when the run makes one.
    pub fn quality(&self) -> Option<&QualityPlan> {
        self.quality.as_deref()
    }

    /// The corpus embed tasks draw from.
    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    /// The tasks, in spec order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Picks a task by weight and builds its request.
    pub fn next(&self, rng: &mut Rng) -> Prepared {
        let total = *self
            .cumulative
            .last()
            .expect("validated non-empty; this is a bug");
        let ticket = rng.below(total);
        let task = self.cumulative.partition_point(|&c| c <= ticket);
        let request = &self.tasks[task].request;
        let mut count = 0u32;
        let mut check = None;
        let mut expect = Expect::Any;
        let mut llm = None;
        let body = match request {
            TaskRequest::Chat(r) | TaskRequest::Completion(r) => {
                let chat = matches!(request, TaskRequest::Chat(_));
                let prompt = self.prompt(r, rng);
                llm = Some(LlmPlan {
                    chat,
                    stream: r.stream,
                    prompt_tokens: crate::dataset::estimate_tokens(&prompt.text()),
                });
                Some(llm_wire::body(r, chat, &prompt))
            }
            TaskRequest::Get { .. } => None,
            TaskRequest::Post { body, .. } => Some(Bytes::from(body.clone())),
            TaskRequest::Rerank(r) => {
                let (query, documents): (&str, Vec<&str>) =
                    match self.dataset.as_ref().filter(|d| !d.cases.is_empty()) {
                        // A case of the team's: its query and documents, at most maxDocuments.
                        Some(d) => {
                            let (q, docs) = &d.cases[rng.below(d.cases.len() as u64) as usize];
                            let n = docs.len().min(r.max_documents as usize);
                            (q.as_str(), docs[..n].iter().map(String::as_str).collect())
                        }
                        None => {
                            let n = rng.range_inclusive(
                                u64::from(r.min_documents),
                                u64::from(r.max_documents),
                            );
                            let query = self.text(rng);
                            (query, (0..n).map(|_| self.text(rng)).collect())
                        }
                    };
                let documents_sent = u32::try_from(documents.len()).unwrap_or(u32::MAX);
                expect = Expect::Scores {
                    api: r.api,
                    documents: documents_sent,
                    top_n: r.top_n,
                };
                Some(wire::rerank_body(r, query, &documents))
            }
            TaskRequest::Embed(e) => {
                let n = rng.range_inclusive(u64::from(e.min_texts), u64::from(e.max_texts));
                count = u32::try_from(n).unwrap_or(u32::MAX);
                check = self.quality.as_ref().and_then(|q| q.sample(rng, n));
                let texts: Vec<&str> = match (&check, &self.quality) {
                    (Some(sent), Some(q)) => sent
                        .iter()
                        .map(|&i| q.reference.texts[i].as_str())
                        .collect(),
                    _ => (0..n).map(|_| self.text(rng)).collect(),
                };
                expect = Expect::embeddings(e, count);
                Some(wire::embed_body(e, &texts))
            }
        };
        let spec = &self.tasks[task];
        Prepared {
            task,
            method: request.method(),
            path: request.path().to_owned(),
            body,
            texts: count,
            check,
            limits: Limits {
                redirects: if spec.follow_redirects {
                    Redirects::Follow
                } else {
                    Redirects::Fail
                },
                max_bytes: spec
                    .max_response_bytes
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(MAX_RESPONSE_BYTES),
            },
            expect,
            llm,
        }
    }

    /// An LLM task's prompt: synthetic of `r.prompt`'s token length, else the dataset's
    /// prompts when it has any, else synthetic of the default length.
    fn prompt(&self, r: &LlmRequest, rng: &mut Rng) -> Prompt {
        if r.prompt.is_none()
            && let Some(d) = self.dataset.as_ref().filter(|d| !d.prompts.is_empty())
        {
            return d.prompts[rng.below(d.prompts.len() as u64) as usize].clone();
        }
        let length = r.prompt.unwrap_or(DEFAULT_PROMPT_TOKENS);
        let want = rng.range_inclusive(u64::from(length.min_tokens), u64::from(length.max_tokens));
        let mut text = String::new();
        let mut tokens = 0;
        while tokens < want {
            let piece = self.corpus.pick(rng);
            for word in piece.split_whitespace() {
                if tokens >= want {
                    break;
                }
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(word);
                tokens += crate::dataset::estimate_tokens(word).max(1);
            }
        }
        Prompt::Text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::load::default_tasks;

    #[test]
    fn picks_follow_the_weights() {
        let scenario = Scenario::new(default_tasks(), 1).unwrap();
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 3];
        for _ in 0..11_000 {
            counts[scenario.next(&mut rng).task] += 1;
        }
        // Expected 8000 / 2000 / 1000; 5 sigma is ~±200 / ±190 / ±150.
        assert!((7_800..8_200).contains(&counts[0]), "{counts:?}");
        assert!((1_810..2_190).contains(&counts[1]), "{counts:?}");
        assert!((850..1_150).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn embed_bodies_hold_the_asked_number_of_texts() {
        let scenario = Scenario::new(default_tasks(), 1).unwrap();
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let p = scenario.next(&mut rng);
            if let Some(body) = p.body {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let n = v["texts"].as_array().unwrap().len();
                assert!(if p.task == 0 {
                    (1..=2).contains(&n)
                } else {
                    (8..=32).contains(&n)
                });
            }
        }
    }

    #[test]
    fn bad_specs_name_the_field() {
        let mut tasks = default_tasks();
        tasks.iter_mut().for_each(|t| t.weight = 0);
        assert_eq!(
            Scenario::new(tasks, 1).unwrap_err(),
            ScenarioError::NoWeight
        );
        let mut tasks = default_tasks();
        tasks[1].request = TaskRequest::embed("/embed", 9, 3);
        assert!(
            Scenario::new(tasks, 1)
                .unwrap_err()
                .to_string()
                .contains("tasks[1]")
        );
    }
}
