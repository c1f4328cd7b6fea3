//! One admitted request on its way through the pipeline, shared by the batching actor
//! ([`super::queue`]) and the workers ([`super::worker`]): its token ids, where its vectors are
//! collected ([`Request::complete`]), its items (one per text, the unit of batching) and the
//! jobs (batches of items) workers run. Neither the queue nor the workers own these types, so
//! the two modules do not import each other's internals.

use crate::backend::BackendError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// Pooled vectors of one request, in text order, or why inference failed.
pub(crate) type Reply = Result<Vec<Vec<f32>>, BackendError>;

/// One admitted request: its texts, and where their vectors are collected.
pub(crate) struct Request {
    /// Token ids of each text, in request order.
    pub ids: Vec<Vec<u32>>,
    /// When the request joined the queue (for the queue-time histogram).
    pub enqueued_at: Instant,
    collected: Mutex<Collected>,
    dropped: AtomicBool,
}

struct Collected {
    vectors: Vec<Option<Vec<f32>>>,
    remaining: usize,
    reply: Option<oneshot::Sender<Reply>>,
    /// The admission permit, given back the moment the answer is sent: the worker may hold the
    /// request a little longer (until its whole batch is done), and a closed-loop client's next
    /// request must not find the permit still taken (measured: 87% 429s at 100 users).
    permit: Option<OwnedSemaphorePermit>,
}

impl Collected {
    fn answer(&mut self, reply: Reply) {
        // The permit goes back before the answer: a caller that sends its next request the
        // moment it has this one's answer must find the permit free (the other order raced, and
        // a closed-loop client saw 429s at exactly the admission limit).
        self.permit = None;
        if let Some(sender) = self.reply.take() {
            // The caller may have gone since; then nobody needs the answer.
            let _ = sender.send(reply);
        }
    }
}

impl Request {
    /// A request and the receiver its answer arrives on.
    pub(crate) fn new(
        ids: Vec<Vec<u32>>,
        permit: OwnedSemaphorePermit,
    ) -> (Arc<Self>, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let n = ids.len();
        let request = Self {
            ids,
            enqueued_at: Instant::now(),
            collected: Mutex::new(Collected {
                vectors: vec![None; n],
                remaining: n,
                reply: Some(reply),
                permit: Some(permit),
            }),
            dropped: AtomicBool::new(false),
        };
        (Arc::new(request), answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        // A panic while holding this lock cannot leave it inconsistent (plain stores), so a
        // poisoned lock is still usable.
        self.collected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the request dropped from the queue; true only the first time (so it is counted
    /// once however many of its items are skipped).
    pub(crate) fn mark_dropped(&self) -> bool {
        !self.dropped.swap(true, Ordering::Relaxed)
    }

    /// Whether nobody waits for the answer any more (caller gone, or already answered).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.lock()
            .reply
            .as_ref()
            .is_none_or(oneshot::Sender::is_closed)
    }

    /// Records the vector of text `index`; answers the caller once every text has one. An error
    /// answers at once, and the request's other texts are then skipped.
    pub(crate) fn complete(&self, index: usize, result: Result<Vec<f32>, BackendError>) {
        let mut collected = self.lock();
        if collected.reply.is_none() {
            return; // already answered (an earlier error): nothing to collect
        }
        match result {
            Ok(vector) => {
                if collected.vectors[index].replace(vector).is_none() {
                    collected.remaining -= 1;
                }
                if collected.remaining == 0 {
                    let vectors = std::mem::take(&mut collected.vectors)
                        .into_iter()
                        .map(|v| {
                            v.expect("every text has a vector when none remain; this is a bug")
                        })
                        .collect();
                    collected.answer(Ok(vectors));
                }
            }
            Err(error) => collected.answer(Err(error)),
        }
    }
}

/// One text of a request, as queued.
pub(crate) struct Item {
    /// The request it belongs to.
    pub request: Arc<Request>,
    /// Its position in the request.
    pub index: usize,
}

impl Item {
    /// Its token ids.
    pub(crate) fn ids(&self) -> &[u32] {
        &self.request.ids[self.index]
    }
}

/// A batch of texts handed to one worker.
pub(crate) struct Job {
    /// The texts; each vector goes straight to its request.
    pub items: Vec<Item>,
    /// Nothing else was queued when the job was handed out: it may use every core if no other
    /// worker is busy.
    pub lone: bool,
}
