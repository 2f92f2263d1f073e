//! Which CPUs client and sim run on: this process's allowed CPUs, their
//! split between the two, and pinning a thread (and the threads it creates)
//! to a set of them.
//!
//! Calibration runs the client and the sim on one host; where each runs
//! decides whether their bursts preempt each other, and so whether the
//! figures are the client's or the rig's (see [`split_cpus`]).

use super::CalibrateError;

/// Places the client before its runtime starts, so that the runtime's
/// threads inherit the client's CPUs (and their number sizes it): on CPUs
/// of its own, the sim getting the last one ([`split_cpus`]), unless
/// `shared` or there are fewer than two, in which case client and sim share
/// every CPU. Returns the sim's CPUs, `None` when they share.
///
/// Split is the default so that the figures are the client's and not the
/// rig's. Sharing is for a host whose hypervisor pauses CPUs: a paused CPU
/// stops a client pinned to it, while a client on every CPU has its other
/// worker take over the streams. The runs behind both choices are in
/// docs/calibration.md, "Figures behind the code".
pub fn place_client(shared: bool) -> Result<Option<Vec<usize>>, CalibrateError> {
    let split = if shared {
        None
    } else {
        split_cpus(&allowed_cpus())
    };
    match split {
        Some((client, sim)) => {
            pin_current_thread(&client).map_err(|source| CalibrateError::Pin {
                cpus: client,
                source,
            })?;
            Ok(Some(sim))
        }
        None => Ok(None),
    }
}

/// The CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a valid cpu_set_t that sched_getaffinity fills;
    // CPU_ISSET only reads it, for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Splits `cpus` between client and sim: the sim gets the last one, the
/// client the rest; `None` with fewer than two.
///
/// Sim and client share one host for calibration, and at high stream
/// counts each needs much of a CPU (most of it the kernel's loopback path;
/// how much: docs/calibration.md, "Figures behind the code"). On shared
/// CPUs their bursts preempt each other: the sim, between stamping a chunk
/// and writing it, or the client, between a chunk's arrival and its read,
/// and either delay is counted as the client's error although it is the
/// rig's. On CPUs of their own, as an engine on its own accelerator would
/// be, the figures are the client's.
pub fn split_cpus(cpus: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let (last, rest) = cpus.split_last()?;
    (!rest.is_empty()).then(|| (rest.to_vec(), vec![*last]))
}

/// Restricts the calling thread, and the threads it creates from now on, to
/// `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within `set`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sim_gets_the_last_cpu_and_the_client_the_rest() {
        assert_eq!(split_cpus(&[0, 1]), Some((vec![0], vec![1])));
        assert_eq!(split_cpus(&[2, 5, 7]), Some((vec![2, 5], vec![7])));
        assert_eq!(split_cpus(&[3]), None, "one CPU is shared");
        assert_eq!(split_cpus(&[]), None);
    }

    #[test]
    fn this_process_knows_its_cpus_and_a_pinned_thread_keeps_to_them() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let first = cpus[0];
        // On a thread of its own, so the test runner's threads keep theirs.
        let seen = std::thread::spawn(move || {
            pin_current_thread(&[first]).unwrap();
            let here = allowed_cpus();
            let inherited = std::thread::spawn(allowed_cpus).join().unwrap();
            (here, inherited)
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![first], vec![first]));
    }
}
