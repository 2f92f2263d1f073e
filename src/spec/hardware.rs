//! The hardware classes a point can name, in one table.
//!
//! A class is what a published number is "for": a point for `nvidia-h200-sxm`
//! refuses to run elsewhere. The table also carries what the probe needs to
//! recognise the class on a machine (the NVML/SMI product-name fragment).

/// Vendor of a class's accelerators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Amd,
    /// No accelerator: the host CPU runs the engine.
    Cpu,
}

/// One row of the class table.
#[derive(Debug, PartialEq, Eq)]
pub struct HardwareClass {
    /// The spelling used in specs and result paths.
    pub id: &'static str,
    pub vendor: Vendor,
    /// Product name for tables.
    pub display: &'static str,
    /// Accelerator memory per device in GiB (0 for CPU).
    pub memory_gib: u32,
    /// Most devices of this class in one node (0 for CPU).
    pub max_gpus: u32,
    /// Case-insensitive fragment of the device name the driver reports; it
    /// must start a word of the name (`H200` is not in `GH200`).
    pub device_name_fragment: &'static str,
    /// Words (case-insensitive) that mark a name as another product with
    /// the same fragment: a PCIe/NVL card, a smaller memory size.
    pub device_name_excludes: &'static [&'static str],
}

/// Every class infermark knows. Adding hardware means adding a row here.
pub const CLASSES: &[HardwareClass] = &[
    HardwareClass {
        id: "nvidia-a100-sxm",
        vendor: Vendor::Nvidia,
        display: "NVIDIA A100 SXM 80GB",
        memory_gib: 80,
        max_gpus: 8,
        device_name_fragment: "A100-SXM",
        device_name_excludes: &["40GB"],
    },
    HardwareClass {
        id: "nvidia-h100-sxm",
        vendor: Vendor::Nvidia,
        display: "NVIDIA H100 SXM 80GB",
        memory_gib: 80,
        max_gpus: 8,
        device_name_fragment: "H100 80GB HBM3",
        device_name_excludes: &[],
    },
    HardwareClass {
        id: "nvidia-h200-sxm",
        vendor: Vendor::Nvidia,
        display: "NVIDIA H200 SXM 141GB",
        memory_gib: 141,
        max_gpus: 8,
        device_name_fragment: "H200",
        device_name_excludes: &["NVL"],
    },
    HardwareClass {
        id: "nvidia-b200",
        vendor: Vendor::Nvidia,
        display: "NVIDIA B200 180GB",
        memory_gib: 180,
        max_gpus: 8,
        device_name_fragment: "B200",
        device_name_excludes: &[],
    },
    HardwareClass {
        id: "nvidia-gb200",
        vendor: Vendor::Nvidia,
        display: "NVIDIA GB200 (Grace Blackwell) 186GB",
        memory_gib: 186,
        max_gpus: 4,
        device_name_fragment: "GB200",
        device_name_excludes: &[],
    },
    HardwareClass {
        id: "amd-mi300x",
        vendor: Vendor::Amd,
        display: "AMD Instinct MI300X 192GB",
        memory_gib: 192,
        max_gpus: 8,
        device_name_fragment: "MI300X",
        device_name_excludes: &[],
    },
    HardwareClass {
        id: "amd-mi325x",
        vendor: Vendor::Amd,
        display: "AMD Instinct MI325X 256GB",
        memory_gib: 256,
        max_gpus: 8,
        device_name_fragment: "MI325X",
        device_name_excludes: &[],
    },
    HardwareClass {
        id: "amd-mi355x",
        vendor: Vendor::Amd,
        display: "AMD Instinct MI355X 288GB",
        memory_gib: 288,
        max_gpus: 8,
        device_name_fragment: "MI355X",
        device_name_excludes: &[],
    },
    HardwareClass {
        id: "cpu",
        vendor: Vendor::Cpu,
        display: "CPU only",
        memory_gib: 0,
        max_gpus: 0,
        device_name_fragment: "",
        device_name_excludes: &[],
    },
];

/// Looks a class up by its spec spelling.
pub fn class(id: &str) -> Option<&'static HardwareClass> {
    CLASSES.iter().find(|c| c.id == id)
}

/// All class ids, for "expected one of" messages.
pub fn class_ids() -> Vec<&'static str> {
    CLASSES.iter().map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_the_required_classes_once_each() {
        for id in [
            "nvidia-h100-sxm",
            "nvidia-h200-sxm",
            "nvidia-b200",
            "nvidia-gb200",
            "amd-mi300x",
            "amd-mi325x",
            "amd-mi355x",
            "cpu",
        ] {
            assert_eq!(CLASSES.iter().filter(|c| c.id == id).count(), 1, "{id}");
        }
        assert!(class("nvidia-h100").is_none());
    }
}
