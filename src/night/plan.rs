//! A night split for existing schedulers: one job per group (one engine
//! start), written as a GitHub Actions matrix, a Slurm array-job script or
//! Kubernetes Job manifests. Every job runs the same thing on a runner of
//! its hardware class: `nix run .#nightly -- --only GROUP`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::run::pipeline::RunOptions;
use crate::spec::hardware::{self, Vendor};
use crate::spec::reference::ImageRef;

use super::{NightError, select};

/// The scheduler a plan is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFormat<'a> {
    /// `{"include":[...]}` for a GitHub Actions `strategy.matrix`.
    GithubMatrix,
    /// An sbatch array-job script (one hardware class per script).
    Slurm,
    /// Kubernetes `batch/v1` Job manifests, one YAML document per group.
    K8s {
        /// The container image (it must hold Nix and the repository at `workdir`).
        image: &'a str,
        /// The repository checkout inside the image.
        workdir: &'a str,
    },
}

/// What `infermark plan` asks for.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// Experiments root, with one directory per hardware class.
    pub experiments: &'a Path,
    /// Classes to plan; every class directory under `experiments` when empty.
    pub hardware: &'a [String],
    /// `--lock-dir`, else the nearest `lockfiles/` above the experiments.
    pub lock_dir: Option<PathBuf>,
    pub format: JobFormat<'a>,
}

/// The night's jobs for `request.format`: every group of every class
/// planned, as the scheduler's text.
pub fn jobs(request: &PlanRequest) -> Result<String, NightError> {
    let classes = if request.hardware.is_empty() {
        class_dirs(request.experiments)?
    } else {
        request.hardware.to_vec()
    };
    let groups = plan_groups(request.experiments, &classes, request.lock_dir.clone())?;
    Ok(match request.format {
        JobFormat::GithubMatrix => github_matrix(&groups),
        JobFormat::Slurm => slurm(&groups)?,
        JobFormat::K8s { image, workdir } => {
            let parsed = ImageRef::parse(image).map_err(NightError::BadImage)?;
            if parsed.digest.is_none() {
                // The Jobs still run what the lock pins; a moved tag changes
                // the Nix that builds the harness, which the flake pins in
                // turn, but not which runner a night says it ran on.
                tracing::warn!(
                    "--image `{image}` names the runner image by tag, which can be moved to other \
                     content between nights; pin it by digest, `--image {}@sha256:<digest>` \
                     (`docker inspect --format '{{{{index .RepoDigests 0}}}}' {image}` prints it)",
                    parsed.name(),
                );
            }
            k8s(&groups, image, workdir)
        }
    })
}

/// The groups (engine starts) of each class's night, in class order.
pub fn plan_groups(
    experiments: &Path,
    classes: &[String],
    lock_dir: Option<PathBuf>,
) -> Result<Vec<PlanGroup>, NightError> {
    let opts = RunOptions::planning(lock_dir);
    let mut groups = Vec::new();
    for class in classes {
        let class = select::hardware_class(Some(class))?;
        let night = select::plan(experiments, &class, &opts)?;
        for g in &night.groups {
            let first = &g.points[0].point.spec;
            groups.push(PlanGroup {
                id: g.id.clone(),
                hardware: class.clone(),
                gpus: first.hardware.gpus,
                engine: format!("{} ({})", first.engine.kind, first.engine.runtime),
                model: first.model.served_name().to_string(),
                points: g.points.len(),
            });
        }
    }
    Ok(groups)
}

/// The hardware-class directories under the experiments root, sorted.
fn class_dirs(experiments: &Path) -> Result<Vec<String>, NightError> {
    let entries = std::fs::read_dir(experiments).map_err(|source| NightError::Read {
        path: experiments.to_path_buf(),
        source,
    })?;
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| hardware::CLASSES.iter().any(|c| c.id == n))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(NightError::NoClasses(experiments.to_path_buf()));
    }
    Ok(out)
}

/// One engine start of the night.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanGroup {
    /// `run::pipeline::group_id`.
    pub id: String,
    pub hardware: String,
    /// Accelerators the engine uses (0 on CPU).
    pub gpus: u32,
    /// `vllm (docker)`, for job names.
    pub engine: String,
    /// The served model name, for job names.
    pub model: String,
    pub points: usize,
}

impl PlanGroup {
    fn name(&self) -> String {
        format!(
            "{} {} {} ({} point{})",
            self.hardware,
            self.engine,
            self.model,
            self.points,
            if self.points == 1 { "" } else { "s" }
        )
    }
}

/// The command every job runs, for one group.
pub fn job_command(group: &str) -> [String; 6] {
    ["nix", "run", ".#nightly", "--", "--only", group].map(String::from)
}

/// `{"include": [...]}` for `strategy.matrix: ${{ fromJSON(...) }}`: one
/// entry per group, runs-on the self-hosted runners labelled by its class.
pub fn github_matrix(groups: &[PlanGroup]) -> String {
    #[derive(Serialize)]
    struct Entry<'a> {
        group: &'a str,
        hardware: &'a str,
        #[serde(rename = "runs-on")]
        runs_on: [&'a str; 2],
        points: usize,
        name: String,
    }
    #[derive(Serialize)]
    struct Matrix<'a> {
        include: Vec<Entry<'a>>,
    }
    let m = Matrix {
        include: groups
            .iter()
            .map(|g| Entry {
                group: &g.id,
                hardware: &g.hardware,
                runs_on: ["self-hosted", &g.hardware],
                points: g.points,
                name: g.name(),
            })
            .collect(),
    };
    let mut s = serde_json::to_string(&m).unwrap_or_default();
    s.push('\n');
    s
}

/// An sbatch array-job script: task i runs group i. Slurm jobs share one
/// resource request, so every group must be of one hardware class (plan one
/// class per script); the GPU count is the largest any group needs.
pub fn slurm(groups: &[PlanGroup]) -> Result<String, NightError> {
    let Some(first) = groups.first() else {
        return Err(NightError::NoGroups);
    };
    let mut classes: Vec<&str> = groups.iter().map(|g| g.hardware.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() > 1 {
        return Err(NightError::MixedClasses(classes.join(", ")));
    }
    let class = first.hardware.as_str();
    let gpus = groups.iter().map(|g| g.gpus).max().unwrap_or(0);
    let mut s = String::new();
    s.push_str("#!/usr/bin/env bash\n");
    s.push_str(&format!("#SBATCH --job-name=infermark-nightly-{class}\n"));
    s.push_str(&format!("#SBATCH --array=0-{}\n", groups.len() - 1));
    // Nodes of the class carry it as a feature, as runners carry it as a label.
    s.push_str(&format!("#SBATCH --constraint={class}\n"));
    if gpus > 0 {
        s.push_str(&format!("#SBATCH --gres=gpu:{gpus}\n"));
    }
    s.push_str("#SBATCH --output=infermark-nightly-%A_%a.log\n");
    s.push_str("# One task per engine start; each runs the nightly for its group only.\n");
    s.push_str("set -euo pipefail\n");
    // Not `GROUPS`: bash reserves that name and ignores assignments to it.
    s.push_str("NIGHT_GROUPS=(\n");
    for g in groups {
        s.push_str(&format!("  {}  # {}\n", shell_word(&g.id), g.name()));
    }
    s.push_str(")\n");
    s.push_str("exec nix run .#nightly -- --only \"${NIGHT_GROUPS[$SLURM_ARRAY_TASK_ID]}\"\n");
    Ok(s)
}

/// One `batch/v1` Job per group, as YAML documents. Nodes are selected by
/// the `infermark.dev/hardware-class` label; GPUs requested as the vendor's
/// device-plugin resource. The image must hold Nix and the repository
/// checkout at the working directory.
pub fn k8s(groups: &[PlanGroup], image: &str, workdir: &str) -> String {
    let mut s = String::new();
    for g in groups {
        let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
        s.push_str("---\n");
        s.push_str(&format!("# {}\n", g.name()));
        s.push_str("apiVersion: batch/v1\nkind: Job\nmetadata:\n");
        s.push_str(&format!(
            "  name: {}\n",
            q(&format!("infermark-nightly-{}", g.id))
        ));
        s.push_str("  labels:\n");
        s.push_str("    app.kubernetes.io/name: infermark\n");
        s.push_str(&format!("    infermark.dev/group: {}\n", q(&g.id)));
        s.push_str(&format!(
            "    infermark.dev/hardware-class: {}\n",
            q(&g.hardware)
        ));
        s.push_str("spec:\n  backoffLimit: 0\n  template:\n    metadata:\n      labels:\n");
        s.push_str(&format!("        infermark.dev/group: {}\n", q(&g.id)));
        s.push_str("    spec:\n      restartPolicy: Never\n      nodeSelector:\n");
        s.push_str(&format!(
            "        infermark.dev/hardware-class: {}\n",
            q(&g.hardware)
        ));
        s.push_str("      containers:\n        - name: nightly\n");
        s.push_str(&format!("          image: {}\n", q(image)));
        s.push_str(&format!("          workingDir: {}\n", q(workdir)));
        let cmd: Vec<String> = job_command(&g.id).iter().map(|a| q(a)).collect();
        s.push_str(&format!("          command: [{}]\n", cmd.join(", ")));
        if let Some(resource) = gpu_resource(&g.hardware)
            && g.gpus > 0
        {
            s.push_str("          resources:\n            limits:\n");
            s.push_str(&format!("              {resource}: {}\n", g.gpus));
        }
    }
    s
}

/// The device-plugin resource of a class's accelerators.
fn gpu_resource(class: &str) -> Option<&'static str> {
    match hardware::CLASSES.iter().find(|c| c.id == class)?.vendor {
        Vendor::Nvidia => Some("nvidia.com/gpu"),
        Vendor::Amd => Some("amd.com/gpu"),
        Vendor::Cpu => None,
    }
}

/// A group id is hex, but quote anything else that might reach a script.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, hardware: &str, gpus: u32) -> PlanGroup {
        PlanGroup {
            id: id.to_string(),
            hardware: hardware.to_string(),
            gpus,
            engine: "vllm (docker)".to_string(),
            model: "m".to_string(),
            points: 3,
        }
    }

    #[test]
    fn slurm_asks_for_the_largest_gpu_count_and_refuses_mixed_classes() {
        let s = slurm(&[
            group("aa", "nvidia-h100-sxm", 8),
            group("bb", "nvidia-h100-sxm", 4),
        ])
        .unwrap();
        assert!(s.contains("#SBATCH --array=0-1\n"), "{s}");
        assert!(s.contains("#SBATCH --gres=gpu:8\n"), "{s}");
        assert!(s.contains("  aa  # "), "{s}");
        assert!(slurm(&[group("aa", "cpu", 0), group("bb", "amd-mi300x", 8)]).is_err());
        assert!(slurm(&[]).is_err());
        assert!(!slurm(&[group("aa", "cpu", 0)]).unwrap().contains("--gres"));
    }

    #[test]
    fn k8s_requests_the_vendors_gpu_resource() {
        let y = k8s(
            &[
                group("aa", "amd-mi300x", 8),
                group("bb", "nvidia-b200", 8),
                group("cc", "cpu", 0),
            ],
            "nixos/nix",
            "/src",
        );
        assert_eq!(y.matches("kind: Job").count(), 3);
        assert!(y.contains("amd.com/gpu: 8"), "{y}");
        assert!(y.contains("nvidia.com/gpu: 8"), "{y}");
        assert_eq!(y.matches("resources:").count(), 2, "none for cpu");
    }
}
