//! The gates on a whole run, beside each profile's own budgets: the cold start of the target
//! (`thresholds.maxColdStartSeconds`) and the regression against a baseline run
//! (`spec.baseline`). [`pick_baseline`] chooses the run compared against when a run starts (the
//! latest passed run of this LoadTest, or of `loadTestRef`), so the figures it names are the
//! ones in `status.baseline`; [`judge`] compares at the run's end.
//!
//! A baseline is compared profile by profile (same name, same [`fingerprint`], both with
//! results): p95, p99 and requests per second; and on the test's capacity
//! (`status.capacity.maxRpsWithinBudget`) when the profile that found it is comparable. A
//! profile whose load shape or task mix changed has no comparable baseline, and the status says
//! so: fewer users must never pass as "no regression".
//! Violations name both runs: "p95 612 ms is +18% over the baseline's 518 ms (run 3f2a9c1) in
//! profile sustained".

use loadgate_api::load_test::{BaselineSpec, LoadTest, ProfileSpec};
use loadgate_api::load_test_status::ProfileStatus;
use loadgate_api::load_test_status::{
    BaselineStatus, LoadPhase, LoadTestStatus, RunRecord, Verdict,
};
use loadgate_api::summary::Violation;

/// What a profile's figures depend on besides the endpoint, as 16 hex digits of FNV-1a over
/// its canonical JSON: the load shape (everything of the profile but its name and budgets), the
/// runner pods, the task mix (the default mix when none is given), the wait time, the texts
/// sent (the dataset: its ConfigMap key, or a hash of its inline lines) and the names of the
/// target's headers (never their values: a header from a Secret is only ever a name here).
/// The last two count only when set, so a spec without them keeps the fingerprint it had
/// before they existed. Two runs of one fingerprint loaded their endpoint the same way. The
/// target is compared beside it ([`judge`]): for a LoadTest's own runs it must be the same,
/// while `loadTestRef` compares with another test's run, by design against another endpoint.
pub fn fingerprint(test: &LoadTest, profile: &ProfileSpec) -> String {
    let spec = &test.spec;
    let mut shape = profile.clone();
    shape.name.clear();
    shape.thresholds = None;
    let tasks = if spec.tasks.is_empty() {
        loadgate_api::load::default_tasks()
    } else {
        spec.tasks.clone()
    };
    let mut key = serde_json::json!({
        "shape": shape,
        "parallelism": spec.parallelism,
        "tasks": tasks,
        "waitTime": spec.wait_time.unwrap_or_default(),
    });
    if let Some(dataset) = &spec.dataset {
        key["dataset"] = match &dataset.config_map_ref {
            Some(r) => serde_json::json!({"configMap": r.name, "key": r.key}),
            None => serde_json::json!({"inline": fnv_hex(dataset.inline.iter().flat_map(|l| {
                l.bytes().chain(std::iter::once(b'\n'))
            }))}),
        };
    }
    if !spec.target.headers.is_empty() {
        let names: Vec<&str> = spec
            .target
            .headers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        key["headers"] = serde_json::json!(names);
    }
    fnv_hex(key.to_string().bytes())
}

/// FNV-1a over `bytes`, as 16 hex digits: stable across processes and releases.
fn fnv_hex(bytes: impl IntoIterator<Item = u8>) -> String {
    let hash = bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// A finished run as a record kept in the status.
pub fn record_of(status: &LoadTestStatus) -> Option<RunRecord> {
    let phase = status.phase.filter(|p| p.is_finished())?;
    Some(RunRecord {
        run: status.run.clone().unwrap_or_default(),
        generation: status.observed_generation,
        phase,
        verdict: status.verdict,
        summary: status.summary.clone(),
        target_url: status.target_url.clone(),
        capacity: status.capacity.clone(),
        profiles: status.profiles.clone(),
        completion_time: status.completion_time.clone(),
    })
}

/// The latest run of LoadTest `name` that passed its budgets, from its status: its current run
/// when that passed, else the baseline that run was compared against when it came from `name`
/// itself (the latest passed before it).
pub fn latest_passed(name: &str, status: Option<&LoadTestStatus>) -> Option<RunRecord> {
    let status = status?;
    if status.phase == Some(LoadPhase::Passed) && status.verdict == Some(Verdict::Pass) {
        return record_of(status);
    }
    status
        .baseline
        .as_ref()
        .filter(|b| b.load_test == name)
        .and_then(|b| b.record.clone())
}

/// The baseline of a run starting now, when `test` has `spec.baseline`: from `source`, the
/// status of the LoadTest it names (this one's previous status, or `loadTestRef`'s).
pub fn pick_baseline(test: &LoadTest, source: Option<&LoadTestStatus>) -> Option<BaselineStatus> {
    let spec = test.spec.baseline.as_ref()?;
    let own = test.metadata.name.clone().unwrap_or_default();
    let load_test = spec.load_test_ref.clone().unwrap_or(own);
    let record = latest_passed(&load_test, source);
    let message = match &record {
        Some(r) => format!("compared with run {} of LoadTest {load_test}", r.run),
        None => format!("no baseline yet: LoadTest {load_test} has no passed run to compare with"),
    };
    Some(BaselineStatus {
        load_test,
        record,
        message,
    })
}

/// The whole run's gates at its end: the cold-start budget and the baseline's. Sets
/// `status.baseline.message` to what the comparison found.
pub fn judge(test: &LoadTest, st: &mut LoadTestStatus) -> Vec<Violation> {
    let mut violations = Vec::new();
    if let Some(budget) = test.spec.thresholds.max_cold_start_seconds {
        violations.extend(cold_start(st.cold_start_seconds, budget));
    }
    let mut kept = st.baseline.take();
    if let (Some(spec), Some(baseline)) = (&test.spec.baseline, kept.as_mut()) {
        match &baseline.record {
            None => {
                baseline.message = format!(
                    "no baseline yet: LoadTest {} has no passed run to compare with, so this check passes",
                    baseline.load_test
                );
            }
            Some(record)
                if baseline.load_test == test.metadata.name.as_deref().unwrap_or_default()
                    && record.target_url.is_some()
                    && record.target_url != st.target_url =>
            {
                baseline.message = format!(
                    "no comparable baseline in run {} of LoadTest {}: it loaded {}, this run {}",
                    record.run,
                    baseline.load_test,
                    record.target_url.as_deref().unwrap_or_default(),
                    st.target_url.as_deref().unwrap_or("nothing")
                );
            }
            Some(record) => {
                let Comparison {
                    violations: found,
                    compared,
                    notes,
                } = compare(spec, st_figures(st), record);
                let of = format!("run {} of LoadTest {}", record.run, baseline.load_test);
                let total = st.profiles.len();
                let mut message = if compared == 0 {
                    format!("no comparable baseline in {of}: 0 of {total} profiles compared")
                } else if found.is_empty() {
                    format!(
                        "within the baseline's budgets against {of} ({compared} of {total} profiles compared)"
                    )
                } else {
                    format!(
                        "{} regression(s) against {of} ({compared} of {total} profiles compared)",
                        found.len()
                    )
                };
                for note in notes {
                    message.push_str("; ");
                    message.push_str(&note);
                }
                baseline.message = message;
                violations.extend(found);
            }
        }
    }
    st.baseline = kept;
    violations
}

fn cold_start(measured: Option<f64>, budget: f64) -> Option<Violation> {
    match measured {
        Some(seconds) if seconds <= budget => None,
        Some(seconds) => Some(Violation {
            metric: "maxColdStartSeconds".to_owned(),
            measured: seconds,
            budget,
            message: format!(
                "cold start {seconds:.1} s > budget {budget:.1} s (pod creation to Ready)"
            ),
        }),
        // A budget that cannot be checked does not pass quietly.
        None => Some(Violation {
            metric: "maxColdStartSeconds".to_owned(),
            measured: 0.0,
            budget,
            message: "no cold start was recorded for the target: the budget cannot be checked"
                .to_owned(),
        }),
    }
}

/// A latency as people read it: whole ms, or two decimals under 10 ms ("0.19 ms").
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// The figures of this run a baseline is compared on.
struct Current<'a> {
    profiles: &'a [loadgate_api::load_test_status::ProfileStatus],
    capacity_rps: Option<f64>,
}

fn st_figures(st: &LoadTestStatus) -> Current<'_> {
    Current {
        profiles: &st.profiles,
        capacity_rps: st.capacity.as_ref().map(|c| c.max_rps_within_budget),
    }
}

/// Percent change from `base` to `now` (+18.0 for 518 → 612); `None` when `base` is not a
/// positive finite number (nothing to compare a change with).
fn change_percent(base: f64, now: f64) -> Option<f64> {
    (base.is_finite() && now.is_finite() && base > 0.0).then(|| (now - base) / base * 100.0)
}

/// What comparing a run with its baseline found.
struct Comparison {
    /// Budgets of `spec.baseline` broken.
    violations: Vec<Violation>,
    /// Profiles compared (same name and fingerprint, both measured).
    compared: usize,
    /// Why a profile or the capacity was not compared, for the status's message.
    notes: Vec<String>,
}

/// The baseline's profile `profile` can be compared with: same name and same fingerprint. A
/// record without fingerprints (written before they existed) compares with nothing.
fn comparable<'a>(
    base: &'a RunRecord,
    profile: &ProfileStatus,
) -> Result<&'a ProfileStatus, String> {
    let name = &profile.name;
    let Some(before) = base.profiles.iter().find(|p| &p.name == name) else {
        return Err(format!(
            "no comparable baseline for profile {name}: run {} has no such profile",
            base.run
        ));
    };
    if before.fingerprint.is_none() || before.fingerprint != profile.fingerprint {
        return Err(format!(
            "no comparable baseline for profile {name}: its load shape or task mix differs from run {}'s",
            base.run
        ));
    }
    Ok(before)
}

fn compare(spec: &BaselineSpec, now: Current<'_>, base: &RunRecord) -> Comparison {
    let mut violations = Vec::new();
    let mut notes = Vec::new();
    let mut compared = 0;
    let run = &base.run;
    for profile in now.profiles {
        let before = match comparable(base, profile) {
            Ok(before) => before,
            Err(note) => {
                notes.push(note);
                continue;
            }
        };
        let (Some(figures), Some(before)) = (&profile.results, before.results.as_ref()) else {
            notes.push(format!(
                "profile {} not compared: not measured in both runs",
                profile.name
            ));
            continue;
        };
        compared += 1;
        let scope = format!("profile {}", profile.name);
        // LLM figures compare only when both runs measured them; otherwise said so.
        let llm = before.llm.as_ref().zip(figures.llm.as_ref());
        let llm_budgets = [
            spec.max_ttft_p95_increase_percent,
            spec.max_tpot_p95_increase_percent,
            spec.max_output_tokens_per_second_decrease_percent,
        ];
        if llm.is_none() && llm_budgets.iter().any(Option::is_some) {
            notes.push(format!(
                "profile {}: LLM figures not compared: not measured in both runs",
                profile.name
            ));
        }
        let llm_p95 =
            |f: fn(&loadgate_api::stats::LlmStats) -> f64| llm.map(|(was, is)| (f(was), f(is)));
        for (metric, label, budget, was_is) in [
            (
                "maxP95IncreasePercent",
                "p95",
                spec.max_p95_increase_percent,
                Some((before.p95_ms, figures.p95_ms)),
            ),
            (
                "maxP99IncreasePercent",
                "p99",
                spec.max_p99_increase_percent,
                Some((before.p99_ms, figures.p99_ms)),
            ),
            (
                "maxTtftP95IncreasePercent",
                "TTFT p95",
                spec.max_ttft_p95_increase_percent,
                llm_p95(|l| l.ttft.p95_ms),
            ),
            (
                "maxTpotP95IncreasePercent",
                "TPOT p95",
                spec.max_tpot_p95_increase_percent,
                llm_p95(|l| l.tpot.p95_ms),
            ),
        ] {
            let Some((was, is)) = was_is else {
                continue;
            };
            let (Some(budget), Some(change)) = (budget, change_percent(was, is)) else {
                continue;
            };
            if change > budget {
                violations.push(Violation {
                    metric: metric.to_owned(),
                    measured: change,
                    budget,
                    message: format!(
                        "{label} {} is +{change:.0}% over the baseline's {} (run {run}) in {scope}, budget +{budget}%",
                        ms(is),
                        ms(was)
                    ),
                });
            }
        }
        if let (Some(budget), Some((was, is))) = (
            spec.max_output_tokens_per_second_decrease_percent,
            llm_p95(|l| l.output_tokens_per_second),
        ) && let Some(change) = change_percent(was, is)
            && -change > budget
        {
            violations.push(Violation {
                metric: "maxOutputTokensPerSecondDecreasePercent".to_owned(),
                measured: -change,
                budget,
                message: format!(
                    "output tokens/s {is:.1} is {:.0}% under the baseline's {was:.1} (run {run}) in {scope}, budget -{budget}%",
                    -change
                ),
            });
        }
        if let (Some(budget), Some(change)) = (
            spec.max_rps_decrease_percent,
            change_percent(before.rps, figures.rps),
        ) && -change > budget
        {
            violations.push(Violation {
                metric: "maxRpsDecreasePercent".to_owned(),
                measured: -change,
                budget,
                message: format!(
                    "throughput {:.1} req/s is {:.0}% under the baseline's {:.1} req/s (run {run}) in {scope}, budget -{budget}%",
                    figures.rps, -change, before.rps
                ),
            });
        }
    }
    let base_capacity = base.capacity.as_ref();
    if let (Some(budget), Some(was_capacity)) = (spec.max_capacity_decrease_percent, base_capacity)
    {
        let was = was_capacity.max_rps_within_budget;
        // The capacity is compared only when the profile that found it then is comparable now
        // and measured one: a figure that was not measured is said so, never read as 0.
        let found_by = now
            .profiles
            .iter()
            .find(|p| p.name == was_capacity.profile)
            .filter(|p| comparable(base, p).is_ok());
        let is = match found_by {
            None => {
                notes.push(format!(
                    "capacity not compared: profile {} has no comparable baseline",
                    was_capacity.profile
                ));
                None
            }
            Some(p) if p.capacity.is_none() || now.capacity_rps.is_none() => {
                notes.push(format!(
                    "capacity not compared: not measured in profile {} of this run",
                    p.name
                ));
                None
            }
            Some(_) => now.capacity_rps,
        };
        if let Some(is) = is
            && let Some(change) = change_percent(was, is)
            && -change > budget
        {
            violations.push(Violation {
                metric: "maxCapacityDecreasePercent".to_owned(),
                measured: -change,
                budget,
                message: format!(
                    "capacity {is:.1} req/s is {:.0}% under the baseline's {was:.1} req/s (run {run}), budget -{budget}%",
                    -change
                ),
            });
        }
    }
    Comparison {
        violations,
        compared,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, load_test};
    use loadgate_api::load_test_status::{ProfilePhase, ResultFigures, TestCapacity};

    fn profile(name: &str, p95: f64, rps: f64) -> ProfileStatus {
        ProfileStatus {
            phase: ProfilePhase::Passed,
            results: Some(ResultFigures {
                requests: 100,
                p95_ms: p95,
                p99_ms: p95 * 1.5,
                rps,
                ..ResultFigures::default()
            }),
            fingerprint: Some("same-shape".into()),
            capacity: Some(loadgate_api::capacity::Capacity {
                max_users_within_budget: 4,
                max_rps_within_budget: rps,
                offered_rps: None,
                limited_by: None,
                broke_at: None,
                output_tokens_per_second: None,
            }),
            ..ProfileStatus::pending(name, 4)
        }
    }

    fn finished(run: &str, phase: LoadPhase, p95: f64, rps: f64) -> LoadTestStatus {
        LoadTestStatus {
            run: Some(run.into()),
            phase: Some(phase),
            verdict: Some(if phase == LoadPhase::Passed {
                Verdict::Pass
            } else {
                Verdict::Fail
            }),
            profiles: vec![profile("sustained", p95, rps)],
            capacity: Some(TestCapacity {
                max_rps_within_budget: rps,
                max_users_within_budget: 4,
                limited_by: None,
                profile: "sustained".into(),
                message: String::new(),
            }),
            completion_time: Some(at(10)),
            ..LoadTestStatus::default()
        }
    }

    fn with_baseline(spec: BaselineSpec) -> LoadTest {
        let mut test = load_test("lt");
        test.spec.baseline = Some(spec);
        test
    }

    #[test]
    fn the_baseline_is_the_latest_passed_run_and_survives_failed_runs() {
        let test = with_baseline(BaselineSpec::default());
        let first = pick_baseline(&test, None).unwrap();
        assert!(first.record.is_none() && first.message.starts_with("no baseline yet"));
        let passed = finished("3f2a9c1", LoadPhase::Passed, 518.0, 20.0);
        let picked = pick_baseline(&test, Some(&passed)).unwrap();
        assert_eq!(picked.record.as_ref().unwrap().run, "3f2a9c1");
        // A failed run after it keeps comparing with the passed one, not with itself.
        let mut failed = finished("bad", LoadPhase::Failed, 900.0, 10.0);
        failed.baseline = Some(picked.clone());
        let next = pick_baseline(&test, Some(&failed)).unwrap();
        assert_eq!(next.record.unwrap().run, "3f2a9c1");
        // Another LoadTest's baseline chain is never borrowed as this one's own.
        let mut foreign = failed.clone();
        foreign.baseline.as_mut().unwrap().load_test = "other".into();
        assert!(
            pick_baseline(&test, Some(&foreign))
                .unwrap()
                .record
                .is_none()
        );
    }

    #[test]
    fn regressions_name_both_runs_and_the_budget() {
        let test = with_baseline(BaselineSpec {
            max_p95_increase_percent: Some(10.0),
            max_rps_decrease_percent: Some(20.0),
            max_capacity_decrease_percent: Some(20.0),
            ..BaselineSpec::default()
        });
        let base = finished("3f2a9c1", LoadPhase::Passed, 518.0, 20.0);
        let mut st = finished("next", LoadPhase::Passed, 612.0, 15.0);
        st.baseline = pick_baseline(&test, Some(&base));
        let violations = judge(&test, &mut st);
        let messages: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(violations.len(), 3, "{messages:#?}");
        assert!(
            messages[0].starts_with(
                "p95 612 ms is +18% over the baseline's 518 ms (run 3f2a9c1) in profile sustained"
            ),
            "{}",
            messages[0]
        );
        assert!(messages[1].contains("25% under the baseline's 20.0 req/s"));
        assert!(messages[2].starts_with("capacity 15.0 req/s is 25% under"));
        assert!(
            st.baseline
                .unwrap()
                .message
                .starts_with("3 regression(s) against run 3f2a9c1")
        );
        // Within budget: no violation, and the message says what it was compared with.
        let mut close = finished("ok", LoadPhase::Passed, 540.0, 19.0);
        close.baseline = pick_baseline(&test, Some(&base));
        assert!(judge(&test, &mut close).is_empty());
        assert!(close.baseline.unwrap().message.contains("run 3f2a9c1"));
    }

    #[test]
    fn llm_regressions_compare_ttft_tpot_and_tokens_when_both_runs_measured_them() {
        let test = with_baseline(BaselineSpec {
            max_ttft_p95_increase_percent: Some(10.0),
            max_tpot_p95_increase_percent: Some(10.0),
            max_output_tokens_per_second_decrease_percent: Some(10.0),
            ..BaselineSpec::default()
        });
        let with_llm = |run: &str, ttft: f64, tokens: f64| {
            let mut st = finished(run, LoadPhase::Passed, 518.0, 20.0);
            let mut llm = loadgate_api::stats::LlmStats {
                output_tokens_per_second: tokens,
                ..Default::default()
            };
            llm.ttft.p95_ms = ttft;
            llm.tpot.p95_ms = 40.0;
            st.profiles[0].results.as_mut().unwrap().llm = Some(llm);
            st
        };
        let base = with_llm("3f2a9c1", 500.0, 400.0);
        let mut st = with_llm("next", 650.0, 300.0);
        st.baseline = pick_baseline(&test, Some(&base));
        let messages: Vec<String> = judge(&test, &mut st)
            .into_iter()
            .map(|v| v.message)
            .collect();
        assert_eq!(
            messages,
            [
                "TTFT p95 650 ms is +30% over the baseline's 500 ms (run 3f2a9c1) in profile sustained, budget +10%",
                "output tokens/s 300.0 is 25% under the baseline's 400.0 (run 3f2a9c1) in profile sustained, budget -10%",
            ]
        );
        // A baseline run without LLM figures: not compared, and said so.
        let plain = finished("plain", LoadPhase::Passed, 518.0, 20.0);
        let mut st = with_llm("next", 650.0, 300.0);
        st.baseline = pick_baseline(&test, Some(&plain));
        assert!(judge(&test, &mut st).is_empty());
        assert!(
            st.baseline
                .unwrap()
                .message
                .contains("LLM figures not compared")
        );
    }

    #[test]
    fn the_first_run_passes_the_baseline_check_and_says_so() {
        let test = with_baseline(BaselineSpec {
            max_p95_increase_percent: Some(0.0),
            ..BaselineSpec::default()
        });
        let mut st = finished("first", LoadPhase::Passed, 612.0, 15.0);
        st.baseline = pick_baseline(&test, None);
        assert!(judge(&test, &mut st).is_empty());
        assert!(
            st.baseline
                .unwrap()
                .message
                .contains("so this check passes")
        );
    }

    #[test]
    fn a_cold_start_budget_is_checked_and_never_passes_unmeasured() {
        let mut test = load_test("lt");
        test.spec.thresholds.max_cold_start_seconds = Some(5.0);
        let mut st = LoadTestStatus {
            cold_start_seconds: Some(7.25),
            ..LoadTestStatus::default()
        };
        let v = judge(&test, &mut st);
        assert_eq!(
            v[0].message,
            "cold start 7.2 s > budget 5.0 s (pod creation to Ready)"
        );
        st.cold_start_seconds = Some(1.5);
        assert!(judge(&test, &mut st).is_empty());
        st.cold_start_seconds = None;
        assert_eq!(judge(&test, &mut st)[0].metric, "maxColdStartSeconds");
    }

    /// Before: profiles were matched by name only, so a run at fewer users than its baseline
    /// passed as "within the baseline's budgets", and a run whose profiles were all renamed
    /// compared nothing yet said the same.
    #[test]
    fn only_profiles_of_the_same_load_shape_are_compared() {
        let test = with_baseline(BaselineSpec {
            max_p95_increase_percent: Some(10.0),
            max_capacity_decrease_percent: Some(20.0),
            ..BaselineSpec::default()
        });
        let base = finished("3f2a9c1", LoadPhase::Passed, 518.0, 20.0);
        // Fewer users: another fingerprint. Its p95 looks better; it must not be compared.
        let mut lighter = finished("lighter", LoadPhase::Passed, 100.0, 5.0);
        lighter.profiles[0].fingerprint = Some("fewer-users".into());
        lighter.baseline = pick_baseline(&test, Some(&base));
        assert!(judge(&test, &mut lighter).is_empty());
        let message = lighter.baseline.unwrap().message;
        assert!(
            message.starts_with(
                "no comparable baseline in run 3f2a9c1 of LoadTest lt: 0 of 1 profiles compared"
            ),
            "{message}"
        );
        assert!(
            message.contains(
                "no comparable baseline for profile sustained: its load shape or task mix differs"
            ),
            "{message}"
        );
        assert!(message.contains("capacity not compared"), "{message}");
        // Every profile renamed: nothing compared, and it says so.
        let mut renamed = finished("renamed", LoadPhase::Passed, 100.0, 20.0);
        renamed.profiles[0].name = "steady".into();
        renamed.baseline = pick_baseline(&test, Some(&base));
        judge(&test, &mut renamed);
        let message = renamed.baseline.unwrap().message;
        assert!(message.contains("0 of 1 profiles compared"), "{message}");
        assert!(
            message.contains("run 3f2a9c1 has no such profile"),
            "{message}"
        );
        // The same shape is compared, and the message counts it.
        let mut same = finished("same", LoadPhase::Passed, 520.0, 20.0);
        same.baseline = pick_baseline(&test, Some(&base));
        assert!(judge(&test, &mut same).is_empty());
        let message = same.baseline.unwrap().message;
        assert!(message.contains("(1 of 1 profiles compared)"), "{message}");
    }

    /// Before: a capacity that was not measured (a frame missing) read as 0 and failed as
    /// "100% under the baseline".
    #[test]
    fn a_capacity_not_measured_is_not_compared() {
        let test = with_baseline(BaselineSpec {
            max_capacity_decrease_percent: Some(20.0),
            ..BaselineSpec::default()
        });
        let base = finished("3f2a9c1", LoadPhase::Passed, 518.0, 20.0);
        let mut st = finished("next", LoadPhase::Passed, 518.0, 20.0);
        st.capacity = None;
        st.profiles[0].capacity = None;
        st.baseline = pick_baseline(&test, Some(&base));
        assert!(judge(&test, &mut st).is_empty());
        let message = st.baseline.unwrap().message;
        assert!(
            message.contains("capacity not compared: not measured in profile sustained"),
            "{message}"
        );
    }

    /// The fingerprint follows the load shape and the task mix, not the name or the budgets.
    #[test]
    fn the_fingerprint_follows_what_loads_the_endpoint() {
        let test = load_test("lt");
        let p = &test.spec.profiles[0];
        let base = fingerprint(&test, p);
        let mut budgets = test.clone();
        budgets.spec.profiles[0].thresholds = Some(loadgate_api::load::Thresholds::default());
        budgets.spec.thresholds.p95_ms = Some(1.0);
        assert_eq!(fingerprint(&budgets, &budgets.spec.profiles[0]), base);
        let mut users = test.clone();
        users.spec.profiles[0].users += 1;
        assert_ne!(fingerprint(&users, &users.spec.profiles[0]), base);
        let mut tasks = test.clone();
        tasks.spec.tasks = loadgate_api::load::default_tasks();
        assert_eq!(
            fingerprint(&tasks, &tasks.spec.profiles[0]),
            base,
            "the default mix spelled out is the same mix"
        );
        tasks.spec.tasks.pop();
        assert_ne!(fingerprint(&tasks, &tasks.spec.profiles[0]), base);
        let mut pods = test.clone();
        pods.spec.parallelism = 2;
        assert_ne!(fingerprint(&pods, &pods.spec.profiles[0]), base);
    }

    /// This spec's fingerprint before headers and datasets existed, as the code of then
    /// computed it: records written then must still compare with runs of the same spec.
    const PRE_HEADERS: &str = "01a0e84eefb359cb";

    #[test]
    fn a_spec_without_headers_or_dataset_keeps_its_fingerprint() {
        let test = load_test("lt");
        assert_eq!(fingerprint(&test, &test.spec.profiles[0]), PRE_HEADERS);
    }

    /// The texts sent and the headers' names are part of the load; a header's value is not
    /// (a rotated API key is the same load).
    #[test]
    fn the_fingerprint_follows_the_dataset_and_header_names_not_values() {
        use loadgate_api::target::{ConfigMapKeyRef, Dataset, Header};
        let test = load_test("lt");
        let base = fingerprint(&test, &test.spec.profiles[0]);
        let print = |t: &LoadTest| fingerprint(t, &t.spec.profiles[0]);
        let with_dataset = |dataset: Dataset| {
            let mut t = test.clone();
            t.spec.dataset = Some(dataset);
            print(&t)
        };
        let inline = |lines: &[&str]| Dataset {
            config_map_ref: None,
            inline: lines.iter().map(|l| (*l).to_owned()).collect(),
        };
        let config_map = |name: &str, key: &str| Dataset {
            config_map_ref: Some(ConfigMapKeyRef {
                name: name.into(),
                key: key.into(),
            }),
            inline: Vec::new(),
        };
        let texts = with_dataset(inline(&["a", "b"]));
        assert_ne!(texts, base);
        assert_eq!(with_dataset(inline(&["a", "b"])), texts);
        assert_ne!(with_dataset(inline(&["a", "c"])), texts);
        assert_ne!(with_dataset(inline(&["ab"])), texts);
        let from_map = with_dataset(config_map("texts", "lines.txt"));
        assert_ne!(from_map, base);
        assert_ne!(with_dataset(config_map("texts", "other.txt")), from_map);
        let with_header = |name: &str, value: &str| {
            let mut t = test.clone();
            t.spec.target.headers = vec![Header {
                name: name.into(),
                value: Some(value.into()),
                value_from: None,
            }];
            print(&t)
        };
        let tenant = with_header("X-Tenant", "blue");
        assert_ne!(tenant, base);
        assert_eq!(
            with_header("X-Tenant", "red"),
            tenant,
            "values do not count"
        );
        assert_ne!(with_header("X-Team", "blue"), tenant);
    }

    /// A test's own earlier run on another target is no baseline; another test's run
    /// (`loadTestRef`) is, by design, on another endpoint.
    #[test]
    fn an_own_run_on_another_target_is_not_compared() {
        let test = with_baseline(BaselineSpec {
            max_p95_increase_percent: Some(10.0),
            ..BaselineSpec::default()
        });
        let mut base = finished("3f2a9c1", LoadPhase::Passed, 100.0, 20.0);
        base.target_url = Some("http://old.ml.svc:8080".into());
        let mut st = finished("next", LoadPhase::Passed, 900.0, 20.0);
        st.target_url = Some("http://new.ml.svc:8080".into());
        st.baseline = pick_baseline(&test, Some(&base));
        assert!(judge(&test, &mut st).is_empty());
        let message = st.baseline.unwrap().message;
        assert!(
            message.contains("it loaded http://old.ml.svc:8080, this run http://new.ml.svc:8080"),
            "{message}"
        );
        let mut other = test.clone();
        other.spec.baseline.as_mut().unwrap().load_test_ref = Some("stable".into());
        st.baseline = pick_baseline(&other, Some(&base));
        assert_eq!(judge(&other, &mut st).len(), 1, "compared across targets");
    }
}
