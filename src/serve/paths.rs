//! A request's path turned into a path of the built site, or refused.
//!
//! Decoding happens once, here, and every decoded segment is checked: a
//! `..` or `.` segment, a separator or NUL hidden behind `%2f`, `%5c` or
//! `%00`, an empty segment (`//`), and a segment starting with `.` (the
//! build's own cache directory) are refused before any file is looked at.
//! The result is relative and made of plain names, so joining it to the
//! site directory cannot leave it.

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("`.` and `..` segments are refused")]
    Traversal,
    #[error("an encoded separator, a backslash or NUL is refused")]
    Separator,
    #[error("empty and hidden segments are refused")]
    Hidden,
}

/// Percent-decodes `s` (and `+` as a space when `plus` is set, as in a
/// query); `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The site path of a request path: `/` and `…/` name `index.html`.
pub fn site_path(raw: &str) -> Result<String, Refused> {
    let rest = raw.strip_prefix('/').ok_or(Refused::NotAbsolute)?;
    if rest.is_empty() {
        return Ok("index.html".to_string());
    }
    let (rest, dir) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut parts = Vec::new();
    for seg in rest.split('/') {
        let d = percent_decode(seg, false).ok_or(Refused::BadEncoding)?;
        if d == "." || d == ".." {
            return Err(Refused::Traversal);
        }
        if d.contains(['/', '\\', '\0']) {
            return Err(Refused::Separator);
        }
        if d.is_empty() || d.starts_with('.') {
            return Err(Refused::Hidden);
        }
        parts.push(d);
    }
    if dir {
        parts.push("index.html".to_string());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_directories_name_their_index_page() {
        assert_eq!(site_path("/").unwrap(), "index.html");
        assert_eq!(site_path("/nights/").unwrap(), "nights/index.html");
        assert_eq!(
            site_path("/api/v1/index.json").unwrap(),
            "api/v1/index.json"
        );
    }

    #[test]
    fn plain_and_encoded_traversal_is_refused() {
        assert_eq!(site_path("/../etc/passwd"), Err(Refused::Traversal));
        assert_eq!(site_path("/a/../../b"), Err(Refused::Traversal));
        assert_eq!(site_path("/%2e%2e/etc/passwd"), Err(Refused::Traversal));
        assert_eq!(site_path("/a/%2E%2E/b"), Err(Refused::Traversal));
        assert_eq!(site_path("/./a"), Err(Refused::Traversal));
        assert_eq!(site_path("/a%2f..%2fb"), Err(Refused::Separator));
        assert_eq!(site_path("/a%5cb"), Err(Refused::Separator));
    }

    #[test]
    fn absolute_nul_empty_and_hidden_segments_are_refused() {
        assert_eq!(site_path("etc/passwd"), Err(Refused::NotAbsolute));
        assert_eq!(site_path("//etc/passwd"), Err(Refused::Hidden));
        assert_eq!(site_path("/a%00b"), Err(Refused::Separator));
        assert_eq!(site_path("/.infermark-site/x"), Err(Refused::Hidden));
        assert_eq!(site_path("/a%2"), Err(Refused::BadEncoding));
        assert_eq!(site_path("/a%zz"), Err(Refused::BadEncoding));
    }

    #[test]
    fn percent_decoding_reads_plus_as_space_only_in_queries() {
        assert_eq!(percent_decode("a+b%20c", true).unwrap(), "a b c");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("%ff", false), None);
    }
}
