//! Reading one streamed chunk's JSON for the few facts a record needs.
//!
//! Two readers give the same answer. The fast one ([`scan`]'s first try) is
//! a single pass over the bytes that validates the whole document as JSON,
//! picks out the few members a record needs and allocates nothing. Whenever
//! it meets something it does not handle exactly itself (an `error` member,
//! escaped keys, surrogate escapes, invalid UTF-8 or JSON, numbers a count
//! cannot hold, duplicate members, deep nesting, a top level that is not an
//! object), it hands the chunk to the reference reader, so the result —
//! facts or error — is by construction the reference's for those inputs.
//!
//! The reference reader (`scan_reference`) deserialises with
//! `serde_json::from_slice` into a small borrowed struct that names only the
//! facts: whether the chunk carries generated text, the running or final
//! `usage`, an `error` object, and the sim server's `infermark_sent_ns`
//! stamp. serde skips every other field without building a tree.
//!
//! Which fields carry text, by API (OpenAI API reference, "Completions" and
//! "Chat Completions" streaming objects): completions put it in
//! `choices[0].text`; chat in `choices[0].delta.content`. Reasoning models
//! served by vLLM and SGLang stream their thinking in
//! `delta.reasoning_content` (newer vLLM: `delta.reasoning`) before any
//! content; those are generated tokens too, so they count.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What one chunk says, as far as the record is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkFacts {
    /// The first choice carries non-empty generated text.
    pub has_text: bool,
    /// `usage.prompt_tokens`, when the chunk has a usage object.
    pub prompt_tokens: Option<u32>,
    /// `usage.completion_tokens`, when the chunk has a usage object. vLLM
    /// with `continuous_usage_stats` sends a running count on every chunk;
    /// other servers send it once at the end.
    pub completion_tokens: Option<u32>,
    /// The server's CLOCK_MONOTONIC send time (`infermark_sent_ns`).
    pub server_ns: Option<u64>,
    /// The message of an `error` object in the stream.
    pub error: Option<String>,
}

/// A chunk that is not the JSON object the API promises.
#[derive(Debug, thiserror::Error)]
#[error("chunk is not a valid completion object: {0}")]
pub struct ScanError(#[from] serde_json::Error);

/// Reads the facts out of one event's data.
pub fn scan(data: &[u8]) -> Result<ChunkFacts, ScanError> {
    match fast::scan(data) {
        Some(facts) => Ok(facts),
        None => scan_reference(data),
    }
}

/// The reference reader: serde over the chunk. [`scan`] gives exactly its
/// answer for every input, and falls back to it for the rare shapes its
/// own pass does not handle.
pub(crate) fn scan_reference(data: &[u8]) -> Result<ChunkFacts, ScanError> {
    let wire: ChunkWire = serde_json::from_slice(data)?;
    let (prompt_tokens, completion_tokens) = match wire.usage {
        Some(u) => (u.prompt_tokens, u.completion_tokens),
        None => (None, None),
    };
    Ok(ChunkFacts {
        has_text: wire.choices.is_some_and(|c| c.0),
        prompt_tokens,
        completion_tokens,
        server_ns: wire.infermark_sent_ns,
        error: wire.error.map(|ErrorMessage(m)| m),
    })
}

#[derive(Deserialize)]
struct ChunkWire {
    #[serde(default)]
    choices: Option<FirstChoiceHasText>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<ErrorMessage>,
    #[serde(default)]
    infermark_sent_ns: Option<u64>,
}

#[derive(Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

/// One choice: completions' `text` or chat's `delta`.
#[derive(Deserialize)]
struct ChoiceWire {
    #[serde(default)]
    text: Option<NonEmpty>,
    #[serde(default)]
    delta: Option<DeltaWire>,
}

#[derive(Deserialize)]
struct DeltaWire {
    #[serde(default)]
    content: Option<NonEmpty>,
    #[serde(default)]
    reasoning_content: Option<NonEmpty>,
    #[serde(default)]
    reasoning: Option<NonEmpty>,
}

impl ChoiceWire {
    fn has_text(&self) -> bool {
        let set = |s: &Option<NonEmpty>| s.as_ref().is_some_and(|n| n.0);
        set(&self.text)
            || self
                .delta
                .as_ref()
                .is_some_and(|d| set(&d.content) || set(&d.reasoning_content) || set(&d.reasoning))
    }
}

/// Whether `choices[0]` carries text; the rest of the array is skipped
/// without being collected.
struct FirstChoiceHasText(bool);

impl<'de> Deserialize<'de> for FirstChoiceHasText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstChoiceHasText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<ChoiceWire>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstChoiceHasText(first.is_some_and(|c| c.has_text())))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Whether a string is non-empty (`null` is the `Option` around it). The
/// string itself is never kept, so an escaped string costs no allocation
/// here beyond serde_json's own scratch buffer.
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(NonEmpty(!s.is_empty()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The message of an `error` member: an object's `message` (OpenAI, vLLM and
/// llama.cpp all stream `data: {"error": {"message": ..}}`), or the value
/// itself when a server sends a plain string.
/// Only this (rare) path allocates.
struct ErrorMessage(String);

impl<'de> Deserialize<'de> for ErrorMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorMessage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an error object or message")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(ErrorMessage(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut message = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "message" {
                        message = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ErrorMessage(message.unwrap_or_else(|| {
                    "error object without a message".into()
                })))
            }
        }
        d.deserialize_any(V)
    }
}

mod fast;

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(json: &str) -> ChunkFacts {
        scan(json.as_bytes()).unwrap()
    }

    #[test]
    fn completions_text_counts_when_non_empty() {
        let f = facts(
            r#"{"id":"c","choices":[{"index":0,"text":" Hi","logprobs":null,"finish_reason":null}]}"#,
        );
        assert!(f.has_text);
        let f = facts(r#"{"id":"c","choices":[{"index":0,"text":"","finish_reason":"length"}]}"#);
        assert!(!f.has_text);
    }

    #[test]
    fn escaped_text_counts() {
        // An escaped string cannot be borrowed from the input; it must still count.
        assert!(facts(r#"{"choices":[{"text":"\n\u00e9"}]}"#).has_text);
    }

    #[test]
    fn chat_content_and_reasoning_count_but_role_chunk_does_not() {
        assert!(
            !facts(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#)
                .has_text
        );
        assert!(!facts(r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#).has_text);
        assert!(facts(r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#).has_text);
        assert!(
            facts(r#"{"choices":[{"delta":{"content":null,"reasoning_content":"hm"}}]}"#).has_text
        );
        assert!(facts(r#"{"choices":[{"delta":{"reasoning":"hm"}}]}"#).has_text);
    }

    #[test]
    fn only_the_first_choice_is_read() {
        assert!(!facts(r#"{"choices":[{"text":""},{"text":"second"}]}"#).has_text);
        assert!(facts(r#"{"choices":[{"text":"first"},{"text":""}]}"#).has_text);
    }

    #[test]
    fn usage_chunk_with_empty_choices() {
        let f = facts(
            r#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"total_tokens":17,"completion_tokens":5}}"#,
        );
        assert_eq!(
            f,
            ChunkFacts {
                has_text: false,
                prompt_tokens: Some(12),
                completion_tokens: Some(5),
                server_ns: None,
                error: None,
            }
        );
    }

    #[test]
    fn null_usage_and_missing_choices_are_fine() {
        let f = facts(r#"{"choices":[{"text":"a"}],"usage":null}"#);
        assert!(f.has_text);
        assert_eq!(f.completion_tokens, None);
        assert!(!facts("{}").has_text);
    }

    #[test]
    fn sim_stamp_is_read() {
        let f = facts(r#"{"choices":[{"text":"a"}],"infermark_sent_ns":123456789012}"#);
        assert_eq!(f.server_ns, Some(123_456_789_012));
    }

    #[test]
    fn error_objects_are_reported() {
        let f = facts(
            r#"{"error":{"object":"error","message":"out of memory","type":"InternalServerError","code":500}}"#,
        );
        assert_eq!(f.error.as_deref(), Some("out of memory"));
        let f = facts(r#"{"error":{"code":400,"type":"invalid_request_error"}}"#);
        assert_eq!(f.error.as_deref(), Some("error object without a message"));
        let f = facts(r#"{"error":"plain"}"#);
        assert_eq!(f.error.as_deref(), Some("plain"));
        assert_eq!(facts(r#"{"error":null,"choices":[]}"#).error, None);
    }

    #[test]
    fn invalid_json_is_an_error_not_a_panic() {
        for bad in [
            &b"{not json"[..],
            b"",
            b"[1,2]",
            b"\xff\xfe",
            b"{\"choices\":[{\"text\":5}]}",
        ] {
            assert!(scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}

#[cfg(test)]
mod equivalence {
    //! The fast reader against the reference on generated chunks.
    use super::*;
    use proptest::prelude::*;

    fn same(data: &[u8]) -> Result<(), TestCaseError> {
        let fast = scan(data).map_err(|e| e.to_string());
        let reference = scan_reference(data).map_err(|e| e.to_string());
        prop_assert_eq!(&fast, &reference, "{:?}", String::from_utf8_lossy(data));
        if let Some(f) = super::fast::scan(data) {
            prop_assert_eq!(Ok(f), reference);
        }
        Ok(())
    }

    fn string() -> BoxedStrategy<String> {
        prop::collection::vec(
            prop_oneof![
                Just("a"),
                Just(" tok"),
                Just(""),
                Just("\\n"),
                Just("\\\""),
                Just("\\\\"),
                Just("\\u00e9"),
                Just("\\ud83d\\ude00"),
                Just("\\ud800"),
                Just("é"),
                Just("日本"),
                Just("\\x"),
                Just("\t"),
                Just("\\/"),
            ],
            0..4,
        )
        .prop_map(|v| format!("\"{}\"", v.concat()))
        .boxed()
    }

    fn scalar() -> BoxedStrategy<String> {
        prop_oneof![
            string(),
            prop_oneof![
                Just("0"),
                Just("12"),
                Just("-3.5e7"),
                Just("1e400"),
                Just("01"),
                Just("1.0"),
                Just("4294967295"),
                Just("4294967296"),
                Just("18446744073709551616"),
                Just("-0"),
                Just("true"),
                Just("false"),
                Just("null"),
                Just("1."),
                Just("2E+3"),
            ]
            .prop_map(String::from),
            any::<u64>().prop_map(|n| n.to_string()),
        ]
        .boxed()
    }

    fn value() -> BoxedStrategy<String> {
        scalar()
            .prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4)
                        .prop_map(|v| format!("[{}]", v.join(","))),
                    prop::collection::vec((string(), inner), 0..4).prop_map(|v| {
                        let m: Vec<String> =
                            v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                        format!("{{{}}}", m.join(","))
                    }),
                ]
            })
            .boxed()
    }

    fn object(fields: Vec<(&'static str, String)>, ws: &str) -> String {
        let m: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
            .collect();
        format!("{{{}}}", m.join(","))
    }

    fn member(
        names: &'static [&'static str],
        typed: BoxedStrategy<String>,
    ) -> impl Strategy<Value = Vec<(&'static str, String)>> {
        prop::collection::vec(
            (
                prop::sample::select(names),
                prop_oneof![4 => typed, 1 => value()],
            ),
            0..5,
        )
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(&["", " ", "\n", "\r\n\t ", ""][..])
    }

    fn chunk() -> impl Strategy<Value = String> {
        let text = prop_oneof![string(), Just("null".to_string())].boxed();
        let delta = (
            member(
                &[
                    "content",
                    "reasoning_content",
                    "reasoning",
                    "role",
                    "tool_calls",
                ],
                text.clone(),
            ),
            ws(),
        )
            .prop_map(|(f, w)| object(f, w))
            .boxed();
        let choice = (
            member(
                &["text", "delta", "index", "logprobs", "finish_reason"],
                prop_oneof![text, delta].boxed(),
            ),
            ws(),
        )
            .prop_map(|(f, w)| object(f, w))
            .boxed();
        let choices =
            prop::collection::vec(choice, 0..3).prop_map(|v| format!("[{}]", v.join(",")));
        let count = prop_oneof![
            scalar(),
            any::<u32>().prop_map(|n| n.to_string()),
            Just("null".to_string())
        ]
        .boxed();
        let usage = (
            member(
                &["prompt_tokens", "completion_tokens", "total_tokens"],
                count.clone(),
            ),
            ws(),
        )
            .prop_map(|(f, w)| object(f, w));
        let error = prop_oneof![
            (member(&["message", "type", "code"], string()), ws()).prop_map(|(f, w)| object(f, w)),
            string(),
            Just("null".to_string()),
        ];
        let top = prop_oneof![choices, usage, error, count, Just("null".to_string()),].boxed();
        (
            member(
                &[
                    "choices",
                    "usage",
                    "error",
                    "infermark_sent_ns",
                    "id",
                    "model",
                    "created",
                ],
                top,
            ),
            ws(),
        )
            .prop_map(|(f, w)| object(f, w))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn fast_equals_reference_on_chunks(c in chunk()) {
            same(c.as_bytes())?;
        }

        #[test]
        fn fast_equals_reference_after_mutation(
            c in chunk(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop_oneof![any::<u8>(), prop::sample::select(&b"{}[]\",:\\ 0-.en"[..])]), 1..4),
        ) {
            let mut b = c.into_bytes();
            for (at, op, byte) in edits {
                let i = if b.is_empty() { 0 } else { at.index(b.len()) };
                match op {
                    0 if !b.is_empty() => { b.remove(i); }
                    1 => b.insert(i, byte),
                    2 if !b.is_empty() => b[i] = byte,
                    _ => b.truncate(i),
                }
            }
            same(&b)?;
        }
    }

    #[test]
    fn common_shapes_take_the_fast_path() {
        for c in [
            r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" tok\n\u00e9","logprobs":null,"finish_reason":null}],"usage":null,"infermark_sent_ns":123}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":"é"}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":null}}"#,
        ] {
            assert_eq!(
                super::fast::scan(c.as_bytes()),
                Some(scan_reference(c.as_bytes()).unwrap()),
                "{c}"
            );
        }
    }
}
