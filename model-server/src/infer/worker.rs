//! Inference workers: dedicated OS threads that run forward passes off the async runtime.
//!
//! Each worker owns a rayon pool of `threads_per_worker` threads that includes the worker thread
//! itself, so candle's gemm runs its parallel loops there and not on a shared global pool. On 2
//! cores, 2 workers × 1 thread served 161 req/s against 103 for 1 worker × 2 threads
//! (../shared/notes/rust-stack.md §3), hence the defaults: workers = cores, 1 thread each.
//!
//! A lone job (nothing else queued or running when it was handed out) runs its passes with a
//! shared helper thread ([`LonePasses`], [`Helper`]) that takes half of every matrix product: a
//! lone request gets both cores, and under load each worker keeps its own.
//!
//! A batch is split into passes of similar length before inference: padding a 10-token text to a
//! 250-token neighbour costs 25x the work, and attention grows with the square of the length.

use super::request::{Item, Job};
use crate::backend::team::Helper;
use crate::backend::{BackendError, EmbeddingBackend};
use crate::metrics::Metrics;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

/// The actor's end of a worker: a one-slot channel (a worker only gets a job when idle).
pub(crate) struct WorkerHandle {
    jobs: SyncSender<Job>,
}

impl WorkerHandle {
    /// Hands a job to the worker; gives it back if the worker is gone.
    pub(crate) fn send(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

/// What the workers share: how many are running a pass, and a helper thread for lone jobs
/// ([`Helper`]) when there is more than one worker (the helper then runs on a core a worker would
/// otherwise own).
pub(crate) struct LonePasses {
    busy: AtomicUsize,
    helper: Option<Helper>,
}

impl LonePasses {
    /// For `workers` workers.
    pub(crate) fn new(workers: usize) -> std::io::Result<Self> {
        let helper = if workers > 1 {
            Some(Helper::spawn("inference-helper".to_owned())?)
        } else {
            None
        };
        Ok(Self {
            busy: AtomicUsize::new(0),
            helper,
        })
    }

    /// Runs one pass of a job: with the helper if nothing else was queued when the job was handed
    /// out (`lone`) and no other worker is running a pass now; else on `own`, and the helper, if it
    /// lingers after a lone pass, lets go of its core. (The queue alone cannot tell that every
    /// other worker is idle: a worker's "idle" message may still be on its way when the next
    /// request of a fast client arrives.)
    fn run(
        &self,
        own: &rayon::ThreadPool,
        lone: bool,
        backend: &dyn EmbeddingBackend,
        batch: &[&[u32]],
        metrics: &Metrics,
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        struct Busy<'a>(&'a AtomicUsize);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let alone = self.busy.fetch_add(1, Ordering::AcqRel) == 0;
        let _busy = Busy(&self.busy);
        match &self.helper {
            Some(helper) if lone && alone => {
                metrics.helped_passes.inc();
                helper.pass(|team| backend.embed_with_helper(batch, team))
            }
            Some(helper) => {
                helper.release();
                own.install(|| backend.embed(batch))
            }
            None => own.install(|| backend.embed(batch)),
        }
    }
}

/// What a worker needs to run.
pub(crate) struct WorkerConfig {
    /// Worker number, reported back when idle.
    pub id: usize,
    /// Threads of its rayon pool (itself included).
    pub threads: usize,
    /// Most padded tokens in one forward pass.
    pub max_pass_tokens: usize,
    /// Shared with the other workers.
    pub lone: Arc<LonePasses>,
}

/// Starts a worker thread.
pub(crate) fn spawn(
    config: WorkerConfig,
    backend: Arc<dyn EmbeddingBackend>,
    idle_tx: mpsc::Sender<usize>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(WorkerHandle, JoinHandle<()>)> {
    let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(1);
    let handle = std::thread::Builder::new()
        .name(format!("inference-{}", config.id))
        .spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(config.threads)
                .use_current_thread()
                .thread_name(move |i| format!("inference-{}-{i}", config.id))
                .build();
            let pool = match pool {
                Ok(pool) => pool,
                Err(error) => {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "cannot start inference pool"
                    );
                    return;
                }
            };
            for job in rx {
                let lone = job.lone;
                let run_pass =
                    |batch: &[&[u32]]| config.lone.run(&pool, lone, &*backend, batch, &metrics);
                run_job(job, &run_pass, config.max_pass_tokens, &metrics);
                if idle_tx.blocking_send(config.id).is_err() {
                    break;
                }
            }
        })?;
    Ok((WorkerHandle { jobs }, handle))
}

/// Runs one forward pass of a batch, wherever the worker decides ([`LonePasses::run`]).
type RunPass<'a> = dyn Fn(&[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError> + Sync + 'a;

/// Runs every pass of one job, handing each vector to its request as it is computed.
fn run_job(job: Job, run_pass: &RunPass, max_pass_tokens: usize, metrics: &Metrics) {
    let started = Instant::now();
    let items = job.items;
    for item in items.iter().filter(|item| item.index == 0) {
        metrics.queue_duration.observe(
            started
                .duration_since(item.request.enqueued_at)
                .as_secs_f64(),
        );
    }
    let lengths: Vec<usize> = items.iter().map(|item| item.ids().len()).collect();
    for pass in plan_passes(&lengths, max_pass_tokens) {
        // Callers that left while earlier passes ran need no vectors.
        let pass: Vec<&Item> = pass
            .into_iter()
            .map(|i| &items[i])
            .filter(|item| !item.request.is_abandoned())
            .collect();
        if pass.is_empty() {
            continue;
        }
        let batch: Vec<&[u32]> = pass.iter().map(|item| item.ids()).collect();
        let padded = batch.len() * batch.iter().map(|s| s.len()).max().unwrap_or(0);
        let pass_started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| run_pass(&batch)))
            .unwrap_or_else(|panic| Err(BackendError::Panicked(panic_message(&*panic))));
        metrics
            .inference_duration
            .observe(pass_started.elapsed().as_secs_f64());
        metrics.batch_size.observe(batch.len() as f64);
        metrics.batch_tokens.observe(padded as f64);
        let result = result.and_then(|vectors| {
            if vectors.len() == pass.len() {
                Ok(vectors)
            } else {
                Err(BackendError::Inference(format!(
                    "backend returned {} vectors for {} texts",
                    vectors.len(),
                    pass.len()
                )))
            }
        });
        match result {
            Ok(vectors) => {
                for (item, vector) in pass.into_iter().zip(vectors) {
                    item.request.complete(item.index, Ok(vector));
                }
            }
            Err(error) => {
                // Fail every request of the job that is still waiting; answered ones ignore it.
                for item in &items {
                    item.request.complete(item.index, Err(error.clone()));
                }
                return;
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Splits texts (given by their token counts) into forward passes of similar length: indices
/// sorted by length, a new pass whenever the next text is over 1.5x (+8 tokens) the shortest of
/// the current pass, or when padding the pass would pass `max_pass_tokens`.
pub(crate) fn plan_passes(lengths: &[usize], max_pass_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut passes: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        let len = lengths[i];
        if let Some(&first) = current.first() {
            let too_different = len * 2 > lengths[first] * 3 + 16;
            let too_big = (current.len() + 1) * len > max_pass_tokens;
            if too_different || too_big {
                passes.push(std::mem::take(&mut current));
            }
        }
        current.push(i);
    }
    if !current.is_empty() {
        passes.push(current);
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::plan_passes;

    #[test]
    fn similar_lengths_share_a_pass() {
        assert_eq!(plan_passes(&[10, 12, 11, 9], 1000), vec![vec![3, 0, 2, 1]]);
    }

    #[test]
    fn long_texts_do_not_pad_short_ones() {
        let passes = plan_passes(&[10, 250, 12, 240], 10_000);
        assert_eq!(passes, vec![vec![0, 2], vec![3, 1]]);
    }

    #[test]
    fn passes_respect_the_token_budget() {
        let passes = plan_passes(&[100; 10], 300);
        assert_eq!(
            passes.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(plan_passes(&[], 300), Vec::<Vec<usize>>::new());
        // A single text longer than the budget still gets its own pass.
        assert_eq!(plan_passes(&[500], 300), vec![vec![0]]);
    }
}
