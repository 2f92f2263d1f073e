//! The engine tier: tests that need a real engine (llama.cpp's
//! `llama-server`, built by `.ci/setup`), a container runtime (podman,
//! docker) with a loopback `docker-registry`, or Nix. They time real
//! engines, so they run one at a time:
//! `cargo test --test engine -- --test-threads=1`. The fast tier is
//! `tests/it`.

mod containers;
mod llamacpp;
mod lock_registry;
mod nightly;
mod nix;
mod run_cpu;
mod verify;

#[path = "../support/mod.rs"]
mod support;
