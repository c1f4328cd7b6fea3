//! The batching actor: one task owns the queue of texts waiting for inference and hands batches
//! to idle workers, so concurrent requests share forward passes (dynamic batching).
//!
//! The unit of batching is the text, not the request: a request's texts are queued as items, and
//! a batch is the next items in arrival order, up to `max_batch_size` texts and
//! `max_batch_tokens` tokens. When several workers are idle the waiting texts are shared out
//! between them, so one 32-text request runs on both cores instead of one. The request collects
//! its vectors as its items finish and answers when the last one lands ([`Request::complete`]).
//!
//! Requests whose caller has gone (client disconnected, request timed out) are skipped here,
//! before inference. Bounds: the request channel holds `max_concurrent_requests` requests, and
//! each request holds an admission permit until it is answered or dropped, so neither the channel
//! nor the queue can grow past that many requests.

use super::request::{Item, Job, Request};
use super::worker::WorkerHandle;
use crate::backend::BackendError;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Batch limits the actor packs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Most texts per batch.
    pub max_batch_size: usize,
    /// Most (unpadded) tokens per batch; workers split it further by length.
    pub max_batch_tokens: usize,
}

/// Pops the next batch from the front of `queue`: items in arrival order, at most `share` of
/// them, until the next would pass a limit. The first live item is always taken, so a text
/// longer than the token limit still runs. Items of abandoned requests are dropped and each such
/// request reported once to `dropped`. Returns `None` when nothing live is queued.
pub(crate) fn take_batch(
    queue: &mut VecDeque<Item>,
    limits: BatchLimits,
    share: usize,
    mut dropped: impl FnMut(),
) -> Option<Vec<Item>> {
    let mut batch: Vec<Item> = Vec::new();
    let mut tokens = 0;
    let max_texts = limits.max_batch_size.min(share).max(1);
    while let Some(next) = queue.front() {
        if next.request.is_abandoned() {
            if next.request.mark_dropped() {
                dropped();
            }
            queue.pop_front();
            continue;
        }
        let next_tokens = next.ids().len();
        let fits = batch.len() < max_texts && tokens + next_tokens <= limits.max_batch_tokens;
        if !batch.is_empty() && !fits {
            break;
        }
        tokens += next_tokens;
        batch.extend(queue.pop_front());
    }
    (!batch.is_empty()).then_some(batch)
}

/// Runs the actor until every `Infer` handle is gone and the queue has drained.
pub(crate) async fn run(
    mut requests: mpsc::Receiver<Arc<Request>>,
    workers: Vec<WorkerHandle>,
    mut idle_rx: mpsc::Receiver<usize>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
) {
    let mut queue: VecDeque<Item> = VecDeque::new();
    let mut idle: Vec<usize> = (0..workers.len()).collect();
    let mut accepting = true;
    let enqueue = |queue: &mut VecDeque<Item>, request: Arc<Request>| {
        metrics.queue_depth.inc_by(request.ids.len() as i64);
        queue.extend((0..request.ids.len()).map(|index| Item {
            request: request.clone(),
            index,
        }));
    };
    loop {
        while let Some(&worker) = idle.last() {
            // Share the waiting texts out between the idle workers.
            let share = queue.len().div_ceil(idle.len());
            let before = queue.len();
            let batch = take_batch(&mut queue, limits, share, || {
                metrics.cancelled.inc();
            });
            metrics.queue_depth.dec_by((before - queue.len()) as i64);
            let Some(items) = batch else { break };
            idle.pop();
            if let Err(job) = workers[worker].send(Job { items }) {
                // The worker thread is gone (it only exits when its channel closes, so this is a
                // bug); fail its texts rather than leave callers waiting.
                for item in job.items {
                    let error = BackendError::Panicked("inference worker exited".to_owned());
                    item.request.complete(item.index, Err(error));
                }
            }
        }
        if !accepting && queue.is_empty() && idle.len() == workers.len() {
            break;
        }
        tokio::select! {
            next = requests.recv(), if accepting => match next {
                Some(request) => {
                    enqueue(&mut queue, request);
                    // Take everything that is already waiting, so a burst forms one batch.
                    while let Ok(request) = requests.try_recv() {
                        enqueue(&mut queue, request);
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
    use super::super::request::Reply;
    use super::*;
    use tokio::sync::{Semaphore, oneshot};

    fn request(sem: &Arc<Semaphore>, lens: &[usize]) -> (Arc<Request>, oneshot::Receiver<Reply>) {
        let ids = lens.iter().map(|&n| vec![1; n]).collect();
        Request::new(ids, sem.clone().try_acquire_owned().unwrap())
    }

    fn items(request: &Arc<Request>) -> Vec<Item> {
        (0..request.ids.len())
            .map(|index| Item {
                request: request.clone(),
                index,
            })
            .collect()
    }

    fn lengths(batch: &[Item]) -> Vec<usize> {
        batch.iter().map(|i| i.ids().len()).collect()
    }

    const ROOMY: BatchLimits = BatchLimits {
        max_batch_size: 64,
        max_batch_tokens: 1000,
    };

    #[test]
    fn packs_texts_in_arrival_order_within_limits() {
        let sem = Arc::new(Semaphore::new(10));
        let limits = BatchLimits {
            max_batch_size: 3,
            max_batch_tokens: 100,
        };
        let (a, _ra) = request(&sem, &[10, 11]);
        let (b, _rb) = request(&sem, &[12, 13, 14]);
        let mut queue: VecDeque<Item> = items(&a).into_iter().chain(items(&b)).collect();
        assert_eq!(
            lengths(&take_batch(&mut queue, limits, usize::MAX, || {}).unwrap()),
            [10, 11, 12]
        );
        assert_eq!(
            lengths(&take_batch(&mut queue, limits, usize::MAX, || {}).unwrap()),
            [13, 14]
        );
        assert!(take_batch(&mut queue, limits, usize::MAX, || {}).is_none());
    }

    #[test]
    fn token_limit_and_share_split_batches_but_a_long_text_still_runs() {
        let sem = Arc::new(Semaphore::new(10));
        let limits = BatchLimits {
            max_batch_size: 64,
            max_batch_tokens: 100,
        };
        let (a, _ra) = request(&sem, &[150, 40, 40, 40]);
        let mut queue: VecDeque<Item> = items(&a).into_iter().collect();
        assert_eq!(
            lengths(&take_batch(&mut queue, limits, usize::MAX, || {}).unwrap()),
            [150]
        );
        assert_eq!(
            lengths(&take_batch(&mut queue, limits, usize::MAX, || {}).unwrap()),
            [40, 40]
        );
        let (b, _rb) = request(&sem, &[5; 6]);
        let mut queue: VecDeque<Item> = items(&b).into_iter().collect();
        assert_eq!(
            take_batch(&mut queue, ROOMY, 3, || {}).unwrap().len(),
            3,
            "half for each of two idle workers"
        );
    }

    #[test]
    fn abandoned_requests_are_dropped_and_counted_once() {
        let sem = Arc::new(Semaphore::new(10));
        let (gone, rx) = request(&sem, &[3, 3]);
        drop(rx);
        let (live, _rx) = request(&sem, &[4]);
        let mut queue: VecDeque<Item> = items(&gone).into_iter().chain(items(&live)).collect();
        drop(gone);
        let mut dropped = 0;
        let batch = take_batch(&mut queue, ROOMY, usize::MAX, || dropped += 1).unwrap();
        assert_eq!((lengths(&batch), dropped), (vec![4], 1));
        assert_eq!(
            sem.available_permits(),
            9,
            "the dropped request released its permit"
        );
    }

    #[test]
    fn a_request_answers_when_its_last_text_lands_or_at_its_first_error() {
        let sem = Arc::new(Semaphore::new(10));
        let (req, mut rx) = request(&sem, &[2, 2]);
        req.complete(1, Ok(vec![1.0]));
        assert!(rx.try_recv().is_err(), "not answered with a text missing");
        req.complete(0, Ok(vec![0.0]));
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![vec![0.0], vec![1.0]]);

        assert_eq!(
            sem.available_permits(),
            10,
            "the permit is back once answered, though the request lives"
        );

        let (req, mut rx) = request(&sem, &[2, 2]);
        req.complete(0, Err(BackendError::Inference("boom".into())));
        assert!(rx.try_recv().unwrap().is_err());
        assert!(req.is_abandoned(), "the rest of its texts are skipped");
        req.complete(1, Ok(vec![1.0]));
        assert_eq!(sem.available_permits(), 10);
    }
}
