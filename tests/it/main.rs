//! Integration tests: the `infermark` binary as a user runs it.

mod audit;
mod bench_sim;
mod cli_spec;
mod containers;
mod engine;
mod llamacpp;
mod lock;
mod nightly;
mod nix;
mod run_checks;
mod run_cpu;
mod sign;
mod support;
mod verify;
