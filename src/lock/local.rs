//! Which of a point's pins this machine's local overlay supplied.
//!
//! The overlay (`<lock dir>/local/*.lock`, see the module above) is how a
//! machine pins what only it has without editing the tracked lockfiles. A
//! run says so in its `environment.json` (`local_pins`) and `audit` prints
//! one line per such pin, so a reader sees which numbers rest on a pin no
//! commit records. Not in the point: where a pin came from never changes
//! the point's canonical JSON, hence never its id.

use serde::{Deserialize, Serialize};

use super::{FILES_LOCK, IMAGES_LOCK, LOCAL_DIR, Lockfiles, MODELS_LOCK};
use crate::spec::reference::ImageRef;
use crate::spec::{Model, Point, Runtime};

/// One pin of a run that came from the local overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPin {
    /// The overlay file, relative to the lock directory (`local/images.lock`).
    pub lockfile: String,
    /// The reference as the lockfile keys it (image tag, `repo@branch`, command).
    pub reference: String,
    /// What it is pinned to (digest, commit or sha256).
    pub pin: String,
    pub resolved_at: String,
    pub resolved_from: String,
}

impl Lockfiles {
    /// The pins of `point` that the local overlay supplied: an overlay entry
    /// whose value is the point's pin, unless the tracked lock pins the same
    /// reference to the same value (then the tracked lock vouches for it).
    /// Empty without an overlay.
    pub fn local_pins(&self, point: &Point) -> Vec<LocalPin> {
        let Some(local) = self.local.as_deref() else {
            return Vec::new();
        };
        let file = |name: &str| format!("{LOCAL_DIR}/{name}");
        let spec = &point.spec;
        let mut out = Vec::new();
        if spec.engine.runtime.is_container()
            && let Some(image) = &spec.engine.image
            && let Some(digest) = &image.digest
        {
            let pinned = format!("sha256:{}", digest.hex());
            for e in &local.images.images {
                let same_image = ImageRef::parse(&e.reference)
                    .is_ok_and(|r| r.name() == image.name() && e.digest == pinned);
                let tracked = self
                    .images
                    .images
                    .iter()
                    .any(|t| t.reference == e.reference && t.digest == e.digest);
                if same_image && !tracked {
                    out.push(LocalPin {
                        lockfile: file(IMAGES_LOCK),
                        reference: e.reference.clone(),
                        pin: e.digest.clone(),
                        resolved_at: e.resolved_at.clone(),
                        resolved_from: e.resolved_from.clone(),
                    });
                }
            }
        }
        if spec.engine.runtime == Runtime::Process
            && let (Some(command), Some(sha)) = (&spec.engine.command, &spec.engine.command_sha256)
            && let Some(e) = local
                .files
                .files
                .iter()
                .find(|e| &e.command == command && e.sha256 == sha.hex())
            && !self
                .files
                .files
                .iter()
                .any(|t| t.command == e.command && t.sha256 == e.sha256)
        {
            out.push(LocalPin {
                lockfile: file(FILES_LOCK),
                reference: e.command.clone(),
                pin: e.sha256.clone(),
                resolved_at: e.resolved_at.clone(),
                resolved_from: e.resolved_from.clone(),
            });
        }
        if let Model::Hub { repo, revision, .. } = &spec.model {
            for e in &local.models.models {
                let tracked =
                    self.models.models.iter().any(|t| {
                        t.repo == e.repo && t.revision == e.revision && t.commit == e.commit
                    });
                if &e.repo == repo && &e.commit == revision && !tracked {
                    out.push(LocalPin {
                        lockfile: file(MODELS_LOCK),
                        reference: format!("{}@{}", e.repo, e.revision),
                        pin: e.commit.clone(),
                        resolved_at: e.resolved_at.clone(),
                        resolved_from: e.resolved_from.clone(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Pins;
    use crate::spec::reference::Sha256;

    const NOW: &str = "2026-11-23T00:00:00Z";
    const IMAGE: &str = "127.0.0.1:5055/infermark/llama-server-smollm2:11434.0.0";

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// A lock directory with `tracked` in its files and `local` in its overlay.
    fn lock_dir(tracked: &[(&str, String)], local: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Lockfiles::load(dir.path()).unwrap();
        for (r, v) in tracked {
            l.set(r, v, NOW).unwrap();
        }
        l.save().unwrap();
        if !local.is_empty() {
            let overlay = l.local_mut();
            for (r, v) in local {
                overlay.set(r, v, NOW).unwrap();
            }
            overlay.save().unwrap();
        }
        dir
    }

    fn image_pin(l: &Lockfiles) -> Option<String> {
        l.image_digest(IMAGE).map(|d| format!("sha256:{}", d.hex()))
    }

    #[test]
    fn the_overlay_wins_for_the_same_reference() {
        let dir = lock_dir(
            &[(IMAGE, digest('a')), ("llama-server", "c".repeat(64))],
            &[(IMAGE, digest('b'))],
        );
        let l = Lockfiles::load_checked(dir.path()).unwrap();
        assert_eq!(image_pin(&l), Some(digest('b')));
        // What the overlay does not pin still comes from the tracked lock.
        assert_eq!(
            l.file_sha256("llama-server"),
            Some(Sha256::parse(&"c".repeat(64)).unwrap())
        );
    }

    #[test]
    fn tracked_only_reads_as_before() {
        let dir = lock_dir(&[(IMAGE, digest('a'))], &[]);
        assert!(!dir.path().join(LOCAL_DIR).exists());
        let l = Lockfiles::load_checked(dir.path()).unwrap();
        assert!(l.local.is_none());
        assert_eq!(image_pin(&l), Some(digest('a')));
    }

    #[test]
    fn overlay_only_pins_and_saving_the_tracked_lock_leaves_it_out() {
        let dir = lock_dir(&[], &[(IMAGE, digest('b'))]);
        let mut l = Lockfiles::load_checked(dir.path()).unwrap();
        assert_eq!(image_pin(&l), Some(digest('b')));
        l.set("llama-server", &"c".repeat(64), NOW).unwrap();
        l.save().unwrap();
        let tracked = std::fs::read_to_string(dir.path().join(IMAGES_LOCK)).unwrap();
        assert!(!tracked.contains(IMAGE), "{tracked}");
        let overlay =
            std::fs::read_to_string(dir.path().join(LOCAL_DIR).join(IMAGES_LOCK)).unwrap();
        assert!(overlay.contains(IMAGE), "{overlay}");
    }

    #[test]
    fn a_malformed_overlay_file_is_an_error_naming_it() {
        let dir = lock_dir(&[(IMAGE, digest('a'))], &[]);
        let local = dir.path().join(LOCAL_DIR);
        std::fs::create_dir(&local).unwrap();
        std::fs::write(
            local.join(FILES_LOCK),
            "version = 1\n[[file]]\ncommand = 3\n",
        )
        .unwrap();
        let err = Lockfiles::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&local.join(FILES_LOCK).display().to_string()),
            "{err}"
        );
        // A well-formed file with a bad value is named by load_checked.
        std::fs::write(
            local.join(FILES_LOCK),
            "version = 1\n[[file]]\ncommand = \"x\"\nsha256 = \"no\"\n\
             resolved-at = \"now\"\nresolved-from = \"manual\"\n",
        )
        .unwrap();
        let err = Lockfiles::load_checked(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&local.join(FILES_LOCK).display().to_string()),
            "{err}"
        );
    }

    /// A point of the CPU podman experiment, its image pinned by `l`.
    fn container_point(l: &Lockfiles) -> Point {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/cpu/llamacpp-smollm2-podman.toml");
        let e = crate::spec::load(&file).expect("the experiment loads");
        e.points(l).expect("points").remove(0)
    }

    #[test]
    fn a_pin_from_the_overlay_is_named_and_the_point_id_does_not_say_where_from() {
        let via_overlay = Lockfiles::load(lock_dir(&[], &[(IMAGE, digest('b'))]).path()).unwrap();
        let via_tracked = Lockfiles::load(lock_dir(&[(IMAGE, digest('b'))], &[]).path()).unwrap();
        let both =
            Lockfiles::load(lock_dir(&[(IMAGE, digest('b'))], &[(IMAGE, digest('b'))]).path())
                .unwrap();
        let p = container_point(&via_overlay);
        assert_eq!(p.id(), container_point(&via_tracked).id());
        let pins = via_overlay.local_pins(&p);
        assert_eq!(pins.len(), 1, "{pins:?}");
        assert_eq!(
            (
                pins[0].lockfile.as_str(),
                pins[0].reference.as_str(),
                &pins[0].pin
            ),
            ("local/images.lock", IMAGE, &digest('b'))
        );
        assert!(via_tracked.local_pins(&p).is_empty());
        // The tracked lock vouches for the same value: not a local pin.
        assert!(both.local_pins(&p).is_empty());
    }
}
