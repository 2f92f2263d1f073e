//! Integration tests: the `infermark` binary as a user runs it.

mod audit;
mod bench_sim;
mod cli_spec;
mod containers;
mod engine;
mod llamacpp;
mod nix;
mod run_cpu;
mod support;
