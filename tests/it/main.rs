//! The fast tier: the `infermark` binary and library as a user drives them,
//! against the built-in sim, fixture servers on loopback and files; no real
//! engine, container runtime or Nix. Runs in parallel under plain
//! `cargo test`. The engine tier is `tests/engine`.

mod audit;
mod bench_sim;
mod cli_spec;
mod engine;
mod lock;
mod nightly;
mod report;
mod run_checks;
mod serve;
mod sign;
mod verify;

#[path = "../support/mod.rs"]
mod support;
