//! References to the things a point pins: container images, model revisions
//! and sha256 digests, each parsed into one normal spelling.
//!
//! "One spelling per value" is what keeps the point id stable: `nginx`,
//! `docker.io/nginx` and `docker.io/library/nginx` are one image, and a digest
//! written in upper case is the same digest.

use std::fmt;

/// The registry assumed when a reference names none (Docker's convention).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Text that is not the reference it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("`{0}` is not a sha256; expected 64 hex digits, optionally prefixed `sha256:`")]
    Sha256(String),
    #[error(
        "`{input}` is not an image reference ({why}); expected `[registry/]name[:tag][@sha256:<64 hex>]`"
    )]
    Image { input: String, why: &'static str },
}

/// A lowercase hex sha256.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(String);

impl Sha256 {
    /// Accepts 64 hex digits, optionally prefixed `sha256:`, any case.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256(hex.to_ascii_lowercase()))
        } else {
            Err(ReferenceError::Sha256(s.to_string()))
        }
    }

    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `true` for a full 40-hex git commit (any case).
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container image reference: `[registry/]repository[:tag][@sha256:digest]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Sha256>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let bad = |why: &'static str| {
            Err(ReferenceError::Image {
                input: s.to_string(),
                why,
            })
        };
        if s.is_empty() || s.trim() != s {
            return bad("empty or surrounded by spaces");
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => match d.strip_prefix("sha256:").map(Sha256::parse) {
                Some(Ok(d)) => (rest, Some(d)),
                _ => return bad("the digest must be `sha256:` and 64 hex digits"),
            },
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !ok {
                return bad("invalid tag");
            }
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            parts.remove(0).to_ascii_lowercase()
        } else {
            DEFAULT_REGISTRY.to_string()
        };
        if parts.is_empty() || parts.iter().any(|p| !valid_path_component(p)) {
            return bad("repository path components must be lowercase letters, digits and `._-`");
        }
        let mut repository = parts.join("/");
        if registry == DEFAULT_REGISTRY && parts.len() == 1 {
            repository = format!("library/{repository}");
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The reference by tag, as looked up in `images.lock` (`latest` when
    /// neither tag nor digest is written, as container tools assume).
    pub fn tagged(&self) -> String {
        format!(
            "{}:{}",
            self.name(),
            self.tag.as_deref().unwrap_or("latest")
        )
    }

    /// The same image pinned to `digest`, without the tag: content, not label.
    pub fn pinned(&self, digest: &Sha256) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }
}

fn valid_path_component(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && p.as_bytes()[0].is_ascii_alphanumeric()
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@sha256:{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    #[test]
    fn short_and_long_spellings_normalise_to_one() {
        let a = ImageRef::parse("nginx:1.27").unwrap();
        let b = ImageRef::parse("docker.io/library/nginx:1.27").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "docker.io/library/nginx:1.27");
        assert_eq!(
            ImageRef::parse("vllm/vllm-openai:v0.10.2")
                .unwrap()
                .to_string(),
            "docker.io/vllm/vllm-openai:v0.10.2"
        );
    }

    #[test]
    fn registry_with_port_and_digest() {
        let r = ImageRef::parse(&format!("127.0.0.1:5000/cpu/llama:1@sha256:{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "cpu/llama");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.digest.as_ref().unwrap().hex(), D.to_ascii_lowercase());
        assert_eq!(
            r.pinned(r.digest.as_ref().unwrap()).to_string(),
            format!("127.0.0.1:5000/cpu/llama@sha256:{}", D.to_ascii_lowercase())
        );
    }

    #[test]
    fn nvcr_tag_with_dots() {
        let r = ImageRef::parse("nvcr.io/nvidia/tensorrt-llm/release:1.1.0rc2.post2").unwrap();
        assert_eq!(
            r.tagged(),
            "nvcr.io/nvidia/tensorrt-llm/release:1.1.0rc2.post2"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Nginx:1",
            "nginx:",
            "nginx@sha256:1234",
            &format!("nginx@md5:{D}"),
            &format!("nginx@{D}"),
            " nginx",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn commits_and_hashes() {
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main"));
        assert_eq!(Sha256::parse(D).unwrap().hex(), D.to_ascii_lowercase());
        assert!(Sha256::parse("xyz").is_err());
    }
}
