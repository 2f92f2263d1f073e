//! Which hardware class this machine is, and whether it fits a point.
//!
//! A device is recognised by its name containing a class's
//! `device_name_fragment` (case-insensitive) at the start of a word, and none
//! of the class's `device_name_excludes` as a word: `NVIDIA GH200 480GB` is
//! not an H200, nor `NVIDIA H200 NVL` an H200 SXM. When several fragments
//! match, the longest wins. The machine's
//! class is the one its recognised devices agree on; devices no class knows
//! (a display adapter next to the accelerators) are left out of it.

use serde::{Deserialize, Serialize};

use super::ProbeError;
use super::gpu::GpuFacts;
use crate::spec::hardware::{self, CLASSES, HardwareClass, Vendor};

/// The class id of machines without accelerators.
const CPU: &str = "cpu";

/// The outcome of the fit check, as written to `environment.json`'s
/// `hardware` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareFit {
    /// The class the point is for.
    pub point_class: String,
    /// The class this machine was recognised as; `null` when none.
    pub detected_class: Option<String>,
    /// `true` when the classes differ and the run went ahead because
    /// `--allow-hardware-mismatch` was given.
    #[serde(rename = "override")]
    pub overridden: bool,
}

/// The class whose fragment is the longest one found in `name`, among the
/// classes of `vendor` (see the module's notes).
pub fn class_for_device(vendor: Vendor, name: &str) -> Option<&'static HardwareClass> {
    let name = name.to_lowercase();
    let words: Vec<&str> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    CLASSES
        .iter()
        .filter(|c| c.vendor == vendor && !c.device_name_fragment.is_empty())
        .filter(|c| starts_a_word(&name, &c.device_name_fragment.to_lowercase()))
        .filter(|c| {
            !c.device_name_excludes
                .iter()
                .any(|x| words.contains(&x.to_lowercase().as_str()))
        })
        .max_by_key(|c| c.device_name_fragment.len())
}

/// Whether `fragment` occurs in `name` where a word begins.
fn starts_a_word(name: &str, fragment: &str) -> bool {
    name.match_indices(fragment).any(|(i, _)| {
        name[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// Every accelerator as (vendor, reported name).
fn accelerators(gpus: &GpuFacts) -> impl Iterator<Item = (Vendor, Option<&str>)> {
    let nvidia = gpus
        .devices
        .iter()
        .map(|d| (Vendor::Nvidia, d.name.as_deref()));
    let amd = gpus
        .amd_devices
        .iter()
        .map(|d| (Vendor::Amd, d.product_name.as_deref()));
    nvidia.chain(amd)
}

/// This machine's hardware class: `cpu` without accelerators, the class its
/// recognised devices agree on, or `None` when no device is recognised or
/// they are of different classes (the reason is logged).
pub fn detect_class(gpus: &GpuFacts) -> Option<&'static str> {
    if gpus.accelerator_count() == 0 {
        return Some(CPU);
    }
    let mut found: Option<&'static str> = None;
    for (vendor, name) in accelerators(gpus) {
        match name.and_then(|n| class_for_device(vendor, n)) {
            None => tracing::info!(
                "probe: {vendor:?} device `{}` matches no hardware class; left out",
                name.unwrap_or("(name unknown)")
            ),
            Some(c) => match found {
                Some(f) if f != c.id => {
                    tracing::warn!("probe: devices of two classes, `{f}` and `{}`", c.id);
                    return None;
                }
                _ => found = Some(c.id),
            },
        }
    }
    if found.is_none() {
        tracing::warn!("probe: no accelerator of this machine matches a hardware class");
    }
    found
}

/// Accelerators that count towards a point for `point_class`: the devices
/// recognised as that class, or every accelerator when the machine is not
/// of that class (an override runs on whatever is there).
fn usable_count(gpus: &GpuFacts, point_class: &str, detected: Option<&str>) -> usize {
    if detected != Some(point_class) {
        return gpus.accelerator_count();
    }
    accelerators(gpus)
        .filter(|(vendor, name)| {
            name.and_then(|n| class_for_device(*vendor, n))
                .is_some_and(|c| c.id == point_class)
        })
        .count()
}

/// Detects this machine's class from `gpus` and checks it fits a point that
/// needs `gpus_needed` devices of `point_class`; see [`check_fit`].
pub fn fit(
    gpus: &GpuFacts,
    point_class: &str,
    gpus_needed: u32,
    allow_mismatch: bool,
) -> Result<HardwareFit, ProbeError> {
    let detected = detect_class(gpus);
    let count = usable_count(gpus, point_class, detected);
    check_fit(point_class, gpus_needed, detected, count, allow_mismatch)
}

/// Checks a machine recognised as `detected` with `gpu_count` usable
/// accelerators against a point. A different class (or none) is refused
/// unless `allow_mismatch`, in which case the fit records the override. Too
/// few accelerators are refused either way: the engine could not start.
pub fn check_fit(
    point_class: &str,
    gpus_needed: u32,
    detected: Option<&str>,
    gpu_count: usize,
    allow_mismatch: bool,
) -> Result<HardwareFit, ProbeError> {
    if hardware::class(point_class).is_none() {
        return Err(ProbeError::UnknownClass {
            class: point_class.to_string(),
            expected: hardware::class_ids()
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let overridden = detected != Some(point_class);
    if overridden {
        if !allow_mismatch {
            return Err(ProbeError::WrongHardware {
                point_class: point_class.to_string(),
                detected: match detected {
                    Some(CPU) => "is `cpu` (it has no accelerator)".to_string(),
                    Some(class) => format!("is `{class}`"),
                    None => "matches no known hardware class".to_string(),
                },
            });
        }
        tracing::warn!(
            "hardware mismatch allowed: the point is for `{point_class}`, this machine is {}",
            detected.map_or("of no known class".to_string(), |d| format!("`{d}`"))
        );
    }
    if gpu_count < gpus_needed as usize {
        return Err(ProbeError::TooFewGpus {
            point_class: point_class.to_string(),
            needed: gpus_needed,
            found: gpu_count,
        });
    }
    Ok(HardwareFit {
        point_class: point_class.to_string(),
        detected_class: detected.map(str::to_string),
        overridden,
    })
}

#[cfg(test)]
mod tests {
    use super::super::gpu::tests::{amd, nvidia};
    use super::*;

    #[test]
    fn device_names_match_the_longest_fragment() {
        for (vendor, name, class) in [
            (Vendor::Nvidia, "NVIDIA H200", Some("nvidia-h200-sxm")),
            (Vendor::Nvidia, "NVIDIA GB200", Some("nvidia-gb200")),
            (Vendor::Nvidia, "NVIDIA B200", Some("nvidia-b200")),
            (
                Vendor::Nvidia,
                "NVIDIA H100 80GB HBM3",
                Some("nvidia-h100-sxm"),
            ),
            (
                Vendor::Nvidia,
                "nvidia h100 80gb hbm3",
                Some("nvidia-h100-sxm"),
            ),
            (
                Vendor::Nvidia,
                "NVIDIA A100-SXM4-80GB",
                Some("nvidia-a100-sxm"),
            ),
            (Vendor::Nvidia, "NVIDIA H100 PCIe", None),
            // Other products that carry a class's fragment.
            (Vendor::Nvidia, "NVIDIA GH200 480GB", None),
            (Vendor::Nvidia, "NVIDIA GH200 144G HBM3e", None),
            (Vendor::Nvidia, "NVIDIA H200 NVL", None),
            (Vendor::Nvidia, "NVIDIA A100-SXM4-40GB", None),
            (Vendor::Nvidia, "NVIDIA A100 80GB PCIe", None),
            (Vendor::Nvidia, "NVIDIA L40S", None),
            (Vendor::Amd, "AMD Instinct MI300X", Some("amd-mi300x")),
            (Vendor::Amd, "AMD Instinct MI325X", Some("amd-mi325x")),
            (Vendor::Amd, "AMD Instinct MI355X", Some("amd-mi355x")),
            // A name is only matched against its own vendor's classes.
            (Vendor::Amd, "NVIDIA H200", None),
            (Vendor::Nvidia, "AMD Instinct MI300X", None),
        ] {
            assert_eq!(
                class_for_device(vendor, name).map(|c| c.id),
                class,
                "{name}"
            );
        }
    }

    #[test]
    fn machine_classes_from_fabricated_devices() {
        assert_eq!(detect_class(&nvidia(&[])), Some("cpu"));
        assert_eq!(detect_class(&amd(&[])), Some("cpu"));
        assert_eq!(
            detect_class(&nvidia(&["NVIDIA H200"; 8])),
            Some("nvidia-h200-sxm")
        );
        assert_eq!(
            detect_class(&nvidia(&["NVIDIA GB200"; 4])),
            Some("nvidia-gb200")
        );
        assert_eq!(
            detect_class(&nvidia(&["NVIDIA H100 80GB HBM3"; 2])),
            Some("nvidia-h100-sxm")
        );
        assert_eq!(
            detect_class(&amd(&[Some("AMD Instinct MI300X"); 8])),
            Some("amd-mi300x")
        );
        // Unknown devices alone: no class. Beside known ones: left out.
        assert_eq!(detect_class(&nvidia(&["NVIDIA L40S"])), None);
        assert_eq!(detect_class(&amd(&[None])), None);
        assert_eq!(
            detect_class(&amd(&[None, Some("AMD Instinct MI300X")])),
            Some("amd-mi300x")
        );
        // Two classes in one machine is no class.
        assert_eq!(detect_class(&nvidia(&["NVIDIA H200", "NVIDIA B200"])), None);
        let mut mixed = nvidia(&["NVIDIA H200"]);
        mixed.amd_devices = amd(&[Some("AMD Instinct MI300X")]).amd_devices;
        assert_eq!(detect_class(&mixed), None);
    }

    #[test]
    fn fit_table() {
        // (point class, GPUs needed, detected class, GPUs found, allow mismatch,
        //  Ok(override recorded) or Err(a fragment of the message))
        type Case = (
            &'static str,
            u32,
            Option<&'static str>,
            usize,
            bool,
            Result<bool, &'static str>,
        );
        const H200: &str = "nvidia-h200-sxm";
        const H100: &str = "nvidia-h100-sxm";
        #[rustfmt::skip]
        let cases: [Case; 13] = [
            ("cpu", 0, Some("cpu"), 0, false, Ok(false)),
            (H200, 8, Some(H200), 8, false, Ok(false)),
            (H200, 1, Some(H200), 8, false, Ok(false)),
            (H200, 8, Some(H100), 8, false, Err("this machine is `nvidia-h100-sxm`")),
            (H200, 8, Some(H100), 8, true, Ok(true)),
            (H200, 1, Some("cpu"), 0, false, Err("is `cpu` (it has no accelerator)")),
            (H200, 1, None, 1, false, Err("matches no known hardware class")),
            (H200, 1, None, 1, true, Ok(true)),
            ("cpu", 0, Some(H200), 8, false, Err("the point is for `cpu`")),
            ("cpu", 0, Some(H200), 8, true, Ok(true)),
            (H200, 8, Some(H200), 4, false, Err("needs 8 `nvidia-h200-sxm` GPU(s) but this machine has 4")),
            (H200, 8, Some(H100), 4, true, Err("has 4")),
            ("nvidia-h300", 1, Some("cpu"), 0, true, Err("hardware class `nvidia-h300` is not known")),
        ];
        for (i, (point, needed, detected, count, allow, expect)) in cases.into_iter().enumerate() {
            let got = check_fit(point, needed, detected, count, allow);
            match (&got, expect) {
                (Ok(fit), Ok(overridden)) => {
                    assert_eq!(fit.overridden, overridden, "case {i}");
                    assert_eq!(fit.point_class, point, "case {i}");
                    assert_eq!(fit.detected_class.as_deref(), detected, "case {i}");
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "case {i}: {e}")
                }
                _ => panic!("case {i}: got {got:?}, expected {expect:?}"),
            }
        }
    }

    #[test]
    fn a_mismatch_names_both_classes_the_flag_and_the_record() {
        let e = check_fit("nvidia-b200", 8, Some("nvidia-gb200"), 4, false).expect_err("mismatch");
        insta::assert_snapshot!(e.to_string(), @"the point is for `nvidia-b200` hardware but this machine is `nvidia-gb200`; run it on `nvidia-b200` hardware, or pass `--allow-hardware-mismatch` to run it here anyway (the run's environment and provenance statement will record the override)");
    }

    #[test]
    fn an_override_is_recorded_in_the_hardware_object() {
        let fit =
            check_fit("nvidia-h200-sxm", 1, Some("nvidia-h100-sxm"), 8, true).expect("allowed");
        assert_eq!(
            serde_json::to_value(&fit).expect("serialise"),
            serde_json::json!({
                "point_class": "nvidia-h200-sxm",
                "detected_class": "nvidia-h100-sxm",
                "override": true
            })
        );
    }

    #[test]
    fn fit_counts_only_devices_of_the_point_class() {
        let mut machine = nvidia(&["NVIDIA H200"; 2]);
        machine.amd_devices = amd(&[None]).amd_devices;
        let ok = fit(&machine, "nvidia-h200-sxm", 2, false).expect("two H200");
        assert!(!ok.overridden);
        let e = fit(&machine, "nvidia-h200-sxm", 3, false).expect_err("only two");
        assert!(e.to_string().contains("this machine has 2"), "{e}");
        // An override runs on whatever is there: every accelerator counts.
        let over = fit(&machine, "nvidia-b200", 3, true).expect("override");
        assert!(over.overridden);
        assert_eq!(over.detected_class.as_deref(), Some("nvidia-h200-sxm"));
    }

    #[test]
    fn a_machine_without_accelerators_fits_cpu_points() {
        let fit = fit(&amd(&[]), "cpu", 0, false).expect("cpu");
        assert_eq!(fit.detected_class.as_deref(), Some("cpu"));
        assert!(!fit.overridden);
    }
}
