//! How big a runner's results frame is and how long the operator takes to read and add up the
//! frames of a profile's pods, at parallelism 1, 10 and 100, for runs of 10 min and 1 h, by
//! simulation: each simulated pod records a ramp's worth of requests (its share of 50 req/s,
//! latencies spread over two orders of magnitude) through the runner's own `Stats`, and its
//! results are framed with the runner's own encoder; the "operator" then decodes every frame
//! (bounded, checked) and merges the steps with the code the operator runs.
//!
//! `cargo run --release --example results_channel`

use loadgate_api::duration::Duration as SpecDuration;
use loadgate_api::load::LoadProfile;
use loadgate_api::results::RunResults;
use loadgate_results::sample::Outcome;
use loadgate_results::sample::Sample;
use loadgate_results::stats::Stats;
use loadrunner::rng::Rng;
use std::time::{Duration, Instant};

/// Requests per second over the whole profile (all pods together).
const RATE: u64 = 50;

fn simulate_pod(whole: &LoadProfile, pods: u32, index: u32, seed: u64) -> RunResults {
    let tasks = [("embed".to_owned(), "POST".to_owned())];
    let mut stats = Stats::new(&tasks).with_steps(whole, &whole.shard(index, pods));
    let mut rng = Rng::new(seed ^ u64::from(index));
    let seconds = whole.run_time().as_secs();
    let per_pod = (RATE / u64::from(pods)).max(1);
    for _ in 0..seconds {
        for _ in 0..per_pod {
            // 5 ms .. 2 s, log-uniform.
            let ms = 5.0 * (400f64).powf(rng.unit());
            stats.record(&Sample {
                task: 0,
                latency: Duration::from_secs_f64(ms / 1000.0),
                outcome: Outcome::Ok { bytes: 1_600 },
                start_delay: None,
                quality: None,
                texts: 0,
                dial: None,
                llm: None,
            });
        }
        stats.snapshot(whole.shard(index, pods).users);
    }
    stats.finish();
    let summary = loadgate_results::summary::summarize(
        &whole.shard(index, pods),
        &loadgate_results::stats::RunOutcome {
            stats: stats.clone(),
            elapsed: whole.run_time(),
            interrupted: false,
            dropped: 0,
            stopped_at_break: false,
        },
        &Default::default(),
        &[],
    );
    RunResults {
        summary,
        steps: stats
            .steps
            .iter()
            .flat_map(|s| {
                s.rows
                    .iter()
                    .map(loadgate_results::capacity::StepRow::result)
            })
            .collect(),
        windows: stats.windows,
    }
}

fn main() {
    println!(
        "{:>8} {:>9} {:>13} {:>13} {:>10} {:>12} {:>12}",
        "run", "pods", "frame/pod", "frames total", "windows", "encode/pod", "read+merge"
    );
    for minutes in [10u64, 60] {
        let whole = LoadProfile {
            name: "ramp".into(),
            users: 100,
            spawn_rate: 100.0 / (minutes as f64 * 60.0 / 2.0),
            duration: SpecDuration::from_secs(minutes * 60),
            arrival_rate: None,
            stages: Vec::new(),
            search: None,
            warmup: Default::default(),
        };
        for pods in [1u32, 10, 100] {
            // Simulate a few pods and reuse their frames for the rest: the frames' sizes and the
            // merge's work depend on the counts, not on which pod sent them.
            let distinct = pods.min(4);
            let mut frames = Vec::new();
            let mut encode_time = Duration::ZERO;
            for index in 0..distinct {
                let results = simulate_pod(&whole, pods, index, 7);
                let started = Instant::now();
                frames.push(loadgate_results::results_frame::encode(&results));
                encode_time += started.elapsed();
            }
            let started = Instant::now();
            let mut steps = Vec::with_capacity(pods as usize);
            let mut bytes = 0usize;
            for i in 0..pods {
                let frame = &frames[(i % distinct) as usize];
                bytes += frame.text.len();
                let results =
                    loadgate_results::results_frame::decode(&frame.text, &frame.reference)
                        .expect("a frame decodes");
                for stats in results.steps.iter().map(|s| &s.stats) {
                    loadgate_results::checked::decode(stats).expect("a step histogram decodes");
                }
                steps.push(results.steps);
            }
            let refs: Vec<&[_]> = steps.iter().map(Vec::as_slice).collect();
            let curve = loadgate_results::capacity::merge_steps(&refs).expect("steps merge");
            let merge_time = started.elapsed();
            assert!(!curve.is_empty());
            println!(
                "{:>6} m {:>9} {:>10} KiB {:>10} KiB {:>10} {:>9.1} ms {:>9.0} ms",
                minutes,
                pods,
                frames[0].text.len() / 1024,
                bytes / 1024,
                minutes * 60,
                encode_time.as_secs_f64() * 1000.0 / f64::from(distinct),
                merge_time.as_secs_f64() * 1000.0
            );
        }
    }
}
