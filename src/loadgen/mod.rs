//! The load generator: streaming HTTP client, SSE parsing and the closed- and
//! open-loop schedulers that produce one raw [`record::RequestRecord`] per
//! request.
//!
//! Built to time what it claims and never be the bottleneck (oha's "fast
//! mode" is the model): the per-chunk path reads the clock once per network
//! read, parses SSE into reusable buffers, reads only the few JSON fields a
//! record needs, and pushes `(time, tokens)` into a vector sized up front. No
//! logging, no JSON tree, no lock per chunk; each task owns its records and
//! they are merged once at the end. Statistics happen later, in `metrics`.

mod http;
pub mod record;
mod request;
pub mod run;
pub mod scan;
pub mod sse;

pub use run::{Api, LoadError, LoadOutcome, LoadPlan, Progress, Schedule, arrival_offsets, run};

#[cfg(test)]
mod test_server;
