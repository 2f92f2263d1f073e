//! Model branch → commit over the Hugging Face hub API.
//!
//! `GET {endpoint}/api/models/{owner}/{name}/revision/{revision}?blobs=true`
//! answers the commit as `sha` and, per file, `siblings[].lfs.sha256` for
//! files stored in LFS (the weights). The endpoint is `HF_ENDPOINT`
//! (default `https://huggingface.co`); `HF_TOKEN`, when set, is sent as a
//! bearer token for gated and private repositories.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::ResolveError;
use super::net;
use crate::spec::reference::is_commit;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Largest API answer read (a repository with many files lists them all).
const MAX_BODY: usize = 64 << 20;

/// The hub to ask and the token to show it. `Debug` never shows the token.
#[derive(Clone)]
pub struct Hub {
    pub endpoint: String,
    token: Option<String>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What a revision resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// 40 lowercase hex digits.
    pub commit: String,
    /// File name → sha256, for the files the hub stores in LFS.
    pub files: BTreeMap<String, String>,
    /// The API URL asked (without credentials).
    pub url: String,
}

impl Hub {
    /// `HF_ENDPOINT` and `HF_TOKEN`; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Hub::new(
            var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            var("HF_TOKEN"),
        )
    }

    pub fn new(endpoint: String, token: Option<String>) -> Self {
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// The API URL for `repo` (`owner/name`) at `revision`; a revision with
    /// `/` (e.g. `refs/pr/1`) is one percent-encoded path segment.
    pub fn revision_url(&self, repo: &str, revision: &str) -> Result<reqwest::Url, ResolveError> {
        let bad = |message: String| ResolveError::Protocol {
            reference: format!("{repo}@{revision}"),
            origin: self.endpoint.clone(),
            message,
        };
        let Some((owner, name)) = repo.split_once('/') else {
            return Err(bad("expected the repository as `owner/name`".to_string()));
        };
        let mut url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| bad(format!("HF_ENDPOINT is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| bad("HF_ENDPOINT cannot be a base URL".to_string()))?
            .pop_if_empty()
            .extend(["api", "models", owner, name, "revision", revision]);
        url.query_pairs_mut().append_pair("blobs", "true");
        Ok(url)
    }

    /// Resolves `repo` at `revision` to its commit and LFS file hashes.
    pub async fn resolve(
        &self,
        client: &reqwest::Client,
        repo: &str,
        revision: &str,
    ) -> Result<Resolved, ResolveError> {
        let reference = format!("{repo}@{revision}");
        let url = self.revision_url(repo, revision)?;
        net::check_transport(&url)?;
        let shown = net::without_credentials(&url);
        let secrets: Vec<&str> = self.token.iter().map(String::as_str).collect();
        let protocol = |message: String| ResolveError::Protocol {
            reference: reference.clone(),
            origin: shown.clone(),
            message: net::redact(&message, &secrets),
        };
        let mut rb = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| net::send_error(&url, e, &secrets))?;
        let status = resp.status().as_u16();
        match status {
            200 => {}
            404 => {
                return Err(ResolveError::NotFound {
                    reference,
                    origin: self.endpoint.clone(),
                    what: "model revision",
                });
            }
            401 | 403 => {
                return Err(ResolveError::Denied {
                    reference,
                    origin: self.endpoint.clone(),
                    status,
                    hint: if self.token.is_some() {
                        "the repository does not exist, or HF_TOKEN has no access to it".to_string()
                    } else {
                        "the repository does not exist, or is gated or private: set HF_TOKEN"
                            .to_string()
                    },
                });
            }
            s => return Err(protocol(format!("HTTP {s}"))),
        }
        let body = net::body(&url, resp, MAX_BODY, &secrets).await?;
        parse_revision(&body)
            .map_err(|e| protocol(e.to_string()))
            .map(|(commit, files)| Resolved {
                commit,
                files,
                url: shown.clone(),
            })
    }
}

/// Why a revision answer is not one. Each cause is part of the message:
/// it reaches the user as the text of a [`ResolveError::Protocol`], redacted.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error("answer is not the revision JSON: {0}")]
    Json(serde_json::Error),
    #[error("answer has no `sha`")]
    NoSha,
    #[error("`sha` `{0}` is not a 40-hex commit")]
    NotCommit(String),
    #[error("`{file}`: lfs.sha256: {error}")]
    LfsSha256 {
        file: String,
        error: crate::spec::reference::ReferenceError,
    },
}

/// `sha` and the LFS files' sha256 from a revision answer.
pub fn parse_revision(body: &[u8]) -> Result<(String, BTreeMap<String, String>), RevisionError> {
    #[derive(Deserialize)]
    struct Info {
        sha: Option<String>,
        #[serde(default)]
        siblings: Vec<Sibling>,
    }
    #[derive(Deserialize)]
    struct Sibling {
        rfilename: String,
        lfs: Option<Lfs>,
    }
    #[derive(Deserialize)]
    struct Lfs {
        sha256: String,
    }
    let info: Info = serde_json::from_slice(body).map_err(RevisionError::Json)?;
    let Some(sha) = info.sha else {
        return Err(RevisionError::NoSha);
    };
    if !is_commit(&sha) {
        return Err(RevisionError::NotCommit(sha));
    }
    let mut files = BTreeMap::new();
    for s in info.siblings {
        if let Some(lfs) = s.lfs {
            let h = crate::spec::reference::Sha256::parse(&lfs.sha256).map_err(|error| {
                RevisionError::LfsSha256 {
                    file: s.rfilename.clone(),
                    error,
                }
            })?;
            files.insert(s.rfilename, h.to_string());
        }
    }
    Ok((sha.to_ascii_lowercase(), files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_urls() {
        let hub = Hub::new("https://huggingface.co/".into(), None);
        assert_eq!(
            hub.revision_url("openai/gpt-oss-120b", "main")
                .unwrap()
                .as_str(),
            "https://huggingface.co/api/models/openai/gpt-oss-120b/revision/main?blobs=true"
        );
        assert_eq!(
            hub.revision_url("o/n", "refs/pr/1").unwrap().as_str(),
            "https://huggingface.co/api/models/o/n/revision/refs%2Fpr%2F1?blobs=true"
        );
        let mirror = Hub::new("http://127.0.0.1:8080/hf".into(), None);
        assert_eq!(
            mirror.revision_url("o/n", "v1.0").unwrap().as_str(),
            "http://127.0.0.1:8080/hf/api/models/o/n/revision/v1.0?blobs=true"
        );
        assert!(hub.revision_url("no-owner", "main").is_err());
    }

    #[test]
    fn parses_commit_and_lfs_files() {
        let sha = "0123456789abcdef0123456789ABCDEF01234567";
        let body = serde_json::json!({
            "id": "o/n", "sha": sha,
            "siblings": [
                {"rfilename": "config.json", "blobId": "x", "size": 10},
                {"rfilename": "model.safetensors", "blobId": "y", "size": 99,
                 "lfs": {"sha256": "A".repeat(64), "size": 99, "pointerSize": 130}}
            ]
        });
        let (commit, files) = parse_revision(body.to_string().as_bytes()).unwrap();
        assert_eq!(commit, sha.to_ascii_lowercase());
        assert_eq!(files.len(), 1);
        assert_eq!(files["model.safetensors"], "a".repeat(64));
        assert!(parse_revision(br#"{"sha":"main"}"#).is_err());
        assert!(parse_revision(b"[]").is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let s = format!(
            "{:?}",
            Hub::new("https://h".into(), Some("hf_secret".into()))
        );
        assert!(!s.contains("hf_secret"), "{s}");
    }
}
