//! The allocation-free pass over a chunk: validates the whole document as
//! JSON (RFC 8259 grammar: strings with their escapes, numbers, literals,
//! nesting) and reads the members a record needs on the way.
//!
//! It answers `None` — "ask the reference reader" — for everything it does
//! not decide exactly like serde_json would: any invalid input, an `error`
//! member that is not `null`, escaped keys in the objects it reads, `\\u`
//! escapes of surrogates, invalid UTF-8 in strings, counts that are signed,
//! fractional or too large, duplicate members of the objects it reads,
//! nesting deeper than [`MAX_DEPTH`], and a top level that is not an object.
//! So a `Some` is always the reference's `Ok` with the same facts.

use super::ChunkFacts;

/// Deeper nesting is left to serde_json, whose own limit (128) is above it.
const MAX_DEPTH: u32 = 64;

/// Bytes that end a run of plain string content: the quote, the backslash,
/// control characters (invalid in a JSON string) and non-ASCII bytes (which
/// need UTF-8 validation).
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i >= 0x80 || i == b'"' as usize || i == b'\\' as usize;
        i += 1;
    }
    t
};

/// Reads the facts, or `None` when the reference reader must decide.
pub(super) fn scan(data: &[u8]) -> Option<ChunkFacts> {
    let mut c = Cursor { b: data, i: 0 };
    c.ws();
    c.eat(b'{')?;
    let mut facts = ChunkFacts::default();
    let mut seen = [false; 4];
    c.object(|c, key| {
        let slot = match c.key(key)? {
            b"choices" => 0,
            b"usage" => 1,
            b"error" => 2,
            b"infermark_sent_ns" => 3,
            _ => return c.skip_value(1),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match slot {
            0 => facts.has_text = c.choices()?,
            1 => (facts.prompt_tokens, facts.completion_tokens) = c.usage()?,
            // A null error is no error; an error's message is the
            // reference reader's to extract.
            2 => c.null()?,
            _ => facts.server_ns = c.opt_u64()?,
        }
        Some(())
    })?;
    c.ws();
    (c.i == data.len()).then_some(facts)
}

/// A string's content between its quotes.
#[derive(Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek()? == byte {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// The bytes of an unescaped key; escaped keys go to the reference.
    #[inline]
    fn key(&self, key: Str) -> Option<&'a [u8]> {
        let b: &'a [u8] = self.b;
        (!key.escaped).then(|| &b[key.start..key.end])
    }

    /// The rest of a string whose opening quote was consumed.
    #[inline]
    fn string(&mut self) -> Option<Str> {
        let start = self.i;
        let mut escaped = false;
        let mut ascii = true;
        loop {
            while self.i < self.b.len() && !SPECIAL[usize::from(self.b[self.i])] {
                self.i += 1;
            }
            let byte = self.peek()?;
            self.i += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0x80.. => ascii = false,
                _ => return None,
            }
        }
        let end = self.i - 1;
        if !ascii {
            std::str::from_utf8(&self.b[start..end]).ok()?;
        }
        Some(Str {
            start,
            end,
            escaped,
        })
    }

    /// One escape after its backslash. Surrogate code units are left to the
    /// reference: serde_json rejects an unpaired one where it reads the
    /// string and accepts it where it skips the string.
    fn escape(&mut self) -> Option<()> {
        let byte = self.peek()?;
        self.i += 1;
        match byte {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.b.get(self.i..self.i + 4)?;
                let mut unit = 0u32;
                for &h in hex {
                    unit = unit * 16 + char::from(h).to_digit(16)?;
                }
                self.i += 4;
                (!(0xD800..0xE000).contains(&unit)).then_some(())
            }
            _ => None,
        }
    }

    /// The members of an object whose `{` was consumed; `member` is given
    /// each key and must consume its value.
    #[inline]
    fn object(&mut self, mut member: impl FnMut(&mut Self, Str) -> Option<()>) -> Option<()> {
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.eat(b'"')?;
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            member(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips any value, validating it; `depth` counts the enclosing
    /// containers.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(drop)
            }
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.object(|c, _| c.skip_value(depth + 1))
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                self.skip_value(depth + 1)?;
                self.rest_of_array(depth + 1)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// After an array element: the remaining elements and the `]`.
    fn rest_of_array(&mut self, depth: u32) -> Option<()> {
        loop {
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.skip_value(depth)?;
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `null` after optional whitespace.
    fn null(&mut self) -> Option<()> {
        self.ws();
        self.literal(b"null")
    }

    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// A number in JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)?
    /// ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// `null` or a non-negative integer that fits a u64, in plain digits.
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        self.ws();
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b'0' => {
                self.i += 1;
                self.integer_end().map(|()| Some(0))
            }
            b'1'..=b'9' => {
                let mut value = 0u64;
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                    self.i += 1;
                }
                self.integer_end().map(|()| Some(value))
            }
            _ => None,
        }
    }

    /// An integer ends here: no further digit, fraction or exponent (those
    /// would make it a float, which the reference rejects as a count).
    #[inline]
    fn integer_end(&self) -> Option<()> {
        match self.peek() {
            Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    fn opt_u32(&mut self) -> Option<Option<u32>> {
        match self.opt_u64()? {
            Some(v) => u32::try_from(v).ok().map(Some),
            None => Some(None),
        }
    }

    /// `null` or a string: whether it is a non-empty string. Every escape
    /// stands for at least one character, so the raw content decides.
    fn opt_non_empty(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| false),
            b'"' => {
                self.i += 1;
                let s = self.string()?;
                Some(s.end > s.start)
            }
            _ => None,
        }
    }

    /// The `choices` value: whether its first choice carries text.
    fn choices(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b'n' => return self.literal(b"null").map(|()| false),
            b'[' => self.i += 1,
            _ => return None,
        }
        self.ws();
        match self.peek()? {
            b']' => {
                self.i += 1;
                return Some(false);
            }
            b'{' => self.i += 1,
            _ => return None,
        }
        let has_text = self.choice()?;
        self.rest_of_array(2)?;
        Some(has_text)
    }

    /// The members of the first choice, after its `{`.
    fn choice(&mut self) -> Option<bool> {
        let (mut text, mut delta) = (None, None);
        self.object(|c, key| match c.key(key)? {
            b"text" if text.is_none() => {
                text = Some(c.opt_non_empty()?);
                Some(())
            }
            b"delta" if delta.is_none() => {
                delta = Some(c.delta()?);
                Some(())
            }
            b"text" | b"delta" => None,
            _ => c.skip_value(3),
        })?;
        Some(text == Some(true) || delta == Some(true))
    }

    /// A `delta` value (`null` or an object): whether it carries text.
    fn delta(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b'n' => return self.literal(b"null").map(|()| false),
            b'{' => self.i += 1,
            _ => return None,
        }
        let mut seen = [None; 3];
        self.object(|c, key| {
            let slot = match c.key(key)? {
                b"content" => 0,
                b"reasoning_content" => 1,
                b"reasoning" => 2,
                _ => return c.skip_value(4),
            };
            if seen[slot].is_some() {
                return None;
            }
            seen[slot] = Some(c.opt_non_empty()?);
            Some(())
        })?;
        Some(seen.contains(&Some(true)))
    }

    /// A `usage` value (`null` or an object): prompt and completion tokens.
    fn usage(&mut self) -> Option<(Option<u32>, Option<u32>)> {
        self.ws();
        match self.peek()? {
            b'n' => return self.literal(b"null").map(|()| (None, None)),
            b'{' => self.i += 1,
            _ => return None,
        }
        let (mut prompt, mut completion) = (None, None);
        self.object(|c, key| match c.key(key)? {
            b"prompt_tokens" if prompt.is_none() => {
                prompt = Some(c.opt_u32()?);
                Some(())
            }
            b"completion_tokens" if completion.is_none() => {
                completion = Some(c.opt_u32()?);
                Some(())
            }
            b"prompt_tokens" | b"completion_tokens" => None,
            _ => c.skip_value(2),
        })?;
        Some((prompt.flatten(), completion.flatten()))
    }
}
