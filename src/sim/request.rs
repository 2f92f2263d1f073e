//! Parsing a generation request body into what the timing model needs.
//!
//! Only the fields that change the sim's behaviour are read; everything else a
//! client sends (temperature, model, ...) is accepted and ignored, as an
//! OpenAI-compatible server would.

use serde::Deserialize;
use serde_json::Value;

/// Which endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    Completions,
    Chat,
}

/// A generation request as the sim understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GenRequest {
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
    /// vLLM's `continuous_usage_stats`, already combined with `include_usage`.
    pub continuous_usage: bool,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    #[error("invalid JSON body: {0}")]
    Json(serde_json::Error),
    #[error("`prompt` is required")]
    MissingPrompt,
    #[error("`prompt` must be a string or an array of token ids")]
    BadPrompt,
    #[error("`messages` is required")]
    MissingMessages,
    #[error("`messages[{0}].content` must be a string, an array of content parts, or null")]
    BadContent(usize),
    #[error("`max_tokens` must be at least 1")]
    ZeroMaxTokens,
}

#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    messages: Option<Vec<WireMessage>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    /// The chat API's newer name for `max_tokens`; wins when both are sent.
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<WireStreamOptions>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Deserialize)]
struct WireStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(default)]
    continuous_usage_stats: Option<bool>,
}

pub(super) fn parse(
    api: Api,
    body: &[u8],
    default_max_tokens: u32,
) -> Result<GenRequest, RequestError> {
    let wire: WireRequest = serde_json::from_slice(body).map_err(RequestError::Json)?;
    let prompt_tokens = match api {
        Api::Completions => {
            prompt_tokens(wire.prompt.as_ref().ok_or(RequestError::MissingPrompt)?)?
        }
        Api::Chat => {
            let messages = wire
                .messages
                .as_ref()
                .ok_or(RequestError::MissingMessages)?;
            let mut total = 0u64;
            for (i, m) in messages.iter().enumerate() {
                total += content_words(m.content.as_ref()).ok_or(RequestError::BadContent(i))?;
            }
            saturate(total)
        }
    };
    let max_tokens = wire
        .max_completion_tokens
        .or(wire.max_tokens)
        .unwrap_or(default_max_tokens);
    if max_tokens == 0 {
        return Err(RequestError::ZeroMaxTokens);
    }
    let (include_usage, continuous) = wire.stream_options.map_or((false, false), |o| {
        (
            o.include_usage.unwrap_or(false),
            o.continuous_usage_stats.unwrap_or(false),
        )
    });
    Ok(GenRequest {
        prompt_tokens,
        max_tokens,
        ignore_eos: wire.ignore_eos.unwrap_or(false),
        stream: wire.stream.unwrap_or(false),
        include_usage,
        continuous_usage: include_usage && continuous,
    })
}

/// A token-id array counts exactly; a string counts whitespace-separated
/// words (an estimate, the sim has no tokenizer).
fn prompt_tokens(prompt: &Value) -> Result<u32, RequestError> {
    match prompt {
        Value::String(s) => Ok(saturate(words(s))),
        Value::Array(ids) if ids.iter().all(|v| v.is_u64()) => Ok(saturate(ids.len() as u64)),
        _ => Err(RequestError::BadPrompt),
    }
}

/// Words in a chat message's content: a string, or an array of parts whose
/// `text` fields count (other parts, e.g. images, count nothing).
fn content_words(content: Option<&Value>) -> Option<u64> {
    match content {
        None | Some(Value::Null) => Some(0),
        Some(Value::String(s)) => Some(words(s)),
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(words)
                .sum(),
        ),
        Some(_) => None,
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completions(body: &str) -> Result<GenRequest, RequestError> {
        parse(Api::Completions, body.as_bytes(), 16)
    }

    #[test]
    fn token_id_prompt_counts_elements_and_string_counts_words() {
        assert_eq!(
            completions(r#"{"prompt":[1,2,3,4,5]}"#)
                .map(|r| r.prompt_tokens)
                .unwrap(),
            5
        );
        assert_eq!(
            completions(r#"{"prompt":"a bb  ccc\nd"}"#)
                .map(|r| r.prompt_tokens)
                .unwrap(),
            4
        );
        assert!(matches!(
            completions(r#"{"prompt":[1,"x"]}"#),
            Err(RequestError::BadPrompt)
        ));
        assert!(matches!(
            completions(r#"{"prompt":[[1,2]]}"#),
            Err(RequestError::BadPrompt)
        ));
        assert!(matches!(
            completions(r#"{"max_tokens":3}"#),
            Err(RequestError::MissingPrompt)
        ));
    }

    #[test]
    fn chat_counts_words_of_string_and_part_contents() {
        let body = r#"{"messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"one two three"},{"type":"image_url"}]},
            {"role":"assistant","content":null}]}"#;
        let r = parse(Api::Chat, body.as_bytes(), 16).map(|r| r.prompt_tokens);
        assert_eq!(r.unwrap(), 5);
        let bad = parse(Api::Chat, br#"{"messages":[{"content":7}]}"#, 16);
        assert!(matches!(bad, Err(RequestError::BadContent(0))));
        assert!(matches!(
            parse(Api::Chat, b"{}", 16),
            Err(RequestError::MissingMessages)
        ));
    }

    #[test]
    fn defaults_and_stream_options() {
        let r = completions(r#"{"prompt":"x"}"#).ok();
        assert_eq!(
            r,
            Some(GenRequest {
                prompt_tokens: 1,
                max_tokens: 16,
                ignore_eos: false,
                stream: false,
                include_usage: false,
                continuous_usage: false,
            })
        );
        let r = completions(
            r#"{"prompt":"x","max_tokens":7,"ignore_eos":true,"stream":true,
                "stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
        );
        assert_eq!(
            r.unwrap(),
            GenRequest {
                prompt_tokens: 1,
                max_tokens: 7,
                ignore_eos: true,
                stream: true,
                include_usage: true,
                continuous_usage: true,
            }
        );
    }

    #[test]
    fn continuous_usage_needs_include_usage_like_vllm() {
        let r = completions(r#"{"prompt":"x","stream_options":{"continuous_usage_stats":true}}"#);
        assert!(!r.unwrap().continuous_usage);
    }

    #[test]
    fn max_completion_tokens_wins_and_zero_is_rejected() {
        let r = parse(
            Api::Chat,
            br#"{"messages":[],"max_tokens":5,"max_completion_tokens":9}"#,
            16,
        );
        assert_eq!(r.map(|r| r.max_tokens).unwrap(), 9);
        assert!(matches!(
            completions(r#"{"prompt":"x","max_tokens":0}"#),
            Err(RequestError::ZeroMaxTokens)
        ));
        assert!(matches!(
            completions("{not json"),
            Err(RequestError::Json(_))
        ));
    }
}
