//! The canonical form of a point and its id.
//!
//! A point's domain value is serialised to JSON and canonicalised with
//! RFC 8785 (JSON Canonicalization Scheme): object members sorted by their
//! UTF-16 code units, no insignificant whitespace, strings with the minimal
//! escapes of ECMAScript's `JSON.stringify`, numbers in ECMAScript's
//! shortest round-trip form (via `ryu-js`). The id is
//! `sha256("infermark.point.v1\n" || canonical bytes)`, lowercase hex.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Domain prefix of the point hash: a different kind of object, or a future
/// form, can never collide with a v1 point.
pub const POINT_DOMAIN: &str = "infermark.point.v1\n";

/// Largest integer a JSON number holds exactly (2^53 - 1); RFC 8785 works on
/// IEEE doubles, so larger integers could not round-trip.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("`{0}`: {1} is beyond 2^53 and cannot be represented exactly in canonical JSON")]
    IntegerTooLarge(String, String),
    #[error("`{0}`: NaN and infinities have no canonical JSON form")]
    NotFinite(String),
}

/// RFC 8785 bytes of `value`.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out, &mut String::new())?;
    Ok(out)
}

/// The point id of canonical bytes.
pub fn point_id(canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(POINT_DOMAIN.as_bytes());
    h.update(canonical);
    hex(&h.finalize())
}

/// Lowercase hex, as every id and digest is written (kept here under
/// its old name: the point id is its first user).
pub use crate::digest::hex;

fn write_value(v: &Value, out: &mut Vec<u8>, path: &mut String) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(n, out, path)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                write_value(item, out, path)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(
    n: &serde_json::Number,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER as u64 {
            return Err(CanonicalError::IntegerTooLarge(
                path.to_string(),
                i.to_string(),
            ));
        }
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        return Err(CanonicalError::IntegerTooLarge(
            path.to_string(),
            u.to_string(),
        ));
    } else {
        let f = n.as_f64().filter(|f| f.is_finite());
        let Some(f) = f else {
            return Err(CanonicalError::NotFinite(path.to_string()));
        };
        let mut buf = ryu_js::Buffer::new();
        out.extend_from_slice(buf.format_finite(f).as_bytes());
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs(v: Value) -> String {
        String::from_utf8(canonical_json(&v).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_sorting_and_numbers() {
        // Key order by UTF-16 code units, as in RFC 8785 section 3.2.3.
        assert_eq!(
            jcs(json!({"b": 1, "a": [true, null, "x"], "\u{20ac}": 0, "\u{1f600}": 0, "\r": 0})),
            "{\"\\r\":0,\"a\":[true,null,\"x\"],\"b\":1,\"\u{20ac}\":0,\"\u{1f600}\":0}"
        );
        // ECMAScript number forms (RFC 8785 appendix B samples).
        assert_eq!(jcs(json!(1.0)), "1");
        assert_eq!(jcs(json!(0.8)), "0.8");
        assert_eq!(jcs(json!(1e21)), "1e+21");
        assert_eq!(jcs(json!(1e-7)), "1e-7");
        assert_eq!(jcs(json!(-0.0)), "0");
        assert_eq!(jcs(json!(333333333.3333333_f64)), "333333333.3333333");
        assert_eq!(jcs(json!("\u{0001}\u{001f}é")), "\"\\u0001\\u001fé\"");
    }

    #[test]
    fn rejects_integers_beyond_2_pow_53() {
        let err = canonical_json(&json!({"workload": {"seed": 1u64 << 60}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`workload.seed`: 1152921504606846976 is beyond 2^53 and cannot be represented exactly in canonical JSON"
        );
        assert!(canonical_json(&json!(MAX_SAFE_INTEGER)).is_ok());
    }

    #[test]
    fn id_uses_the_domain_prefix() {
        let bytes = b"{}";
        let mut h = Sha256::new();
        h.update(b"{}");
        let bare = hex(&h.finalize());
        assert_ne!(point_id(bytes), bare);
        assert_eq!(point_id(bytes).len(), 64);
    }
}
