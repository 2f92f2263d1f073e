//! The load generator: streaming HTTP client, SSE parsing and the closed- and
//! open-loop schedulers that produce one raw [`record::RequestRecord`] per
//! request.

pub mod record;
