//! loadgate's contract crate: every type that crosses a process boundary lives here, so the model
//! server, the load runner and the operator share one definition of each.
//!
//! The spec, what is asked:
//! - [`load`]: the load spec (profiles, tasks, wait time, thresholds);
//! - [`llm_request`]: what an LLM task (chat, completion) sends, streamed or not;
//! - [`target`]: how a target is reached: TLS, headers (some secret), the team's dataset;
//! - [`run_spec`]: everything one runner runs, as one value (the operator → runner pods);
//! - [`rules`]: the spec checks a LoadTest and a run spec share;
//!
//! The outcome, what a run measured and came to:
//! - [`stats`]: measured figures (requests and latency with their histograms, connections);
//! - [`capacity`]: a ramp's load curve and the capacity read from it;
//! - [`summary`]: one run's summary and the violations of its budgets;
//! - [`results`]: a runner pod's full results, read from its log past the 4 KiB message;
//! - [`report`]: the merged report of a run that outlives its pods;
//!
//! Shared by both:
//! - [`embed`]: HTTP bodies of the embedding API (model-server ↔ loadrunner);
//! - [`duration`]: Kubernetes-style duration strings;
//! - [`efficiency`]: embeddings per second, per core, and their cost;
//! - with the default `crd` feature: the custom resources [`model_endpoint`] and [`load_test`]
//!   (its status, what a run came to, in [`load_test_status`]),
//!   the [`conditions`] vocabulary, [`validate`] (the Rust twin of every schema rule), and
//!   [`crd`] (the generated CustomResourceDefinitions).
//!
//! The model server and the runner turn `crd` off and depend on serde alone.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod capacity;
pub mod duration;
pub mod efficiency;
pub mod embed;
pub mod failures;
pub mod llm_request;
pub mod load;
pub mod progress;
pub mod report;
pub mod results;
pub mod rules;
pub mod run_spec;
pub mod stats;
pub mod summary;
pub mod target;

#[cfg(feature = "crd")]
pub mod conditions;
#[cfg(feature = "crd")]
pub mod crd;
#[cfg(feature = "crd")]
pub mod load_test;
#[cfg(feature = "crd")]
pub mod load_test_status;
#[cfg(feature = "crd")]
pub mod model_endpoint;
#[cfg(feature = "crd")]
pub mod validate;

/// API group of the custom resources.
pub const GROUP: &str = "loadgate.dev";
/// API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
