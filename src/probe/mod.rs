//! What machine a run happens on, and whether it fits the point.
//!
//! A published number is only as good as the record of where it was
//! measured. This module owns those observations: the host (`host`), the
//! accelerators (`gpus`: NVIDIA through NVML, AMD through sysfs), the GPUs'
//! energy counters over a run (`EnergyMeter`), which hardware class the
//! machine belongs to and whether that fits the point (`detect_class`,
//! `check_fit`), and the `environment.json` document that carries all of it
//! beside every run (`Environment`).
//!
//! Observing never fails a run: a fact that cannot be read is recorded as
//! unknown (and the reason logged). Only the fit check refuses, because a
//! number measured on the wrong hardware must not be published as if it were
//! not.
//!
//! NVML is loaded at run time, so one binary serves machines with and without
//! an NVIDIA driver. Reading NVML is kept apart from turning its readings into
//! facts, so the mapping and the class matching are testable without a GPU.
//!
//! The environment's engine facts (executable and model file, with their
//! sha256) come from the engine that ran ([`crate::engine::EngineFacts`]),
//! hashed through [`crate::digest::sha256_file`].

mod energy;
mod environment;
mod fit;
mod gpu;
mod host;

pub use energy::{Energy, EnergyMeter};
pub use environment::{ENVIRONMENT_FORMAT, Environment, Harness};
pub use fit::{HardwareFit, check_fit, class_for_device, detect_class, fit};
pub use gpu::{AmdDevice, Clocks, GpuDevice, GpuFacts, GpuStatus, Pcie, gpus};
pub use host::{HostFacts, host};

/// Why a machine does not fit a point, or an environment document cannot be
/// read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("hardware class `{class}` is not known; expected one of {expected}")]
    UnknownClass { class: String, expected: String },

    #[error(
        "the point is for `{point_class}` hardware but this machine {detected}; run it on \
         `{point_class}` hardware, or pass `--allow-hardware-mismatch` to run it here anyway \
         (the run's environment and provenance statement will record the override)"
    )]
    WrongHardware {
        point_class: String,
        /// How the machine was classified, phrased to follow "this machine".
        detected: String,
    },

    #[error(
        "the point needs {needed} `{point_class}` GPU(s) but this machine has {found}; run it \
         on a machine with at least {needed}"
    )]
    TooFewGpus {
        point_class: String,
        needed: u32,
        found: usize,
    },

    #[error(
        "environment.json: format `{found}` is not supported; this infermark reads \
         `{ENVIRONMENT_FORMAT}` (a newer infermark may read it)"
    )]
    UnknownFormat { found: String },

    #[error("environment.json: not valid JSON: {0}")]
    EnvironmentJson(serde_json::Error),

    #[error("environment.json: `format`: missing or not a string; expected `{ENVIRONMENT_FORMAT}`")]
    MissingFormat,

    /// A key of a known format holds the wrong thing (`message` names it).
    #[error("environment.json: {message}")]
    Environment { message: String },
}
