//! Image tag → digest over the OCI distribution API.
//!
//! `HEAD /v2/<name>/manifests/<tag>` with an Accept list naming both OCI and
//! Docker manifest types (a registry answers 404 without it); the digest is
//! the `Docker-Content-Digest` header. On 401 the `WWW-Authenticate`
//! challenge is answered: `Bearer` by fetching a token from its realm
//! (basic auth from `INFERMARK_REGISTRY_USER`/`INFERMARK_REGISTRY_PASSWORD`
//! when set), `Basic` with those credentials directly.
//! `INFERMARK_REGISTRY_TOKEN`, when set, is sent as a bearer token from the
//! first request on. When the tag names an index (multi-platform image), its
//! body is fetched, checked against the digest, and the per-platform manifest
//! digests are returned; the index digest stays the pin.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ResolveError;
use super::net;
use crate::spec::reference::{DEFAULT_REGISTRY, ImageRef};

/// Manifest media types asked for, index types first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Largest manifest or token answer read.
const MAX_BODY: usize = 4 << 20;

/// Registry credentials from the environment. `Debug` never shows them.
#[derive(Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    basic: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(u, _)| (u, "***")))
            .finish()
    }
}

impl Credentials {
    /// `INFERMARK_REGISTRY_TOKEN`, `INFERMARK_REGISTRY_USER` and
    /// `INFERMARK_REGISTRY_PASSWORD`; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Credentials {
            token: var("INFERMARK_REGISTRY_TOKEN"),
            basic: var("INFERMARK_REGISTRY_USER")
                .map(|u| (u, var("INFERMARK_REGISTRY_PASSWORD").unwrap_or_default())),
        }
    }

    /// The strings no message may contain.
    pub fn secrets(&self) -> Vec<&str> {
        let mut s = Vec::new();
        if let Some(t) = &self.token {
            s.push(t.as_str());
        }
        if let Some((_, p)) = &self.basic {
            s.push(p.as_str());
        }
        s
    }
}

/// What a tag resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `sha256:<hex>`: the manifest or index the tag points at.
    pub digest: String,
    /// `os/arch[/variant]` → `sha256:<hex>`, when the tag is an index.
    pub platforms: BTreeMap<String, String>,
    /// The manifest URL asked.
    pub url: String,
}

/// The registry's API base: `docker.io` is served by `registry-1.docker.io`;
/// loopback registries speak plain HTTP, all others HTTPS.
pub fn registry_base(registry: &str) -> String {
    if registry == DEFAULT_REGISTRY {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("{}://{registry}", net::scheme_for(registry))
    }
}

/// `<base>/v2/<repository>/manifests/<tag>` (`latest` when no tag is written).
pub fn manifest_url(image: &ImageRef) -> String {
    format!(
        "{}/v2/{}/manifests/{}",
        registry_base(&image.registry),
        image.repository,
        image.tag.as_deref().unwrap_or("latest")
    )
}

/// One `WWW-Authenticate` challenge: scheme (lowercase) and parameters
/// (lowercase keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1): one or more
/// challenges, each a scheme then `key=value` or `key="quoted"` parameters
/// separated by commas.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = value.as_bytes();
    let mut i = 0;
    let skip_sep = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b',' || b[*i].is_ascii_whitespace()) {
            *i += 1;
        }
    };
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c);
    loop {
        skip_sep(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) && b[i] != b'=' {
            i += 1;
        }
        if start == i {
            // Not a token: give up on the rest.
            break;
        }
        let token = &value[start..i];
        // Whitespace then `=` also marks a parameter.
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // key = value
            i = j + 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let v = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut s = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Copy whole UTF-8 characters.
                    let ch = value[i..].chars().next().unwrap_or('\u{fffd}');
                    s.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                s
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value[vs..i].to_string()
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), v);
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

impl Auth {
    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::Basic(u, p) => rb.basic_auth(u, Some(p)),
        }
    }
}

/// Resolves `image`'s tag on its registry.
pub async fn resolve(
    client: &reqwest::Client,
    image: &ImageRef,
    creds: &Credentials,
) -> Result<Resolved, ResolveError> {
    let reference = image.tagged();
    let url_text = manifest_url(image);
    let url = reqwest::Url::parse(&url_text).map_err(|e| ResolveError::Protocol {
        reference: reference.clone(),
        origin: url_text.clone(),
        message: format!("cannot form the manifest URL: {e}"),
    })?;
    net::check_transport(&url)?;
    let secrets = creds.secrets();
    let origin = registry_base(&image.registry);
    let protocol = |message: String| ResolveError::Protocol {
        reference: reference.clone(),
        origin: origin.clone(),
        message: net::redact(&message, &secrets),
    };

    let send = |method: reqwest::Method, auth: &Auth| {
        let rb = client
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT);
        auth.apply(rb).send()
    };

    let mut auth = match &creds.token {
        Some(t) => Auth::Bearer(t.clone()),
        None => Auth::None,
    };
    let mut resp = send(reqwest::Method::HEAD, &auth)
        .await
        .map_err(|e| net::send_error(&url, e, &secrets))?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_www_authenticate)
            .collect();
        auth = answer(client, image, creds, &challenges, &reference, &origin).await?;
        resp = send(reqwest::Method::HEAD, &auth)
            .await
            .map_err(|e| net::send_error(&url, e, &secrets))?;
    }
    let status = resp.status();
    match status.as_u16() {
        200 => {}
        401 | 403 => {
            return Err(ResolveError::Denied {
                reference,
                origin,
                status: status.as_u16(),
                hint: "set INFERMARK_REGISTRY_TOKEN, or INFERMARK_REGISTRY_USER and INFERMARK_REGISTRY_PASSWORD".to_string(),
            });
        }
        404 => {
            return Err(ResolveError::NotFound {
                reference,
                origin,
                what: "tag",
            });
        }
        s => return Err(protocol(format!("HTTP {s} to HEAD {url_text}"))),
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
    };
    let head_digest = header("docker-content-digest");
    let media_type = header("content-type")
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let is_index = INDEX_TYPES.contains(&media_type.as_str());
    if let Some(d) = &head_digest
        && !is_digest(d)
    {
        return Err(protocol(format!(
            "Docker-Content-Digest `{d}` is not `sha256:<64 hex>`"
        )));
    }
    if !is_index && let Some(digest) = head_digest {
        return Ok(Resolved {
            digest,
            platforms: BTreeMap::new(),
            url: url_text,
        });
    }

    // An index, or no digest header: fetch the manifest and hash it.
    let resp = send(reqwest::Method::GET, &auth)
        .await
        .map_err(|e| net::send_error(&url, e, &secrets))?;
    if !resp.status().is_success() {
        return Err(protocol(format!(
            "HTTP {} to GET {url_text}",
            resp.status().as_u16()
        )));
    }
    let get_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let bytes = net::body(&url, resp, MAX_BODY, &secrets).await?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    if let Some(d) = &head_digest
        && !d.eq_ignore_ascii_case(&digest)
    {
        return Err(protocol(format!(
            "the manifest body hashes to {digest}, not to the {d} the registry announced"
        )));
    }
    let platforms = if is_index || INDEX_TYPES.contains(&get_type.as_str()) {
        platforms(&bytes).map_err(|m| protocol(format!("index manifest: {m}")))?
    } else {
        BTreeMap::new()
    };
    Ok(Resolved {
        digest,
        platforms,
        url: url_text,
    })
}

/// Answers a 401: a token from a `Bearer` realm, or basic credentials.
async fn answer(
    client: &reqwest::Client,
    image: &ImageRef,
    creds: &Credentials,
    challenges: &[Challenge],
    reference: &str,
    origin: &str,
) -> Result<Auth, ResolveError> {
    let secrets = creds.secrets();
    let denied = |hint: &str| ResolveError::Denied {
        reference: reference.to_string(),
        origin: origin.to_string(),
        status: 401,
        hint: hint.to_string(),
    };
    if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
        let Some(realm) = c.params.get("realm") else {
            return Err(ResolveError::Protocol {
                reference: reference.to_string(),
                origin: origin.to_string(),
                message: "a Bearer challenge without `realm`".to_string(),
            });
        };
        let mut realm_url = reqwest::Url::parse(realm).map_err(|e| ResolveError::Protocol {
            reference: reference.to_string(),
            origin: origin.to_string(),
            message: format!("token realm `{realm}` is not a URL: {e}"),
        })?;
        net::check_transport(&realm_url)?;
        {
            let mut q = realm_url.query_pairs_mut();
            if let Some(s) = c.params.get("service") {
                q.append_pair("service", s);
            }
            let scope = c
                .params
                .get("scope")
                .cloned()
                .unwrap_or_else(|| format!("repository:{}:pull", image.repository));
            q.append_pair("scope", &scope);
        }
        let mut rb = client.get(realm_url.clone());
        if let Some((u, p)) = &creds.basic {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| net::send_error(&realm_url, e, &secrets))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ResolveError::Denied {
                reference: reference.to_string(),
                origin: net::host_of(&realm_url),
                status: status.as_u16(),
                hint: "the token service refused; check INFERMARK_REGISTRY_USER and INFERMARK_REGISTRY_PASSWORD".to_string(),
            });
        }
        if !status.is_success() {
            return Err(ResolveError::Protocol {
                reference: reference.to_string(),
                origin: net::host_of(&realm_url),
                message: format!("token service answered HTTP {}", status.as_u16()),
            });
        }
        let body = net::body(&realm_url, resp, MAX_BODY, &secrets).await?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenAnswer = serde_json::from_slice(&body).map_err(|e| ResolveError::Protocol {
            reference: reference.to_string(),
            origin: net::host_of(&realm_url),
            message: format!("token answer is not JSON with `token`: {e}"),
        })?;
        return match t.token.or(t.access_token).filter(|t| !t.is_empty()) {
            Some(t) => Ok(Auth::Bearer(t)),
            None => Err(ResolveError::Protocol {
                reference: reference.to_string(),
                origin: net::host_of(&realm_url),
                message: "token answer has neither `token` nor `access_token`".to_string(),
            }),
        };
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return match &creds.basic {
            Some((u, p)) => Ok(Auth::Basic(u.clone(), p.clone())),
            None => Err(denied(
                "the registry asks for basic auth: set INFERMARK_REGISTRY_USER and INFERMARK_REGISTRY_PASSWORD",
            )),
        };
    }
    Err(denied(
        "no usable WWW-Authenticate challenge (Bearer or Basic); set INFERMARK_REGISTRY_TOKEN",
    ))
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why an index body is not one; it reaches the user as the text of a
/// [`ResolveError::Protocol`], redacted.
#[derive(Debug, thiserror::Error)]
pub enum PlatformsError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("`{0}` is not `sha256:<64 hex>`")]
    Digest(String),
}

/// `os/arch[/variant]` → digest from an index body. Entries with platform
/// `unknown/unknown` (attestations) are left out.
pub fn platforms(body: &[u8]) -> Result<BTreeMap<String, String>, PlatformsError> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Platform {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let index: Index = serde_json::from_slice(body)?;
    let mut out = BTreeMap::new();
    for m in index.manifests {
        let Some(p) = m.platform else { continue };
        if p.os == "unknown" || p.architecture == "unknown" {
            continue;
        }
        if !is_digest(&m.digest) {
            return Err(PlatformsError::Digest(m.digest));
        }
        let key = match p.variant.filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        };
        out.entry(key).or_insert(m.digest.to_ascii_lowercase());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/nginx:pull");
    }

    #[test]
    fn challenge_variants() {
        // Unquoted values, spaces, escapes, upper-case keys, two challenges.
        let c = parse_www_authenticate(
            r#"Basic realm="Registry \"x\"", BEARER Realm = https://t.example/token , service=svc,scope="a,b""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], r#"Registry "x""#);
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].params["realm"], "https://t.example/token");
        assert_eq!(c[1].params["service"], "svc");
        assert_eq!(c[1].params["scope"], "a,b");
        assert!(parse_www_authenticate("").is_empty());
        assert_eq!(parse_www_authenticate("Bearer")[0].params.len(), 0);
    }

    #[test]
    fn reference_to_manifest_url() {
        let u = |s: &str| manifest_url(&ImageRef::parse(s).unwrap());
        assert_eq!(
            u("nginx"),
            "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
        );
        assert_eq!(
            u("vllm/vllm-openai:v0.10.2"),
            "https://registry-1.docker.io/v2/vllm/vllm-openai/manifests/v0.10.2"
        );
        assert_eq!(
            u("docker.io/lmsysorg/sglang:v0.5.3"),
            "https://registry-1.docker.io/v2/lmsysorg/sglang/manifests/v0.5.3"
        );
        assert_eq!(
            u("nvcr.io/nvidia/tensorrt-llm/release:1.1.0rc2.post2"),
            "https://nvcr.io/v2/nvidia/tensorrt-llm/release/manifests/1.1.0rc2.post2"
        );
        assert_eq!(
            u("127.0.0.1:5000/x:1"),
            "http://127.0.0.1:5000/v2/x/manifests/1"
        );
        assert_eq!(
            u("localhost:5000/a/b:2"),
            "http://localhost:5000/v2/a/b/manifests/2"
        );
        assert_eq!(u("ghcr.io/o/r:t"), "https://ghcr.io/v2/o/r/manifests/t");
    }

    #[test]
    fn index_platforms_skip_attestations() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": d('a'), "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"digest": d('c'), "platform": {"os": "unknown", "architecture": "unknown"}},
            ]
        });
        let p = platforms(body.to_string().as_bytes()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["linux/amd64"], d('a'));
        assert_eq!(p["linux/arm64/v8"], d('b'));
        assert!(platforms(b"{}").is_err());
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials {
            token: Some("tok-123".into()),
            basic: Some(("me".into(), "pw-456".into())),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("tok-123") && !s.contains("pw-456"), "{s}");
        assert_eq!(c.secrets(), vec!["tok-123", "pw-456"]);
    }
}
