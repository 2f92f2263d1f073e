//! Accelerator facts: NVIDIA GPUs through NVML, AMD GPUs through sysfs.
//!
//! Two layers. `read_nvml` and `read_amd_devices` only talk to the driver
//! and the file system and keep every answer as it came (a value or the
//! error). `facts_from` turns those readings into `GpuFacts`: each
//! failed call becomes `null` (with the reason logged), never a guess. The
//! second layer is what the tests exercise with fabricated readings.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::error::NvmlError;
use serde::{Deserialize, Serialize};

/// Where the kernel lists DRM devices (one `card<N>` per GPU).
const DRM_ROOT: &str = "/sys/class/drm";
/// PCI vendor id of AMD (ATI) devices.
const AMD_PCI_VENDOR: &str = "0x1002";

/// Whether NVML answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuStatus {
    Present,
    Absent,
}

/// The accelerators of this machine, as written to `environment.json`'s
/// `gpus` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuFacts {
    /// `present` when NVML initialised (even with no device), else `absent`.
    pub status: GpuStatus,
    /// Why NVML is absent, or what failed while it was present.
    pub reason: Option<String>,
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, `major.minor`.
    pub cuda_driver_version: Option<String>,
    /// NVIDIA devices in NVML's order.
    pub devices: Vec<GpuDevice>,
    /// AMD devices found in sysfs, in card order.
    #[serde(default)]
    pub amd_devices: Vec<AmdDevice>,
}

/// One NVIDIA device. Every field but `index` is `null` when its NVML call
/// failed (older devices do not support every query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// Position in NVML's enumeration.
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub serial: Option<String>,
    pub vbios_version: Option<String>,
    pub memory_total_bytes: Option<u64>,
    /// Power management limit in milliwatts.
    pub power_limit_mw: Option<u32>,
    /// The power limit actually enforced, in milliwatts.
    pub enforced_power_limit_mw: Option<u32>,
    pub clocks: Clocks,
    pub ecc_enabled: Option<bool>,
    /// Whether multi-instance GPU mode is currently enabled.
    pub mig_mode: Option<bool>,
    pub persistence_mode: Option<bool>,
    pub pcie: Pcie,
    /// CUDA compute capability, `major.minor`.
    pub compute_capability: Option<String>,
}

/// Current and maximum clocks in MHz.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    pub sm_mhz: Option<u32>,
    pub mem_mhz: Option<u32>,
    pub max_sm_mhz: Option<u32>,
    pub max_mem_mhz: Option<u32>,
}

/// Current PCIe link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pcie {
    #[serde(rename = "gen")]
    pub generation: Option<u32>,
    pub width: Option<u32>,
}

/// One AMD device from sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmdDevice {
    /// DRM card name, e.g. `card0`.
    pub card: String,
    /// Marketing name from `device/product_name` (written by amdgpu for
    /// Instinct parts), `null` when the driver does not provide it.
    pub product_name: Option<String>,
    /// PCI device id, e.g. `0x74a1`.
    pub pci_device_id: Option<String>,
}

impl GpuFacts {
    /// All accelerators seen, NVIDIA and AMD.
    pub fn accelerator_count(&self) -> usize {
        self.devices.len() + self.amd_devices.len()
    }
}

/// Observes this machine's accelerators. Never fails and never panics: with
/// no NVIDIA driver the result is `absent` with NVML's error as the reason.
pub fn gpus() -> GpuFacts {
    gpus_with(None, Path::new(DRM_ROOT))
}

/// `gpus` with NVML loaded from `nvml_lib` (default: the driver's soname)
/// and AMD devices read under `drm_root`.
pub(super) fn gpus_with(nvml_lib: Option<&OsStr>, drm_root: &Path) -> GpuFacts {
    let nvml = init_nvml(nvml_lib).map(|nvml| read_nvml(&nvml));
    facts_from(nvml, read_amd_devices(drm_root))
}

/// Loads and initialises NVML.
pub(super) fn init_nvml(lib: Option<&OsStr>) -> Result<Nvml, NvmlError> {
    match lib {
        None => Nvml::init(),
        Some(path) => Nvml::builder().lib_path(path).init(),
    }
}

/// An NVML call's error, shown as NVML's own text. Shared: a device whose
/// handle failed leaves every one of its readings failed with that error.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub(super) struct NvmlFailure(Arc<NvmlError>);

impl From<NvmlError> for NvmlFailure {
    fn from(e: NvmlError) -> Self {
        NvmlFailure(Arc::new(e))
    }
}

/// An NVML answer as it came: the value or the error.
pub(super) type Reading<T> = Result<T, NvmlFailure>;

/// What NVML said about the system.
#[derive(Debug, Clone)]
pub(super) struct SystemReadings {
    pub driver_version: Reading<String>,
    /// As NVML encodes it: `1000 * major + 10 * minor`.
    pub cuda_driver_version: Reading<i32>,
    pub devices: Reading<Vec<DeviceReadings>>,
}

/// What NVML said about one device.
#[derive(Debug, Clone)]
pub(super) struct DeviceReadings {
    pub index: u32,
    pub name: Reading<String>,
    pub uuid: Reading<String>,
    pub serial: Reading<String>,
    pub vbios_version: Reading<String>,
    pub memory_total_bytes: Reading<u64>,
    pub power_limit_mw: Reading<u32>,
    pub enforced_power_limit_mw: Reading<u32>,
    pub sm_mhz: Reading<u32>,
    pub mem_mhz: Reading<u32>,
    pub max_sm_mhz: Reading<u32>,
    pub max_mem_mhz: Reading<u32>,
    pub ecc_enabled: Reading<bool>,
    /// NVML's current MIG mode: 1 enabled, 0 disabled.
    pub mig_mode: Reading<u32>,
    pub persistence_mode: Reading<bool>,
    pub pcie_gen: Reading<u32>,
    pub pcie_width: Reading<u32>,
    /// (major, minor)
    pub compute_capability: Reading<(i32, i32)>,
}

impl DeviceReadings {
    /// Every reading failed with `why` (the device handle itself failed).
    pub fn failed(index: u32, why: NvmlFailure) -> Self {
        fn e<T>(why: &NvmlFailure) -> Reading<T> {
            Err(why.clone())
        }
        DeviceReadings {
            index,
            name: e(&why),
            uuid: e(&why),
            serial: e(&why),
            vbios_version: e(&why),
            memory_total_bytes: e(&why),
            power_limit_mw: e(&why),
            enforced_power_limit_mw: e(&why),
            sm_mhz: e(&why),
            mem_mhz: e(&why),
            max_sm_mhz: e(&why),
            max_mem_mhz: e(&why),
            ecc_enabled: e(&why),
            mig_mode: e(&why),
            persistence_mode: e(&why),
            pcie_gen: e(&why),
            pcie_width: e(&why),
            compute_capability: e(&why),
        }
    }
}

fn text<T>(r: Result<T, NvmlError>) -> Reading<T> {
    r.map_err(NvmlFailure::from)
}

/// Asks NVML everything `GpuFacts` records.
pub(super) fn read_nvml(nvml: &Nvml) -> SystemReadings {
    let devices = text(nvml.device_count()).map(|count| {
        (0..count)
            .map(|index| match nvml.device_by_index(index) {
                Err(e) => DeviceReadings::failed(index, e.into()),
                Ok(d) => DeviceReadings {
                    index,
                    name: text(d.name()),
                    uuid: text(d.uuid()),
                    serial: text(d.serial()),
                    vbios_version: text(d.vbios_version()),
                    memory_total_bytes: text(d.memory_info().map(|m| m.total)),
                    power_limit_mw: text(d.power_management_limit()),
                    enforced_power_limit_mw: text(d.enforced_power_limit()),
                    sm_mhz: text(d.clock_info(Clock::SM)),
                    mem_mhz: text(d.clock_info(Clock::Memory)),
                    max_sm_mhz: text(d.max_clock_info(Clock::SM)),
                    max_mem_mhz: text(d.max_clock_info(Clock::Memory)),
                    ecc_enabled: text(d.is_ecc_enabled().map(|e| e.currently_enabled)),
                    mig_mode: text(d.mig_mode().map(|m| m.current)),
                    persistence_mode: text(d.is_in_persistent_mode()),
                    pcie_gen: text(d.current_pcie_link_gen()),
                    pcie_width: text(d.current_pcie_link_width()),
                    compute_capability: text(
                        d.cuda_compute_capability().map(|c| (c.major, c.minor)),
                    ),
                },
            })
            .collect()
    });
    SystemReadings {
        driver_version: text(nvml.sys_driver_version()),
        cuda_driver_version: text(nvml.sys_cuda_driver_version()),
        devices,
    }
}

/// Turns NVML's readings (or the reason NVML could not start) and the AMD
/// devices into facts.
pub(super) fn facts_from(
    nvml: Result<SystemReadings, NvmlError>,
    amd_devices: Vec<AmdDevice>,
) -> GpuFacts {
    let s = match nvml {
        Err(e) => {
            tracing::info!("gpus: NVML not available: {e}");
            return GpuFacts {
                status: GpuStatus::Absent,
                reason: Some(format!("NVML not available: {e}")),
                driver_version: None,
                cuda_driver_version: None,
                devices: Vec::new(),
                amd_devices,
            };
        }
        Ok(s) => s,
    };
    let (devices, reason) = match s.devices {
        Ok(devices) => (devices.into_iter().map(device_facts).collect(), None),
        Err(e) => {
            tracing::warn!("gpus: NVML could not count devices: {e}");
            (
                Vec::new(),
                Some(format!("NVML could not count devices: {e}")),
            )
        }
    };
    GpuFacts {
        status: GpuStatus::Present,
        reason,
        driver_version: fact("system", "driver_version", s.driver_version),
        cuda_driver_version: fact("system", "cuda_driver_version", s.cuda_driver_version)
            .map(cuda_version),
        devices,
        amd_devices,
    }
}

/// `12040` → `12.4`, NVML's encoding of CUDA versions.
fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

fn fact<T>(whose: &str, field: &str, r: Reading<T>) -> Option<T> {
    r.map_err(|e| tracing::debug!("gpus: {whose}: {field} unknown: {e}"))
        .ok()
}

fn device_facts(r: DeviceReadings) -> GpuDevice {
    let who = format!("device {}", r.index);
    GpuDevice {
        index: r.index,
        name: fact(&who, "name", r.name),
        uuid: fact(&who, "uuid", r.uuid),
        serial: fact(&who, "serial", r.serial),
        vbios_version: fact(&who, "vbios_version", r.vbios_version),
        memory_total_bytes: fact(&who, "memory_total_bytes", r.memory_total_bytes),
        power_limit_mw: fact(&who, "power_limit_mw", r.power_limit_mw),
        enforced_power_limit_mw: fact(&who, "enforced_power_limit_mw", r.enforced_power_limit_mw),
        clocks: Clocks {
            sm_mhz: fact(&who, "clocks.sm_mhz", r.sm_mhz),
            mem_mhz: fact(&who, "clocks.mem_mhz", r.mem_mhz),
            max_sm_mhz: fact(&who, "clocks.max_sm_mhz", r.max_sm_mhz),
            max_mem_mhz: fact(&who, "clocks.max_mem_mhz", r.max_mem_mhz),
        },
        ecc_enabled: fact(&who, "ecc_enabled", r.ecc_enabled),
        mig_mode: fact(&who, "mig_mode", r.mig_mode).map(|m| m != 0),
        persistence_mode: fact(&who, "persistence_mode", r.persistence_mode),
        pcie: Pcie {
            generation: fact(&who, "pcie.gen", r.pcie_gen),
            width: fact(&who, "pcie.width", r.pcie_width),
        },
        compute_capability: fact(&who, "compute_capability", r.compute_capability)
            .map(|(major, minor)| format!("{major}.{minor}")),
    }
}

/// AMD GPUs under a DRM root: `card<N>` entries whose `device/vendor` is
/// AMD's PCI id. Connector entries (`card0-DP-1`) and other vendors are
/// skipped; an unreadable root means no AMD device.
pub(super) fn read_amd_devices(drm_root: &Path) -> Vec<AmdDevice> {
    let entries = match std::fs::read_dir(drm_root) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::debug!("gpus: no AMD devices: {}: {e}", drm_root.display());
            return Vec::new();
        }
    };
    let mut cards: Vec<(u32, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("card")?.parse::<u32>().ok()?;
            Some((n, name))
        })
        .collect();
    cards.sort();
    let read = |card: &str, file: &str| {
        std::fs::read_to_string(drm_root.join(card).join("device").join(file))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    cards
        .into_iter()
        .filter(|(_, card)| {
            read(card, "vendor").is_some_and(|v| v.eq_ignore_ascii_case(AMD_PCI_VENDOR))
        })
        .map(|(_, card)| AmdDevice {
            product_name: read(&card, "product_name"),
            pci_device_id: read(&card, "device"),
            card,
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Readings of a healthy device called `name`.
    pub(crate) fn readings(index: u32, name: &str) -> DeviceReadings {
        DeviceReadings {
            index,
            name: Ok(name.to_string()),
            uuid: Ok(format!("GPU-0000000{index}-1111-2222-3333-444444444444")),
            serial: Ok(format!("132002400000{index}")),
            vbios_version: Ok("96.00.99.00.01".into()),
            memory_total_bytes: Ok(150_754_820_096),
            power_limit_mw: Ok(700_000),
            enforced_power_limit_mw: Ok(700_000),
            sm_mhz: Ok(1980),
            mem_mhz: Ok(2619),
            max_sm_mhz: Ok(1980),
            max_mem_mhz: Ok(2619),
            ecc_enabled: Ok(true),
            mig_mode: Ok(0),
            persistence_mode: Ok(true),
            pcie_gen: Ok(5),
            pcie_width: Ok(16),
            compute_capability: Ok((9, 0)),
        }
    }

    /// NVML facts of healthy devices with these names.
    pub(crate) fn nvidia(names: &[&str]) -> GpuFacts {
        facts_from(
            Ok(SystemReadings {
                driver_version: Ok("570.124.06".into()),
                cuda_driver_version: Ok(12080),
                devices: Ok(names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| readings(i as u32, n))
                    .collect()),
            }),
            Vec::new(),
        )
    }

    /// Facts of a machine with no NVML and these AMD product names.
    pub(crate) fn amd(names: &[Option<&str>]) -> GpuFacts {
        let devices = names
            .iter()
            .enumerate()
            .map(|(i, n)| AmdDevice {
                card: format!("card{i}"),
                product_name: n.map(str::to_string),
                pci_device_id: Some("0x74a1".into()),
            })
            .collect();
        facts_from(Err(NvmlError::LibraryNotFound), devices)
    }

    #[test]
    fn device_readings_map_to_the_documented_json() {
        let facts = nvidia(&["NVIDIA H200"]);
        let json = serde_json::to_value(&facts).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({
                "status": "present",
                "reason": null,
                "driver_version": "570.124.06",
                "cuda_driver_version": "12.8",
                "devices": [{
                    "index": 0,
                    "name": "NVIDIA H200",
                    "uuid": "GPU-00000000-1111-2222-3333-444444444444",
                    "serial": "1320024000000",
                    "vbios_version": "96.00.99.00.01",
                    "memory_total_bytes": 150_754_820_096u64,
                    "power_limit_mw": 700_000,
                    "enforced_power_limit_mw": 700_000,
                    "clocks": {"sm_mhz": 1980, "mem_mhz": 2619, "max_sm_mhz": 1980, "max_mem_mhz": 2619},
                    "ecc_enabled": true,
                    "mig_mode": false,
                    "persistence_mode": true,
                    "pcie": {"gen": 5, "width": 16},
                    "compute_capability": "9.0"
                }],
                "amd_devices": []
            })
        );
    }

    #[test]
    fn a_failed_call_becomes_null_and_leaves_the_others() {
        let mut r = readings(3, "NVIDIA H100 80GB HBM3");
        r.ecc_enabled = Err(NvmlError::NotSupported.into());
        r.max_mem_mhz = Err(NvmlError::Unknown.into());
        r.mig_mode = Ok(1);
        let d = device_facts(r);
        assert_eq!(d.index, 3);
        assert_eq!(d.ecc_enabled, None);
        assert_eq!(d.clocks.max_mem_mhz, None);
        assert_eq!(d.clocks.max_sm_mhz, Some(1980));
        assert_eq!(d.mig_mode, Some(true));
        assert_eq!(d.name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    }

    #[test]
    fn a_device_whose_handle_failed_is_listed_with_every_field_null() {
        let facts = facts_from(
            Ok(SystemReadings {
                driver_version: Ok("570.124.06".into()),
                cuda_driver_version: Err(NvmlError::FunctionNotFound.into()),
                devices: Ok(vec![
                    readings(0, "NVIDIA H200"),
                    DeviceReadings::failed(1, NvmlError::GpuLost.into()),
                ]),
            }),
            Vec::new(),
        );
        assert_eq!(facts.cuda_driver_version, None);
        assert_eq!(facts.devices.len(), 2);
        let lost = serde_json::to_value(&facts.devices[1]).expect("serialise");
        assert_eq!(lost["index"], 1);
        for key in ["name", "uuid", "memory_total_bytes", "compute_capability"] {
            assert!(lost[key].is_null(), "{key}");
        }
        assert!(lost["clocks"]["sm_mhz"].is_null());
        assert!(lost["pcie"]["gen"].is_null());
    }

    #[test]
    fn a_failed_device_count_is_present_with_the_reason() {
        let facts = facts_from(
            Ok(SystemReadings {
                driver_version: Ok("570.124.06".into()),
                cuda_driver_version: Ok(12080),
                devices: Err(NvmlError::DriverNotLoaded.into()),
            }),
            Vec::new(),
        );
        assert_eq!(facts.status, GpuStatus::Present);
        assert!(facts.devices.is_empty());
        assert!(
            facts
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("NVIDIA driver is not loaded"))
        );
    }

    #[test]
    fn cuda_versions_read_as_major_dot_minor() {
        assert_eq!(cuda_version(12040), "12.4");
        assert_eq!(cuda_version(11080), "11.8");
        assert_eq!(cuda_version(13000), "13.0");
    }

    #[test]
    fn nvml_that_cannot_load_is_absent_with_the_loader_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("libnvidia-ml.so.1");
        let facts = gpus_with(Some(missing.as_os_str()), &dir.path().join("drm"));
        assert_eq!(facts.status, GpuStatus::Absent);
        let reason = facts.reason.as_deref().expect("reason");
        assert!(reason.starts_with("NVML not available: "), "{reason}");
        assert!(reason.contains("libnvidia-ml.so.1"), "{reason}");
        assert!(facts.devices.is_empty() && facts.driver_version.is_none());
        let json = serde_json::to_value(&facts).expect("serialise");
        assert_eq!(json["status"], "absent");
        assert!(json["cuda_driver_version"].is_null());
    }

    #[test]
    fn nvml_on_this_machine_is_reported_consistently() {
        // Without a driver this checks the real no-driver path; with one, that
        // a present NVML also reports its driver version.
        let facts = gpus();
        match facts.status {
            GpuStatus::Absent => {
                let reason = facts.reason.as_deref().expect("reason");
                assert!(reason.contains("NVML"), "{reason}");
                assert!(facts.devices.is_empty());
                assert!(super::super::EnergyMeter::start().is_none());
            }
            GpuStatus::Present => assert!(facts.driver_version.is_some()),
        }
    }

    #[test]
    fn amd_devices_are_read_from_drm_cards_with_amds_vendor_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let card = |name: &str, files: &[(&str, &str)]| {
            let device = dir.path().join(name).join("device");
            std::fs::create_dir_all(&device).expect("mkdir");
            for (file, content) in files {
                std::fs::write(device.join(file), content).expect("write");
            }
        };
        card(
            "card1",
            &[
                ("vendor", "0x1002\n"),
                ("device", "0x74a1\n"),
                ("product_name", "AMD Instinct MI300X\n"),
            ],
        );
        card("card0", &[("vendor", "0x1002\n"), ("device", "0x164e\n")]);
        card("card2", &[("vendor", "0x10de\n"), ("device", "0x2335\n")]);
        card("card1-DP-1", &[("vendor", "0x1002\n")]);
        std::fs::create_dir_all(dir.path().join("renderD128")).expect("mkdir");

        let found = read_amd_devices(dir.path());
        assert_eq!(
            found,
            vec![
                AmdDevice {
                    card: "card0".into(),
                    product_name: None,
                    pci_device_id: Some("0x164e".into()),
                },
                AmdDevice {
                    card: "card1".into(),
                    product_name: Some("AMD Instinct MI300X".into()),
                    pci_device_id: Some("0x74a1".into()),
                },
            ]
        );
        assert!(read_amd_devices(&dir.path().join("absent")).is_empty());
    }
}
