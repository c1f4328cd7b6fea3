//! Reports that outlive the pods: each finished profile's merged report
//! ([`loadgate_api::report::ProfileReport`]) is kept in a ConfigMap owned by the LoadTest,
//! `<test>-report`, one key per (run, profile); the last [`MAX_KEPT_RUNS`] runs stay, within
//! [`MAX_DATA_BYTES`] (a ConfigMap holds 1 MiB). `loadgate report NAME` reads it back and
//! renders one HTML page (or the JSON) for a run, after the Jobs and their pods are gone.
//!
//! The pure parts (keys, what to prune, assembling a run) are here with their tests; the I/O is
//! [`store`] (the controller calls it before the status that names the profile's result) and
//! [`fetch`].

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use loadgate_api::load_test::LoadTest;
use loadgate_api::report::{ProfileReport, TestReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Runs kept per LoadTest.
pub const MAX_KEPT_RUNS: usize = 5;
/// Most bytes of report data kept (under the 1 MiB a ConfigMap holds, with room for metadata).
pub const MAX_DATA_BYTES: usize = 900 * 1024;

/// The ConfigMap holding a LoadTest's reports.
pub fn configmap_name(test: &str) -> String {
    format!("{test}-report")
}

/// One profile's report as stored: which run and generation it belongs to, where the profile
/// sits in the spec, and when it finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredProfile {
    /// The run.
    pub run: String,
    /// The spec generation it ran.
    pub generation: i64,
    /// The profile's place in the spec.
    pub index: usize,
    /// When it finished, unix ms.
    pub finished_at_ms: u64,
    /// The report.
    pub report: ProfileReport,
    /// The target's cold start in this run (`status.coldStartSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_seconds: Option<f64>,
}

/// The key of one profile's report: the run's hash (run name and generation), then the profile.
pub fn key(run_hash: &str, index: usize, profile: &str) -> String {
    format!("{run_hash}.{index:02}.{profile}.json")
}

fn run_of(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

/// The change that stores `value` under `key` in `data`: `Some` sets a key, `None` deletes one.
/// The oldest runs (by their latest profile's finish) go first, until at most
/// [`MAX_KEPT_RUNS`] remain and the data fits [`MAX_DATA_BYTES`]; `key`'s own run always stays.
pub fn plan_write(
    data: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> BTreeMap<String, Option<String>> {
    let mut after = data.clone();
    after.insert(key.to_owned(), value.to_owned());
    let mut runs: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &after {
        // Only this test's own reports are pruned: a key of another shape, or one that does
        // not parse as a stored report, is not ours to delete.
        let Some(finished) = own_report(k, v) else {
            continue;
        };
        let at = runs.entry(run_of(k).to_owned()).or_default();
        *at = (*at).max(finished);
    }
    let keep_run = run_of(key);
    let mut by_age: Vec<(String, u64)> = runs.into_iter().filter(|(r, _)| r != keep_run).collect();
    by_age.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let size =
        |d: &BTreeMap<String, String>| d.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut change = BTreeMap::from([(key.to_owned(), Some(value.to_owned()))]);
    let mut kept_runs = by_age.len() + 1;
    for (old, _) in by_age {
        if kept_runs <= MAX_KEPT_RUNS && size(&after) <= MAX_DATA_BYTES {
            break;
        }
        let doomed: Vec<String> = after
            .iter()
            .filter(|(k, v)| run_of(k) == old && own_report(k, v).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            after.remove(&k);
            change.insert(k, None);
        }
        kept_runs -= 1;
    }
    change
}

/// When `k` = `v` is one of this test's stored reports (a key of [`key`]'s shape whose value
/// parses): the time it finished.
fn own_report(k: &str, v: &str) -> Option<u64> {
    let mut parts = k.splitn(3, '.');
    let (hash, index) = (parts.next()?, parts.next()?);
    let shaped = hash.len() == 8
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && index.len() == 2
        && index.bytes().all(|b| b.is_ascii_digit())
        && k.ends_with(".json");
    shaped
        .then(|| serde_json::from_str::<StoredProfile>(v).ok())
        .flatten()
        .map(|s| s.finished_at_ms)
}

/// Most bytes one profile's stored report may take: a run of several profiles must fit with
/// the others in [`MAX_DATA_BYTES`]. A larger one loses its per-second history first.
pub const MAX_PROFILE_BYTES: usize = 160 * 1024;

/// `stored` as JSON within [`MAX_PROFILE_BYTES`]: whole, else without its per-second history
/// (said in the log); `None` when even that does not fit.
pub fn fitted(stored: &StoredProfile) -> Option<String> {
    let whole = serde_json::to_string(stored).expect("a report serialises; this is a bug");
    if whole.len() <= MAX_PROFILE_BYTES {
        return Some(whole);
    }
    let mut cut = stored.clone();
    cut.report.history.clear();
    let cut = serde_json::to_string(&cut).expect("a report serialises; this is a bug");
    tracing::warn!(
        profile = stored.report.summary.profile,
        bytes = whole.len(),
        "report too large for its ConfigMap: stored without its per-second history"
    );
    (cut.len() <= MAX_PROFILE_BYTES).then_some(cut)
}

/// What became of a report [`store`] was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Written into the test's ConfigMap.
    Written,
    /// `<test>-report` exists and this LoadTest does not control it: left as it is.
    NotOwned(String),
    /// It could not fit (or the apiserver refused it as invalid): not stored, and not retried.
    Refused(String),
}

/// A run's report from the ConfigMap's `data`: the run named `run` (its newest generation), or
/// the run that finished last; profiles in spec order.
///
/// # Errors
/// No report of that run (or none at all), or a stored report that does not parse.
pub fn assemble(
    test: &str,
    data: &BTreeMap<String, String>,
    run: Option<&str>,
) -> Result<TestReport, String> {
    let mut stored = Vec::with_capacity(data.len());
    for (k, v) in data {
        let profile: StoredProfile =
            serde_json::from_str(v).map_err(|e| format!("report {k} does not parse: {e}"))?;
        stored.push((run_of(k).to_owned(), profile));
    }
    let chosen = stored
        .iter()
        .filter(|(_, s)| run.is_none_or(|r| s.run == r))
        .max_by_key(|(_, s)| (s.generation * i64::from(run.is_some()), s.finished_at_ms))
        .map(|(hash, _)| hash.clone())
        .ok_or_else(|| match run {
            Some(r) => format!("no report of run {r:?} for LoadTest {test}"),
            None => format!("no report for LoadTest {test} yet: no profile has finished"),
        })?;
    let mut profiles: Vec<StoredProfile> = stored
        .into_iter()
        .filter(|(hash, _)| *hash == chosen)
        .map(|(_, s)| s)
        .collect();
    profiles.sort_by_key(|s| s.index);
    let first = profiles.first().expect("the chosen run has a profile");
    Ok(TestReport {
        test: test.to_owned(),
        run: first.run.clone(),
        generation: first.generation,
        cold_start_seconds: first.cold_start_seconds,
        profiles: profiles.into_iter().map(|s| s.report).collect(),
    })
}

/// Stores one finished profile's report in the LoadTest's ConfigMap (created, owned by the
/// LoadTest so it goes with it, on first use), pruning old runs of this test. A ConfigMap of
/// that name that the LoadTest does not control is never written or pruned (anyone who may
/// create a LoadTest must not be able to delete keys of any `*-report` ConfigMap through the
/// operator); a report that cannot fit is cut, then refused, never retried forever.
///
/// # Errors
/// API errors worth retrying.
pub async fn store(
    client: &kube::Client,
    test: &LoadTest,
    run_hash: &str,
    stored: &StoredProfile,
) -> Result<Stored, kube::Error> {
    let namespace = test.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let name = configmap_name(&test.name_any());
    let key = key(run_hash, stored.index, &stored.report.summary.profile);
    let Some(value) = fitted(stored) else {
        return Ok(Stored::Refused(format!(
            "the report of profile {} is over {} KiB even without its per-second history",
            stored.report.summary.profile,
            MAX_PROFILE_BYTES >> 10
        )));
    };
    let existing = match api.get_opt(&name).await? {
        Some(cm) => cm,
        None => {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    owner_references: test.controller_owner_ref(&()).map(|r| vec![r]),
                    labels: Some(BTreeMap::from([(
                        crate::resources::load_test::LOADTEST_LABEL.to_owned(),
                        test.name_any(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(created) => created,
                Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await?,
                Err(e) => return Err(e),
            }
        }
    };
    if !crate::resources::controlled_by(&existing, test.meta().uid.as_deref()) {
        return Ok(Stored::NotOwned(format!(
            "ConfigMap {name} exists but is not controlled by this LoadTest: the report was not \
             stored there, and the ConfigMap was left as it is"
        )));
    }
    let change = plan_write(&existing.data.unwrap_or_default(), &key, &value);
    let patch = serde_json::json!({ "data": change });
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Stored::Written),
        // Too large or invalid: the same patch would be refused again.
        Err(kube::Error::Api(e)) if matches!(e.code, 413 | 422) => Ok(Stored::Refused(format!(
            "the apiserver refused the report in ConfigMap {name}: {} ({})",
            e.message, e.code
        ))),
        Err(e) => Err(e),
    }
}

/// The data of a LoadTest's report ConfigMap.
///
/// # Errors
/// API errors; a 404 when the LoadTest has no report (yet).
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    test: &str,
) -> Result<BTreeMap<String, String>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get(&configmap_name(test))
        .await?
        .data
        .unwrap_or_default())
}

/// `loadgate report`: fetches, assembles and writes a run's report; returns where it went.
///
/// # Errors
/// No cluster, no such report (or run), or an unwritable output.
pub async fn command(args: &crate::config::ReportArgs) -> anyhow::Result<String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("no Kubernetes cluster to talk to (kubeconfig): {e}"))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let data = match fetch(&client, &namespace, &args.name).await {
        Ok(data) => data,
        Err(kube::Error::Api(e)) if e.code == 404 => anyhow::bail!(
            "no report for LoadTest {namespace}/{}: no ConfigMap {} (no profile has finished, \
             or the LoadTest is gone)",
            args.name,
            configmap_name(&args.name)
        ),
        Err(e) => return Err(e.into()),
    };
    let report = assemble(&args.name, &data, args.run.as_deref()).map_err(anyhow::Error::msg)?;
    if let Some(prefix) = &args.csv {
        for profile in &report.profiles {
            let at = std::path::PathBuf::from(format!("{prefix}{}", profile.summary.profile));
            loadgate_results::report::write_merged_csvs(&at, profile)
                .map_err(|e| anyhow::anyhow!("cannot write the CSVs at {}: {e}", at.display()))?;
        }
    }
    let text = if args.json {
        serde_json::to_string_pretty(&report)?
    } else {
        loadgate_results::html::render_test(&report)
    };
    let path = args.output.clone().unwrap_or_else(|| {
        std::path::PathBuf::from(format!(
            "{}.{}",
            args.name,
            if args.json { "json" } else { "html" }
        ))
    });
    if path.as_os_str() == "-" {
        println!("{text}");
    } else {
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::load::Thresholds;

    fn stored(run: &str, index: usize, profile: &str, at: u64, pad: usize) -> String {
        let summary: loadgate_api::summary::RunSummary =
            serde_json::from_value(serde_json::json!({
                "profile": profile, "durationSeconds": 1.0, "users": 1,
                "total": {"name": "Aggregated", "method": "", "requests": 1, "failures": 0,
                          "errorRate": 0.0, "rps": 1.0, "meanMs": 1.0, "p50Ms": 1.0, "p90Ms": 1.0,
                          "p95Ms": 1.0, "p99Ms": 1.0, "maxMs": 1.0},
                "tasks": [], "violations": [], "passed": true, "interrupted": false
            }))
            .unwrap();
        let mut summary = summary;
        summary.profile = format!("{profile}{}", " ".repeat(pad));
        serde_json::to_string(&StoredProfile {
            run: run.into(),
            generation: 1,
            index,
            finished_at_ms: at,
            cold_start_seconds: None,
            report: ProfileReport {
                summary,
                thresholds: Thresholds::default(),
                history: Vec::new(),
                efficiency: None,
            },
        })
        .unwrap()
    }

    #[test]
    fn a_run_is_assembled_in_spec_order_and_the_latest_is_the_default() {
        let data = BTreeMap::from([
            (
                key("aaaa", 1, "spike"),
                stored("initial", 1, "spike", 20, 0),
            ),
            (key("aaaa", 0, "ramp"), stored("initial", 0, "ramp", 10, 0)),
            (key("bbbb", 0, "ramp"), stored("abc123", 0, "ramp", 30, 0)),
        ]);
        let latest = assemble("t", &data, None).unwrap();
        assert_eq!((latest.run.as_str(), latest.profiles.len()), ("abc123", 1));
        let first = assemble("t", &data, Some("initial")).unwrap();
        let names: Vec<&str> = first
            .profiles
            .iter()
            .map(|p| p.summary.profile.as_str())
            .collect();
        assert_eq!(names, ["ramp", "spike"]);
        let err = assemble("t", &data, Some("nope")).unwrap_err();
        assert!(err.contains("no report of run \"nope\""), "{err}");
        assert!(
            assemble("t", &BTreeMap::new(), None)
                .unwrap_err()
                .contains("no profile has finished")
        );
        let forged = BTreeMap::from([(key("cccc", 0, "x"), "{".to_owned())]);
        assert!(
            assemble("t", &forged, None)
                .unwrap_err()
                .contains("does not parse")
        );
    }

    #[test]
    fn old_runs_are_pruned_by_count_and_size_never_the_one_being_written() {
        let mut data = BTreeMap::new();
        let [r1, r2, r3, r4, r5, r6] = [
            "0000000a", "0000000b", "0000000c", "0000000d", "0000000e", "0000000f",
        ];
        for (i, run) in [r1, r2, r3, r4, r5].iter().enumerate() {
            data.insert(key(run, 0, "p"), stored(run, 0, "p", i as u64, 0));
        }
        // A sixth run: the oldest (r1) goes.
        let change = plan_write(&data, &key(r6, 0, "p"), &stored(r6, 0, "p", 9, 0));
        let deleted: Vec<&String> = change
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(deleted, [&key(r1, 0, "p")]);
        // A profile of a run already kept: nothing goes.
        let change = plan_write(&data, &key(r5, 1, "q"), &stored(r5, 1, "q", 9, 0));
        assert!(change.values().all(Option::is_some));
        // Too big: old runs go until it fits; the new one stays even alone.
        let big = stored(r6, 0, "p", 9, MAX_DATA_BYTES);
        let change = plan_write(&data, &key(r6, 0, "p"), &big);
        assert_eq!(change.values().filter(|v| v.is_none()).count(), 5);
        assert!(change[&key(r6, 0, "p")].is_some());
    }

    /// Before: every key of the ConfigMap counted as a run, so a key someone else put there
    /// was pruned as the "oldest run".
    #[test]
    fn only_this_tests_own_reports_are_pruned() {
        let mut data = BTreeMap::new();
        for (i, run) in ["aaaaaaa1", "aaaaaaa2", "aaaaaaa3", "aaaaaaa4", "aaaaaaa5"]
            .iter()
            .enumerate()
        {
            data.insert(key(run, 0, "p"), stored(run, 0, "p", i as u64 + 10, 0));
        }
        data.insert("team-settings".into(), "keep me".into());
        data.insert(key("bbbbbbbb", 0, "x"), "not a report".into());
        let change = plan_write(
            &data,
            &key("aaaaaaa6", 0, "p"),
            &stored("aaaaaaa6", 0, "p", 99, 0),
        );
        let deleted: Vec<&String> = change
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(deleted, [&key("aaaaaaa1", 0, "p")]);
    }

    /// A report that cannot fit loses its history, and is refused when even that is too much.
    #[test]
    fn a_report_too_large_is_cut_then_refused() {
        let mut report: StoredProfile =
            serde_json::from_str(&stored("aaaaaaa1", 0, "p", 1, 0)).unwrap();
        assert!(fitted(&report).is_some());
        let point = loadgate_api::report::HistoryPoint {
            second: 1,
            users: 1,
            requests: 1,
            failures: 0,
            p50_ms: 1.0,
            p95_ms: 1.0,
            warmup: false,
            llm: None,
        };
        report.report.history = vec![point; MAX_PROFILE_BYTES / 20];
        let cut: StoredProfile = serde_json::from_str(&fitted(&report).unwrap()).unwrap();
        assert!(cut.report.history.is_empty());
        report.report.summary.profile = "p".repeat(MAX_PROFILE_BYTES);
        assert_eq!(fitted(&report), None);
    }
}
