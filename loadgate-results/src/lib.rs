//! loadgate-results: the runner → operator contract's measurements and the pure math over them.
//! No runtime, no network, no Kubernetes: the load engine (`loadrunner`) fills it, the operator
//! and local mode judge and render with it.
//!
//! Layers, each importing only from those above it in this list (the workspace's architecture
//! test, `operator/tests/architecture.rs`, keeps it so):
//!
//! 1. **Measured**: [`sample`] (one request's outcome, connection and quality check), [`codec`]
//!    (the histograms' bounds and their bounded wire form), [`llm`] (an LLM answer's
//!    timings and tokens, added up and merged), [`entry`] (one task's counts and
//!    latencies, the figures reports print), [`dials`] (the connections a run opened).
//! 2. **Judgement**: [`capacity`] (a ramp's or search's steps, the curve, the knee), [`gate`]
//!    (budgets into violations), [`failures`] (why requests failed, added up and named in the
//!    verdict), [`stats`] (a run's accumulator, which closes windows and judges
//!    them as they end), [`checked`] (a runner's histogram checked against its counts),
//!    [`summary`] (a finished run's summary and verdict), [`merge`] (parallel runners added up
//!    exactly), [`history`] (once-a-second windows, merged), [`results_frame`] (the full results
//!    as a bounded frame on a runner's log).
//! 3. **Rendering**: [`report`] (Locust CSVs, JSON), [`html`] (the page).

#![forbid(unsafe_code)]

pub mod capacity;
pub mod checked;
pub mod codec;
pub mod dials;
pub mod entry;
pub mod failures;
pub mod gate;
pub mod history;
pub mod html;
pub mod llm;
pub mod merge;
pub mod progress;
pub mod report;
pub mod results_frame;
pub mod sample;
pub mod stats;
pub mod summary;
