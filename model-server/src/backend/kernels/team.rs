//! A helper thread that stays awake through a forward pass, so a lone pass can split its matrix
//! products over two cores.
//!
//! Why not rayon: between two products of a pass (attention, GELU, LayerNorm: tens of
//! microseconds) rayon's idle threads go to sleep, and on a VM waking a halted vCPU takes longer
//! than half a 16-row product. Measured on 2 cores, a lone 16-token sentence ran no faster with
//! its products split over rayon (272 against 276 sentences/s in process), and through HTTP, where
//! every request also found the pool asleep, a rayon-hosted team lost 1.5 ms a request to wakes.
//!
//! Here a [`Helper`] is one dedicated thread. [`Helper::pass`] marks a pass active and wakes it;
//! while the pass is active the helper spins, and each product ([`Team::split`]) posts half its
//! panels to it and computes the other half itself. After a pass the helper spins on for
//! [`LINGER`], so the next request of a lone client finds it awake, then sleeps on a condvar. It
//! burns its core only while a pass is active or just ended, and [`Helper::release`] cuts the
//! linger short when other work wants the core.
//!
//! What it owns: one lifetime erasure in [`Team::split`], sound because `split` waits for the
//! helper to finish the task before it returns or unwinds; the whole protocol (the helper always
//! runs what is posted while a pass is active) is this module's, so it lives here entire.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the helper stays awake after a pass, waiting for the next one.
pub const LINGER: Duration = Duration::from_millis(2);

/// Work handed to the helper: runs once, on the helper's thread.
pub type Task<'a> = Box<dyn FnOnce() + Send + 'a>;

/// The owner's view of the helper during one pass; without one, every split runs inline.
pub struct Team<'h>(Option<&'h Shared>);

/// A dedicated helper thread, for one pass at a time.
pub struct Helper {
    shared: Arc<Shared>,
}

struct Shared {
    /// A pass is running (set and cleared under `sleep`'s lock).
    active: AtomicBool,
    /// A pass holds the helper; a second concurrent caller runs without it.
    taken: AtomicBool,
    /// The helper is spinning, not sleeping: only then is work posted to it.
    awake: AtomicBool,
    /// Cut the linger short.
    released: AtomicBool,
    /// The owner dropped the [`Helper`]: the thread exits.
    closed: AtomicBool,
    posted: AtomicUsize,
    finished: AtomicUsize,
    /// A task panicked on the helper: the owner re-raises it after the wait.
    panicked: AtomicBool,
    task: Mutex<Option<Task<'static>>>,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl Helper {
    /// Starts the helper thread, named `name`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn spawn(name: String) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            active: AtomicBool::new(false),
            taken: AtomicBool::new(false),
            awake: AtomicBool::new(false),
            released: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            posted: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            task: Mutex::new(None),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || thread_shared.run())?;
        Ok(Self { shared })
    }

    /// Runs `pass` on this thread with the helper at hand. One pass at a time: while another
    /// holds the helper, `pass` runs with a team that does everything inline.
    pub fn pass<R>(&self, pass: impl FnOnce(&Team) -> R) -> R {
        let shared = &*self.shared;
        if shared.taken.swap(true, Ordering::AcqRel) {
            return pass(&Team(None));
        }
        shared.released.store(false, Ordering::Release);
        {
            let _guard = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            shared.active.store(true, Ordering::Release);
        }
        shared.wake.notify_one();
        struct End<'s>(&'s Shared);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                {
                    let _guard = self.0.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    self.0.active.store(false, Ordering::Release);
                }
                self.0.taken.store(false, Ordering::Release);
            }
        }
        let _end = End(shared);
        pass(&Team(Some(shared)))
    }

    /// Lets the helper sleep now instead of lingering: other work wants the cores.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::Release);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _guard = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl Team<'_> {
    /// Runs `mine` here and `theirs` on the helper, and returns when both are done. If the helper
    /// is not awake yet, runs both here, one after the other.
    pub fn split(&self, mine: impl FnOnce(), theirs: Task<'_>) {
        let Some(shared) = self.0.filter(|shared| shared.awake.load(Ordering::Acquire)) else {
            mine();
            theirs();
            return;
        };
        // SAFETY: `theirs` borrows from the caller's frame for `'_`; this function does not
        // return, nor unwind (the wait is in a drop guard), before the helper has run it. The
        // helper stays awake while the pass is active, so it does run it.
        let theirs = unsafe { std::mem::transmute::<Task<'_>, Task<'static>>(theirs) };
        *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(theirs);
        let ticket = shared.posted.fetch_add(1, Ordering::Release) + 1;
        struct Wait<'s>(&'s Shared, usize);
        impl Drop for Wait<'_> {
            fn drop(&mut self) {
                while self.0.finished.load(Ordering::Acquire) < self.1 {
                    std::hint::spin_loop();
                }
            }
        }
        let wait = Wait(shared, ticket);
        mine();
        drop(wait);
        assert!(
            !shared.panicked.swap(false, Ordering::AcqRel),
            "a product's share panicked on the helper thread"
        );
    }
}

impl Shared {
    /// The helper thread: sleep until a pass is active, then spin and run what is posted until
    /// the pass ends and the linger runs out.
    fn run(&self) {
        let mut done = self.finished.load(Ordering::Acquire);
        loop {
            {
                let mut guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
                while !self.active.load(Ordering::Acquire) {
                    if self.closed.load(Ordering::Acquire) {
                        return;
                    }
                    self.awake.store(false, Ordering::Release);
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                self.awake.store(true, Ordering::Release);
            }
            let mut idle_since: Option<Instant> = None;
            loop {
                if self.posted.load(Ordering::Acquire) > done {
                    let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(task) = task {
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                        if run.is_err() {
                            self.panicked.store(true, Ordering::Release);
                        }
                    }
                    done += 1;
                    self.finished.store(done, Ordering::Release);
                } else if self.active.load(Ordering::Acquire) {
                    idle_since = None;
                    std::hint::spin_loop();
                } else {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= LINGER
                        || self.released.load(Ordering::Acquire)
                        || self.closed.load(Ordering::Acquire)
                    {
                        break; // back to the condvar, which re-checks `active` under the lock
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_whether_or_not_the_helper_is_awake() {
        let helper = Helper::spawn("test-helper".into()).unwrap();
        for round in 0..20 {
            if round % 5 == 4 {
                // Let it fall asleep: the next pass starts with it asleep.
                helper.release();
                std::thread::sleep(LINGER * 2);
            }
            let sum = helper.pass(|team| {
                (0..50)
                    .map(|i| {
                        let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
                        team.split(
                            || a.store(i, Ordering::Relaxed),
                            Box::new(|| b.store(2 * i, Ordering::Relaxed)),
                        );
                        a.into_inner() + b.into_inner()
                    })
                    .sum::<usize>()
            });
            assert_eq!(sum, 3 * (0..50).sum::<usize>(), "round {round}");
        }
    }

    #[test]
    fn a_panic_on_the_helper_reaches_the_owner() {
        let helper = Helper::spawn("test-helper".into()).unwrap();
        // Wait until the helper is awake so the task really runs there.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            helper.pass(|team| {
                while !team.0.unwrap().awake.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                team.split(|| {}, Box::new(|| panic!("boom")));
            })
        }));
        assert!(result.is_err());
        // The helper survives and serves the next pass.
        let value = helper.pass(|team| {
            let b = AtomicUsize::new(0);
            team.split(|| {}, Box::new(|| b.store(7, Ordering::Relaxed)));
            b.into_inner()
        });
        assert_eq!(value, 7);
    }

    #[test]
    fn a_second_concurrent_pass_runs_inline() {
        let helper = Helper::spawn("test-helper".into()).unwrap();
        helper.pass(|outer| {
            assert!(outer.0.is_some());
            helper.pass(|inner| assert!(inner.0.is_none()));
        });
    }
}
