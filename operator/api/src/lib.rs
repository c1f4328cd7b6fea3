//! loadgate's contract crate: every type that crosses a process boundary lives here, so the model
//! server, the load runner and the operator share one definition of each.
//!
//! - [`embed`]: HTTP bodies of the embedding API (model-server ↔ loadrunner);
//! - [`load`]: the load spec (profiles, tasks, wait time, thresholds) and the run summary;
//! - [`duration`]: Kubernetes-style duration strings.
//!
//! The CRD types (`ModelEndpoint`, `LoadTest`) and conditions join behind a default `crd`
//! feature, so the model server keeps depending on serde alone.
#![deny(missing_docs)]

pub mod duration;
pub mod embed;
pub mod load;
