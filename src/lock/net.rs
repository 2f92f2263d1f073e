//! What the registry and hub clients share: the HTTP client with its bounded
//! timeouts, the plain-HTTP-only-on-loopback rule, capped body reads, and
//! error text that names the host and the cause but never a credential.

use std::net::IpAddr;
use std::time::Duration;

use super::error::ResolveError;

/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole request, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The client used for every lock request.
pub fn client() -> Result<reqwest::Client, ResolveError> {
    client_with(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
}

fn client_with(connect: Duration, request: Duration) -> Result<reqwest::Client, ResolveError> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .user_agent(concat!("infermark/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ResolveError::Client(chain(&e)))
}

/// `true` for `localhost`, 127.0.0.0/8 and `::1`, with or without a port
/// (`127.0.0.1:5000`, `[::1]:5000`, `localhost:5000`).
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host_port.matches(':').count() == 1 {
        host_port.split(':').next().unwrap_or("")
    } else {
        host_port
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The scheme for a host: plain HTTP only on loopback, HTTPS otherwise.
pub fn scheme_for(host_port: &str) -> &'static str {
    if is_loopback(host_port) {
        "http"
    } else {
        "https"
    }
}

/// Refuses a plain-HTTP URL to anything but loopback: credentials and pins
/// must not travel in clear over a network.
pub fn check_transport(url: &reqwest::Url) -> Result<(), ResolveError> {
    let host = url.host_str().unwrap_or("");
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        _ => Err(ResolveError::Insecure {
            url: without_credentials(url),
        }),
    }
}

/// The URL as recorded and shown: no user, no password.
pub fn without_credentials(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// `host[:port]` of a URL, for error messages.
pub fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.to_string(),
    }
}

/// An error and its causes on one line (`a: b: c`), repeated parts dropped.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Maps a failed send to `Unreachable` (connect or timeout) or `Http`.
pub fn send_error(url: &reqwest::Url, e: reqwest::Error, secrets: &[&str]) -> ResolveError {
    let (connect, timeout) = (e.is_connect(), e.is_timeout());
    // The URL is named separately; it never holds a credential (they travel
    // in headers), and the text is redacted all the same.
    let mut message = redact(&chain(&e.without_url()), secrets);
    if timeout && !message.contains("timed out") {
        message = format!("timed out: {message}");
    }
    if connect || timeout {
        ResolveError::Unreachable {
            host: host_of(url),
            message,
        }
    } else {
        ResolveError::Http {
            url: without_credentials(url),
            message,
        }
    }
}

/// Replaces every secret in `text` by `***`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "***");
    }
    out
}

/// Reads a response body, refusing more than `cap` bytes.
pub async fn body(
    url: &reqwest::Url,
    mut resp: reqwest::Response,
    cap: usize,
    secrets: &[&str],
) -> Result<Vec<u8>, ResolveError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > cap {
                    return Err(ResolveError::Http {
                        url: without_credentials(url),
                        message: format!("response larger than {cap} bytes"),
                    });
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(send_error(url, e, secrets)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only_get_plain_http() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.3.2.1:80",
            "localhost",
            "LOCALHOST:5000",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
            assert_eq!(scheme_for(h), "http", "{h}");
        }
        for h in [
            "docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(h), "{h}");
            assert_eq!(scheme_for(h), "https", "{h}");
        }
    }

    #[test]
    fn plain_http_off_loopback_is_refused_and_credentials_are_dropped() {
        let u = reqwest::Url::parse("http://user:pw@hub.example.com/api").unwrap();
        let err = check_transport(&u).unwrap_err().to_string();
        assert!(err.contains("http://hub.example.com/api"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        assert!(check_transport(&reqwest::Url::parse("http://127.0.0.1:9/x").unwrap()).is_ok());
        assert!(check_transport(&reqwest::Url::parse("https://hub.example.com").unwrap()).is_ok());
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_bounded_unreachable_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold the connection without a byte of answer.
        let hold = tokio::spawn(async move {
            let conn = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
        });
        let client = client_with(Duration::from_secs(1), Duration::from_millis(300)).unwrap();
        let url = reqwest::Url::parse(&format!("http://{addr}/v2/")).unwrap();
        let e = client.get(url.clone()).send().await.unwrap_err();
        let err = send_error(&url, e, &[]);
        hold.abort();
        match &err {
            ResolveError::Unreachable { host, message } => {
                assert_eq!(host, &addr.to_string());
                assert!(message.contains("timed out"), "{message}");
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn https_is_spoken() {
        // A plain-HTTP server asked over https: the client must attempt TLS
        // (and fail the handshake), which it can only with a TLS backend.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let url = reqwest::Url::parse(&format!("https://{addr}/v2/")).unwrap();
        let e = client().unwrap().get(url.clone()).send().await.unwrap_err();
        let text = chain(&e);
        serve.abort();
        assert!(e.is_connect(), "{text}");
        // rustls reading a plain-HTTP answer as a TLS record.
        assert!(text.contains("corrupt message"), "{text}");
    }

    #[test]
    fn redact_hides_every_secret() {
        assert_eq!(redact("a tok b tok", &["tok", ""]), "a *** b ***");
    }
}
