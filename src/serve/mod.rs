//! `infermark serve`: the site and JSON API of `report`, served live and
//! read-only from a results tree, plus queries over its runs
//! (`GET /api/v1/runs?…`, [`query`]).
//!
//! How: at start, and whenever the tree changes, the site is built with
//! [`crate::site::build`] into a private directory this server owns, and
//! requests are answered from that directory. Building with `report`'s own
//! code is what makes every page and document the same bytes `report`
//! writes, with no second renderer to drift from it; the build is
//! incremental (only changed files are written, derived figures cached),
//! so a rebuild after a new night costs that night. Raw files are the
//! build's bounded, no-symlink copies, so nothing outside the tree is ever
//! reached, and the private directory is read with the same bounded reader.
//!
//! Change detection is a fingerprint of the modification times of the
//! tree's directories and night records (a run lands by an atomic rename,
//! which changes its parent's time), taken at most once per
//! [`CHECK_EVERY`] on a request; a rebuild runs on a blocking thread while
//! the previous build keeps answering. A rebuild that fails (a symlink put
//! into the tree, a malformed file) keeps the previous build and says why
//! on stderr.
//!
//! [`paths`] turns request paths into site paths or refuses them, and
//! [`http`] owns the connection limits, ETags, gzip and the JSON errors.

pub mod http;
pub mod paths;
pub mod query;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;

use crate::provenance::sign::TrustedKey;
use crate::site::{self, SiteError};
use crate::store::layout;

/// How often, at most, a request looks for a change in the tree.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error("`--addr {0}`: not a loopback address; pass --public too to serve to other machines")]
    NotLoopback(SocketAddr),
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to make the site directory: {0}")]
    Private(std::io::Error),
}

impl ServeError {
    /// Whether the fault is in what was given.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ServeError::Site(e) => e.is_invalid_input(),
            ServeError::NotLoopback(_) => true,
            ServeError::Listen { .. } | ServeError::Private(_) => false,
        }
    }
}

/// What to serve, and where.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub results: PathBuf,
    pub addr: SocketAddr,
    /// Allow a non-loopback address.
    pub public: bool,
    pub trust: Vec<TrustedKey>,
}

/// One build of the site and the rows queries run over.
pub struct Snapshot {
    pub rows: Vec<query::RunRow>,
    fingerprint: Vec<(PathBuf, Option<SystemTime>)>,
}

/// The built site and what is known about the tree.
pub struct Site {
    results: PathBuf,
    trust: Vec<TrustedKey>,
    dir: tempfile::TempDir,
    current: RwLock<Arc<Snapshot>>,
    checked: Mutex<Instant>,
    rebuilding: AtomicBool,
}

impl Site {
    /// Builds the site of `results` into a fresh private directory.
    pub fn open(results: &Path, trust: Vec<TrustedKey>) -> Result<Site, ServeError> {
        let dir = tempfile::Builder::new()
            .prefix("infermark-serve-")
            .tempdir()
            .map_err(ServeError::Private)?;
        let snapshot = build(results, dir.path(), &trust)?;
        Ok(Site {
            results: results.to_path_buf(),
            trust,
            dir,
            current: RwLock::new(Arc::new(snapshot)),
            checked: Mutex::new(Instant::now()),
            rebuilding: AtomicBool::new(false),
        })
    }

    /// The directory the site is built in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Whether it is time to look for a change (at most once per
    /// [`CHECK_EVERY`], and never while a rebuild runs).
    fn due(&self) -> bool {
        let Ok(mut last) = self.checked.lock() else {
            return false;
        };
        if last.elapsed() < CHECK_EVERY || self.rebuilding.load(Ordering::Acquire) {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// Rebuilds when the tree changed since the current build.
    fn refresh(&self) {
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        if fingerprint(&self.results) != self.snapshot().fingerprint {
            match build(&self.results, self.dir.path(), &self.trust) {
                Ok(s) => {
                    if let Ok(mut g) = self.current.write() {
                        *g = Arc::new(s);
                    }
                }
                Err(e) => eprintln!("warning: {e:#}; still serving the previous build"),
            }
        }
        self.rebuilding.store(false, Ordering::Release);
    }
}

fn build(results: &Path, dir: &Path, trust: &[TrustedKey]) -> Result<Snapshot, ServeError> {
    let fingerprint = fingerprint(results);
    site::build(&site::BuildOptions {
        results: results.to_path_buf(),
        out: dir.to_path_buf(),
        trust: trust.to_vec(),
    })?;
    // The build left its cache in `dir`: this load reads no record again.
    let mut cache = site::cache::Cache::open(dir, trust.to_vec());
    let tree = site::model::load(results, &mut cache)?;
    Ok(Snapshot {
        rows: query::rows(&tree),
        fingerprint,
    })
}

/// Modification times of the tree's directories and records: what changes
/// when a run, a point, a verdict or a night is added or removed.
fn fingerprint(root: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mtime = |p: &Path| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok();
    let mut paths = vec![
        root.to_path_buf(),
        root.join(layout::INDEX_FILE),
        root.join(layout::POINTS_DIR),
        root.join(layout::NIGHTS_DIR),
    ];
    for (dir, subs) in [
        (
            layout::POINTS_DIR,
            &[layout::RUNS_DIR, layout::FAILED_DIR, layout::VERDICTS_DIR][..],
        ),
        (layout::NIGHTS_DIR, &[layout::NIGHT_FILE][..]),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        found.sort();
        for p in found {
            paths.extend(subs.iter().map(|s| p.join(s)));
            paths.push(p);
        }
    }
    paths
        .into_iter()
        .map(|p| (mtime(&p), p))
        .map(|(t, p)| (p, t))
        .collect()
}

/// A server bound to its address, with its site built.
pub struct Server {
    site: Arc<Site>,
    listener: TcpListener,
}

impl Server {
    /// Builds the site and binds the address; a non-loopback address needs
    /// `opts.public`. Call it inside the runtime that will run it.
    pub fn start(opts: &ServeOptions) -> Result<Server, ServeError> {
        if !opts.addr.ip().is_loopback() && !opts.public {
            return Err(ServeError::NotLoopback(opts.addr));
        }
        let site = Site::open(&opts.results, opts.trust.clone())?;
        let listen = |source| ServeError::Listen {
            addr: opts.addr,
            source,
        };
        let socket = match opts.addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(listen)?;
        socket.set_reuseaddr(true).map_err(listen)?;
        socket.bind(opts.addr).map_err(listen)?;
        let listener = socket.listen(http::LISTEN_BACKLOG).map_err(listen)?;
        Ok(Server {
            site: Arc::new(site),
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets the connections in
    /// flight finish (for a bounded time).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        http::run(self.site, self.listener, shutdown).await;
        Ok(())
    }
}
