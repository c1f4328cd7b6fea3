//! The task that owns a run's [`Stats`] while the users run: it drains their samples from a
//! bounded channel, closes a window every second (progress, search breaks, abort-on-fail) and
//! hands the stats back when every sender is gone.

use loadgate_results::sample::Sample;
use loadgate_results::stats::Stats;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Owns the [`Stats`] while a run lasts: drains samples, snapshots every second, and hands the
/// stats back when every sender is gone. `progress` is called with the stats after each second's snapshot;
/// `break_found` turns true once a search's break is confirmed ([`Stats::stopping_on_break`]).
pub async fn aggregate(
    mut samples: mpsc::Receiver<Sample>,
    mut stats: Stats,
    users: Arc<AtomicU32>,
    mut progress: impl FnMut(&Stats, Instant),
    break_found: tokio::sync::watch::Sender<bool>,
) -> Stats {
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            sample = samples.recv() => match sample {
                Some(sample) => stats.record(&sample),
                None => break,
            },
            _ = tick.tick() => {
                stats.snapshot(users.load(Ordering::Relaxed));
                progress(&stats, started);
                if stats.break_found {
                    break_found.send_if_modified(|found| !std::mem::replace(found, true));
                }
            }
        }
    }
    stats.snapshot(users.load(Ordering::Relaxed));
    stats.finish();
    stats
}
