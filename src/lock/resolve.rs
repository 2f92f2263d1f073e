//! `infermark lock`: finds the moving references of experiments (image tags,
//! model branches), resolves the ones the lock lacks (or all of them on
//! update) against their registry or hub, and writes the lockfiles.
//!
//! All or nothing: the lockfiles are written only when every reference
//! resolved, so a failed night never leaves a half-updated lock behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use super::error::ResolveError;
use super::{IMAGES_LOCK, ImageEntry, Lockfiles, MODELS_LOCK, ModelEntry, hf, net, oci};
use crate::spec::reference::{ImageRef, is_commit};
use crate::spec::{self, Model, Runtime};

/// One lock entry written or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `images.lock` or `models.lock`.
    pub lockfile: &'static str,
    /// `registry/repository:tag` or `owner/name@revision`.
    pub reference: String,
    /// What the lock said before (`None`: no entry).
    pub old: Option<String>,
    /// What it says now.
    pub new: String,
}

/// What `update` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub lock_dir: PathBuf,
    /// Entries added or whose value changed.
    pub changed: Vec<Change>,
    /// References asked again that still resolve to what the lock says.
    pub unchanged: Vec<String>,
    /// References already locked and not asked (no `update_all`).
    pub kept: Vec<String>,
    /// References this machine's local overlay pins: never asked, even with
    /// `update_all`, since the overlay's pin wins and a tracked entry would
    /// only make the tracked lockfiles differ from their commit.
    pub local: Vec<String>,
    /// Process engines' commands without a sha256: no registry knows them;
    /// pin them with `infermark lock set COMMAND <sha256>`.
    pub commands_unpinned: Vec<String>,
}

/// The moving references of a set of experiments.
#[derive(Debug, Default)]
struct Moving {
    images: BTreeSet<ImageRef>,
    models: BTreeSet<(String, String)>,
    commands: BTreeSet<String>,
}

fn moving(paths: &[PathBuf]) -> Result<Moving, ResolveError> {
    let files = spec::collect_files(paths)?;
    if files.is_empty() {
        return Err(ResolveError::NoExperiments(
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let mut m = Moving::default();
    for f in &files {
        let e = spec::load(f)?;
        if let Some(image) = &e.engine.image
            && image.digest.is_none()
        {
            // The tag alone is the lock key, as `Lockfiles::image_digest` reads it.
            m.images.insert(ImageRef {
                digest: None,
                ..image.clone()
            });
        }
        if let Model::Hub { repo, revision, .. } = &e.model
            && !is_commit(revision)
        {
            m.models.insert((repo.clone(), revision.clone()));
        }
        if e.engine.runtime == Runtime::Process
            && e.engine.command_sha256.is_none()
            && e.engine.kind != spec::EngineKind::Sim
            && let Some(cmd) = &e.engine.command
        {
            m.commands.insert(cmd.clone());
        }
    }
    Ok(m)
}

/// Resolves the moving references of the experiments under `experiments`
/// (files, or directories searched for `*.toml`) into the lockfiles in
/// `lock_dir`: those the lock lacks, or all of them when `update_all`.
/// Credentials and the hub endpoint come from the environment
/// (`INFERMARK_REGISTRY_TOKEN`, `INFERMARK_REGISTRY_USER`,
/// `INFERMARK_REGISTRY_PASSWORD`, `HF_ENDPOINT`, `HF_TOKEN`).
pub async fn update(
    lock_dir: &Path,
    experiments: &[PathBuf],
    update_all: bool,
) -> Result<Report, ResolveError> {
    update_with(
        lock_dir,
        experiments,
        update_all,
        &oci::Credentials::from_env(),
        &hf::Hub::from_env(),
    )
    .await
}

/// Resolves the experiments under `paths` (files, or directories searched
/// for `*.toml`), each into its own lock: `lock_dir` when given, else the
/// nearest `lockfiles/` above it, else `./lockfiles`. One [`update`] per
/// lock directory, in directory order; `on_report` sees each report as
/// soon as its lock is written, so a later failure does not hide it.
pub async fn update_each_lock(
    paths: &[PathBuf],
    lock_dir: Option<&Path>,
    update_all: bool,
    on_report: &mut dyn FnMut(&Report),
) -> Result<(), ResolveError> {
    let files = spec::collect_files(paths)?;
    if files.is_empty() {
        return Err(ResolveError::NoExperiments(
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let mut groups: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
    for f in files {
        let dir = lock_dir
            .map(Path::to_path_buf)
            .or_else(|| Lockfiles::find_dir(&f))
            .unwrap_or_else(|| PathBuf::from("lockfiles"));
        groups.entry(dir).or_default().push(f);
    }
    for (dir, files) in groups {
        on_report(&update(&dir, &files, update_all).await?);
    }
    Ok(())
}

/// `update` with explicit registry credentials and hub.
pub async fn update_with(
    lock_dir: &Path,
    experiments: &[PathBuf],
    update_all: bool,
    creds: &oci::Credentials,
    hub: &hf::Hub,
) -> Result<Report, ResolveError> {
    let wanted = moving(experiments)?;
    let mut lock = Lockfiles::load_checked(lock_dir)?;
    let client = net::client()?;
    let now = crate::clock::now_rfc3339_seconds();
    let mut report = Report {
        lock_dir: lock_dir.to_path_buf(),
        ..Report::default()
    };

    for image in &wanted.images {
        let key = image.tagged();
        if lock
            .local
            .as_deref()
            .is_some_and(|l| l.images.images.iter().any(|e| e.reference == key))
        {
            report.local.push(key);
            continue;
        }
        let old = lock
            .images
            .images
            .iter()
            .find(|e| e.reference == key)
            .cloned();
        if old.is_some() && !update_all {
            report.kept.push(key);
            continue;
        }
        let r = oci::resolve(&client, image, creds)
            .await
            .map_err(|e| e.resolving(&key))?;
        if old
            .as_ref()
            .is_some_and(|o| o.digest == r.digest && o.platforms == r.platforms)
        {
            report.unchanged.push(key);
            continue;
        }
        lock.images.images.retain(|e| e.reference != key);
        lock.images.images.push(ImageEntry {
            reference: key.clone(),
            digest: r.digest.clone(),
            platforms: r.platforms,
            resolved_at: now.clone(),
            resolved_from: r.url,
        });
        report.changed.push(Change {
            lockfile: IMAGES_LOCK,
            reference: key,
            old: old.map(|o| o.digest),
            new: r.digest,
        });
    }

    for (repo, revision) in &wanted.models {
        let key = format!("{repo}@{revision}");
        if lock.local.as_deref().is_some_and(|l| {
            l.models
                .models
                .iter()
                .any(|e| &e.repo == repo && &e.revision == revision)
        }) {
            report.local.push(key);
            continue;
        }
        let old = lock
            .models
            .models
            .iter()
            .find(|e| &e.repo == repo && &e.revision == revision)
            .cloned();
        if old.is_some() && !update_all {
            report.kept.push(key);
            continue;
        }
        let r = hub
            .resolve(&client, repo, revision)
            .await
            .map_err(|e| e.resolving(&key))?;
        if old
            .as_ref()
            .is_some_and(|o| o.commit == r.commit && o.files == r.files)
        {
            report.unchanged.push(key);
            continue;
        }
        lock.models
            .models
            .retain(|e| !(&e.repo == repo && &e.revision == revision));
        lock.models.models.push(ModelEntry {
            repo: repo.clone(),
            revision: revision.clone(),
            commit: r.commit.clone(),
            files: r.files,
            resolved_at: now.clone(),
            resolved_from: r.url,
        });
        report.changed.push(Change {
            lockfile: MODELS_LOCK,
            reference: key,
            old: old.map(|o| o.commit),
            new: r.commit,
        });
    }

    report.commands_unpinned = wanted
        .commands
        .into_iter()
        .filter(|c| spec::Pins::file_sha256(&lock, c).is_none())
        .collect();

    if !report.changed.is_empty() {
        lock.save()?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        let errors = [
            ResolveError::NotFound {
                reference: "127.0.0.1:5000/x:nope".into(),
                origin: "http://127.0.0.1:5000".into(),
                what: "tag",
            },
            ResolveError::Unreachable {
                host: "registry-1.docker.io".into(),
                message: "tcp connect error: Connection refused".into(),
            }
            .resolving("docker.io/library/nginx:latest"),
            ResolveError::Denied {
                reference: "o/m@main".into(),
                origin: "https://huggingface.co".into(),
                status: 401,
                hint: "the repository does not exist, or is gated or private: set HF_TOKEN".into(),
            },
            ResolveError::Protocol {
                reference: "ghcr.io/o/r:t".into(),
                origin: "https://ghcr.io".into(),
                message: "HTTP 500 to HEAD https://ghcr.io/v2/o/r/manifests/t".into(),
            },
            ResolveError::Insecure {
                url: "http://hub.example.com/api/models/o/m/revision/main?blobs=true".into(),
            },
            ResolveError::NoExperiments("experiments".into()),
        ];
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[tokio::test]
    async fn nothing_to_resolve_leaves_the_lock_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let exp = dir.path().join("e.toml");
        std::fs::write(
            &exp,
            format!(
                "schema = 1\n[hardware]\nclass = \"cpu\"\n[engine]\nkind = \"llamacpp\"\nruntime = \"process\"\n\
                 command = \"llama-server\"\n[model]\nrepo = \"o/m\"\nrevision = \"{}\"\n[workload]\n\
                 api = \"completions\"\ninput-tokens = 8\noutput-tokens = 2\n[load]\nconcurrency = [1]\n",
                "a".repeat(40)
            ),
        )
        .unwrap();
        let lock_dir = dir.path().join("lockfiles");
        let report = update_with(
            &lock_dir,
            std::slice::from_ref(&exp),
            true,
            &oci::Credentials::default(),
            &hf::Hub::new("http://127.0.0.1:9".into(), None),
        )
        .await
        .unwrap();
        assert!(report.changed.is_empty() && report.unchanged.is_empty());
        assert_eq!(report.commands_unpinned, ["llama-server"]);
        assert!(!lock_dir.exists());
    }
}
