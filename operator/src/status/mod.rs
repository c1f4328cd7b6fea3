//! Pure status computation: what the operator observed in, the status (and, for LoadTests, the
//! next step) out. No I/O and an explicit clock, so every branch is unit-tested.

pub mod gates;
pub mod load_test;
pub mod model_endpoint;
pub mod plan;
pub mod profile_results;
pub mod run_end;
pub mod runner_results;

use k8s_openapi::jiff::Timestamp;
use loadgate_api::conditions::Time;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// `now` as a Kubernetes time (second precision, as the apiserver stores it).
pub fn now() -> Time {
    Clock::system().now()
}

/// The controllers' clock: the system's, or one a test sets and moves (in the reconcile's
/// [`crate::context::Context`]), so no controller test reads the wall clock.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<Mutex<Timestamp>>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock standing at `at` until [`Clock::advance`] moves it.
    pub fn fixed(at: &Time) -> Self {
        Self(Some(Arc::new(Mutex::new(at.0))))
    }

    /// Moves a fixed clock on (the system clock moves by itself).
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.0 {
            let mut at = at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *at = at
                .checked_add(by)
                .expect("a test clock moved past year 9999; this is a bug");
        }
    }

    /// Now, as a Kubernetes time (second precision, as the apiserver stores it).
    pub fn now(&self) -> Time {
        let now = self.timestamp();
        Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
    }

    /// Now, as the runners' clock reads it (their common start is set in Unix milliseconds).
    pub fn system_time(&self) -> SystemTime {
        SystemTime::from(self.timestamp())
    }

    fn timestamp(&self) -> Timestamp {
        match &self.0 {
            None => Timestamp::now(),
            Some(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_stands_still_until_moved() {
        let clock = Clock::fixed(&crate::fixtures::at(1_000));
        assert_eq!(clock.now(), crate::fixtures::at(1_000));
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), crate::fixtures::at(1_090));
        let ms = clock
            .system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(ms, 1_090_000);
    }
}
