//! Which runner summaries a finished Job's result is made of, pure. Only the Job's own pods
//! count: controlled by that Job's UID, one per completion index `0..parallelism`, exactly
//! `parallelism` of them. Anything else (a foreign pod carrying the Job's label, a duplicate
//! index, a missing index, an oversized or garbled termination message) is an error naming the
//! pod, so a forged or broken result ends the profile in `Error` instead of in the verdict.
//!
//! Sizes are checked before anything is parsed: a termination message is at most 4 KiB on a
//! real kubelet, and a summary's histograms are decoded by [`loadgate_results::checked`], which bounds
//! them before it allocates.
//!
//! A summary may name a results frame in the pod's log ([`loadgate_results::results_frame`]): the
//! full results, past the message's 4 KiB. [`with_frame`] takes it when it checks out against
//! the message, falls back to the message when the log or the frame is gone or cut, and refuses
//! a frame that checks out but contradicts the message (one of the two is forged).

use crate::status::profile_results::RunnerResults;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::ResourceExt;
use loadgate_api::stats::RequestStats;
use loadgate_api::summary::RunSummary;

/// Annotation (and label) the Job controller puts on each pod of an Indexed Job.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The longest termination message read. The kubelet keeps 4096 bytes; anything longer did not
/// come from one, and is refused before it is parsed.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

/// The terminated state of the runner container `container` of `pod`.
pub fn terminated<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// True when `pod` is controlled by `job` (its controller owner reference carries the Job's UID).
pub fn owned_by(pod: &Pod, job: &Job) -> bool {
    crate::resources::controlled_by(pod, job.metadata.uid.as_deref())
}

/// The summary one runner pod left in its termination message, bounded before it is parsed.
///
/// # Errors
/// A message naming the pod: no message, one too long, or not a run summary.
pub fn pod_summary(pod: &Pod, container: &str) -> Result<RunSummary, String> {
    let pod_name = pod.name_any();
    let message = terminated(pod, container)
        .and_then(|t| t.message.as_deref())
        .ok_or_else(|| format!("pod {pod_name} has no termination message"))?;
    if message.len() > MAX_TERMINATION_MESSAGE {
        return Err(format!(
            "pod {pod_name}: termination message is {} bytes, more than a kubelet keeps \
             ({MAX_TERMINATION_MESSAGE})",
            message.len()
        ));
    }
    let summary: RunSummary = serde_json::from_str(message)
        .map_err(|e| format!("pod {pod_name}: termination message is not a run summary: {e}"))?;
    check_histograms(
        &pod_name,
        std::iter::once(&summary.total).chain(&summary.tasks),
    )?;
    Ok(summary)
}

/// Decodes every histogram now (bounded), so a hostile one is named with its pod.
fn check_histograms<'a>(
    pod: &str,
    stats: impl IntoIterator<Item = &'a RequestStats>,
) -> Result<(), String> {
    for stats in stats {
        if stats.histogram.is_some() {
            loadgate_results::checked::decode(stats).map_err(|e| format!("pod {pod}: {e}"))?;
        }
    }
    Ok(())
}

/// Bytes of results frames the operator inflates for one profile, all its pods together. The
/// chart gives the operator 128 MiB; a profile's decoded results take about what their JSON
/// does, and they are merged one profile at a time. Legal profiles stay far below it: runners
/// coarsen their windows so a profile's frames hold at most six hours of windows in all (24 h
/// × 100 pods measured at about 5 MiB of JSON, `operator/tests/frames_memory.rs`).
pub const PROFILE_DECODE_BUDGET: u64 = 32 << 20;

/// What is left of a profile's decode budget as its pods' frames are read one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudget {
    left: u64,
}

impl DecodeBudget {
    /// A profile's whole budget ([`PROFILE_DECODE_BUDGET`]).
    pub fn profile() -> Self {
        Self::of(PROFILE_DECODE_BUDGET)
    }

    /// A budget of `bytes`.
    pub fn of(bytes: u64) -> Self {
        Self { left: bytes }
    }

    /// Bytes still to spend.
    pub fn left(self) -> u64 {
        self.left
    }

    /// Refuses, before its log is read, a frame whose compressed size alone is past what is
    /// left (it can only inflate to more).
    ///
    /// # Errors
    /// A message naming the pod and the sizes.
    pub fn admit(self, pod: &str, summary: &RunSummary) -> Result<(), String> {
        match summary.results {
            Some(r) if r.bytes > self.left => Err(over_budget(pod, r.bytes, self.left)),
            _ => Ok(()),
        }
    }
}

fn over_budget(pod: &str, bytes: u64, left: u64) -> String {
    format!(
        "pod {pod}: its results frame needs more than the {:.1} MiB left of the profile's \
         {} MiB decode budget ({bytes} bytes at least)",
        left as f64 / f64::from(1 << 20),
        PROFILE_DECODE_BUDGET >> 20
    )
}

/// [`with_frame`] within `budget`: the frame is inflated only up to what is left, and what it
/// took is spent.
///
/// # Errors
/// As [`with_frame`], and a frame past what is left of the budget (`BadResults`, naming the pod
/// and the size).
pub fn with_frame_within(
    pod: &str,
    summary: RunSummary,
    log: Option<&str>,
    budget: &mut DecodeBudget,
) -> Result<RunnerResults, String> {
    budget.admit(pod, &summary)?;
    let (results, spent) = frame_results(pod, summary, log, budget.left)?;
    budget.left = budget.left.saturating_sub(spent);
    Ok(results)
}

/// A runner pod's results: its termination `summary`, or the results frame its `log` holds
/// when the summary names one and it checks out (size and CRC-32). A log that is missing, cut
/// or holds another frame leaves the summary alone (logged: the profile then has no steps to
/// add up).
///
/// # Errors
/// A frame that checks out but disagrees with the summary (profile, counts, start,
/// interruption), or whose histograms do not decode: a message naming the pod.
pub fn with_frame(
    pod: &str,
    summary: RunSummary,
    log: Option<&str>,
) -> Result<RunnerResults, String> {
    frame_results(
        pod,
        summary,
        log,
        loadgate_results::results_frame::MAX_INFLATED_BYTES,
    )
    .map(|(results, _)| results)
}

/// [`with_frame`], inflating at most `budget` bytes; also returns the bytes inflated.
fn frame_results(
    pod: &str,
    summary: RunSummary,
    log: Option<&str>,
    budget: u64,
) -> Result<(RunnerResults, u64), String> {
    let Some(reference) = summary.results else {
        return Ok((RunnerResults::summary_only(summary), 0));
    };
    let Some(log) = log else {
        return Ok((
            RunnerResults {
                missing_frame: Some(format!("pod {pod}: its log could not be read")),
                ..RunnerResults::summary_only(summary)
            },
            0,
        ));
    };
    let (mut results, inflated) = match loadgate_results::results_frame::decode_within(
        log, &reference, budget,
    ) {
        Ok(decoded) => decoded,
        Err(loadgate_results::results_frame::FrameError::OverBudget(left)) => {
            return Err(over_budget(pod, left.saturating_add(1), left));
        }
        Err(e) => {
            tracing::warn!(pod, error = %e, "results frame not usable; using the termination message");
            return Ok((
                RunnerResults {
                    missing_frame: Some(format!("pod {pod}: its frame was refused: {e}")),
                    ..RunnerResults::summary_only(summary)
                },
                0,
            ));
        }
    };
    let (full, message) = (&results.summary, &summary);
    let same = full.profile == message.profile
        && full.total.requests == message.total.requests
        && full.total.failures == message.total.failures
        && full.total.not_sent == message.total.not_sent
        && full.started_at_ms == message.started_at_ms
        && full.interrupted == message.interrupted;
    if !same {
        return Err(format!(
            "pod {pod}: its results frame ({} requests of profile {:?}) disagrees with its \
             termination message ({} requests of profile {:?})",
            full.total.requests, full.profile, message.total.requests, message.profile
        ));
    }
    check_histograms(
        pod,
        std::iter::once(&full.total)
            .chain(&full.tasks)
            .chain(results.steps.iter().map(|s| &s.stats)),
    )?;
    results.summary.results = Some(reference);
    Ok((RunnerResults::full(results), inflated))
}

/// The summaries of a Complete Job's pods with the pods' names, one per completion index in
/// index order.
///
/// # Errors
/// A message naming the pod or index: a pod without a valid index, two pods of one index, an
/// index outside `0..parallelism`, a missing index, or a pod whose summary cannot be used.
/// Pods that carry the Job's label but are not controlled by it are ignored, and said so only
/// when they leave an index missing.
pub fn collect(
    job: &Job,
    pods: &[Pod],
    parallelism: usize,
    container: &str,
) -> Result<Vec<(String, RunSummary)>, String> {
    let job_name = job.name_any();
    let mut by_index: Vec<Option<&Pod>> = vec![None; parallelism];
    let mut foreign = Vec::new();
    for pod in pods {
        if !owned_by(pod, job) {
            foreign.push(pod.name_any());
            continue;
        }
        let succeeded = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded");
        if !succeeded {
            continue;
        }
        let name = pod.name_any();
        let index = pod
            .annotations()
            .get(COMPLETION_INDEX)
            .and_then(|i| i.parse::<usize>().ok())
            .ok_or_else(|| format!("pod {name} of Job {job_name} has no completion index"))?;
        let slot = by_index.get_mut(index).ok_or_else(|| {
            format!("pod {name} has completion index {index}, outside 0..{parallelism}")
        })?;
        if let Some(other) = slot {
            return Err(format!(
                "pods {} and {name} both claim completion index {index} of Job {job_name}",
                other.name_any()
            ));
        }
        *slot = Some(pod);
    }
    let mut summaries = Vec::with_capacity(parallelism);
    for (index, pod) in by_index.into_iter().enumerate() {
        let Some(pod) = pod else {
            let mut message = format!("no succeeded pod of Job {job_name} for index {index}");
            if !foreign.is_empty() {
                message.push_str(&format!(
                    " (pods not controlled by the Job were ignored: {})",
                    foreign.join(", ")
                ));
            }
            return Err(message);
        };
        summaries.push((pod.name_any(), pod_summary(pod, container)?));
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "loadrunner";

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "gate-ramp-up-1234abcd", "namespace": "ml", "uid": "job-uid"}
        }))
        .unwrap()
    }

    fn pod(name: &str, owner_uid: &str, index: Option<&str>, message: &str) -> Pod {
        let annotations = index.map_or(
            serde_json::json!({}),
            |i| serde_json::json!({ COMPLETION_INDEX: i }),
        );
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "ml", "annotations": annotations,
                "labels": {"batch.kubernetes.io/job-name": "gate-ramp-up-1234abcd"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "gate-ramp-up-1234abcd",
                                     "uid": owner_uid, "controller": true}]
            },
            "status": {"phase": "Succeeded", "containerStatuses": [{
                "name": C, "image": "lr", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": message}}
            }]}
        }))
        .unwrap()
    }

    fn summary(requests: u64) -> String {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record_n(10_000, requests).unwrap();
        serde_json::json!({
            "profile": "ramp-up", "durationSeconds": 20.0, "users": 2,
            "total": {"name": "Aggregated", "method": "", "requests": requests, "failures": 0, "errorRate": 0.0,
                      "rps": 5.0, "meanMs": 10.0, "p50Ms": 10.0, "p90Ms": 10.0, "p95Ms": 10.0, "p99Ms": 10.0,
                      "maxMs": 10.0, "histogram": loadgate_results::codec::encode(&h)},
            "tasks": [], "violations": [], "passed": true, "interrupted": false
        })
        .to_string()
    }

    #[test]
    fn a_results_frame_replaces_the_message_and_a_contradicting_one_is_refused() {
        use loadgate_api::results::{RunResults, StepResult};
        use loadgate_results::results_frame::encode;
        let message: RunSummary = serde_json::from_str(&summary(5)).unwrap();
        let results = RunResults {
            summary: message.clone(),
            steps: vec![StepResult {
                first_window: 0,
                windows: 2,
                users: 2,
                users_throughout: 1,
                offered_rps: None,
                seconds: 2.0,
                stats: message.total.clone(),
            }],
            windows: vec![],
        };
        let frame = encode(&results);
        let named = RunSummary {
            results: Some(frame.reference),
            ..message.clone()
        };
        let log = format!("starting load\n{}", frame.text);
        let got = with_frame("r-0", named.clone(), Some(&log)).unwrap();
        assert_eq!(got.steps.as_ref().map(Vec::len), Some(1));
        assert_eq!(got.summary.results, Some(frame.reference));
        assert_eq!(got.missing_frame, None);
        // No log, or one cut short: the termination message alone, no steps, and it says
        // which: no frame, or a frame refused.
        let no_log = with_frame("r-0", named.clone(), None).unwrap();
        assert!(no_log.steps.is_none());
        assert_eq!(
            no_log.missing_frame.as_deref(),
            Some("pod r-0: its log could not be read")
        );
        let cut = &log[..log.len() / 2];
        let cut = with_frame("r-0", named.clone(), Some(cut)).unwrap();
        assert!(cut.steps.is_none());
        assert!(
            cut.missing_frame
                .as_deref()
                .is_some_and(|m| m.starts_with("pod r-0: its frame was refused")),
            "{:?}",
            cut.missing_frame
        );
        // A summary naming no frame ignores the log, and misses nothing.
        let plain = with_frame("r-0", message.clone(), Some(&log)).unwrap();
        assert!(plain.steps.is_none() && plain.missing_frame.is_none());
        // A frame that checks out but tells another story than the message: refused.
        let mut other = results.clone();
        other.summary.total.requests = 6;
        let forged = encode(&other);
        let named = RunSummary {
            results: Some(forged.reference),
            ..message.clone()
        };
        let err = with_frame("r-0", named, Some(&forged.text)).unwrap_err();
        assert!(
            err.contains("pod r-0") && err.contains("disagrees"),
            "{err}"
        );
        // And one whose step histogram is garbage.
        let mut garbage = results;
        garbage.steps[0].stats.histogram = Some("AAAA".into());
        let bad = encode(&garbage);
        let named = RunSummary {
            results: Some(bad.reference),
            ..message
        };
        let err = with_frame("r-0", named, Some(&bad.text)).unwrap_err();
        assert!(err.contains("pod r-0"), "{err}");
    }

    #[test]
    fn one_summary_per_index_in_index_order() {
        let pods = [
            pod("r-1", "job-uid", Some("1"), &summary(7)),
            pod("r-0", "job-uid", Some("0"), &summary(5)),
        ];
        let got = collect(&job(), &pods, 2, C).unwrap();
        assert_eq!(
            got.iter()
                .map(|(pod, s)| (pod.as_str(), s.total.requests))
                .collect::<Vec<_>>(),
            [("r-0", 5), ("r-1", 7)]
        );
    }

    #[test]
    fn a_foreign_pod_with_the_jobs_label_is_not_counted() {
        // Reproduced on the project's control plane: a copied summary doubled the requests.
        let pods = [
            pod("r-0", "job-uid", Some("0"), &summary(107)),
            pod("forged", "someone-else", Some("0"), &summary(108)),
        ];
        let got = collect(&job(), &pods, 1, C).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.total.requests, 107);
        let only_forged = [pod("forged", "someone-else", Some("0"), &summary(108))];
        let err = collect(&job(), &only_forged, 1, C).unwrap_err();
        assert!(err.contains("index 0") && err.contains("forged"), "{err}");
    }

    #[test]
    fn duplicate_missing_and_out_of_range_indexes_are_errors() {
        let dup = [
            pod("a", "job-uid", Some("0"), &summary(1)),
            pod("b", "job-uid", Some("0"), &summary(1)),
        ];
        let err = collect(&job(), &dup, 2, C).unwrap_err();
        assert!(err.contains("both claim completion index 0"), "{err}");
        let extra = [
            pod("a", "job-uid", Some("0"), &summary(1)),
            pod("b", "job-uid", Some("1"), &summary(1)),
        ];
        let err = collect(&job(), &extra, 1, C).unwrap_err();
        assert!(
            err.contains("pod b") && err.contains("outside 0..1"),
            "{err}"
        );
        let missing = [pod("a", "job-uid", Some("1"), &summary(1))];
        assert!(
            collect(&job(), &missing, 2, C)
                .unwrap_err()
                .contains("index 0")
        );
        let unindexed = [pod("a", "job-uid", None, &summary(1))];
        assert!(
            collect(&job(), &unindexed, 1, C)
                .unwrap_err()
                .contains("no completion index")
        );
    }

    #[test]
    fn hostile_termination_messages_are_errors_naming_the_pod() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let bytes: String = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b' ' + (seed % 95) as u8)
                })
                .collect();
            let err =
                collect(&job(), &[pod("r-0", "job-uid", Some("0"), &bytes)], 1, C).unwrap_err();
            assert!(err.contains("pod r-0"), "{err}");
        }
        let huge = "x".repeat(MAX_TERMINATION_MESSAGE + 1);
        let err = collect(&job(), &[pod("r-0", "job-uid", Some("0"), &huge)], 1, C).unwrap_err();
        assert!(err.contains("4097 bytes"), "{err}");
        // A well-formed summary whose histogram is garbage.
        let bad = summary(3).replace("\"histogram\":\"", "\"histogram\":\"AAAA");
        let err = collect(&job(), &[pod("r-0", "job-uid", Some("0"), &bad)], 1, C).unwrap_err();
        assert!(err.contains("pod r-0"), "{err}");
    }
}
