//! Seeded request generation: prompts of exact token lengths (random token
//! ids for the completions API, text for chat) or prompts from a dataset file
//! pinned by sha256. Same seed and point → byte-identical request bodies.
//!
//! Every request body is built here, before the run, so the load generator
//! only writes prepared bytes and a published point's requests can be
//! rebuilt exactly from its seed.
//!
//! # Lengths and the range ratio
//!
//! With nominal length `n` and range ratio `r` (0 ≤ r ≤ 1), each request's
//! length is drawn uniformly from the integers in `[ceil(r·n), n]`, at least
//! 1; `r = 1` gives exactly `n`. Input and output lengths are drawn
//! independently, each this way. This is the convention of InferenceX's
//! nightly benchmark and of SGLang's random dataset (vLLM's newer
//! `--random-range-ratio` is instead symmetric around `n`). Lengths then
//! average about `(1 + r)/2 · n`: 0.9·n for the usual 0.8, not n. SGLang
//! truncates `r·n` where this takes the ceiling, so its lower end can be one
//! token below ours; the ceiling keeps every length inside the real interval
//! `[r·n, n]`. `r·n` is computed in `f64`; a product within `n·10⁻¹²` of an
//! integer counts as that integer, so that `0.07 × 100` gives 7 as written,
//! not the 8 its binary rounding would.
//!
//! # Prompts
//!
//! - Random dataset, completions API: `prompt` is an array of token ids,
//!   uniform in `[token_id_min, token_id_max]`, of exactly the drawn length
//!   (no tokenizer is needed, and servers take token-id prompts as they are;
//!   a server may still add a BOS token, which its `usage.prompt_tokens`
//!   shows).
//! - Random dataset, chat API: one user message made of the drawn number of
//!   words from [`words::WORDS`], separated by spaces. Each word is one token
//!   in mainstream vocabularies, so the length is close to the target but not
//!   exact without the model's tokenizer, and the chat template adds its own
//!   tokens. The record's `input_tokens` is the word count; the server's
//!   `usage.prompt_tokens`, recorded beside it, is the real count.
//! - Dataset file: see [`dataset`]. The text is sent unaltered, as the
//!   completions `prompt` string or the chat message. `input_tokens` is an
//!   estimate (characters / 4, rounded up, at least 1) and the nominal
//!   `input_tokens` of the parameters is not used; the output length is
//!   drawn as above.
//!
//! # Salt
//!
//! Random prompts start with a salt that makes every prompt of a workload
//! different from its first token, so no prefix cache (vLLM's automatic
//! prefix caching, SGLang's radix cache, llama.cpp's prompt cache) can serve
//! one request from another's work. The salt is the number
//! `2·index + (1 for warmup, 0 for measured)` written as fixed-width digits,
//! least significant first, in base `token_id_max − token_id_min + 1` (digit
//! `d` is token id `token_id_min + d`) or base 256 for chat (digit `d` is
//! word `d`): as many digits as any 32-bit number needs (4 words; 3 tokens
//! for a 32,000-token range). The salt counts toward the prompt's length; a
//! prompt shorter than the salt carries only its first digits, and a range
//! of a single token id cannot carry a salt (every prompt is then the same
//! anyway). Dataset prompts are not salted: they are real text, and sending
//! them as the file has them keeps results comparable with other clients'
//! runs on the same file.
//!
//! # Seeds and streams
//!
//! Each request draws from its own stream of [`crate::rng::Rng`],
//! `Rng::new(seed, phase_base | index)`, with one base for warmup and one for
//! measured requests: request `i` is the same however many requests are
//! generated, and changing the warmup count never changes a measured request.
//! A request draws its input length (random dataset only), then its output
//! length, then its prompt.
//!
//! # Body
//!
//! Keys in this order: `model`, `prompt` (completions) or `messages` (chat),
//! `max_tokens`, `ignore_eos`, `stream: true`,
//! `stream_options: {include_usage: true, continuous_usage_stats: true}`,
//! `cache_prompt: false`.
//! - `stream_options.include_usage` makes servers send `usage`, the source of
//!   the recorded token counts; `continuous_usage_stats` is vLLM's (a running
//!   count in every chunk, so multi-token chunks are counted exactly); other
//!   servers ignore it.
//! - `cache_prompt: false` turns off llama.cpp's prompt cache, which is on by
//!   default; other servers ignore the key.
//! - `ignore_eos` is sent as given, true or false, so the body says which.
//! - No `min_tokens`: `ignore_eos` already makes vLLM, SGLang and llama.cpp
//!   generate exactly `max_tokens` (llama.cpp ignores `min_tokens`), and each
//!   extra non-standard key is one more a strict server may reject.
//! - No `temperature` or other sampling keys: the server's defaults apply,
//!   as with InferenceX's client. Output lengths are fixed by `max_tokens`
//!   and `ignore_eos`, not by sampling.

mod body;
pub mod dataset;
pub mod words;

use std::ops::RangeInclusive;
use std::path::PathBuf;

use bytes::Bytes;

pub use dataset::sha256_file;

use crate::rng::Rng;
use body::{Content, Settings};
use dataset::Conversations;

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

pub use crate::spec::Api;

impl Api {
    /// The request path, relative to the server's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// Where prompts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dataset {
    /// Generated prompts: token ids uniform in `[token_id_min, token_id_max]`
    /// (inclusive) for the completions API, common words for chat.
    Random {
        token_id_min: u32,
        token_id_max: u32,
    },
    /// A ShareGPT-layout JSON file, refused unless its sha256 (lowercase
    /// hex) matches.
    File { path: PathBuf, sha256: String },
}

/// Everything that decides a workload's request bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadParams {
    pub api: Api,
    pub dataset: Dataset,
    /// Nominal prompt length `n` in tokens (random dataset only).
    pub input_tokens: u32,
    /// Nominal output length in tokens, sent as `max_tokens`.
    pub output_tokens: u32,
    /// Each request's input and output lengths are uniform over the integers
    /// in `[ceil(range_ratio·n), n]` (at least 1), drawn independently; 1.0
    /// gives exactly `n`. Lengths then average about `(1 + range_ratio)/2 · n`.
    /// This is InferenceX's and SGLang's meaning, not vLLM's newer symmetric
    /// one. Must be in `[0, 1]`.
    pub range_ratio: f64,
    /// Sent as `ignore_eos`: generate `max_tokens` tokens whatever the model
    /// would stop at.
    pub ignore_eos: bool,
    pub seed: u64,
    /// The `model` field sent (the name the server serves the model under).
    pub model: String,
}

/// The requests of one point: warmup first, then the measured ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requests {
    pub warmup: Vec<PreparedRequest>,
    pub measured: Vec<PreparedRequest>,
}

/// Most requests of one phase: the salt `2·index + 1` must fit in 32 bits.
pub const MAX_REQUESTS_PER_PHASE: usize = 1 << 31;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("`{key}`: expected {expected}")]
    InvalidParam { key: &'static str, expected: String },
    #[error("{count} {phase} requests asked for; at most {max} per phase", max = MAX_REQUESTS_PER_PHASE)]
    TooManyRequests { phase: &'static str, count: usize },
    #[error("failed to read dataset {}", path.display())]
    ReadDataset {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset {}: sha256 mismatch: expected {expected}, found {actual}", path.display())]
    DatasetHashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// `at` is the JSON path of the offending value, when there is one.
    #[error("failed to parse dataset {} as ShareGPT JSON (an array of {{\"conversations\": [{{\"from\", \"value\"}}, ...]}}): {}{error}", path.display(), at.as_deref().map(|at| format!("{at}: ")).unwrap_or_default())]
    ParseDataset {
        path: PathBuf,
        at: Option<String>,
        error: serde_json::Error,
    },
    #[error(
        "dataset {}: none of its {entries} entries is usable (at least 2 turns, one of them from \"human\" with non-blank text)",
        path.display()
    )]
    NoUsableConversations { path: PathBuf, entries: usize },
    #[error("failed to encode a request body")]
    EncodeBody(#[source] serde_json::Error),
}

/// Warmup or measured: each has its own RNG streams and salts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measured,
}

impl Phase {
    /// High 32 bits of the phase's per-request streams ("WARM", "MEAS");
    /// the request index fills the low 32 bits.
    fn stream_base(self) -> u64 {
        match self {
            Phase::Warmup => 0x5741_524D_0000_0000,
            Phase::Measured => 0x4D45_4153_0000_0000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Measured => "measured",
        }
    }

    /// The request's salt: unique across both phases of a workload.
    fn salt(self, index: usize) -> u32 {
        let bit = match self {
            Phase::Warmup => 1,
            Phase::Measured => 0,
        };
        // `generate` refuses more than MAX_REQUESTS_PER_PHASE, so this fits.
        u32::try_from(2 * index + bit).unwrap_or(u32::MAX)
    }
}

/// The integers a length with nominal value `n` and range ratio `ratio` is
/// drawn from: `[ceil(ratio·n), n]`, lower end at least 1 (see the module
/// docs). `n` must be at least 1 and `ratio` in `[0, 1]`.
pub fn length_bounds(n: u32, ratio: f64) -> RangeInclusive<u32> {
    let n_f = f64::from(n);
    // Absorb the binary rounding of a decimal ratio (see module docs).
    let lo = (ratio * n_f - n_f * 1e-12).ceil();
    let lo = if lo.is_nan() {
        n_f
    } else {
        lo.clamp(1.0, n_f.max(1.0))
    };
    (lo as u32)..=n.max(1)
}

fn draw_length(rng: &mut Rng, n: u32, ratio: f64) -> u32 {
    let bounds = length_bounds(n, ratio);
    rng.range_inclusive(u64::from(*bounds.start()), u64::from(*bounds.end())) as u32
}

/// Builds the warmup and measured requests of a workload.
pub fn generate(
    params: &WorkloadParams,
    warmup: usize,
    measured: usize,
) -> Result<Requests, WorkloadError> {
    validate(params)?;
    for (phase, count) in [(Phase::Warmup, warmup), (Phase::Measured, measured)] {
        if count > MAX_REQUESTS_PER_PHASE {
            return Err(WorkloadError::TooManyRequests {
                phase: phase.name(),
                count,
            });
        }
    }
    let source = match &params.dataset {
        Dataset::Random {
            token_id_min,
            token_id_max,
        } => Source::Random {
            min: *token_id_min,
            max: *token_id_max,
        },
        Dataset::File { path, sha256 } => {
            Source::File(Conversations::load(path, sha256, params.seed)?)
        }
    };
    let build = |phase: Phase, count: usize| -> Result<Vec<PreparedRequest>, WorkloadError> {
        (0..count)
            .map(|index| prepare(params, &source, phase, index))
            .collect()
    };
    Ok(Requests {
        warmup: build(Phase::Warmup, warmup)?,
        measured: build(Phase::Measured, measured)?,
    })
}

fn validate(params: &WorkloadParams) -> Result<(), WorkloadError> {
    let invalid = |key, expected: &str| {
        Err(WorkloadError::InvalidParam {
            key,
            expected: expected.to_owned(),
        })
    };
    let r = params.range_ratio;
    if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
        return invalid(
            "workload.range-ratio",
            &format!("a number in [0, 1], found {r}"),
        );
    }
    if params.output_tokens == 0 {
        return invalid("workload.output-tokens", "at least 1, found 0");
    }
    match &params.dataset {
        Dataset::Random {
            token_id_min,
            token_id_max,
        } => {
            if params.input_tokens == 0 {
                return invalid("workload.input-tokens", "at least 1, found 0");
            }
            if token_id_min > token_id_max {
                return invalid(
                    "workload.token-id-min",
                    &format!("at most token-id-max ({token_id_max}), found {token_id_min}"),
                );
            }
        }
        Dataset::File { sha256, .. } => {
            let is_hex = sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !is_hex {
                return invalid(
                    "workload.sha256",
                    &format!("64 lowercase hex digits, found {sha256:?}"),
                );
            }
        }
    }
    Ok(())
}

enum Source {
    Random { min: u32, max: u32 },
    File(Conversations),
}

fn prepare(
    params: &WorkloadParams,
    source: &Source,
    phase: Phase,
    index: usize,
) -> Result<PreparedRequest, WorkloadError> {
    let mut rng = Rng::new(params.seed, phase.stream_base() | index as u64);
    let salt = phase.salt(index);
    let settings = Settings {
        model: &params.model,
        ignore_eos: params.ignore_eos,
    };
    let (body, input_tokens, output_tokens) = match (source, params.api) {
        (Source::Random { min, max }, api) => {
            let input = draw_length(&mut rng, params.input_tokens, params.range_ratio);
            let output = draw_length(&mut rng, params.output_tokens, params.range_ratio);
            let body = match api {
                Api::Completions => {
                    let ids = random_token_ids(&mut rng, input, salt, *min, *max);
                    body::encode(settings, Content::CompletionTokens(&ids), output)
                }
                Api::Chat => {
                    let text = random_words(&mut rng, input, salt);
                    body::encode(settings, Content::ChatText(&text), output)
                }
            };
            (body, input, output)
        }
        (Source::File(conversations), api) => {
            let output = draw_length(&mut rng, params.output_tokens, params.range_ratio);
            let text = conversations.prompt(phase, index);
            let content = match api {
                Api::Completions => Content::CompletionText(text),
                Api::Chat => Content::ChatText(text),
            };
            (
                body::encode(settings, content, output),
                dataset::estimate_tokens(text),
                output,
            )
        }
    };
    Ok(PreparedRequest {
        body: body.map_err(WorkloadError::EncodeBody)?,
        input_tokens,
        max_output_tokens: output_tokens,
    })
}

/// `salt` as fixed-width digits in `base`, least significant first: as many
/// digits as any `u32` needs in that base, none for a base below 2.
fn salt_digits(salt: u32, base: u64) -> Vec<u64> {
    if base < 2 {
        return Vec::new();
    }
    let mut digits = Vec::new();
    let mut rest = u64::from(salt);
    let mut reach: u128 = 1;
    while reach <= u128::from(u32::MAX) {
        digits.push(rest % base);
        rest /= base;
        reach *= u128::from(base);
    }
    digits
}

/// `len` token ids: the salt's digits, then ids uniform in `[min, max]`.
fn random_token_ids(rng: &mut Rng, len: u32, salt: u32, min: u32, max: u32) -> Vec<u32> {
    let base = u64::from(max) - u64::from(min) + 1;
    let mut ids: Vec<u32> = salt_digits(salt, base)
        .into_iter()
        .take(len as usize)
        .map(|d| min + d as u32)
        .collect();
    while ids.len() < len as usize {
        ids.push(rng.range_inclusive(u64::from(min), u64::from(max)) as u32);
    }
    ids
}

/// `len` words separated by single spaces: the salt's digits as words, then
/// words drawn uniformly from the list.
fn random_words(rng: &mut Rng, len: u32, salt: u32) -> String {
    let count = words::WORDS.len() as u64;
    let mut picks: Vec<usize> = salt_digits(salt, count)
        .into_iter()
        .take(len as usize)
        .map(|d| d as usize)
        .collect();
    while picks.len() < len as usize {
        picks.push(rng.range_inclusive(0, count - 1) as usize);
    }
    let mut text = String::with_capacity(picks.len() * 6);
    for (i, pick) in picks.into_iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(words::WORDS[pick]);
    }
    text
}

#[cfg(test)]
mod tests;
