//! The JSON body of one streaming request, for the completions or the chat
//! API.
//!
//! Built once per request before the run starts (not on the hot path), with
//! serde from a struct, so the key order is the struct's field order and the
//! bytes are the same on every build. The fields and why each is (or is not)
//! sent are documented on [`super`].

use bytes::Bytes;
use serde::Serialize;

/// What a request asks about, already in the shape its API takes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Content<'a> {
    /// `/v1/completions` with `prompt` as an array of token ids.
    CompletionTokens(&'a [u32]),
    /// `/v1/completions` with `prompt` as a string.
    CompletionText(&'a str),
    /// `/v1/chat/completions` with one user message.
    ChatText(&'a str),
}

/// The body's sampling-independent settings, identical for every request of
/// a workload.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings<'a> {
    pub model: &'a str,
    pub ignore_eos: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<Prompt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<[Message<'a>; 1]>,
    max_tokens: u32,
    ignore_eos: bool,
    stream: bool,
    stream_options: StreamOptions,
    cache_prompt: bool,
}

// Untagged is used for serialisation only, where it just writes the inner
// value; nothing ever deserialises this type.
#[derive(Serialize)]
#[serde(untagged)]
enum Prompt<'a> {
    Tokens(&'a [u32]),
    Text(&'a str),
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
    continuous_usage_stats: bool,
}

/// Serialises one request body.
pub(super) fn encode(
    settings: Settings<'_>,
    content: Content<'_>,
    max_tokens: u32,
) -> Result<Bytes, serde_json::Error> {
    let (prompt, messages) = match content {
        Content::CompletionTokens(ids) => (Some(Prompt::Tokens(ids)), None),
        Content::CompletionText(text) => (Some(Prompt::Text(text)), None),
        Content::ChatText(text) => (
            None,
            Some([Message {
                role: "user",
                content: text,
            }]),
        ),
    };
    let body = Body {
        model: settings.model,
        prompt,
        messages,
        max_tokens,
        ignore_eos: settings.ignore_eos,
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
            continuous_usage_stats: true,
        },
        cache_prompt: false,
    };
    serde_json::to_vec(&body).map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(content: Content<'_>) -> serde_json::Value {
        let settings = Settings {
            model: "m",
            ignore_eos: true,
        };
        let bytes = encode(settings, content, 5).expect("encoding a test body");
        serde_json::from_slice(&bytes).expect("the body is JSON")
    }

    #[test]
    fn completions_with_token_ids_send_an_integer_array_and_no_messages() {
        let v = json(Content::CompletionTokens(&[3, 1, 4]));
        assert_eq!(v["prompt"], serde_json::json!([3, 1, 4]));
        assert!(v.get("messages").is_none());
    }

    #[test]
    fn completions_with_text_send_a_string_prompt() {
        let v = json(Content::CompletionText("hello there"));
        assert_eq!(v["prompt"], "hello there");
        assert!(v.get("messages").is_none());
    }

    #[test]
    fn chat_sends_one_user_message_and_no_prompt() {
        let v = json(Content::ChatText("hello"));
        assert_eq!(
            v["messages"],
            serde_json::json!([{"role": "user", "content": "hello"}])
        );
        assert!(v.get("prompt").is_none());
    }

    #[test]
    fn every_body_streams_with_usage_and_disables_the_prompt_cache() {
        let v = json(Content::ChatText("x"));
        assert_eq!(v["model"], "m");
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["ignore_eos"], true);
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["continuous_usage_stats"], true);
        assert_eq!(v["cache_prompt"], false);
        assert!(v.get("temperature").is_none());
        assert!(v.get("min_tokens").is_none());
    }
}
