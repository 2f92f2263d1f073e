//! infermark: a reproducible benchmark harness for LLM inference servers.
//!
//! Data flows one way: spec (+ lock) → point → engine + probe → workload →
//! loadgen (records) → metrics (summary) → provenance (statement) → store
//! (results tree, index) → verify (audit, reproduce) and night (a runner's
//! night of points, its record, plan and collect). `run` drives that
//! pipeline; `sim` is the built-in calibration server, and `calibrate`
//! measures the client's own error against it, saving the figures that
//! `run` attaches to every result on the host; `cli` is the command line
//! over all of it.
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
pub mod night;
pub mod probe;
pub mod provenance;
pub mod rng;
pub mod run;
pub mod serve;
pub mod sim;
pub mod site;
pub mod spec;
pub mod store;
pub mod verify;
pub mod workload;
