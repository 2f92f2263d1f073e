//! infermark: a reproducible benchmark harness for LLM inference servers.
//!
//! Data flows one way: spec → point → workload → loadgen (records) → metrics
//! (summary). See DESIGN.md for the vocabulary.

pub mod loadgen;
pub mod sim;
pub mod workload;
