//! Why resolving a moving reference failed: the one error of `resolve`
//! and of the clients it drives (`oci`, `hf`, `net`).
//!
//! Its own file so those clients need not import `resolve`, which imports
//! them: the error is shared, the resolver is not.

use super::LockError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("no experiment files (*.toml) under {0}")]
    NoExperiments(String),
    #[error(
        "`{reference}`: {what} not found on {origin} (HTTP 404); check the name and the {what} in the experiment"
    )]
    NotFound {
        reference: String,
        origin: String,
        what: &'static str,
    },
    #[error("cannot reach {host}: {message}")]
    Unreachable { host: String, message: String },
    #[error("`{reference}`: {origin} refused access (HTTP {status}); {hint}")]
    Denied {
        reference: String,
        origin: String,
        status: u16,
        hint: String,
    },
    #[error("`{reference}`: unexpected answer from {origin}: {message}")]
    Protocol {
        reference: String,
        origin: String,
        message: String,
    },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error(
        "{url}: plain HTTP is allowed only to loopback hosts (127.0.0.1, ::1, localhost); use https://"
    )]
    Insecure { url: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

impl ResolveError {
    /// `true` when the user must fix an experiment or lockfile (a bad spec
    /// or lock, no experiments, a tag or revision that does not exist);
    /// `false` for network, access and server failures.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            ResolveError::Lock(_)
                | ResolveError::Spec(_)
                | ResolveError::NoExperiments(_)
                | ResolveError::NotFound { .. }
        )
    }

    /// Names the reference being resolved in errors that only name a host
    /// or URL.
    pub(super) fn resolving(self, reference: &str) -> Self {
        match self {
            ResolveError::Unreachable { host, message } => ResolveError::Unreachable {
                host,
                message: format!("{message} (resolving `{reference}`)"),
            },
            ResolveError::Http { url, message } => ResolveError::Http {
                url,
                message: format!("{message} (resolving `{reference}`)"),
            },
            e => e,
        }
    }
}
