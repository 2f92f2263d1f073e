//! The host: name, operating system, kernel, CPU and memory.
//!
//! Read from `uname(2)`, `sysconf(3)`, `/etc/os-release` and `/proc/cpuinfo`.
//! A value that cannot be read becomes `"unknown"` (or 0) and the reason is
//! logged: a missing fact must not stop a benchmark, but it must not be
//! invented either.

use std::ffi::CStr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The spelling of a fact that could not be read.
const UNKNOWN: &str = "unknown";

/// What the host is, as written to `environment.json`'s `host` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    /// `PRETTY_NAME` from os-release, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Machine hardware name (`uname -m`).
    pub arch: String,
    pub cpu_model: String,
    /// Online logical CPUs.
    pub cpu_count: u32,
    /// Physical memory in bytes.
    pub memory_bytes: u64,
}

/// Observes the host. Never fails; see the module comment.
pub fn host() -> HostFacts {
    let (hostname, kernel, arch) = match uname() {
        Ok(u) => (u.nodename, u.release, u.machine),
        Err(e) => {
            tracing::warn!("host: uname failed ({e}); hostname, kernel and arch are unknown");
            (UNKNOWN.into(), UNKNOWN.into(), UNKNOWN.into())
        }
    };
    HostFacts {
        hostname,
        os: known("os", os_pretty_name()),
        kernel,
        arch,
        cpu_model: known("cpu_model", cpu_model()),
        cpu_count: cpu_count().unwrap_or_else(|e| {
            tracing::warn!("host: cpu_count is unknown: {e}");
            0
        }),
        memory_bytes: memory_bytes().unwrap_or_else(|e| {
            tracing::warn!("host: memory_bytes is unknown: {e}");
            0
        }),
    }
}

/// Why a host fact could not be read; logged, never stored.
#[derive(Debug, thiserror::Error)]
enum FactError {
    #[error("{}", unread(.0))]
    OsRelease(Vec<(&'static str, std::io::Error)>),
    #[error("{0} has no PRETTY_NAME")]
    NoPrettyName(&'static str),
    #[error("{}: {error}", path.display())]
    Read {
        path: &'static Path,
        error: std::io::Error,
    },
    #[error("{} names no CPU model", .0.display())]
    NoCpuModel(&'static Path),
    #[error("sysconf({name}) returned {value}: {error}")]
    Sysconf {
        name: &'static str,
        value: libc::c_long,
        error: std::io::Error,
    },
    #[error("sysconf(_SC_NPROCESSORS_ONLN) = {0} is out of range")]
    CpuCount(u64),
    #[error("{pages} pages of {page} bytes overflow")]
    Memory { pages: u64, page: u64 },
}

/// `path: error` of each file tried, joined by `; `.
fn unread(tried: &[(&str, std::io::Error)]) -> String {
    tried
        .iter()
        .map(|(path, e)| format!("{path}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn known(field: &str, value: Result<String, FactError>) -> String {
    value.unwrap_or_else(|e| {
        tracing::warn!("host: {field} is unknown: {e}");
        UNKNOWN.into()
    })
}

struct Uname {
    nodename: String,
    release: String,
    machine: String,
}

fn uname() -> std::io::Result<Uname> {
    // SAFETY: `utsname` is plain old data; all-zero bytes are a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `utsname` for the call's duration.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let field = |chars: &[libc::c_char]| {
        // SAFETY: uname fills each field with a NUL-terminated string that
        // fits the array; the array is borrowed for the CStr's lifetime.
        let c = unsafe { CStr::from_ptr(chars.as_ptr()) };
        c.to_string_lossy().into_owned()
    };
    Ok(Uname {
        nodename: field(&u.nodename),
        release: field(&u.release),
        machine: field(&u.machine),
    })
}

/// `PRETTY_NAME` from `/etc/os-release`, falling back to
/// `/usr/lib/os-release` as os-release(5) prescribes.
fn os_pretty_name() -> Result<String, FactError> {
    let mut tried = Vec::new();
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return pretty_name(&text).ok_or(FactError::NoPrettyName(path));
            }
            Err(e) => tried.push((path, e)),
        }
    }
    Err(FactError::OsRelease(tried))
}

/// The value of `PRETTY_NAME` in os-release text: shell-style assignment,
/// optionally quoted with `"` or `'`, backslash escapes inside double quotes.
fn pretty_name(text: &str) -> Option<String> {
    let raw = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?
        .trim();
    let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.to_string()
    } else {
        raw.to_string()
    };
    (!value.is_empty()).then_some(value)
}

fn cpu_model() -> Result<String, FactError> {
    let path = Path::new("/proc/cpuinfo");
    let text = std::fs::read_to_string(path).map_err(|error| FactError::Read { path, error })?;
    cpu_model_in(&text).ok_or(FactError::NoCpuModel(path))
}

/// The CPU model in `/proc/cpuinfo` text. x86 writes `model name`; some ARM
/// and other kernels write `Model`, `Hardware` or `cpu model` instead.
fn cpu_model_in(cpuinfo: &str) -> Option<String> {
    ["model name", "cpu model", "Model", "Hardware", "cpu"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

fn cpu_count() -> Result<u32, FactError> {
    let n = sysconf("_SC_NPROCESSORS_ONLN", libc::_SC_NPROCESSORS_ONLN)?;
    u32::try_from(n).map_err(|_| FactError::CpuCount(n))
}

fn memory_bytes() -> Result<u64, FactError> {
    let pages = sysconf("_SC_PHYS_PAGES", libc::_SC_PHYS_PAGES)?;
    let page = sysconf("_SC_PAGESIZE", libc::_SC_PAGESIZE)?;
    pages
        .checked_mul(page)
        .ok_or(FactError::Memory { pages, page })
}

fn sysconf(name: &'static str, key: libc::c_int) -> Result<u64, FactError> {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(key) };
    if v > 0 {
        Ok(v as u64)
    } else {
        Err(FactError::Sysconf {
            name,
            value: v,
            error: std::io::Error::last_os_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_hostname_and_arch_are_what_uname_says() {
        let facts = host();
        let uname = |flag: &str| {
            let out = std::process::Command::new("uname")
                .arg(flag)
                .output()
                .expect("run uname");
            String::from_utf8(out.stdout)
                .expect("utf-8")
                .trim()
                .to_string()
        };
        assert_eq!(facts.kernel, uname("-r"));
        assert_eq!(facts.hostname, uname("-n"));
        assert_eq!(facts.arch, uname("-m"));
    }

    #[test]
    fn cpu_count_is_the_number_of_processors_in_proc_cpuinfo() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("read /proc/cpuinfo");
        let listed = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count();
        let facts = host();
        assert!(facts.cpu_count > 0);
        assert_eq!(facts.cpu_count as usize, listed);
        // Affinity and cgroup quotas can only lower what is usable.
        let usable = std::thread::available_parallelism()
            .expect("parallelism")
            .get();
        assert!(usable <= facts.cpu_count as usize);
    }

    #[test]
    fn memory_bytes_is_memtotal_from_proc_meminfo() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("MemTotal in kB");
        let facts = host();
        assert!(facts.memory_bytes > 0);
        assert_eq!(facts.memory_bytes, kib * 1024);
    }

    #[test]
    fn os_and_cpu_model_are_read_from_the_files() {
        let facts = host();
        let release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .expect("os-release");
        assert!(!facts.os.contains('"'), "{}", facts.os);
        assert!(
            release.contains(&facts.os),
            "{} not in os-release",
            facts.os
        );
        assert_ne!(facts.cpu_model, UNKNOWN);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
        assert!(cpuinfo.contains(&facts.cpu_model));
    }

    #[test]
    fn pretty_name_handles_quotes_escapes_and_absence() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        assert_eq!(
            pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            pretty_name("PRETTY_NAME='Alpine Linux v3.20'").as_deref(),
            Some("Alpine Linux v3.20")
        );
        assert_eq!(pretty_name("PRETTY_NAME=Plain").as_deref(), Some("Plain"));
        assert_eq!(
            pretty_name(r#"PRETTY_NAME="Say \"hi\"""#).as_deref(),
            Some(r#"Say "hi""#)
        );
        assert_eq!(pretty_name("NAME=x\n"), None);
        assert_eq!(pretty_name("PRETTY_NAME=\"\""), None);
    }

    #[test]
    fn cpu_model_is_found_under_the_names_architectures_use() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n";
        assert_eq!(
            cpu_model_in(x86).as_deref(),
            Some("Intel(R) Xeon(R) Platinum 8480+")
        );
        let arm =
            "processor\t: 0\nBogoMIPS\t: 2000.00\nCPU part\t: 0xd4f\n\nHardware\t: NVIDIA Grace\n";
        assert_eq!(cpu_model_in(arm).as_deref(), Some("NVIDIA Grace"));
        assert_eq!(cpu_model_in("processor\t: 0\n"), None);
    }
}
