//! The knee of a ramp or a search: a closed-model profile whose users grow, or a search whose
//! offered rate climbs, is cut into steps of a few one-second windows each
//! ([`windows_per_step`]), each step's requests are measured on their own merged histogram
//! ([`Steps`], fed window by window by [`crate::stats::Stats`]), and [`knee`] reads the highest
//! step inside every latency and error budget and the step where one broke; a search stops
//! once [`confirmed_break`] says so.
//!
//! A step closes once it holds its windows and the users grow again, so the hold at the peak
//! joins the last step however long it lasts; windows with fewer users than already reached
//! (a ramp down, or the drain after the deadline) belong to no step. Robust to noise in two
//! ways: a step with fewer than [`MIN_STEP_REQUESTS`] requests is not judged (too few for a
//! p95), and a break counts only when the next judged step is broken too (or it is the last
//! one): one slow step between good ones is noise, not the knee. A ramp has at most about
//! [`MAX_STEPS`] steps, so the curve stays small enough for a pod's termination message.

use crate::checked::PartError;
use crate::entry::{Entry, Figures};
use loadgate_api::capacity::{BreakPoint, Capacity, CurvePoint, StepLlm};
use loadgate_api::load::{LoadProfile, Thresholds};
use loadgate_api::results::StepResult;
use loadgate_api::stats::{LlmStats, RequestStats};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most steps in a ramp's rise (the hold at the peak adds one).
pub const MAX_STEPS: u32 = 16;
/// Most points a curve may hold (the rise's steps, a partial one, the hold): what a status
/// keeps of a runner's curve.
pub const MAX_CURVE_POINTS: usize = 24;
/// Fewest one-second windows in a step.
pub const MIN_STEP_WINDOWS: u32 = 2;
/// Fewest requests a step needs to be judged.
pub const MIN_STEP_REQUESTS: u64 = 20;

/// One-second windows per step: a search's step duration, or for a closed-model profile whose
/// users grow over more than one step a few windows; `None` for a fixed arrival rate and for
/// profiles that start their users (nearly) at once.
pub fn windows_per_step(profile: &LoadProfile) -> Option<u32> {
    if let Some(search) = &profile.search {
        let seconds = search.step_duration.get().as_secs();
        return Some(
            u32::try_from(seconds)
                .unwrap_or(u32::MAX)
                .max(MIN_STEP_WINDOWS),
        );
    }
    if profile.arrival_rate.is_some() {
        return None;
    }
    let run = profile.run_time().as_secs_f64();
    let (peak, rising) = if profile.stages.is_empty() {
        let reached = (profile.spawn_rate * run).min(f64::from(profile.users));
        (reached, reached / profile.spawn_rate)
    } else {
        let peak = profile.stages.iter().map(|s| s.users).max().unwrap_or(0);
        let mut until = 0.0;
        for stage in &profile.stages {
            until += stage.duration.get().as_secs_f64();
            if stage.users == peak {
                break;
            }
        }
        (f64::from(peak), until)
    };
    if peak < 2.0 || rising < f64::from(2 * MIN_STEP_WINDOWS) {
        return None;
    }
    let windows = (rising / f64::from(MAX_STEPS))
        .ceil()
        .max(f64::from(MIN_STEP_WINDOWS));
    Some(windows as u32)
}

/// A finished step: where it sits on the common clock, its user counts, how long it lasted,
/// and its requests' figures and histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Its first one-second window on the common clock.
    pub first_window: u32,
    /// Windows it spans.
    pub windows: u32,
    /// Users at the end of the step.
    pub users: u32,
    /// Users at the start of its last window: running through all of that second.
    pub users_throughout: u32,
    /// A search: the rate this runner offered in the step.
    pub offered_rps: Option<f64>,
    /// Seconds it lasted.
    pub seconds: f64,
    /// Its requests.
    pub figures: Figures,
    /// Its requests with their histogram, for merging with other shards' same step.
    pub stats: RequestStats,
}

impl StepRow {
    /// The row as a curve point.
    pub fn point(&self) -> CurvePoint {
        point(
            self.users,
            self.users_throughout,
            self.offered_rps,
            self.seconds,
            &self.figures,
            self.stats.llm.as_ref(),
        )
    }

    /// The row as it travels in a runner's results.
    pub fn result(&self) -> StepResult {
        StepResult {
            first_window: self.first_window,
            windows: self.windows,
            users: self.users,
            users_throughout: self.users_throughout,
            offered_rps: self.offered_rps,
            seconds: self.seconds,
            stats: self.stats.clone(),
        }
    }
}

/// A curve point of a step with these users (and a search's offered rate), length and figures
/// (and its LLM answers', when it had any).
pub fn point(
    users: u32,
    users_throughout: u32,
    offered_rps: Option<f64>,
    seconds: f64,
    f: &Figures,
    llm: Option<&LlmStats>,
) -> CurvePoint {
    CurvePoint {
        users,
        users_throughout,
        offered_rps: offered_rps.map(|r| round(r, 1000.0)),
        seconds: round(seconds, 1000.0),
        requests: f.requests,
        rps: round(
            if seconds > 0.0 {
                f.requests as f64 / seconds
            } else {
                0.0
            },
            100.0,
        ),
        p50_ms: round(f.p50_ms(), 100.0),
        p95_ms: round(f.p95_ms(), 100.0),
        p99_ms: round(f.p99_ms(), 100.0),
        error_rate: round(f.error_rate(), 1e6),
        llm: llm.filter(|l| l.answered > 0).map(|l| StepLlm {
            ttft_p95_ms: round(l.ttft.p95_ms, 100.0),
            itl_p95_ms: round(l.itl.p95_ms, 100.0),
            tpot_p95_ms: round(l.tpot.p95_ms, 100.0),
            output_tokens_per_second: round(
                if seconds > 0.0 {
                    l.output_tokens as f64 / seconds
                } else {
                    0.0
                },
                100.0,
            ),
        }),
    }
}

fn round(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

/// The step being measured and those finished. Steps are cut on the whole profile's planned
/// level ([`LoadProfile::planned_level`]: users, or a search's rate) at each window's place on
/// the common clock, never on one runner's own count, so every shard of a profile cuts the same
/// steps and their histograms add up step by step; the users a step reports are the ones this
/// runner had, and a search's offered rate is this runner's share.
#[derive(Debug, Clone)]
pub struct Steps {
    windows_per_step: u32,
    plan: LoadProfile,
    /// This runner's share of a search (its offered rates); `None` for a ramp.
    own_search: Option<loadgate_api::load::Search>,
    /// Windows in the current step, and the first of them.
    windows: u32,
    first_window: u32,
    seconds: f64,
    /// Planned level at the latest window, and the most planned so far.
    planned: f64,
    peak_planned: f64,
    /// Set by [`Steps::stop`]: no more windows make steps.
    stopped: bool,
    /// The window on the common clock expected next.
    next_window: u32,
    /// Users the latest window ended with, and those it started with.
    users: u32,
    users_before: u32,
    /// The most users any window of the current step ended with.
    peak_users: u32,
    entry: Entry,
    /// Finished steps, in order.
    pub rows: Vec<StepRow>,
}

impl Steps {
    /// Steps of at least `windows_per_step` windows, cut on `plan` (the whole profile); `own`
    /// is this runner's share of it (the same for a lone runner).
    pub fn new(windows_per_step: u32, plan: LoadProfile, own: &LoadProfile) -> Self {
        Self {
            windows_per_step: windows_per_step.max(1),
            plan,
            own_search: own.search,
            windows: 0,
            first_window: 0,
            seconds: 0.0,
            planned: 0.0,
            peak_planned: 0.0,
            stopped: false,
            next_window: 0,
            users: 0,
            users_before: 0,
            peak_users: 0,
            entry: Entry::new("step", ""),
            rows: Vec::new(),
        }
    }

    /// Adds window `index` of the common clock, which lasted `seconds` and ended with `users`
    /// of this runner running. A runner that began late (its first window is not 0) first walks
    /// the windows it missed as empty ones, so it cuts its steps where every shard does and its
    /// first step adds up with theirs.
    pub fn add_window(&mut self, index: u32, users: u32, window: &Entry, seconds: f64) {
        if self.stopped {
            return;
        }
        // Windows past the plan's end make no step: the walk stops there, however late.
        let run_end = u32::try_from(self.plan.run_time().as_secs())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if self.next_window < index.min(run_end) {
            let missed = Entry::new("step", "");
            while self.next_window < index.min(run_end) {
                self.add_one(self.next_window, 0, &missed, 1.0);
            }
        }
        self.add_one(index, users, window, seconds);
    }

    /// Passes over window `index` without measuring it (a warm-up second): no step counts it,
    /// and no empty window stands in for it.
    pub fn skip_window(&mut self, index: u32) {
        self.next_window = self.next_window.max(index.saturating_add(1));
    }

    fn add_one(&mut self, index: u32, users: u32, window: &Entry, seconds: f64) {
        self.next_window = index.saturating_add(1);
        // The plan just before the window's end: the last second of the run still counts, the
        // drain after it does not.
        let planned = self.plan.planned_level(
            Duration::from_secs(u64::from(index) + 1).saturating_sub(Duration::from_millis(1)),
        );
        if planned <= 0.0 || planned < self.peak_planned {
            // Before the run, after it, or users stopping: no step measures these.
            self.close();
            self.users = users;
            return;
        }
        self.peak_planned = planned;
        if self.windows >= self.windows_per_step && planned > self.planned {
            self.close();
        }
        if self.windows == 0 {
            self.first_window = index;
        }
        self.windows += 1;
        self.seconds += seconds;
        self.planned = planned;
        self.users_before = self.users;
        self.users = users;
        self.peak_users = self.peak_users.max(users);
        self.entry.add(window);
    }

    /// Closes the current step.
    pub fn close(&mut self) {
        if self.windows == 0 {
            return;
        }
        // A ramp's step measures users that ran; a search's, the rate it offered (its requests
        // in flight may well be 0 at a second's end).
        let measured = self.users_before > 0 || self.own_search.is_some();
        if self.entry.requests > 0 && measured {
            let offered_rps = self.own_search.and_then(|own| {
                let at = Duration::from_secs(u64::from(self.first_window));
                own.step_at(at).map(|i| own.rate(i))
            });
            self.rows.push(StepRow {
                first_window: self.first_window,
                windows: self.windows,
                // The most it reached: its last window may end in the drain after the
                // deadline, with users already stopping.
                users: self.peak_users,
                users_throughout: self.users_before,
                offered_rps,
                seconds: self.seconds,
                figures: Figures::of(&self.entry),
                stats: self.entry.summary(self.seconds),
            });
        }
        self.entry.reset();
        self.peak_users = 0;
        self.windows = 0;
        self.seconds = 0.0;
    }

    /// Ends the steps early (a search that found its break): the step under way is dropped,
    /// half measured, and no later window makes a step.
    pub fn stop(&mut self) {
        self.entry.reset();
        self.peak_users = 0;
        self.windows = 0;
        self.seconds = 0.0;
        self.stopped = true;
    }

    /// The finished steps as curve points.
    pub fn curve(&self) -> Vec<CurvePoint> {
        self.rows.iter().map(StepRow::point).collect()
    }
}

/// Steps of several runners that ran one profile side by side, merged step by step: each
/// runner cut the same steps on the common clock ([`Steps`]), so a step's requests add up and
/// its histograms merge into exact percentiles; its users are the runners' users added up.
///
/// # Errors
/// When runners disagree on where a step is (its windows), or a step's histogram does not
/// decode or match its counts.
pub fn merge_steps(runners: &[&[StepResult]]) -> Result<Vec<CurvePoint>, PartError> {
    let mut by_start: BTreeMap<u32, Vec<&StepResult>> = BTreeMap::new();
    for steps in runners {
        for step in *steps {
            by_start.entry(step.first_window).or_default().push(step);
        }
    }
    let mut curve = Vec::with_capacity(by_start.len());
    for (first, parts) in by_start {
        let windows = parts[0].windows;
        if parts.iter().any(|p| p.windows != windows) {
            return Err(PartError::StepWindows {
                first,
                theirs: parts
                    .iter()
                    .map(|p| p.windows)
                    .find(|&w| w != windows)
                    .unwrap_or(0),
                ours: windows,
            });
        }
        let mut entry = Entry::new("step", "");
        let (mut users, mut throughout, mut seconds) = (0u32, 0u32, 0f64);
        // A search's offered rate is the shards' shares added up (all of them must say it).
        let offered: Option<f64> = parts.iter().map(|p| p.offered_rps).sum();
        if offered.is_some_and(|r| !r.is_finite() || r < 0.0) {
            return Err(PartError::Offered { first, offered });
        }
        for part in &parts {
            let histogram = crate::checked::decode(&part.stats)?;
            entry
                .add_counts(
                    &histogram,
                    part.stats.requests,
                    part.stats.failures,
                    part.stats.not_sent,
                )
                .map_err(PartError::in_step(first))?;
            users = users.saturating_add(part.users);
            throughout = throughout.saturating_add(part.users_throughout);
            seconds = seconds.max(part.seconds);
        }
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(PartError::Seconds { first, seconds });
        }
        let llm: Vec<&LlmStats> = parts.iter().filter_map(|p| p.stats.llm.as_ref()).collect();
        let llm = crate::llm::merge("step", &llm, seconds)
            .map_err(|e| PartError::in_step(first)(PartError::Stats(e)))?;
        curve.push(point(
            users,
            throughout,
            offered,
            seconds,
            &Figures::of(&entry),
            llm.as_ref(),
        ));
    }
    Ok(curve)
}

/// A broken budget: (field, measured, budget).
type Broken = (&'static str, f64, f64);

/// The budget a step broke first (p95, then p99, then errors, then the LLM answers' TTFT, ITL
/// and TPOT p95).
fn broken(point: &CurvePoint, t: &Thresholds) -> Option<Broken> {
    let llm = point.llm.unwrap_or(StepLlm {
        ttft_p95_ms: 0.0,
        itl_p95_ms: 0.0,
        tpot_p95_ms: 0.0,
        output_tokens_per_second: 0.0,
    });
    [
        ("p95Ms", point.p95_ms, t.p95_ms),
        ("p99Ms", point.p99_ms, t.p99_ms),
        ("maxErrorRate", point.error_rate, t.max_error_rate),
        ("ttftP95Ms", llm.ttft_p95_ms, t.ttft_p95_ms),
        ("itlP95Ms", llm.itl_p95_ms, t.itl_p95_ms),
        ("tpotP95Ms", llm.tpot_p95_ms, t.tpot_p95_ms),
    ]
    .into_iter()
    .find_map(|(field, measured, budget)| {
        budget
            .filter(|&b| measured > b)
            .map(|b| (field, measured, b))
    })
}

/// The capacity of a ramp's `curve` against the latency and error budgets in `t` (`minRps` does
/// not apply to a ramp: its rate grows with its users). `None` when no such budget is set or no
/// step had enough requests to judge.
pub fn knee(curve: &[CurvePoint], t: &Thresholds) -> Option<Capacity> {
    if !t.judges_steps() {
        return None;
    }
    let judged: Vec<(&CurvePoint, Option<Broken>)> = curve
        .iter()
        .filter(|p| p.requests >= MIN_STEP_REQUESTS)
        .map(|p| (p, broken(p, t)))
        .collect();
    if judged.is_empty() {
        return None;
    }
    let n = judged.len();
    let break_at =
        (0..n).find(|&i| judged[i].1.is_some() && (i + 1 == n || judged[i + 1].1.is_some()));
    // Claims err low both ways: a step held with the users that ran through its last second,
    // and broke with no more than the users it ended with. A search's steps climb in order, so
    // the highest that held is the one offering the most.
    let held = judged[..break_at.unwrap_or(n)]
        .iter()
        .filter(|(_, broke)| broke.is_none())
        .map(|(p, _)| *p)
        .max_by(|a, b| match (a.offered_rps, b.offered_rps) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => a.users_throughout.cmp(&b.users_throughout),
        });
    let broke_at = break_at.map(|i| {
        let (point, broke) = judged[i];
        let (metric, measured, budget) = broke.expect("a break step broke a budget");
        BreakPoint {
            users: point.users,
            offered_rps: point.offered_rps,
            rps: point.rps,
            metric: metric.to_owned(),
            measured,
            budget,
        }
    });
    Some(Capacity {
        max_users_within_budget: held.map_or(0, |p| p.users_throughout),
        max_rps_within_budget: held.map_or(0.0, |p| p.rps),
        offered_rps: held.and_then(|p| p.offered_rps),
        limited_by: broke_at.as_ref().map(|b| b.metric.clone()),
        broke_at,
        output_tokens_per_second: held.and_then(|p| p.llm).map(|l| l.output_tokens_per_second),
    })
}

/// True when the last two judged steps of `curve` both broke a latency or error budget of
/// `t`: the break [`knee`] would read is confirmed, and a search need climb no further.
pub fn confirmed_break(curve: &[CurvePoint], t: &Thresholds) -> bool {
    let mut judged = curve
        .iter()
        .rev()
        .filter(|p| p.requests >= MIN_STEP_REQUESTS)
        .take(2);
    let (Some(last), Some(before)) = (judged.next(), judged.next()) else {
        return false;
    };
    broken(last, t).is_some() && broken(before, t).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::duration::Duration as SpecDuration;
    use loadgate_api::load::Stage;

    fn point(users: u32, requests: u64, p95_ms: f64, error_rate: f64) -> CurvePoint {
        CurvePoint {
            users,
            users_throughout: users - 1,
            offered_rps: None,
            seconds: 2.0,
            requests,
            rps: requests as f64 / 2.0,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms * 1.2,
            error_rate,
            llm: None,
        }
    }

    fn p95_budget() -> Thresholds {
        Thresholds {
            p95_ms: Some(500.0),
            max_error_rate: Some(0.01),
            ..Thresholds::default()
        }
    }

    #[test]
    fn a_clean_knee_is_the_last_step_before_two_broken_ones() {
        let curve = [
            point(10, 100, 100.0, 0.0),
            point(20, 200, 200.0, 0.0),
            point(30, 300, 450.0, 0.0),
            point(40, 320, 700.0, 0.0),
            point(50, 330, 900.0, 0.0),
        ];
        let c = knee(&curve, &p95_budget()).unwrap();
        assert_eq!(
            (c.max_users_within_budget, c.max_rps_within_budget),
            (29, 150.0)
        );
        assert_eq!(c.limited_by.as_deref(), Some("p95Ms"));
        let at = c.broke_at.unwrap();
        assert_eq!((at.users, at.measured, at.budget), (40, 700.0, 500.0));
    }

    #[test]
    fn one_noisy_step_and_thin_steps_are_not_the_knee() {
        let curve = [
            point(10, 100, 100.0, 0.0),
            point(20, 200, 800.0, 0.0), // one slow step between good ones
            point(30, 300, 300.0, 0.0),
            point(35, 5, 5000.0, 0.0), // too few requests to judge
            point(40, 320, 480.0, 0.0),
            point(50, 330, 100.0, 0.05), // errors break it, and it is the last step
        ];
        let c = knee(&curve, &p95_budget()).unwrap();
        assert_eq!(c.max_users_within_budget, 39);
        assert_eq!(c.limited_by.as_deref(), Some("maxErrorRate"));
        assert_eq!(c.broke_at.unwrap().users, 50);
    }

    #[test]
    fn no_knee_inside_the_range_holds_to_the_peak() {
        let curve = [point(10, 100, 100.0, 0.0), point(20, 200, 200.0, 0.0)];
        let c = knee(&curve, &p95_budget()).unwrap();
        assert_eq!((c.max_users_within_budget, c.limited_by), (19, None));
        assert!(c.broke_at.is_none());
    }

    #[test]
    fn breaking_at_the_first_step_holds_nothing() {
        let curve = [point(10, 100, 900.0, 0.0), point(20, 200, 950.0, 0.0)];
        let c = knee(&curve, &p95_budget()).unwrap();
        assert_eq!(
            (c.max_users_within_budget, c.max_rps_within_budget),
            (0, 0.0)
        );
        assert_eq!(c.broke_at.unwrap().users, 10);
    }

    #[test]
    fn no_budget_or_nothing_to_judge_is_no_capacity() {
        let curve = [point(10, 100, 900.0, 0.0)];
        let rps_only = Thresholds {
            min_rps: Some(5.0),
            ..Thresholds::default()
        };
        assert_eq!(knee(&curve, &rps_only), None);
        assert_eq!(knee(&[point(10, 3, 900.0, 0.0)], &p95_budget()), None);
    }

    fn profile(users: u32, spawn_rate: f64, seconds: u64) -> LoadProfile {
        LoadProfile {
            name: "ramp".into(),
            users,
            spawn_rate,
            duration: SpecDuration::from_secs(seconds),
            arrival_rate: None,
            stages: Vec::new(),
            search: None,
            warmup: Default::default(),
        }
    }

    #[test]
    fn steps_are_two_windows_or_more_and_at_most_16_in_a_rise() {
        // The quickstart ramp: 100 users at +5/s rise for 20 s: steps of 2 windows.
        assert_eq!(windows_per_step(&profile(100, 5.0, 30)), Some(2));
        // 1000 users at +10/s rise for 100 s: 7 windows a step keeps it to 15 steps.
        assert_eq!(windows_per_step(&profile(1000, 10.0, 200)), Some(7));
        // A ramp cut short by the duration rises for the whole run.
        assert_eq!(windows_per_step(&profile(100, 2.0, 40)), Some(3));
        // All at once, a rise too short for two steps, and the open model: no ramp.
        assert_eq!(windows_per_step(&profile(50, 50.0, 30)), None);
        assert_eq!(windows_per_step(&profile(6, 2.0, 30)), None);
        let mut open = profile(100, 5.0, 30);
        open.arrival_rate = Some(10.0);
        assert_eq!(windows_per_step(&open), None);
        // Stages: rising to 40 over 20 s, then held.
        let mut staged = profile(1, 1.0, 1);
        staged.stages = vec![
            Stage {
                duration: SpecDuration::from_secs(20),
                users: 40,
            },
            Stage {
                duration: SpecDuration::from_secs(30),
                users: 40,
            },
        ];
        assert_eq!(windows_per_step(&staged), Some(2));
    }

    fn window(ms: &[u64]) -> Entry {
        let mut e = Entry::new("w", "");
        for &m in ms {
            e.record(m * 1000, false, false, 0);
        }
        e
    }

    fn rows(steps: &Steps) -> Vec<(u32, u32, u32, u32, f64, u64)> {
        steps
            .rows
            .iter()
            .map(|r| {
                (
                    r.first_window,
                    r.windows,
                    r.users,
                    r.users_throughout,
                    r.seconds,
                    r.figures.requests,
                )
            })
            .collect()
    }

    #[test]
    fn steps_are_cut_on_the_plan_and_the_hold_and_drain_are_not_split() {
        // 8 users at +2/s for 5 s: the plan has 2, 4, 6, 8, 8 users at the windows' ends.
        let mut steps = Steps::new(2, profile(8, 2.0, 5), &profile(8, 2.0, 5));
        steps.add_window(0, 2, &window(&[10, 20]), 1.0);
        steps.add_window(1, 4, &window(&[30]), 1.0);
        steps.add_window(2, 6, &window(&[100, 200]), 1.0);
        steps.add_window(3, 8, &window(&[100]), 1.0);
        steps.add_window(4, 8, &window(&[300]), 1.0); // the hold stays in the step
        steps.add_window(5, 5, &window(&[900]), 0.2); // the drain after the run: no step
        steps.close();
        assert_eq!(rows(&steps), [(0, 2, 4, 2, 2.0, 3), (2, 3, 8, 8, 3.0, 4)]);
        assert!((steps.rows[0].figures.max_ms() - 30.0).abs() < 0.1);
        assert_eq!(steps.rows[1].stats.requests, 4);
    }

    #[test]
    fn a_shard_that_started_late_cuts_the_same_steps_on_the_common_clock() {
        // Its own users lag the plan, but its windows 2.. fall in the same steps as everyone's.
        let mut late = Steps::new(2, profile(8, 2.0, 5), &profile(8, 2.0, 5));
        late.add_window(2, 1, &window(&[10]), 1.0);
        late.add_window(3, 2, &window(&[10]), 1.0);
        late.add_window(4, 3, &window(&[10]), 1.0);
        late.close();
        assert_eq!(rows(&late), [(2, 3, 3, 2, 3.0, 3)]);
        // One second late: it cuts where the on-time shard does. Its first step had no user
        // through its last second (it began then), so only the on-time shard measures that one.
        let mut on_time = Steps::new(2, profile(8, 2.0, 5), &profile(8, 2.0, 5));
        let mut late = on_time.clone();
        for i in 0..5 {
            on_time.add_window(i, i + 1, &window(&[10; 3]), 1.0);
            if i > 0 {
                late.add_window(i, i, &window(&[10; 3]), 1.0);
            }
        }
        on_time.close();
        late.close();
        let cuts = |s: &Steps| {
            s.rows
                .iter()
                .map(|r| (r.first_window, r.windows))
                .collect::<Vec<_>>()
        };
        assert_eq!(cuts(&late), cuts(&on_time)[1..]);
        assert_eq!(cuts(&on_time), [(0, 2), (2, 3)]);
        // Absurdly late (a saturated window number): no walk through billions of windows.
        let mut lost = Steps::new(2, profile(8, 2.0, 5), &profile(8, 2.0, 5));
        lost.add_window(u32::MAX, 1, &window(&[10]), 1.0);
        lost.close();
        assert!(lost.rows.is_empty());
    }

    #[test]
    fn shards_steps_add_up_into_exact_percentiles_and_summed_users() {
        let plan = profile(8, 2.0, 5);
        let shard = |users: [u32; 4], ms: [&[u64]; 4]| {
            let mut steps = Steps::new(2, plan.clone(), &plan);
            for (i, (users, ms)) in users.into_iter().zip(ms).enumerate() {
                steps.add_window(i as u32, users, &window(ms), 1.0);
            }
            steps.close();
            steps.rows.iter().map(StepRow::result).collect::<Vec<_>>()
        };
        let a = shard([1, 2, 3, 4], [&[10; 30], &[20; 30], &[100; 30], &[100; 30]]);
        let b = shard([1, 2, 3, 4], [&[30; 30], &[40; 30], &[300; 30], &[300; 30]]);
        let curve = merge_steps(&[&a, &b]).unwrap();
        let got: Vec<(u32, u32, u64)> = curve
            .iter()
            .map(|p| (p.users, p.users_throughout, p.requests))
            .collect();
        assert_eq!(got, [(4, 2, 120), (8, 6, 120)]);
        // Half the second step's requests at 100 ms, half at 300: p50 100, p95 300.
        assert!((curve[1].p50_ms - 100.0).abs() < 0.2, "{curve:?}");
        assert!((curve[1].p95_ms - 300.0).abs() < 0.5, "{curve:?}");
        assert!((curve[1].rps - 60.0).abs() < 1e-9);

        let mut shifted = b.clone();
        shifted[1].windows = 3;
        let err = merge_steps(&[&a, &shifted]).unwrap_err().to_string();
        assert!(err.contains("disagree"), "{err}");
        let mut forged = b;
        forged[0].stats.requests += 1;
        assert!(merge_steps(&[&a, &forged]).is_err());
    }

    fn search(start: f64, step: f64, seconds: u64, max: f64) -> LoadProfile {
        LoadProfile {
            search: Some(loadgate_api::load::Search {
                start_rps: start,
                step_rps: step,
                step_duration: SpecDuration::from_secs(seconds),
                max_rps: max,
            }),
            ..profile(50, 1.0, 1)
        }
    }

    /// A search point: offered rate, requests finished in its 2 s, p95.
    fn offered(rps: f64, requests: u64, p95_ms: f64) -> CurvePoint {
        CurvePoint {
            offered_rps: Some(rps),
            ..point(3, requests, p95_ms, 0.0)
        }
    }

    #[test]
    fn a_search_is_cut_into_its_steps_each_with_the_rate_it_offered() {
        let plan = search(10.0, 10.0, 3, 40.0);
        assert_eq!(windows_per_step(&plan), Some(3));
        // Two shards: each offers half of every step's rate.
        let own = plan.shard(1, 2);
        let mut steps = Steps::new(3, plan.clone(), &own);
        for i in 0..12 {
            // Requests in flight at a second's end may well be 0 at a low rate.
            steps.add_window(i, 0, &window(&[10; 5]), 1.0);
        }
        steps.add_window(12, 3, &window(&[900]), 0.3); // the drain after the last step
        steps.close();
        let got: Vec<(u32, u32, Option<f64>, u64)> = steps
            .rows
            .iter()
            .map(|r| (r.first_window, r.windows, r.offered_rps, r.figures.requests))
            .collect();
        assert_eq!(
            got,
            [
                (0, 3, Some(5.0), 15),
                (3, 3, Some(10.0), 15),
                (6, 3, Some(15.0), 15),
                (9, 3, Some(20.0), 15)
            ]
        );
        // The shards' shares add up to the step's rate.
        let rows: Vec<StepResult> = steps.rows.iter().map(StepRow::result).collect();
        let curve = merge_steps(&[&rows, &rows]).unwrap();
        let rates: Vec<Option<f64>> = curve.iter().map(|p| p.offered_rps).collect();
        assert_eq!(rates, [Some(10.0), Some(20.0), Some(30.0), Some(40.0)]);
        let mut forged = rows.clone();
        forged[0].offered_rps = Some(f64::INFINITY);
        assert!(merge_steps(&[&rows, &forged]).is_err());
    }

    #[test]
    fn a_stopped_search_drops_its_half_step_and_makes_no_more() {
        let plan = search(10.0, 10.0, 2, 100.0);
        let mut steps = Steps::new(2, plan.clone(), &plan);
        for i in 0..5 {
            steps.add_window(i, 1, &window(&[10; 25]), 1.0);
        }
        // Windows 0-1 and 2-3 closed; window 4 began the third step.
        steps.stop();
        steps.add_window(5, 1, &window(&[10; 25]), 1.0);
        steps.add_window(6, 1, &window(&[10; 25]), 1.0);
        steps.close();
        assert_eq!(
            steps.rows.iter().map(|r| r.offered_rps).collect::<Vec<_>>(),
            [Some(10.0), Some(20.0)]
        );
    }

    #[test]
    fn a_search_holds_up_to_the_highest_rate_before_two_broken_steps() {
        let curve = [
            offered(10.0, 20, 50.0),
            offered(20.0, 40, 60.0),
            offered(30.0, 60, 700.0), // one noisy step
            offered(40.0, 80, 90.0),
            offered(50.0, 90, 800.0),
            offered(60.0, 95, 2000.0),
        ];
        let c = knee(&curve, &p95_budget()).unwrap();
        assert_eq!((c.offered_rps, c.max_rps_within_budget), (Some(40.0), 40.0));
        let at = c.broke_at.clone().unwrap();
        assert_eq!((at.offered_rps, at.measured), (Some(50.0), 800.0));
        assert!(c.sentence(&p95_budget()).ends_with(
            "up to 40.0 req/s (40 req/s offered); breaks at 50 req/s offered: p95 800 ms"
        ));
    }

    #[test]
    fn a_break_is_confirmed_by_two_judged_broken_steps_in_a_row() {
        let t = p95_budget();
        let good = offered(10.0, 100, 50.0);
        let bad = offered(20.0, 100, 900.0);
        let thin = offered(30.0, 3, 5000.0);
        assert!(!confirmed_break(&[], &t));
        assert!(!confirmed_break(std::slice::from_ref(&bad), &t));
        assert!(!confirmed_break(&[good.clone(), bad.clone()], &t));
        assert!(!confirmed_break(&[bad.clone(), good.clone()], &t));
        assert!(confirmed_break(
            &[good.clone(), bad.clone(), bad.clone()],
            &t
        ));
        // A step too thin to judge neither confirms nor interrupts a break.
        assert!(!confirmed_break(
            &[good.clone(), bad.clone(), thin.clone()],
            &t
        ));
        assert!(confirmed_break(&[good, bad.clone(), thin, bad], &t));
    }
}
