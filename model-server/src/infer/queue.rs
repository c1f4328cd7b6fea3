//! The batching actor: one task owns the queue of admitted requests and hands batches to idle
//! inference workers, so concurrent requests share forward passes (dynamic batching).
//!
//! A worker asks for work by reporting itself idle; the actor then packs, in arrival order, whole
//! requests until the next would pass `max_batch_size` texts or `max_batch_tokens` tokens. While
//! every worker is busy, arrivals accumulate and leave together in the next batch. Requests whose
//! caller has gone (client disconnected, request timed out) are dropped here, before inference.
//!
//! Bounds: the request channel holds `max_concurrent_requests` entries, and every entry carries a
//! semaphore permit of the same size, so neither the channel nor the queue can grow past it.

use super::worker::{Job, WorkerHandle};
use crate::backend::BackendError;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// Pooled vectors of one request, or why inference failed.
pub(crate) type Reply = Result<Vec<Vec<f32>>, BackendError>;

/// One admitted request waiting for inference.
pub(crate) struct Entry {
    /// Token ids of each text, in request order.
    pub ids: Vec<Vec<u32>>,
    /// Where the vectors go; closed when the caller has gone.
    pub reply: oneshot::Sender<Reply>,
    /// When the request joined the queue (for the queue-time histogram).
    pub enqueued_at: Instant,
    /// The admission permit, released when the entry is answered or dropped.
    pub _permit: OwnedSemaphorePermit,
}

impl Entry {
    fn tokens(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }
}

/// Batch limits the actor packs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Most texts per batch.
    pub max_batch_size: usize,
    /// Most (unpadded) tokens per batch; workers split it further by length.
    pub max_batch_tokens: usize,
}

/// Pops the next batch from the front of `queue`: whole requests in arrival order until the next
/// would pass a limit. The first live request is always taken, so one larger than the limits
/// still runs (its worker splits it into passes that fit). Entries whose caller has gone are
/// dropped and counted in `cancelled`. Returns `None` when nothing live is queued.
pub(crate) fn take_batch(
    queue: &mut VecDeque<Entry>,
    limits: BatchLimits,
    mut cancelled: impl FnMut(),
) -> Option<Vec<Entry>> {
    let mut batch: Vec<Entry> = Vec::new();
    let (mut texts, mut tokens) = (0, 0);
    while let Some(next) = queue.front() {
        if next.reply.is_closed() {
            queue.pop_front();
            cancelled();
            continue;
        }
        let (next_texts, next_tokens) = (next.ids.len(), next.tokens());
        let fits = texts + next_texts <= limits.max_batch_size
            && tokens + next_tokens <= limits.max_batch_tokens;
        if !batch.is_empty() && !fits {
            break;
        }
        texts += next_texts;
        tokens += next_tokens;
        batch.extend(queue.pop_front());
    }
    (!batch.is_empty()).then_some(batch)
}

/// Runs the actor until every `Infer` handle is gone and the queue has drained.
pub(crate) async fn run(
    mut requests: mpsc::Receiver<Entry>,
    workers: Vec<WorkerHandle>,
    mut idle_rx: mpsc::Receiver<usize>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
) {
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut idle: Vec<usize> = (0..workers.len()).collect();
    let mut accepting = true;
    loop {
        while let Some(&worker) = idle.last() {
            let cancelled = || {
                metrics.cancelled.inc();
                metrics.queue_depth.dec();
            };
            let Some(batch) = take_batch(&mut queue, limits, cancelled) else {
                break;
            };
            metrics.queue_depth.dec_by(batch.len() as i64);
            idle.pop();
            if let Err(job) = workers[worker].send(Job { entries: batch }) {
                // The worker thread is gone (it only exits when its channel closes, so this is a
                // bug); fail its batch rather than leave callers waiting.
                for entry in job.entries {
                    let _ = entry.reply.send(Err(BackendError::Panicked(
                        "inference worker exited".to_owned(),
                    )));
                }
            }
        }
        if !accepting && queue.is_empty() && idle.len() == workers.len() {
            break;
        }
        tokio::select! {
            next = requests.recv(), if accepting => match next {
                Some(entry) => {
                    queue.push_back(entry);
                    metrics.queue_depth.inc();
                    // Take everything that is already waiting, so a burst forms one batch.
                    while let Ok(entry) = requests.try_recv() {
                        queue.push_back(entry);
                        metrics.queue_depth.inc();
                    }
                }
                None => accepting = false,
            },
            Some(worker) = idle_rx.recv() => idle.push(worker),
            else => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    fn entry(sem: &Arc<Semaphore>, lens: &[usize]) -> (Entry, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let entry = Entry {
            ids: lens.iter().map(|&n| vec![1; n]).collect(),
            reply,
            enqueued_at: Instant::now(),
            _permit: sem.clone().try_acquire_owned().unwrap(),
        };
        (entry, rx)
    }

    #[test]
    fn packs_whole_requests_in_order_within_limits() {
        let sem = Arc::new(Semaphore::new(10));
        let limits = BatchLimits {
            max_batch_size: 4,
            max_batch_tokens: 100,
        };
        let mut queue = VecDeque::new();
        let mut keep = Vec::new();
        for lens in [&[10, 10][..], &[10], &[10, 10], &[5]] {
            let (e, rx) = entry(&sem, lens);
            queue.push_back(e);
            keep.push(rx);
        }
        let first = take_batch(&mut queue, limits, || {}).unwrap();
        assert_eq!(
            first.iter().map(|e| e.ids.len()).collect::<Vec<_>>(),
            [2, 1]
        );
        let second = take_batch(&mut queue, limits, || {}).unwrap();
        assert_eq!(
            second.iter().map(|e| e.ids.len()).collect::<Vec<_>>(),
            [2, 1]
        );
        assert!(take_batch(&mut queue, limits, || {}).is_none());
    }

    #[test]
    fn oversized_request_still_runs_alone_and_token_limit_applies() {
        let sem = Arc::new(Semaphore::new(10));
        let limits = BatchLimits {
            max_batch_size: 64,
            max_batch_tokens: 100,
        };
        let mut queue = VecDeque::new();
        let (big, _a) = entry(&sem, &[80, 80]);
        let (small, _b) = entry(&sem, &[10]);
        queue.extend([big, small]);
        assert_eq!(take_batch(&mut queue, limits, || {}).unwrap().len(), 1);
        assert_eq!(take_batch(&mut queue, limits, || {}).unwrap().len(), 1);
    }

    #[test]
    fn gone_callers_are_dropped_and_counted() {
        let sem = Arc::new(Semaphore::new(10));
        let limits = BatchLimits {
            max_batch_size: 64,
            max_batch_tokens: 1000,
        };
        let mut queue = VecDeque::new();
        let (gone, rx) = entry(&sem, &[3]);
        drop(rx);
        let (live, _rx) = entry(&sem, &[4]);
        queue.extend([gone, live]);
        let mut dropped = 0;
        let batch = take_batch(&mut queue, limits, || dropped += 1).unwrap();
        assert_eq!((batch.len(), batch[0].ids[0].len(), dropped), (1, 4, 1));
        assert_eq!(
            sem.available_permits(),
            9,
            "the dropped entry released its permit"
        );
    }
}
