//! Why requests failed: [`FailureReason`], one reason of one task and how many requests it
//! failed, as a runner's summary carries its most frequent ones and a status its top
//! [`STATUS_FAILURE_REASONS`] ("HTTPError 404 on GET /nope (wrong-path): 970").

use serde::{Deserialize, Serialize};

/// Most reasons a runner's summary carries (its most frequent); the operator adds runners' up.
pub const MAX_RUNNER_FAILURE_REASONS: usize = 20;
/// Most reasons a status carries per profile (and for the whole test).
pub const STATUS_FAILURE_REASONS: usize = 5;
/// Longest reason kept, bytes: a longer one is cut (at a character boundary) with `…`.
pub const MAX_FAILURE_REASON_BYTES: usize = 256;

/// One reason requests of one task failed, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FailureReason {
    /// The task's name (`spec.tasks[].name`).
    pub task: String,
    /// Its HTTP method.
    pub method: String,
    /// Its path, where the runner knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What went wrong, as the runner saw it: `HTTPError 404`, `timeout after 30 s`,
    /// `bad response: …`, `NotSent: queue full`.
    pub reason: String,
    /// Requests that failed so.
    pub count: u64,
}

impl FailureReason {
    /// `HTTPError 404 on GET /nope (wrong-path): 970`.
    pub fn describe(&self) -> String {
        let on = self.path.as_deref().unwrap_or(&self.task);
        let task = if self.path.is_some() {
            format!(" ({})", self.task)
        } else {
            String::new()
        };
        format!(
            "{} on {} {on}{task}: {}",
            self.reason, self.method, self.count
        )
    }

    /// The key reasons are added up by.
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.task, &self.method, &self.reason)
    }
}

/// `reasons` sorted most frequent first (ties in task, method and reason order), at most `max`.
pub fn top(mut reasons: Vec<FailureReason>, max: usize) -> Vec<FailureReason> {
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key().cmp(&b.key())));
    reasons.truncate(max);
    reasons
}

/// `reasons` added up by task, method and reason (the first path seen kept), most frequent
/// first, at most `max`. Counts saturate: added-up claims never wrap.
pub fn add_up<'a>(
    reasons: impl IntoIterator<Item = &'a FailureReason>,
    max: usize,
) -> Vec<FailureReason> {
    let mut sums: std::collections::BTreeMap<(&str, &str, &str), FailureReason> =
        std::collections::BTreeMap::new();
    for reason in reasons {
        let sum = sums.entry(reason.key()).or_insert_with(|| FailureReason {
            count: 0,
            ..reason.clone()
        });
        sum.count = sum.count.saturating_add(reason.count);
        if sum.path.is_none() {
            sum.path.clone_from(&reason.path);
        }
    }
    top(sums.into_values().collect(), max)
}

/// `reason` cut to [`MAX_FAILURE_REASON_BYTES`] at a character boundary, `…` marking the cut.
pub fn bounded(reason: &str) -> String {
    if reason.len() <= MAX_FAILURE_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_FAILURE_REASON_BYTES - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(task: &str, reason: &str, count: u64) -> FailureReason {
        FailureReason {
            task: task.into(),
            method: "GET".into(),
            path: None,
            reason: reason.into(),
            count,
        }
    }

    #[test]
    fn reasons_read_as_a_person_says_them_most_frequent_first() {
        let mut wrong = reason("wrong-path", "HTTPError 404", 970);
        assert_eq!(wrong.describe(), "HTTPError 404 on GET wrong-path: 970");
        wrong.path = Some("/nope".into());
        assert_eq!(
            wrong.describe(),
            "HTTPError 404 on GET /nope (wrong-path): 970"
        );
        let sorted = top(
            vec![
                reason("b", "x", 1),
                reason("a", "y", 5),
                reason("a", "x", 1),
            ],
            2,
        );
        assert_eq!(
            sorted
                .iter()
                .map(|r| (r.task.as_str(), r.count))
                .collect::<Vec<_>>(),
            [("a", 5), ("a", 1)]
        );
    }

    #[test]
    fn long_reasons_are_cut_within_the_bound() {
        assert_eq!(bounded("HTTPError 500"), "HTTPError 500");
        let long = "é".repeat(400);
        let cut = bounded(&long);
        assert!(
            cut.len() <= MAX_FAILURE_REASON_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
    }
}
