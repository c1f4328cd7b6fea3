//! What reading a profile's results frames costs the operator, measured with a counting
//! allocator: a legal 24 h profile over 100 runner pods is decoded and merged within a stated
//! peak, and a deflate bomb inside a frame that checks out (size, CRC) is refused before it
//! inflates past the profile's decode budget. Before the budget, every pod's frame could
//! inflate to 128 MiB and all were held at once (the chart gives the operator 128 MiB).
//!
//! One test function: the allocator's counters are process-wide, so the two measurements must
//! not run side by side.

// A global allocator is `unsafe` by definition; this one only counts, then defers to System.
#![allow(unsafe_code)]

use loadgate::status::profile_results::{RunnerResults, profile_result};
use loadgate::status::runner_results::{DecodeBudget, PROFILE_DECODE_BUDGET, with_frame_within};
use loadgate_api::load::Thresholds;
use loadgate_api::results::{RunResults, WindowResult, window_seconds};
use loadgate_api::summary::RunSummary;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes allocated at the peak of `f`, over what was live when it began.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed).saturating_sub(base))
}

const MIB: usize = 1 << 20;

fn histogram(values_ms: &[u64]) -> hdrhistogram::Histogram<u64> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for v in values_ms {
        h.record(v * 1000).unwrap();
    }
    h
}

/// One runner pod's full results of a 24 h profile sharded over `pods`: its windows coarsened
/// as the runner coarsens them (400 s each), each with a spread of latencies.
fn pod_results(pod: u32, pods: u32) -> RunResults {
    let day = 86_400u64;
    let width = window_seconds(day, pods);
    let spread: Vec<u64> = (0..40)
        .map(|i| 5 + (i * 37 + u64::from(pod)) % 400)
        .collect();
    let total = histogram(&spread);
    let summary: RunSummary = serde_json::from_value(serde_json::json!({
        "profile": "day", "durationSeconds": day as f64, "users": 1,
        "startedAtMs": 1_700_000_000_000u64,
        "total": {"name": "Aggregated", "method": "", "requests": 40, "failures": 0,
                  "errorRate": 0.0, "rps": 1.0, "meanMs": 100.0, "p50Ms": 100.0, "p90Ms": 300.0,
                  "p95Ms": 350.0, "p99Ms": 390.0, "maxMs": 400.0,
                  "histogram": loadgate_results::codec::encode(&total)},
        "tasks": [], "violations": [], "passed": true, "interrupted": false
    }))
    .unwrap();
    let windows = (0..day.div_ceil(u64::from(width)))
        .map(|i| WindowResult {
            window: u32::try_from(i).unwrap() * width,
            seconds: Some(width),
            users: 1,
            requests: 40,
            failures: 0,
            warmup: false,
            histogram: Some(loadgate_results::codec::encode(
                &loadgate_results::codec::coarsen(&histogram(&spread)),
            )),
            llm: None,
        })
        .collect();
    RunResults {
        summary,
        steps: Vec::new(),
        windows,
    }
}

#[test]
fn a_day_over_a_hundred_pods_fits_and_a_bomb_is_refused_within_the_budget() {
    // --- 100 runner pods × 24 h: each pod's log holds its frame; the operator reads them one
    // at a time within the profile's budget, then merges them.
    let pods = 100u32;
    let logs: Vec<(String, RunSummary, String)> = (0..pods)
        .map(|pod| {
            let results = pod_results(pod, pods);
            let frame = loadgate_results::results_frame::encode(&results);
            let summary = RunSummary {
                results: Some(frame.reference),
                ..results.summary
            };
            (
                format!("day-{pod}"),
                summary,
                format!("starting\n{}", frame.text),
            )
        })
        .collect();
    let compressed: usize = logs.iter().map(|(_, _, log)| log.len()).sum();
    let budgets = Thresholds {
        p95_ms: Some(500.0),
        ..Thresholds::default()
    };
    let ((runners, left), peak) = peak_of(|| {
        let mut budget = DecodeBudget::profile();
        let runners: Vec<RunnerResults> = logs
            .iter()
            .map(|(pod, summary, log)| {
                with_frame_within(pod, summary.clone(), Some(log), &mut budget).unwrap()
            })
            .collect();
        let merged = profile_result(&runners, pods as usize, &budgets, &[], false, false).unwrap();
        assert_eq!(merged.figures.requests, 40 * i64::from(pods));
        assert!(!merged.report.history.is_empty());
        (runners.len(), budget.left())
    });
    let spent = PROFILE_DECODE_BUDGET - left;
    println!(
        "100 pods × 24 h: {} windows of {} s per pod, {:.1} MiB of logs, {:.1} MiB inflated, \
         peak {:.1} MiB while decoding and merging",
        86_400 / window_seconds(86_400, pods),
        window_seconds(86_400, pods),
        compressed as f64 / MIB as f64,
        spent as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    assert_eq!(runners, pods as usize);
    assert!(
        spent < PROFILE_DECODE_BUDGET / 4,
        "a legal profile uses under a quarter of the budget"
    );
    // The stated peak: a third of the chart's 128 MiB limit.
    assert!(peak < 48 * MIB, "peak {} MiB", peak / MIB);
    drop(logs);

    // --- a deflate bomb: a frame that checks out (size, CRC) inflating to 1 GiB of spaces.
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let spaces = vec![b' '; MIB];
    for _ in 0..1024 {
        deflate.write_all(&spaces).unwrap();
    }
    drop(spaces);
    let bomb = loadgate_results::results_frame::frame_of_deflated(&deflate.finish().unwrap());
    let summary = RunSummary {
        results: Some(bomb.reference),
        ..pod_results(0, 1).summary
    };
    let (refused, peak) = peak_of(|| {
        let mut budget = DecodeBudget::profile();
        with_frame_within("bomb-0", summary, Some(&bomb.text), &mut budget).unwrap_err()
    });
    println!(
        "a 1 GiB bomb in a {} KiB frame: refused with peak {:.1} MiB: {refused}",
        bomb.reference.bytes >> 10,
        peak as f64 / MIB as f64
    );
    assert!(
        refused.starts_with("pod bomb-0: its results frame needs more than the 32.0 MiB left"),
        "{refused}"
    );
    // What is inflated stops at the budget (its buffer never grows past it), plus the frame's
    // compressed bytes and a moment of copying when the buffer last grew.
    assert!(peak < 40 * MIB, "peak {} MiB", peak / MIB);
}
