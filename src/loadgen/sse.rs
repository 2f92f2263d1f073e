//! Incremental Server-Sent Events parser for OpenAI-style token streams.
//!
//! Written here rather than taken from a crate because it sits on the hot
//! path of every token: it must accept bytes exactly as the network hands
//! them over (a read may end anywhere, even inside a `\r\n` pair or a
//! multi-byte UTF-8 character), and it must not allocate per event. The
//! parser keeps two reusable buffers (an unfinished line and the data of the
//! event being assembled) and hands each event's data to a callback as a
//! borrowed slice.
//!
//! The rules follow the WHATWG HTML standard, "Server-sent events", section
//! "Interpreting an event stream": lines end with CRLF, LF or CR; a line
//! starting with `:` is a comment; `field:value` with one optional space
//! after the colon; `data` lines are joined with `\n`; a blank line
//! dispatches the event; an event with no `data` line is not dispatched; a
//! leading byte order mark is skipped. `event`, `id` and `retry` are
//! ignored: OpenAI-compatible servers do not use them for token streams.
//! Data is kept as bytes: the delimiters are ASCII, so splitting never needs
//! to decode UTF-8, and the JSON parser downstream validates the text.

/// What the parser hands to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The data of one event (lines joined with `\n`).
    Data(&'a [u8]),
    /// `data: [DONE]`, the OpenAI end-of-stream sentinel.
    Done,
}

/// The sentinel OpenAI-compatible servers send as the last event.
const DONE: &[u8] = b"[DONE]";

/// UTF-8 byte order mark, which the standard says to skip at stream start.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Incremental SSE parser; feed it byte slices in arrival order.
#[derive(Debug)]
pub struct Parser {
    /// An unfinished line carried over from the previous slice.
    line: Vec<u8>,
    /// Data of the event being assembled, each line followed by `\n`.
    data: Vec<u8>,
    /// The event being assembled has at least one `data` field (an empty
    /// `data:` line still makes an event with empty data).
    has_data: bool,
    /// The previous slice ended with `\r`: a `\n` starting the next slice
    /// belongs to the same line ending.
    after_cr: bool,
    /// How many bytes of a leading byte order mark have been matched;
    /// `None` once the stream start is behind us.
    bom_seen: Option<usize>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    pub fn new() -> Self {
        Parser {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            bom_seen: Some(0),
        }
    }

    /// Feeds the next bytes of the stream, calling `on_event` for every
    /// event completed by them. Bytes of an unfinished line or event are kept
    /// for the next call.
    pub fn feed(&mut self, mut input: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        input = self.skip_bom(input);
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        while let Some(end) = find_line_end(input) {
            let (line, rest) = input.split_at(end);
            if self.line.is_empty() {
                self.process_line(line, &mut on_event);
            } else {
                // Move the buffer out so it can be borrowed beside `self`;
                // it goes back afterwards, keeping its capacity.
                let mut carried = std::mem::take(&mut self.line);
                carried.extend_from_slice(line);
                self.process_line(&carried, &mut on_event);
                carried.clear();
                self.line = carried;
            }
            input = match rest {
                [b'\r', b'\n', tail @ ..] => tail,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, tail @ ..] => tail,
                [] => &[],
            };
        }
        self.line.extend_from_slice(input);
    }

    /// Skips a byte order mark at the very start of the stream, even when it
    /// arrives split across slices.
    fn skip_bom<'a>(&mut self, mut input: &'a [u8]) -> &'a [u8] {
        while let Some(matched) = self.bom_seen {
            let Some((&b, rest)) = input.split_first() else {
                return input;
            };
            if b == BOM[matched] {
                input = rest;
                self.bom_seen = (matched + 1 < BOM.len()).then_some(matched + 1);
            } else {
                // Not a BOM after all: hand back the bytes that looked like one.
                self.bom_seen = None;
                self.line.extend_from_slice(&BOM[..matched]);
            }
        }
        input
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // comment
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
            self.has_data = true;
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if !self.has_data {
            return;
        }
        let data = &self.data[..self.data.len() - 1]; // the last line's `\n`
        if data == DONE {
            on_event(Event::Done);
        } else {
            on_event(Event::Data(data));
        }
        self.data.clear();
        self.has_data = false;
    }
}

/// Index of the first `\n` or `\r` in `s`, eight bytes per step: the
/// line search is most of the parser's work, and a byte-at-a-time loop
/// spends several times longer on a 200-byte event. Each word is tested for
/// a zero byte after XOR with the wanted byte, with the "has zero byte"
/// expression `(x - 0x01..) & !x & 0x80..` (Warren, "Hacker's Delight", 2nd
/// ed., section 6-1). That expression can also flag a byte just above a
/// true match (borrow propagation), never below one, so the lowest flag is
/// exact.
fn find_line_end(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let words = s.chunks_exact(8);
    let tail_start = s.len() - words.remainder().len();
    for (i, word) in words.enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let found =
            has_zero(w ^ (ONES * u64::from(b'\n'))) | has_zero(w ^ (ONES * u64::from(b'\r')));
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    s[tail_start..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|p| tail_start + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Data(String),
        Done,
    }

    fn parse_pieces(pieces: &[&[u8]]) -> Vec<Owned> {
        let mut parser = Parser::new();
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece, |ev| {
                out.push(match ev {
                    Event::Data(d) => Owned::Data(String::from_utf8(d.to_vec()).unwrap()),
                    Event::Done => Owned::Done,
                })
            });
        }
        out
    }

    fn parse_whole(stream: &[u8]) -> Vec<Owned> {
        parse_pieces(&[stream])
    }

    /// A vLLM `/v1/completions` stream with `continuous_usage_stats`, the
    /// final usage chunk (`choices: []`) and the sentinel. The text holds a
    /// multi-byte character so that splits land inside it.
    const VLLM_COMPLETIONS: &str = concat!(
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1730000000,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\" Hello\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":9,\"completion_tokens\":1}}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1730000000,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\" wörld \u{1F600}\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":11,\"completion_tokens\":3}}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1730000000,\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"!\",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":12,\"completion_tokens\":4}}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1730000000,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":12,\"completion_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );

    /// A vLLM `/v1/chat/completions` stream: role chunk with empty content,
    /// reasoning then content deltas, usage chunk, sentinel.
    const VLLM_CHAT: &str = concat!(
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1730000001,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1730000001,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Let me think\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1730000001,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bonjour, ça va\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1730000001,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"?\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1730000001,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":17,\"completion_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );

    /// A llama.cpp `llama-server` completions stream: no space after the
    /// colon in one line, usage on the last choice chunk, a keep-alive
    /// comment, an ignored `event:` field, and `\r\n` line endings are added
    /// by the CRLF variant below.
    const LLAMACPP_COMPLETIONS: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"text\":\"The\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"created\":1730000002,\"model\":\"smollm2\",\"object\":\"text_completion\",\"id\":\"chatcmpl-x\"}\n\n",
        "event: message\n",
        "data:{\"choices\":[{\"text\":\" cat\\n\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"created\":1730000002,\"model\":\"smollm2\",\"object\":\"text_completion\",\"id\":\"chatcmpl-x\"}\n\n",
        "id: 7\nretry: 1000\n",
        "data: {\"choices\":[{\"text\":\" sat\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}],\"created\":1730000002,\"model\":\"smollm2\",\"object\":\"text_completion\",\"id\":\"chatcmpl-x\",\"usage\":{\"completion_tokens\":3,\"prompt_tokens\":5,\"total_tokens\":8}}\n\n",
        "data: [DONE]\n\n",
    );

    /// Multi-line data and an event with no data (must not dispatch).
    const MULTILINE: &str = concat!(
        "data: {\"a\":\n",
        "data:  1}\n\n",
        "event: ping\n\n",
        "data\n\n",
        "data: [DONE]\n\n",
    );

    fn captures() -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, text) in [
            ("vllm_completions", VLLM_COMPLETIONS),
            ("vllm_chat", VLLM_CHAT),
            ("llamacpp_completions", LLAMACPP_COMPLETIONS),
            ("multiline", MULTILINE),
        ] {
            out.push((name, text.as_bytes().to_vec()));
            out.push((name, text.replace('\n', "\r\n").into_bytes()));
            out.push((name, text.replace('\n', "\r").into_bytes()));
        }
        out
    }

    #[test]
    fn whole_streams_give_the_expected_events() {
        let events = parse_whole(VLLM_COMPLETIONS.as_bytes());
        assert_eq!(events.len(), 5);
        assert!(matches!(&events[1], Owned::Data(d) if d.contains("wörld \u{1F600}")));
        assert_eq!(events[4], Owned::Done);

        let events = parse_whole(LLAMACPP_COMPLETIONS.as_bytes());
        assert_eq!(
            events.len(),
            4,
            "comment, event, id and retry lines make no events"
        );
        assert!(matches!(&events[1], Owned::Data(d) if d.starts_with("{\"choices\"")));

        let events = parse_whole(MULTILINE.as_bytes());
        assert_eq!(
            events,
            vec![
                Owned::Data("{\"a\":\n 1}".into()),
                Owned::Data(String::new()),
                Owned::Done
            ]
        );
    }

    #[test]
    fn line_ending_style_does_not_change_events() {
        for text in [VLLM_COMPLETIONS, VLLM_CHAT, LLAMACPP_COMPLETIONS, MULTILINE] {
            let lf = parse_whole(text.as_bytes());
            assert_eq!(parse_whole(text.replace('\n', "\r\n").as_bytes()), lf);
            assert_eq!(parse_whole(text.replace('\n', "\r").as_bytes()), lf);
        }
    }

    #[test]
    fn every_two_way_split_gives_identical_events() {
        for (name, stream) in captures() {
            let expected = parse_whole(&stream);
            for i in 0..=stream.len() {
                let (a, b) = stream.split_at(i);
                assert_eq!(parse_pieces(&[a, b]), expected, "{name} split at {i}");
            }
        }
    }

    #[test]
    fn three_way_splits_give_identical_events() {
        for (name, stream) in captures() {
            let expected = parse_whole(&stream);
            let n = stream.len();
            // Every first cut against a spread of second cuts keeps this
            // quadratic test fast while still hitting every byte position.
            for i in 0..=n {
                for j in (i..=n).step_by(37).chain([i + 1, n]) {
                    let j = j.min(n);
                    let pieces = [&stream[..i], &stream[i..j], &stream[j..]];
                    assert_eq!(parse_pieces(&pieces), expected, "{name} split at {i}, {j}");
                }
            }
        }
    }

    #[test]
    fn byte_at_a_time_gives_identical_events() {
        for (name, stream) in captures() {
            let pieces: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(parse_pieces(&pieces), parse_whole(&stream), "{name}");
        }
    }

    #[test]
    fn leading_bom_is_skipped_even_when_split() {
        let mut stream = BOM.to_vec();
        stream.extend_from_slice(b"data: x\n\n");
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(
                parse_pieces(&[a, b]),
                vec![Owned::Data("x".into())],
                "split at {i}"
            );
        }
        // A partial BOM is not a BOM: its bytes stay in the line.
        assert_eq!(parse_whole(b"\xEF\xBBdata: y\n\n"), vec![]);
    }

    #[test]
    fn only_one_space_after_the_colon_is_stripped() {
        assert_eq!(
            parse_whole(b"data:  two\n\n"),
            vec![Owned::Data(" two".into())]
        );
        assert_eq!(
            parse_whole(b"data:none\n\n"),
            vec![Owned::Data("none".into())]
        );
    }

    #[test]
    fn unterminated_event_is_not_dispatched() {
        assert_eq!(parse_whole(b"data: {\"partial\":1}\n"), vec![]);
    }

    #[test]
    fn done_needs_the_exact_sentinel() {
        assert_eq!(
            parse_whole(b"data: [DONE] \n\n"),
            vec![Owned::Data("[DONE] ".into())]
        );
    }

    proptest! {
        #[test]
        fn line_end_search_matches_a_plain_scan(
            s in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(0u8), Just(0x80u8), Just(0x0bu8), Just(0x0cu8), any::<u8>()], 0..40),
        ) {
            let plain = s.iter().position(|&b| b == b'\n' || b == b'\r');
            prop_assert_eq!(find_line_end(&s), plain);
        }

        #[test]
        fn random_splits_give_identical_events(
            which in 0usize..12,
            cuts in proptest::collection::vec(0usize..4096, 0..12),
        ) {
            let all = captures();
            let (_, stream) = &all[which % all.len()];
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&stream[at..c]);
                at = c;
            }
            pieces.push(&stream[at..]);
            prop_assert_eq!(parse_pieces(&pieces), parse_whole(stream));
        }
    }
}
