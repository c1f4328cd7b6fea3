//! A running profile's live figures: when the status is due a fresh reading ([`due`]: a
//! profile runs under its Job and its progress is none or at least 10 s old), and what the
//! reading makes of the status ([`show`]): `status.profiles[].progress` replaced only when its
//! figures changed (so an unchanged run writes nothing), cleared from every profile that no
//! longer runs, and `status.progress`, the `PROGRESS` column (`steady 120/300s`).

use super::{current_profile, elapsed_since};
use loadgate_api::conditions::Time;
use loadgate_api::load_test_status::{LoadTestStatus, ProfilePhase, ProfileProgress};
use loadgate_api::progress::{PROGRESS_EVERY_SECONDS, Progress, column};
use std::time::Duration;

/// What the runner pods of the running profile said last: their progress merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Merged over the pods that printed a progress line.
    pub progress: Progress,
    /// How many did.
    pub pods: u32,
}

/// Whether the running profile's progress is due a new reading at `now`: it runs under a
/// recorded Job, and it has none yet or its last is at least 10 s old.
pub fn due(status: &LoadTestStatus, now: &Time) -> bool {
    let Some(i) = current_profile(status) else {
        return false;
    };
    let profile = &status.profiles[i];
    if profile.phase != ProfilePhase::Running || profile.job.is_none() {
        return false;
    }
    profile.progress.as_ref().is_none_or(|p| {
        elapsed_since(Some(&p.observed_time), now) >= Duration::from_secs(PROGRESS_EVERY_SECONDS)
    })
}

/// Shows `reading` (if any) in `status` at `now`.
pub fn show(status: &mut LoadTestStatus, reading: Option<Reading>, now: &Time) {
    let running = current_profile(status).filter(|&i| {
        status.profiles[i].phase == ProfilePhase::Running && status.profiles[i].job.is_some()
    });
    for (i, profile) in status.profiles.iter_mut().enumerate() {
        if Some(i) != running {
            profile.progress = None;
        }
    }
    let Some(i) = running else {
        status.progress = None;
        return;
    };
    let profile = &mut status.profiles[i];
    if let Some(Reading { progress, pods }) = reading {
        let unchanged = profile
            .progress
            .as_ref()
            .is_some_and(|p| p.figures == progress && p.pods == pods);
        if !unchanged {
            profile.progress = Some(ProfileProgress {
                figures: progress,
                pods,
                observed_time: now.clone(),
            });
        }
    }
    status.progress = Some(match &profile.progress {
        Some(p) => column(&profile.name, &p.figures),
        None => format!("{} starting", profile.name),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::at;
    use loadgate_api::load_test_status::ProfileStatus;

    fn running() -> LoadTestStatus {
        let mut st = LoadTestStatus {
            profiles: vec![
                ProfileStatus::pending("ramp", 10),
                ProfileStatus::pending("steady", 10),
            ],
            ..LoadTestStatus::default()
        };
        st.profiles[0].phase = ProfilePhase::Passed;
        st.profiles[1].phase = ProfilePhase::Running;
        st.profiles[1].job = Some("t-steady".into());
        st
    }

    fn reading(elapsed: u64, requests: u64) -> Reading {
        Reading {
            progress: Progress {
                elapsed_seconds: elapsed,
                planned_seconds: 300,
                requests,
                ..Progress::default()
            },
            pods: 1,
        }
    }

    #[test]
    fn a_reading_is_due_every_10_s_and_only_while_a_profile_runs() {
        let mut st = running();
        assert!(due(&st, &at(0)), "none yet");
        show(&mut st, Some(reading(10, 100)), &at(0));
        assert!(!due(&st, &at(9)));
        assert!(due(&st, &at(10)));
        st.profiles[1].job = None;
        assert!(!due(&st, &at(10)), "no Job recorded: nothing to read");
        st.profiles[1].phase = ProfilePhase::Passed;
        assert!(!due(&st, &at(10)));
    }

    #[test]
    fn figures_change_the_status_and_the_same_figures_do_not() {
        let mut st = running();
        show(&mut st, None, &at(0));
        assert_eq!(st.progress.as_deref(), Some("steady starting"));
        assert_eq!(st.profiles[1].progress, None);
        show(&mut st, Some(reading(10, 100)), &at(12));
        assert_eq!(st.progress.as_deref(), Some("steady 10/300s"));
        let first = st.clone();
        // The same figures read again (a runner that has not printed since): no change at all.
        show(&mut st, Some(reading(10, 100)), &at(25));
        assert_eq!(st, first);
        show(&mut st, Some(reading(20, 210)), &at(25));
        let p = st.profiles[1].progress.as_ref().unwrap();
        assert_eq!((p.figures.requests, p.observed_time.clone()), (210, at(25)));
        assert_eq!(st.progress.as_deref(), Some("steady 20/300s"));
    }

    #[test]
    fn a_profile_that_ended_keeps_no_progress() {
        let mut st = running();
        show(&mut st, Some(reading(290, 3000)), &at(290));
        st.profiles[1].phase = ProfilePhase::Passed;
        show(&mut st, Some(reading(300, 3100)), &at(300));
        assert_eq!(st.profiles[1].progress, None);
        assert_eq!(st.progress, None);
    }
}
