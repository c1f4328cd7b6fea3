//! The knee of a ramp: a closed-model profile whose users grow is cut into steps of a few
//! one-second windows each ([`windows_per_step`]), each step's requests are measured on their
//! own merged histogram ([`Steps`], fed window by window by [`crate::stats::Stats`]), and
//! [`knee`] reads the highest step inside every latency and error budget and the step where one
//! broke.
//!
//! A step closes once it holds its windows and the users grow again, so the hold at the peak
//! joins the last step however long it lasts; windows with fewer users than already reached
//! (a ramp down, or the drain after the deadline) belong to no step. Robust to noise in two
//! ways: a step with fewer than [`MIN_STEP_REQUESTS`] requests is not judged (too few for a
//! p95), and a break counts only when the next judged step is broken too (or it is the last
//! one): one slow step between good ones is noise, not the knee. A ramp has at most about
//! [`MAX_STEPS`] steps, so the curve stays small enough for a pod's termination message.

use crate::stats::{Entry, Figures};
use loadgate_api::capacity::{BreakPoint, Capacity, CurvePoint};
use loadgate_api::load::{LoadProfile, RequestStats, Thresholds};
use loadgate_api::results::StepResult;
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

/// One-second windows per step of a closed-model profile whose users grow over more than one
/// step; `None` for the open model and for profiles that start their users (nearly) at once.
pub fn windows_per_step(profile: &LoadProfile) -> Option<u32> {
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
            self.seconds,
            &self.figures,
        )
    }

    /// The row as it travels in a runner's results.
    pub fn result(&self) -> StepResult {
        StepResult {
            first_window: self.first_window,
            windows: self.windows,
            users: self.users,
            users_throughout: self.users_throughout,
            seconds: self.seconds,
            stats: self.stats.clone(),
        }
    }
}

/// A curve point of a step with these users, length and figures.
pub fn point(users: u32, users_throughout: u32, seconds: f64, f: &Figures) -> CurvePoint {
    CurvePoint {
        users,
        users_throughout,
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
    }
}

fn round(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

/// The step being measured and those finished. Steps are cut on the whole profile's planned
/// users ([`LoadProfile::planned_users`]) at each window's place on the common clock, never on
/// one runner's own count, so every shard of a profile cuts the same steps and their
/// histograms add up step by step; the users a step reports are the ones this runner had.
#[derive(Debug, Clone)]
pub struct Steps {
    windows_per_step: u32,
    plan: LoadProfile,
    /// Windows in the current step, and the first of them.
    windows: u32,
    first_window: u32,
    seconds: f64,
    /// Planned users at the latest window, and the most planned so far.
    planned: u32,
    peak_planned: u32,
    /// Users the latest window ended with, and those it started with.
    users: u32,
    users_before: u32,
    entry: Entry,
    /// Finished steps, in order.
    pub rows: Vec<StepRow>,
}

impl Steps {
    /// Steps of at least `windows_per_step` windows, cut on `plan` (the whole profile).
    pub fn new(windows_per_step: u32, plan: LoadProfile) -> Self {
        Self {
            windows_per_step: windows_per_step.max(1),
            plan,
            windows: 0,
            first_window: 0,
            seconds: 0.0,
            planned: 0,
            peak_planned: 0,
            users: 0,
            users_before: 0,
            entry: Entry::new("step", ""),
            rows: Vec::new(),
        }
    }

    /// Adds window `index` of the common clock, which lasted `seconds` and ended with `users`
    /// of this runner running.
    pub fn add_window(&mut self, index: u32, users: u32, window: &Entry, seconds: f64) {
        // The plan just before the window's end: the last second of the run still counts, the
        // drain after it does not.
        let planned = self.plan.planned_users(
            Duration::from_secs(u64::from(index) + 1).saturating_sub(Duration::from_millis(1)),
        );
        if planned == 0 || planned < self.peak_planned {
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
        self.entry.add(window);
    }

    /// Closes the current step.
    pub fn close(&mut self) {
        if self.windows == 0 {
            return;
        }
        if self.entry.requests > 0 && self.users_before > 0 {
            self.rows.push(StepRow {
                first_window: self.first_window,
                windows: self.windows,
                users: self.users,
                users_throughout: self.users_before,
                seconds: self.seconds,
                figures: Figures::of(&self.entry),
                stats: self.entry.summary(self.seconds),
            });
        }
        self.entry.reset();
        self.windows = 0;
        self.seconds = 0.0;
    }
}

/// Steps of several runners that ran one profile side by side, merged step by step: each
/// runner cut the same steps on the common clock ([`Steps`]), so a step's requests add up and
/// its histograms merge into exact percentiles; its users are the runners' users added up.
///
/// # Errors
/// When runners disagree on where a step is (its windows), or a step's histogram does not
/// decode or match its counts.
pub fn merge_steps(runners: &[&[StepResult]]) -> Result<Vec<CurvePoint>, String> {
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
            return Err(format!(
                "runners disagree on the step at window {first}: {} windows against {windows}",
                parts
                    .iter()
                    .map(|p| p.windows)
                    .find(|&w| w != windows)
                    .unwrap_or(0)
            ));
        }
        let mut entry = Entry::new("step", "");
        let (mut users, mut throughout, mut seconds) = (0u32, 0u32, 0f64);
        for part in &parts {
            let histogram = crate::merge::decode(&part.stats).map_err(|e| e.to_string())?;
            entry
                .add_counts(
                    &histogram,
                    part.stats.requests,
                    part.stats.failures,
                    part.stats.not_sent,
                )
                .map_err(|e| format!("step at window {first}: {e}"))?;
            users = users.saturating_add(part.users);
            throughout = throughout.saturating_add(part.users_throughout);
            seconds = seconds.max(part.seconds);
        }
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(format!("step at window {first} lasted {seconds} s"));
        }
        curve.push(point(users, throughout, seconds, &Figures::of(&entry)));
    }
    Ok(curve)
}

/// A broken budget: (field, measured, budget).
type Broken = (&'static str, f64, f64);

/// The budget a step broke first (p95, then p99, then errors).
fn broken(point: &CurvePoint, t: &Thresholds) -> Option<Broken> {
    [
        ("p95Ms", point.p95_ms, t.p95_ms),
        ("p99Ms", point.p99_ms, t.p99_ms),
        ("maxErrorRate", point.error_rate, t.max_error_rate),
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
    if t.p95_ms.is_none() && t.p99_ms.is_none() && t.max_error_rate.is_none() {
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
    // and broke with no more than the users it ended with.
    let held = judged[..break_at.unwrap_or(n)]
        .iter()
        .filter(|(_, broke)| broke.is_none())
        .map(|(p, _)| *p)
        .max_by_key(|p| p.users_throughout);
    let broke_at = break_at.map(|i| {
        let (point, broke) = judged[i];
        let (metric, measured, budget) = broke.expect("a break step broke a budget");
        BreakPoint {
            users: point.users,
            rps: point.rps,
            metric: metric.to_owned(),
            measured,
            budget,
        }
    });
    Some(Capacity {
        max_users_within_budget: held.map_or(0, |p| p.users_throughout),
        max_rps_within_budget: held.map_or(0.0, |p| p.rps),
        limited_by: broke_at.as_ref().map(|b| b.metric.clone()),
        broke_at,
    })
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
            seconds: 2.0,
            requests,
            rps: requests as f64 / 2.0,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms * 1.2,
            error_rate,
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
        let mut steps = Steps::new(2, profile(8, 2.0, 5));
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
        let mut late = Steps::new(2, profile(8, 2.0, 5));
        late.add_window(2, 1, &window(&[10]), 1.0);
        late.add_window(3, 2, &window(&[10]), 1.0);
        late.add_window(4, 3, &window(&[10]), 1.0);
        late.close();
        assert_eq!(rows(&late), [(2, 3, 3, 2, 3.0, 3)]);
    }

    #[test]
    fn shards_steps_add_up_into_exact_percentiles_and_summed_users() {
        let plan = profile(8, 2.0, 5);
        let shard = |users: [u32; 4], ms: [&[u64]; 4]| {
            let mut steps = Steps::new(2, plan.clone());
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
        let err = merge_steps(&[&a, &shifted]).unwrap_err();
        assert!(err.contains("disagree"), "{err}");
        let mut forged = b;
        forged[0].stats.requests += 1;
        assert!(merge_steps(&[&a, &forged]).is_err());
    }
}
