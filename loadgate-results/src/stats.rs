//! Everything one run measured ([`Stats`]): the [`Entry`] of each task and of all, failure counts
//! by reason, a once-a-second history, a ramp's or search's steps, warm-up and abort-on-fail, fed
//! one [`Sample`] at a time by the engine's aggregator; and the [`RunOutcome`] the engine hands
//! back when the run ends.
//!
//! Memory stays flat however long a run lasts: the live histograms are fixed in size (about
//! 180 KiB each: one per task, the total, the current second), and each history row keeps only
//! the figures the reports print ([`Figures`], 272 bytes a second), not histogram copies (which
//! grew the runner by ~370 KiB a second).

use crate::capacity::Steps;
use crate::codec::MAX_MICROS;
use crate::entry::{Entry, Figures, HistoryRow};
use crate::llm::Slo;
use crate::sample::{Outcome, Sample};
use hdrhistogram::Histogram;
use loadgate_api::load::{LoadProfile, Thresholds};
use loadgate_api::results::WindowResult;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Everything measured in one run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Per task, in spec order.
    pub tasks: Vec<Entry>,
    /// All requests.
    pub total: Entry,
    /// Failures by (method, name, reason).
    pub failures: BTreeMap<(String, String, String), u64>,
    /// Once a second.
    pub history: Vec<HistoryRow>,
    /// Open model: start delays against the schedule, µs.
    pub start_delay: Option<Histogram<u64>>,
    /// A closed-model ramp's steps of users, or a search's steps of rates ([`crate::capacity`]).
    pub steps: Option<Steps>,
    /// A search: the budgets its steps are judged on, to stop once two in a row broke.
    stop_on_break: Option<Thresholds>,
    /// Set once a search's break is confirmed, or an abort on budget: the load should stop.
    pub break_found: bool,
    /// `abortOnFail`: the budgets each window is judged on, and how many in a row may break.
    abort_on: Option<(Thresholds, u32)>,
    /// Windows in a row that broke a budget (with `abort_on`).
    broken_in_a_row: u32,
    /// Why the load was stopped on its budgets, and when (since the stats began).
    pub aborted: Option<(String, Duration)>,
    /// Windows of warm-up: their requests count in no figure.
    warmup_windows: u32,
    /// How long the warm-up took, from the stats' start to the end of its last window.
    pub warmup_spent: Option<Duration>,
    /// Quality samples checked (outside the warm-up).
    pub quality: crate::sample::Tally,
    /// Connections opened (warm-up included: a connection outlives its window).
    pub dials: crate::dials::DialTally,
    started: Instant,
    /// Once a second, on the common clock: what a runner's results carry for merged history.
    pub windows: Vec<WindowResult>,
    /// The common clock's window of this runner's first one (its start's lag behind the
    /// shards' common start, in whole seconds).
    pub first_window: u32,
    window: Entry,
    window_started: Instant,
    /// Which tasks are LLM ones (chat, completion), by index: their requests, failed or not,
    /// count in the LLM figures.
    llm_tasks: Vec<bool>,
    /// The per-request SLO goodput counts against.
    slo: Slo,
}

impl Stats {
    /// Empty stats for tasks given as (name, method).
    pub fn new(tasks: &[(String, String)]) -> Self {
        Self {
            tasks: tasks
                .iter()
                .map(|(name, method)| Entry::new(name, method))
                .collect(),
            total: Entry::new("Aggregated", ""),
            failures: BTreeMap::new(),
            history: Vec::new(),
            start_delay: None,
            steps: None,
            stop_on_break: None,
            break_found: false,
            windows: Vec::new(),
            first_window: 0,
            window: Entry::new("Aggregated", ""),
            window_started: Instant::now(),
            abort_on: None,
            broken_in_a_row: 0,
            aborted: None,
            warmup_windows: 0,
            warmup_spent: None,
            quality: crate::sample::Tally::default(),
            dials: crate::dials::DialTally::default(),
            started: Instant::now(),
            llm_tasks: Vec::new(),
            slo: Slo::default(),
        }
    }

    /// Measures the tasks flagged in `llm_tasks` (by index) as LLM ones, goodput against `slo`.
    /// Their entries (and the total's) carry LLM figures from the start, zero until a request
    /// counts, so every runner's summary of an LLM task has them and merges add them all.
    pub fn measuring_llm(mut self, llm_tasks: Vec<bool>, slo: Slo) -> Self {
        for (entry, _) in self
            .tasks
            .iter_mut()
            .zip(&llm_tasks)
            .filter(|(_, llm)| **llm)
        {
            entry.llm = Some(Box::default());
        }
        if llm_tasks.contains(&true) {
            self.total.llm = Some(Box::default());
            self.window.llm = Some(Box::default());
        }
        self.llm_tasks = llm_tasks;
        self.slo = slo;
        self
    }

    /// Leaves the first `windows` seconds out of every figure (they stay in the history,
    /// marked).
    pub fn warming_up_for(mut self, windows: u32) -> Self {
        self.warmup_windows = windows;
        self
    }

    /// `abortOnFail`: judges each counted window against `budgets` (p95, p99, error rate) and
    /// stops the load ([`Self::break_found`], [`Self::aborted`]) once `windows` in a row broke
    /// one.
    pub fn aborting_after(mut self, budgets: Thresholds, windows: u32) -> Self {
        self.abort_on = Some((budgets, windows.max(1)));
        self
    }

    fn warming_up(&self) -> bool {
        self.windows.len() < self.warmup_windows as usize
    }

    /// Also measures a ramp's or a search's steps, cut on the whole profile `plan` (every shard
    /// passes the same one) when it has any ([`crate::capacity::windows_per_step`]); `own` is
    /// this runner's share of it.
    pub fn with_steps(mut self, plan: &LoadProfile, own: &LoadProfile) -> Self {
        self.steps =
            crate::capacity::windows_per_step(plan).map(|w| Steps::new(w, plan.clone(), own));
        self
    }

    /// A search: watches its steps against `budgets` and sets [`Self::break_found`] (and ends
    /// the steps) once two judged steps in a row broke one.
    pub fn stopping_on_break(mut self, budgets: Thresholds) -> Self {
        self.stop_on_break = Some(budgets);
        self
    }

    /// Numbers this runner's windows from `first` on the common clock.
    pub fn starting_at_window(mut self, first: u32) -> Self {
        self.first_window = first;
        self
    }

    /// Records one sample.
    pub fn record(&mut self, sample: &Sample) {
        let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        let (reason, not_sent, bytes) = match &sample.outcome {
            Outcome::Ok { bytes } => (None, false, *bytes),
            Outcome::Failed { reason, bytes } => (Some(reason.as_str()), false, *bytes),
            Outcome::NotSent(why) => (Some(why.reason()), true, 0),
        };
        let failed = reason.is_some();
        if let Some(dial) = &sample.dial {
            self.dials.add(dial);
        }
        let llm = self
            .llm_tasks
            .get(sample.task)
            .copied()
            .unwrap_or(false)
            .then(|| {
                let answer = sample.llm.as_deref().filter(|_| !failed);
                let good = answer.is_some_and(|a| self.slo.met_by(a, sample.latency));
                (answer, good)
            });
        if let Some((answer, good)) = llm {
            self.window.record_llm(answer, sample.latency, good);
        }
        if self.warming_up() {
            self.window.record(micros, failed, not_sent, bytes);
            return;
        }
        if let Some((answer, good)) = llm {
            self.tasks[sample.task].record_llm(answer, sample.latency, good);
            self.total.record_llm(answer, sample.latency, good);
        }
        if let Some(reason) = reason {
            let task = &self.tasks[sample.task];
            *self
                .failures
                .entry((task.method.clone(), task.name.clone(), reason.to_owned()))
                .or_default() += 1;
        }
        if let Some(delay) = sample.start_delay {
            let delay = u64::try_from(delay.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_MICROS);
            self.start_delay
                .get_or_insert_with(|| {
                    Histogram::new_with_bounds(1, MAX_MICROS, 3)
                        .expect("static histogram bounds are valid; this is a bug")
                })
                .saturating_record(delay);
        }
        self.tasks[sample.task].record(micros, failed, not_sent, bytes);
        self.total.record(micros, failed, not_sent, bytes);
        if let Some(check) = &sample.quality {
            self.quality.add(check);
        }
        if !failed {
            let texts = u64::from(sample.texts);
            self.tasks[sample.task].embeddings += texts;
            self.total.embeddings += texts;
        }
        self.window.record(micros, failed, not_sent, bytes);
    }

    /// Closes the current one-second window into a history row.
    pub fn snapshot(&mut self, users: u32) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let warmup = self.warming_up();
        self.history.push(HistoryRow {
            timestamp,
            users,
            window: Figures::of(&self.window),
            warmup,
            total: Figures::of(&self.total),
        });
        let now = Instant::now();
        let index = self
            .first_window
            .saturating_add(u32::try_from(self.windows.len()).unwrap_or(u32::MAX));
        let seconds = now
            .saturating_duration_since(self.window_started)
            .as_secs_f64();
        if warmup {
            if let Some(steps) = &mut self.steps {
                steps.skip_window(index);
            }
            if self.windows.len() + 1 == self.warmup_windows as usize {
                self.warmup_spent = Some(now.saturating_duration_since(self.started));
            }
        } else if let Some(steps) = &mut self.steps {
            steps.add_window(index, users, &self.window, seconds);
            if let Some(budgets) = &self.stop_on_break
                && !self.break_found
                && crate::capacity::confirmed_break(&steps.curve(), budgets)
            {
                steps.stop();
                self.break_found = true;
            }
        }
        if !warmup {
            self.judge_window(now);
        }
        self.windows.push(WindowResult {
            window: index,
            seconds: None,
            users,
            requests: self.window.requests,
            failures: self.window.failures,
            warmup,
            histogram: (self.window.sent() > 0)
                .then(|| crate::codec::encode(&crate::codec::coarsen(&self.window.histogram))),
            llm: self.window.llm.as_deref().map(crate::llm::window),
        });
        self.window.reset();
        self.window_started = now;
    }

    /// `abortOnFail`: counts the window just closed against the budgets; once enough in a row
    /// broke one, records why and asks the load to stop. A window with no request sent neither
    /// breaks nor mends the streak (nothing was measured).
    fn judge_window(&mut self, now: Instant) {
        let Some((budgets, windows)) = self.abort_on else {
            return;
        };
        if self.aborted.is_some() || self.window.requests == 0 {
            return;
        }
        let broken = crate::gate::window_breaks(&self.window, &budgets);
        match broken {
            Some(why) => {
                self.broken_in_a_row += 1;
                if self.broken_in_a_row >= windows {
                    let message = format!(
                        "{windows} one-second window{} in a row over budget (last: {why})",
                        if windows == 1 { "" } else { "s" }
                    );
                    self.aborted = Some((message, now.saturating_duration_since(self.started)));
                    self.break_found = true;
                }
            }
            None => self.broken_in_a_row = 0,
        }
    }

    /// Ends the run: closes the last step.
    pub fn finish(&mut self) {
        if let Some(steps) = &mut self.steps {
            steps.close();
        }
    }
}

/// What the engine hands back when a run ends.
#[derive(Debug)]
pub struct RunOutcome {
    /// Counts, histograms, failures, history.
    pub stats: Stats,
    /// From the first user's start to the last user's stop.
    pub elapsed: Duration,
    /// True when a shutdown signal cut the run short.
    pub interrupted: bool,
    /// Open model: requests not sent because too many already waited for a free user (they are
    /// also in the stats, as [`crate::sample::NotSent::QueueFull`] failures).
    pub dropped: u64,
    /// A search that stopped early: two steps in a row broke the budgets.
    pub stopped_at_break: bool,
}

impl RunOutcome {
    /// The time the figures cover: the run's, less its warm-up.
    pub fn measured(&self) -> Duration {
        self.elapsed
            .saturating_sub(self.stats.warmup_spent.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::NotSent;

    fn sample(task: usize, ms: u64, ok: bool) -> Sample {
        let outcome = if ok {
            Outcome::Ok { bytes: 10 }
        } else {
            Outcome::Failed {
                reason: "HTTPError 500".into(),
                bytes: 0,
            }
        };
        Sample {
            task,
            latency: Duration::from_millis(ms),
            outcome,
            start_delay: None,
            quality: None,
            texts: 0,
            dial: None,
            llm: None,
        }
    }

    #[test]
    fn percentiles_are_within_the_stated_precision() {
        let mut stats = Stats::new(&[("a".into(), "GET".into())]);
        for ms in 1..=1000 {
            stats.record(&sample(0, ms, true));
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0), (1.0, 1000.0)] {
            let got = stats.total.percentile_ms(q);
            assert!(
                (got - exact).abs() <= exact * 0.001 + 0.001,
                "p{q}: {got} vs {exact}"
            );
        }
        assert!(
            (stats.total.mean_ms() - 500.5).abs() < 1e-9,
            "the mean is exact"
        );
        assert_eq!(stats.total.min_ms(), 1.0);
    }

    #[test]
    fn failures_are_counted_by_reason_and_task() {
        let mut stats = Stats::new(&[("a".into(), "GET".into()), ("b".into(), "POST".into())]);
        stats.record(&sample(0, 5, true));
        stats.record(&sample(1, 5, false));
        stats.record(&sample(1, 5, false));
        assert_eq!((stats.total.requests, stats.total.failures), (3, 2));
        assert_eq!(stats.tasks[1].error_rate(), 1.0);
        assert_eq!(
            stats.failures[&("POST".into(), "b".into(), "HTTPError 500".into())],
            2
        );
        stats.snapshot(4);
        assert_eq!(
            (stats.history[0].users, stats.history[0].window.requests),
            (4, 3)
        );
        stats.record(&sample(0, 5, true));
        stats.snapshot(5);
        let row = stats.history[1];
        assert_eq!((row.window.requests, row.total.requests), (1, 4));
    }

    #[test]
    fn history_rows_hold_numbers_not_histograms() {
        // A row is Copy (so it owns no heap memory) and small: 272 bytes, ~23 MB for a day of
        // rows, where two histogram copies a second grew the runner by ~370 KiB a second.
        let size = std::mem::size_of::<HistoryRow>();
        assert!(size <= 320, "{size} bytes");
        let mut stats = Stats::new(&[("a".into(), "GET".into())]);
        for ms in 1..=100 {
            stats.record(&sample(0, ms, ms % 10 != 0));
        }
        stats.snapshot(1);
        let row = stats.history[0];
        assert_eq!(row.window, Figures::of(&stats.total));
        assert_eq!((row.total.requests, row.total.failures), (100, 10));
        assert_eq!(row.total.p50_ms(), stats.total.percentile_ms(0.5));
        assert_eq!(row.total.p95_ms(), stats.total.percentile_ms(0.95));
        assert_eq!(row.total.max_ms(), stats.total.percentile_ms(1.0));
        assert_eq!(row.total.error_rate(), 0.1);
        assert_eq!(row.total.avg_size(), 9.0);
    }

    /// Shed requests count as requests and failures, but have no latency: three given up after
    /// 3 ms beside one answered in 5 ms leave every percentile and the mean at 5 ms.
    #[test]
    fn not_sent_requests_are_failures_with_their_reason() {
        let mut stats = Stats::new(&[("a".into(), "GET".into())]);
        for why in [NotSent::QueueFull, NotSent::QueueFull, NotSent::RunEnded] {
            stats.record(&Sample {
                task: 0,
                latency: Duration::from_millis(3),
                outcome: Outcome::NotSent(why),
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: None,
            });
        }
        stats.record(&sample(0, 5, true));
        let total = stats.total.summary(1.0);
        assert_eq!((total.requests, total.failures, total.not_sent), (4, 3, 3));
        assert_eq!(stats.tasks[0].summary(1.0).not_sent, 3);
        assert_eq!(stats.total.histogram.len(), 1);
        assert_eq!(total.mean_ms, 5.0);
        // HDR's 3 significant digits: 5 ms reads back as 5.003.
        assert!((5.0..5.01).contains(&total.p50_ms) && (5.0..5.01).contains(&stats.total.min_ms()));
        let key = |r: &str| ("GET".to_owned(), "a".to_owned(), r.to_owned());
        assert_eq!(stats.failures[&key("NotSent: queue full")], 2);
        assert_eq!(stats.failures[&key("NotSent: run ended")], 1);
    }
}
