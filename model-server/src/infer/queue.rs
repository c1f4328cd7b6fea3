//! The batching actor: one task owns the queue of texts waiting for inference and hands batches
//! to idle workers, so concurrent requests share forward passes (dynamic batching).
//!
//! The unit of batching is the text, not the request: a request's texts are queued as items, and
//! a batch is the next items in arrival order, up to `max_batch_size` texts and
//! `max_batch_tokens` tokens, except that short requests (≤ [`SHORT_REQUEST_TEXTS`] texts)
//! overtake longer ones that have waited less than [`MAX_OVERTAKEN`] ([`short_first`]), so a
//! one-text request does not wait behind every queued 32-text one. When several workers are idle the waiting texts are shared out
//! between them, so one 32-text request runs on both cores instead of one; the only batch
//! handed out in a round, leaving nothing queued, is marked lone, and may use every core if no
//! other worker is busy ([`super::worker`]). The request collects
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
use std::time::{Duration, Instant};
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

/// Requests of at most this many texts overtake longer ones waiting in the queue, so a 1-text
/// request waits for at most the passes already running, not for every queued 32-text request.
pub(crate) const SHORT_REQUEST_TEXTS: usize = 4;

/// A longer request overtaken for this long is served in arrival order again, so a steady
/// stream of short requests cannot starve it.
pub(crate) const MAX_OVERTAKEN: Duration = Duration::from_millis(500);

/// Most texts one pass takes while texts of other requests wait: a short request then waits for
/// passes of at most this size, not for a whole 32-text pass (8-text passes keep ~90% of
/// 32-text throughput in process). A request alone in the queue still gets passes as large as
/// the limits allow.
pub(crate) const MIXED_PASS_TEXTS: usize = 8;

/// True when the queue holds texts of more than one request.
fn mixed(queue: &VecDeque<Item>) -> bool {
    queue.front().is_some_and(|first| {
        queue
            .iter()
            .any(|i| !Arc::ptr_eq(&i.request, &first.request))
    })
}

/// Reorders `queue` so short requests' texts (and those of requests waiting longer than
/// [`MAX_OVERTAKEN`]) come first, each group in arrival order: a stable partition, O(queue).
pub(crate) fn short_first(queue: &mut VecDeque<Item>, now: Instant) {
    let first = |item: &Item| {
        item.request.ids.len() <= SHORT_REQUEST_TEXTS
            || now.duration_since(item.request.enqueued_at) >= MAX_OVERTAKEN
    };
    // Nothing to do unless a prioritised item stands behind one that is not.
    let mut seen_later = false;
    let needed = queue.iter().any(|item| {
        if first(item) {
            seen_later
        } else {
            seen_later = true;
            false
        }
    });
    if needed {
        let (mut front, back): (VecDeque<Item>, VecDeque<Item>) = queue.drain(..).partition(first);
        front.extend(back);
        *queue = front;
    }
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
        short_first(&mut queue, Instant::now());
        let mut handed_out = 0;
        while let Some(&worker) = idle.last() {
            // Share the waiting texts out between the idle workers; under mixed load, in passes
            // short enough that a newly arrived short request never waits long.
            let mut share = queue.len().div_ceil(idle.len());
            if mixed(&queue) {
                share = share.min(MIXED_PASS_TEXTS);
            }
            let before = queue.len();
            let batch = take_batch(&mut queue, limits, share, || {
                metrics.cancelled.inc();
            });
            metrics.queue_depth.dec_by((before - queue.len()) as i64);
            let Some(items) = batch else { break };
            // Lone: the only job of this round, and nothing left waiting.
            let lone = handed_out == 0 && queue.is_empty();
            handed_out += 1;
            idle.pop();
            if let Err(job) = workers[worker].send(Job { items, lone }) {
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

    /// Mixed load: a 1-text request queued behind two 32-text ones runs in the next pass, not
    /// after 64 texts; an overtaken request waiting past MAX_OVERTAKEN keeps its turn.
    #[test]
    fn short_requests_overtake_long_ones_but_never_starve_them() {
        let sem = Arc::new(Semaphore::new(10));
        let (long_a, _ra) = request(&sem, &[7; 32]);
        let (long_b, _rb) = request(&sem, &[7; 32]);
        let (short, _rs) = request(&sem, &[3]);
        let mut queue: VecDeque<Item> = items(&long_a)
            .into_iter()
            .chain(items(&long_b))
            .chain(items(&short))
            .collect();
        let now = short.enqueued_at;
        short_first(&mut queue, now);
        let limits = BatchLimits {
            max_batch_size: 8,
            max_batch_tokens: 1000,
        };
        let batch = take_batch(&mut queue, limits, usize::MAX, || {}).unwrap();
        assert_eq!(lengths(&batch)[0], 3, "the short request goes first");
        assert_eq!(queue.len(), 64 - 7, "then the long ones, in arrival order");
        // Later, the long requests have waited past MAX_OVERTAKEN: a new short request no
        // longer overtakes them.
        let (late, _rl) = request(&sem, &[3]);
        queue.extend(items(&late));
        short_first(
            &mut queue,
            long_a.enqueued_at + MAX_OVERTAKEN + Duration::from_millis(1),
        );
        assert_eq!(queue.front().unwrap().ids().len(), 7);
        assert_eq!(queue.back().unwrap().ids().len(), 3);
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
