//! loadgate's contract crate: every type that crosses a process boundary lives here, so the model
//! server, the load runner and the operator share one definition of each.
//!
//! Today it holds the HTTP bodies of the embedding API ([`embed`]); the CRD types (`ModelEndpoint`,
//! `LoadTest`), conditions and the runner's result summary join it behind a default `crd` feature,
//! so the model server keeps depending on serde alone.
#![deny(missing_docs)]

pub mod embed;
