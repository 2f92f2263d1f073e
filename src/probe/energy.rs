//! Energy the GPUs used over a run, from their cumulative energy counters.
//!
//! NVML's `total_energy_consumption` is a per-device counter in millijoules
//! since the driver loaded (Volta and newer). Reading it at the start and end
//! of the measured window gives the energy exactly, with no sampling: unlike
//! integrating power readings taken once a second, nothing between samples is
//! missed. Every device of the machine is counted, idle ones included, since
//! that is the energy the machine drew for the run.

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;
use serde::{Deserialize, Serialize};

use super::gpu::init_nvml;

/// Counter readings and the energy between them, as written to
/// `environment.json`'s `energy` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    /// Each device's counter at the start, in millijoules.
    pub start_mj: Vec<u64>,
    /// Each device's counter at the end; `null` where the read failed.
    pub end_mj: Vec<Option<u64>>,
    /// Energy of all devices between the readings. `null` when a device's
    /// end reading failed or its counter went backwards (a driver reload):
    /// a sum over only some devices would understate the energy.
    pub joules: Option<f64>,
}

/// An energy counter NVML could not read; logged, never stored.
#[derive(Debug, thiserror::Error)]
enum CounterError {
    #[error("device count: {0}")]
    Count(NvmlError),
    #[error("device {index}: total energy consumption: {error}")]
    Device { index: u32, error: NvmlError },
}

/// Holds NVML and the start readings until the run ends.
pub struct EnergyMeter {
    nvml: Nvml,
    start_mj: Vec<u64>,
}

impl EnergyMeter {
    /// Reads every device's counter. `None` without NVML, without devices,
    /// or when a device cannot report energy (the reason is logged).
    pub fn start() -> Option<Self> {
        let nvml = init_nvml(None)
            .map_err(|e| tracing::debug!("energy: not measured: NVML not available: {e}"))
            .ok()?;
        let start_mj = read_counters(&nvml)
            .map_err(|e| tracing::info!("energy: not measured: {e}"))
            .ok()?;
        if start_mj.is_empty() {
            tracing::debug!("energy: not measured: NVML lists no device");
            return None;
        }
        Some(EnergyMeter { nvml, start_mj })
    }

    /// Reads the counters again and reports the energy in between.
    pub fn finish(self) -> Energy {
        let end: Vec<Result<u64, CounterError>> = (0..self.start_mj.len())
            .map(|i| read_counter(&self.nvml, i as u32))
            .collect();
        energy_between(self.start_mj, end)
    }
}

fn read_counter(nvml: &Nvml, index: u32) -> Result<u64, CounterError> {
    nvml.device_by_index(index)
        .and_then(|d| d.total_energy_consumption())
        .map_err(|error| CounterError::Device { index, error })
}

fn read_counters(nvml: &Nvml) -> Result<Vec<u64>, CounterError> {
    let count = nvml.device_count().map_err(CounterError::Count)?;
    (0..count).map(|i| read_counter(nvml, i)).collect()
}

/// The energy between start readings and end readings of the same devices.
fn energy_between(start_mj: Vec<u64>, end: Vec<Result<u64, CounterError>>) -> Energy {
    let mut total_mj: Option<u64> = Some(0);
    let end_mj = start_mj
        .iter()
        .zip(end)
        .enumerate()
        .map(|(i, (&start, end))| {
            let end = end.map_err(|e| tracing::warn!("energy: unknown: {e}")).ok();
            let used = end.and_then(|end| end.checked_sub(start));
            if end.is_some() && used.is_none() {
                tracing::warn!("energy: unknown: device {i}'s counter went backwards");
            }
            total_mj = total_mj.zip(used).map(|(t, u)| t + u);
            end
        })
        .collect();
    Energy {
        start_mj,
        end_mj,
        joules: total_mj.map(|mj| mj as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_the_sum_of_counter_differences_in_joules() {
        let e = energy_between(vec![1_000, 50_000], vec![Ok(3_500), Ok(51_250)]);
        assert_eq!(e.joules, Some(3.75));
        assert_eq!(e.end_mj, vec![Some(3_500), Some(51_250)]);
        let json = serde_json::to_value(&e).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"start_mj": [1000, 50000], "end_mj": [3500, 51250], "joules": 3.75})
        );
    }

    #[test]
    fn a_failed_end_reading_leaves_the_total_unknown() {
        let e = energy_between(
            vec![1_000, 2_000],
            vec![
                Ok(4_000),
                Err(CounterError::Device {
                    index: 1,
                    error: NvmlError::GpuLost,
                }),
            ],
        );
        assert_eq!(e.end_mj, vec![Some(4_000), None]);
        assert_eq!(e.joules, None);
    }

    #[test]
    fn a_counter_that_went_backwards_leaves_the_total_unknown() {
        let e = energy_between(vec![9_000], vec![Ok(10)]);
        assert_eq!(e.end_mj, vec![Some(10)]);
        assert_eq!(e.joules, None);
    }
}
