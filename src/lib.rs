//! infermark: a reproducible benchmark harness for LLM inference servers.
//!
//! Data flows one way: spec (+ lock) → point → engine + probe → workload →
//! loadgen (records) → metrics (summary) → provenance (statement) → store
//! (results tree, index) → verify (audit, reproduce) and report. `run`
//! drives that pipeline; `sim` is the built-in calibration server, and
//! `calibrate` measures the client's own error against it, saving the
//! figures that `run` attaches to every result on the host.
//! `digest`, `rng` and `clock` are leaf helpers that import nothing of the
//! crate. See DESIGN.md for the vocabulary.

pub mod calibrate;
pub mod cli;
pub mod clock;
pub mod digest;
pub mod engine;
pub mod loadgen;
pub mod lock;
pub mod metrics;
pub mod probe;
pub mod provenance;
pub mod report;
pub mod rng;
pub mod run;
pub mod sim;
pub mod spec;
pub mod store;
pub mod verify;
pub mod workload;
