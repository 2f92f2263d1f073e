//! Seeded request generation: prompts of exact token lengths (random token
//! ids for the completions API, text for chat) or prompts from a dataset file
//! pinned by sha256. Same seed and point → byte-identical request bodies.

pub mod rng;

use bytes::Bytes;

/// One request ready to send: its JSON body and the lengths it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    /// The complete JSON body (streaming, usage requested).
    pub body: Bytes,
    /// Prompt length in tokens as generated (exact for token-id prompts).
    pub input_tokens: u32,
    /// The `max_tokens` in the body.
    pub max_output_tokens: u32,
}
