//! Pure status computation: what the operator observed in, the status (and, for LoadTests, the
//! next step) out. No I/O and an explicit clock, so every branch is unit-tested.

pub mod load_test;
pub mod model_endpoint;
pub mod profile_results;
pub mod runner_results;
