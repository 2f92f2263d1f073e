//! Prompts from a dataset file in the ShareGPT layout, pinned by sha256, and
//! the streaming file hash the pins are checked with.
//!
//! The layout is a JSON array of conversations, as in the ShareGPT dumps
//! that serving benchmarks (vLLM's, SGLang's) sample from:
//! `[{"id": ..., "conversations": [{"from": "human", "value": ...},
//! {"from": "gpt", "value": ...}, ...]}, ...]`. Fields other than
//! `conversations`, `from` and `value` are ignored.
//!
//! A conversation is usable when it has at least two turns and a turn from
//! `"human"` with non-blank text; its prompt is the first such turn. Usable
//! conversations are put in an order drawn from the seed (a Fisher–Yates
//! shuffle of file order), and measured request `i` takes the `i`-th of that
//! order, warmup request `j` the `j`-th from its end. So no prompt repeats
//! within a phase until the phase asks for more requests than the file has
//! (then it cycles), warmup and measured prompts overlap only when together
//! they ask for more than that, and request `i` does not depend on how many
//! requests there are.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Phase, WorkloadError};
use crate::rng::Rng;

/// RNG stream of the prompt order ("DATA" in the high 32 bits, apart from
/// the per-request streams).
const ORDER_STREAM: u64 = 0x4441_5441_0000_0000;

/// Lowercase hex sha256 of a file's contents, read in blocks so a
/// multi-gigabyte file is never held in memory.
pub fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    crate::digest::sha256_file(path).map(|(hex, _)| hex)
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    conversations: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    from: String,
    value: String,
}

/// The usable prompts of a dataset file and the seeded order they are used in.
#[derive(Debug)]
pub(super) struct Conversations {
    prompts: Vec<String>,
    order: Vec<usize>,
}

impl Conversations {
    /// Reads `path`, checks its sha256 against `expected` (lowercase hex), and
    /// keeps the usable prompts. The file is read once and the bytes that
    /// were hashed are the bytes parsed, so a file changed in between cannot
    /// slip through.
    pub(super) fn load(path: &Path, expected: &str, seed: u64) -> Result<Self, WorkloadError> {
        let bytes = std::fs::read(path).map_err(|source| WorkloadError::ReadDataset {
            path: path.to_owned(),
            source,
        })?;
        let actual = crate::spec::hex(&Sha256::digest(&bytes));
        if actual != expected {
            return Err(WorkloadError::DatasetHashMismatch {
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        let entries = parse(path, &bytes)?;
        let total = entries.len();
        let prompts: Vec<String> = entries.into_iter().filter_map(first_human_turn).collect();
        if prompts.is_empty() {
            return Err(WorkloadError::NoUsableConversations {
                path: path.to_owned(),
                entries: total,
            });
        }
        let order = shuffled_indices(prompts.len(), seed);
        Ok(Conversations { prompts, order })
    }

    /// The prompt of request `index` in `phase`.
    pub(super) fn prompt(&self, phase: Phase, index: usize) -> &str {
        let n = self.order.len();
        let position = match phase {
            Phase::Measured => index % n,
            Phase::Warmup => n - 1 - index % n,
        };
        &self.prompts[self.order[position]]
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, WorkloadError> {
    let parse_error = |at: Option<String>, error| WorkloadError::ParseDataset {
        path: PathBuf::from(path),
        at,
        error,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let entries: Vec<Entry> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let at = (!at.is_empty() && at != ".").then_some(at);
        parse_error(at, e.into_inner())
    })?;
    de.end().map_err(|e| parse_error(None, e))?;
    Ok(entries)
}

fn first_human_turn(entry: Entry) -> Option<String> {
    if entry.conversations.len() < 2 {
        return None;
    }
    let turn = entry
        .conversations
        .into_iter()
        .find(|t| t.from == "human" && !t.value.trim().is_empty())?;
    Some(turn.value)
}

/// `0..n` shuffled by Fisher–Yates (Durstenfeld's in-place form, Knuth TAOCP
/// vol. 2, Algorithm 3.4.2 P) with the seed's order stream.
fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed, ORDER_STREAM);
    for i in (1..n).rev() {
        let j = rng.range_inclusive(0, i as u64) as usize;
        order.swap(i, j);
    }
    order
}

/// Estimated token count of a text prompt: characters / 4 rounded up, at
/// least 1. Four characters per token is the usual rule of thumb for English
/// with BPE vocabularies (OpenAI's tokenizer guide says so); the server's
/// `usage.prompt_tokens` is recorded beside it and is the count to trust.
pub(super) fn estimate_tokens(text: &str) -> u32 {
    let chars = text.chars().count();
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_file_matches_the_fips_180_example() {
        // FIPS 180-2, appendix B.1: SHA-256("abc").
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(
            sha256_file(&path).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256_file_streams_files_larger_than_its_buffer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        assert_eq!(
            sha256_file(&path).expect("hash"),
            crate::spec::hex(&Sha256::digest(&data))
        );
    }

    #[test]
    fn sha256_file_reports_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = sha256_file(&dir.path().join("absent")).expect_err("missing file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn estimate_is_chars_over_four_rounded_up_at_least_one() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        // Characters, not bytes: four two-byte characters are one token.
        assert_eq!(estimate_tokens("éééé"), 1);
    }

    #[test]
    fn shuffle_is_a_permutation_fixed_by_the_seed() {
        let a = shuffled_indices(50, 1);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, shuffled_indices(50, 1));
        assert_ne!(a, shuffled_indices(50, 2));
    }

    #[test]
    fn only_conversations_with_two_turns_and_a_human_turn_are_usable() {
        let entry = |turns: &[(&str, &str)]| Entry {
            conversations: turns
                .iter()
                .map(|(from, value)| Turn {
                    from: from.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        };
        assert_eq!(
            first_human_turn(entry(&[("human", "q"), ("gpt", "a")])),
            Some("q".into())
        );
        assert_eq!(
            first_human_turn(entry(&[("system", "s"), ("human", "q")])),
            Some("q".into())
        );
        assert_eq!(first_human_turn(entry(&[("human", "q")])), None);
        assert_eq!(first_human_turn(entry(&[("gpt", "a"), ("gpt", "b")])), None);
        assert_eq!(
            first_human_turn(entry(&[("human", "  "), ("gpt", "a")])),
            None
        );
    }
}
