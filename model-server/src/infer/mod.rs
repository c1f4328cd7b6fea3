//! The inference facade the HTTP handlers call: admission (429 when full), validation,
//! tokenization, queueing for a batch, and normalisation of the answer.
//!
//! Pipeline: [`Infer::embed`] takes a permit from a semaphore of `max_concurrent_requests`
//! (none left → [`InferError::Overloaded`] at once, never a wait), tokenizes (a request of up to
//! [`INLINE_TOKENIZE_BYTES`] of text in place, in microseconds; longer ones on tokio's blocking
//! pool, so the async workers that answer `/health` never hold a long text; each text is first
//! cut to a bound derived from the maximum sequence length, so a 1 MB text costs what a 32 KiB
//! one does) and
//! drops the texts, sends the token ids to the batching actor ([`queue`]), which hands batches of
//! texts to the inference worker threads ([`worker`]), and awaits the vectors.

pub(crate) mod queue;
pub(crate) mod request;
pub(crate) mod worker;

use crate::backend::{BackendError, EmbeddingBackend};
use crate::metrics::Metrics;
use crate::tokenize::{TextTokenizer, TokenizeError};
use queue::BatchLimits;
use request::Request;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::{Semaphore, mpsc};

/// Requests with at most this many bytes of text are tokenized on the async worker that holds
/// them: that takes tens of microseconds, less than the two thread hand-offs of the blocking pool
/// (which, on a VM, cost a lone client's one-sentence request about as much as its tokenizing).
/// Anything longer goes to the blocking pool, so `/health` never waits behind a long text.
const INLINE_TOKENIZE_BYTES: usize = 1024;

/// Limits on requests and batches; the defaults live on the CLI flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most padded tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most texts in one forward pass.
    pub max_batch_size: usize,
    /// Most texts in one request.
    pub max_client_batch_size: usize,
    /// Most requests admitted at once, queued or running.
    pub max_concurrent_requests: usize,
    /// Forward passes that run in parallel.
    pub inference_workers: usize,
    /// Threads each forward pass uses.
    pub threads_per_worker: usize,
}

/// Per-request options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// L2-normalise each vector.
    pub normalize: bool,
    /// Truncate over-long texts instead of refusing them.
    pub truncate: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            normalize: true,
            truncate: true,
        }
    }
}

/// The vectors of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per text, in request order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens fed to the model, special tokens included.
    pub prompt_tokens: usize,
}

/// Why a request was not embedded.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// Every admission permit is taken.
    #[error(
        "the server is at its limit of {limit} concurrent requests (--max-concurrent-requests); retry later"
    )]
    Overloaded {
        /// `max_concurrent_requests`.
        limit: usize,
    },
    /// The request holds no texts.
    #[error("no texts to embed: send at least one")]
    Empty,
    /// The request holds more texts than one request may.
    #[error("{given} texts in one request exceed the limit of {max} (--max-client-batch-size)")]
    TooManyTexts {
        /// Texts sent.
        given: usize,
        /// `max_client_batch_size`.
        max: usize,
    },
    /// A text could not be tokenized or is too long.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// The forward pass failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The batching actor has stopped (the server is shutting down).
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Handle to the inference pipeline; cheap to clone. The pipeline stops once every handle is
/// dropped and the queued requests are answered.
#[derive(Clone)]
pub struct Infer {
    inner: Arc<Inner>,
}

struct Inner {
    tokenizer: Arc<TextTokenizer>,
    admission: Arc<Semaphore>,
    queue: mpsc::Sender<Arc<Request>>,
    limits: Limits,
    dimensions: usize,
    metrics: Arc<Metrics>,
}

/// The pipeline's tasks, to await after the last [`Infer`] handle is dropped.
pub struct InferTasks {
    actor: tokio::task::JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
}

impl InferTasks {
    /// Waits until queued requests are answered and the workers have exited.
    pub async fn join(self) {
        let _ = self.actor.await;
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
    }
}

impl Infer {
    /// Starts the batching actor (on the current tokio runtime) and the worker threads.
    ///
    /// # Errors
    /// When a worker thread cannot be spawned.
    pub fn start(
        backend: Arc<dyn EmbeddingBackend>,
        tokenizer: TextTokenizer,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, InferTasks)> {
        let workers_n = limits.inference_workers.max(1);
        let (idle_tx, idle_rx) = mpsc::channel(workers_n);
        let mut handles = Vec::with_capacity(workers_n);
        let mut threads = Vec::with_capacity(workers_n);
        let per_worker = limits.threads_per_worker.max(1);
        let lone = Arc::new(worker::LonePasses::new(workers_n)?);
        for id in 0..workers_n {
            let config = worker::WorkerConfig {
                id,
                threads: per_worker,
                max_pass_tokens: limits.max_batch_tokens,
                lone: lone.clone(),
            };
            let (handle, thread) =
                worker::spawn(config, backend.clone(), idle_tx.clone(), metrics.clone())?;
            handles.push(handle);
            threads.push(thread);
        }
        drop(idle_tx);
        let capacity = limits.max_concurrent_requests.max(1);
        let (queue_tx, queue_rx) = mpsc::channel(capacity);
        let batch_limits = BatchLimits {
            max_batch_size: limits.max_batch_size.max(1),
            max_batch_tokens: limits.max_batch_tokens.max(1),
        };
        let actor = tokio::spawn(queue::run(
            queue_rx,
            handles,
            idle_rx,
            batch_limits,
            metrics.clone(),
        ));
        let inner = Inner {
            tokenizer: Arc::new(tokenizer),
            admission: Arc::new(Semaphore::new(capacity)),
            queue: queue_tx,
            limits,
            dimensions: backend.dimensions(),
            metrics,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            InferTasks {
                actor,
                workers: threads,
            },
        ))
    }

    /// Length of each vector.
    pub fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    /// The limits this pipeline runs under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Longest input in tokens.
    pub fn max_input_length(&self) -> usize {
        self.inner.tokenizer.max_input_length()
    }

    /// Embeds `texts`, answering in input order.
    ///
    /// # Errors
    /// [`InferError::Overloaded`] at once when the admission limit is reached; validation errors
    /// for empty, too many or too long inputs; [`InferError::Backend`] when inference fails.
    pub async fn embed(
        &self,
        texts: impl Into<Vec<String>>,
        options: EmbedOptions,
    ) -> Result<Embeddings, InferError> {
        let texts: Vec<String> = texts.into();
        let texts_bytes: usize = texts.iter().map(String::len).sum();
        let count = texts.len();
        let tokenizer = self.inner.tokenizer.clone();
        // The texts are dropped as soon as their ids exist (the ids are all the queue keeps).
        let encode = move || {
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| tokenizer.encode(i, text, options.truncate))
                .collect::<Result<Vec<_>, _>>()
        };
        let (mut vectors, prompt_tokens) = self.infer(count, texts_bytes, encode).await?;
        if options.normalize {
            vectors.iter_mut().for_each(|v| l2_normalize(v));
        }
        self.inner.metrics.embeddings.inc_by(vectors.len() as u64);
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }

    /// Scores each of `texts` against `query` with a cross-encoder: one row of logits per text,
    /// in input order (`vectors`), through the same admission, batching and workers as
    /// [`Self::embed`]; each pair is one sequence, so its texts count against
    /// `--max-client-batch-size` and its tokens against the batch's.
    ///
    /// # Errors
    /// As [`Self::embed`].
    pub async fn rerank(
        &self,
        query: String,
        texts: Vec<String>,
        truncate: bool,
    ) -> Result<Embeddings, InferError> {
        let texts_bytes = texts.iter().map(String::len).sum::<usize>() + query.len() * texts.len();
        let tokenizer = self.inner.tokenizer.clone();
        let count = texts.len();
        let encode = move || {
            texts
                .iter()
                .enumerate()
                .map(|(i, text)| tokenizer.encode_pair(i, &query, text, truncate))
                .collect::<Result<Vec<_>, _>>()
        };
        let (vectors, prompt_tokens) = self.infer(count, texts_bytes, encode).await?;
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }

    /// Admits a request of `count` sequences, tokenizes it with `encode` (in place when short,
    /// else on the blocking pool), queues the ids and awaits one answer per sequence; returns
    /// them with the tokens fed.
    async fn infer(
        &self,
        count: usize,
        texts_bytes: usize,
        encode: impl FnOnce() -> Result<Vec<Vec<u32>>, TokenizeError> + Send + 'static,
    ) -> Result<(Vec<Vec<f32>>, usize), InferError> {
        let inner = &*self.inner;
        if count == 0 {
            return Err(InferError::Empty);
        }
        if count > inner.limits.max_client_batch_size {
            return Err(InferError::TooManyTexts {
                given: count,
                max: inner.limits.max_client_batch_size,
            });
        }
        let permit =
            inner
                .admission
                .clone()
                .try_acquire_owned()
                .map_err(|_| InferError::Overloaded {
                    limit: inner.limits.max_concurrent_requests,
                })?;
        let ids = if texts_bytes <= INLINE_TOKENIZE_BYTES {
            encode()?
        } else {
            // Off the async workers: a long text takes milliseconds to tokenize.
            tokio::task::spawn_blocking(encode)
                .await
                .map_err(|_| InferError::ShuttingDown)??
        };
        let prompt_tokens = ids.iter().map(Vec::len).sum();
        let (request, answer) = Request::new(ids, permit);
        // The channel has as many slots as there are permits, so this never waits.
        inner
            .queue
            .send(request)
            .await
            .map_err(|_| InferError::ShuttingDown)?;
        let vectors = answer.await.map_err(|_| InferError::ShuttingDown)??;
        inner.metrics.tokens.inc_by(prompt_tokens as u64);
        Ok((vectors, prompt_tokens))
    }
}

/// Divides by the L2 norm, floored at 1e-12 as `torch.nn.functional.normalize` does.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::l2_normalize;

    #[test]
    fn normalises_to_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
    }
}
