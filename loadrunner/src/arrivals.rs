//! The open model's schedule: when each request is due, as an offset from the run's start. A
//! fixed arrival rate spaces them `1/rate` apart over the whole run; a search restarts the
//! spacing at each step's rate from the step's start, so every step offers exactly its rate
//! (no drift carried from the step before).

use loadgate_api::load::LoadProfile;
use std::time::Duration;

/// The due times of one profile's requests, in order.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// (start, end, rate) of each stretch of constant rate, in order.
    stretches: Vec<(f64, f64, f64)>,
    stretch: usize,
    /// Requests already due in the current stretch.
    index: u64,
}

impl Arrivals {
    /// The schedule of `profile` (this runner's share), or `None` for the closed model.
    pub fn of(profile: &LoadProfile) -> Option<Self> {
        let run = profile.run_time().as_secs_f64();
        let stretches = if let Some(search) = &profile.search {
            let step = search.step_duration.get().as_secs_f64();
            (0..search.steps())
                .map(|i| {
                    let start = f64::from(i) * step;
                    (start, (start + step).min(run), search.rate(i))
                })
                .collect()
        } else {
            vec![(0.0, run, profile.arrival_rate?)]
        };
        Some(Self {
            stretches,
            stretch: 0,
            index: 0,
        })
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            let &(start, end, rate) = self.stretches.get(self.stretch)?;
            // Rates are validated > 0; a tiny floor keeps a bad one from dividing by zero.
            let at = start + self.index as f64 / rate.max(1e-3);
            if at < end {
                self.index += 1;
                return Some(Duration::from_secs_f64(at));
            }
            self.stretch += 1;
            self.index = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgate_api::duration::Duration as SpecDuration;
    use loadgate_api::load::Search;

    fn profile(arrival_rate: Option<f64>, search: Option<Search>) -> LoadProfile {
        LoadProfile {
            name: "open".into(),
            users: 10,
            spawn_rate: 1.0,
            duration: SpecDuration::from_secs(2),
            arrival_rate,
            stages: Vec::new(),
            search,
            warmup: Default::default(),
        }
    }

    #[test]
    fn a_fixed_rate_is_evenly_spaced_over_the_run() {
        let due: Vec<Duration> = Arrivals::of(&profile(Some(4.0), None)).unwrap().collect();
        assert_eq!(due.len(), 8);
        assert_eq!(due[1], Duration::from_millis(250));
        assert_eq!(due[7], Duration::from_millis(1750));
        assert!(Arrivals::of(&profile(None, None)).is_none(), "closed model");
    }

    #[test]
    fn a_search_offers_each_steps_rate_from_the_steps_start() {
        let search = Search {
            start_rps: 2.0,
            step_rps: 1.5,
            step_duration: SpecDuration::from_secs(2),
            max_rps: 5.0,
        };
        let due: Vec<f64> = Arrivals::of(&profile(None, Some(search)))
            .unwrap()
            .map(|d| d.as_secs_f64())
            .collect();
        let per_step = |from: f64| due.iter().filter(|&&t| t >= from && t < from + 2.0).count();
        // 2, 3.5 and 5 req/s for 2 s each: 4, 7 and 10 requests.
        assert_eq!((per_step(0.0), per_step(2.0), per_step(4.0)), (4, 7, 10));
        assert_eq!(due.len(), 21);
        assert!(due.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(due[4], 2.0, "each step starts on its boundary");
    }
}
