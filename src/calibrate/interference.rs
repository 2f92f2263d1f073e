//! What the machine took from client and sim while a level ran, read from
//! `/proc`: steal time of their CPUs, their threads' run-queue waits, and
//! the other tasks of the machine that ran longest meanwhile.
//!
//! A level's outliers are worth something only if one can tell whether the
//! client fell behind or the host stopped it; these figures, printed beside
//! each level, say which.

use std::collections::HashMap;
use std::time::Duration;

/// Steal above this share of a level's CPU time (on the client's or the
/// sim's CPUs) marks the level as disturbed.
///
/// A level stalls the client for as long as its CPU is stolen and then as
/// long again, and longer, to work off the backlog, so a level with much
/// steal shows the host more than the client (the levels that showed it:
/// docs/calibration.md, "Figures behind the code"). Two per cent is two
/// clock ticks of a one-second level.
pub const DISTURBED_STEAL_SHARE: f64 = 0.02;

/// CPU time a task outside client and sim had during a level: by name, the
/// threads of one name summed (`/proc/PID/task/TID/comm` and `schedstat`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OtherTask {
    pub name: String,
    pub cpu_ms: f64,
}

/// Time the machine took away from the client and the sim during a level.
///
/// On a virtual machine the hypervisor pauses a virtual CPU now and then
/// (steal time), on the machines infermark is tested on for milliseconds
/// at a time (how often and how long: docs/calibration.md, "Figures behind
/// the code"). A pause of the client's CPU lets the next chunk of a
/// stream arrive before the last one is read; the kernel then merges the
/// two in the socket's receive queue under the later one's stamp, and
/// nothing in user space can tell them apart. These figures say whether a
/// level's outliers coincide with such time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interference {
    /// Steal time of the client's CPUs (`/proc/stat`), ms: resolution one
    /// clock tick (10 ms where USER_HZ is 100).
    pub steal_client_ms: f64,
    /// The same for the sim's CPUs (the client's where they share).
    pub steal_sim_ms: f64,
    /// Steal of the client's CPUs as a share of their time over the level
    /// (wall time times their number).
    pub steal_client_share: f64,
    /// The same for the sim's CPUs.
    pub steal_sim_share: f64,
    /// Time the client's threads were runnable but waited for their CPU
    /// (`/proc/PID/task/*/schedstat`), ms: other tasks on it.
    pub run_wait_client_ms: f64,
    /// The same for the sim's threads.
    pub run_wait_sim_ms: f64,
}

/// Counters behind [`Interference`], read before and after a level.
#[derive(Debug, Clone, Copy)]
pub(super) struct InterferenceCounters {
    steal_client_ticks: u64,
    steal_sim_ticks: u64,
    run_wait_client_ns: u64,
    run_wait_sim_ns: u64,
}

impl Interference {
    /// Whether the hypervisor took enough to mark the level (see
    /// [`DISTURBED_STEAL_SHARE`]).
    pub fn disturbs(&self) -> bool {
        self.steal_client_share.max(self.steal_sim_share) > DISTURBED_STEAL_SHARE
    }
}

impl InterferenceCounters {
    pub(super) fn read(client_cpus: &[usize], sim_cpus: &[usize], sim_pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Some(InterferenceCounters {
            steal_client_ticks: steal_ticks(&stat, client_cpus)?,
            steal_sim_ticks: steal_ticks(&stat, sim_cpus)?,
            run_wait_client_ns: run_wait_ns(std::process::id())?,
            run_wait_sim_ns: run_wait_ns(sim_pid)?,
        })
    }

    /// What grew from `before` over a level of `wall` on `client_cpus` and
    /// `sim_cpus` CPUs.
    pub(super) fn since(
        &self,
        before: &Self,
        wall: Duration,
        client_cpus: usize,
        sim_cpus: usize,
    ) -> Interference {
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let tick_ms = |a: u64, b: u64| a.saturating_sub(b) as f64 * 1000.0 / hz;
        let ns_ms = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1e6;
        let steal_client_ms = tick_ms(self.steal_client_ticks, before.steal_client_ticks);
        let steal_sim_ms = tick_ms(self.steal_sim_ticks, before.steal_sim_ticks);
        let share = |ms: f64, cpus: usize| {
            let available = wall.as_secs_f64() * 1000.0 * cpus.max(1) as f64;
            if available > 0.0 { ms / available } else { 0.0 }
        };
        Interference {
            steal_client_ms,
            steal_sim_ms,
            steal_client_share: share(steal_client_ms, client_cpus),
            steal_sim_share: share(steal_sim_ms, sim_cpus),
            run_wait_client_ms: ns_ms(self.run_wait_client_ns, before.run_wait_client_ns),
            run_wait_sim_ms: ns_ms(self.run_wait_sim_ns, before.run_wait_sim_ns),
        }
    }
}

/// Steal ticks summed over `cpus`, from the text of `/proc/stat` (the
/// eighth number of each `cpuN` line); `None` if a CPU's line is missing or
/// has no steal field.
fn steal_ticks(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    for &cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        total += line.split_whitespace().nth(8)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Nanoseconds the threads of process `pid` have waited on a run queue:
/// the second field of each `/proc/PID/task/TID/schedstat`.
fn run_wait_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        // A thread that ended since the listing is simply not counted.
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += schedstat_wait_ns(&text)?;
        }
    }
    Some(total)
}

/// The run-queue wait of one `schedstat` line (`run_ns wait_ns slices`).
fn schedstat_wait_ns(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time on CPU of every thread of the machine, by thread id, with its name:
/// all processes but those in `exclude`. Threads that end while the listing
/// is read are left out.
pub(super) fn task_run_ns(exclude: &[u32]) -> HashMap<u32, (String, u64)> {
    let mut tasks = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return tasks;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if exclude.contains(&pid) {
            continue;
        }
        let Ok(threads) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in threads.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let run = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
            let name = std::fs::read_to_string(t.path().join("comm"));
            if let (Some(run), Ok(name)) = (run, name) {
                tasks.insert(tid, (name.trim_end().to_string(), run));
            }
        }
    }
    tasks
}

/// The `n` names whose threads ran longest between two [`task_run_ns`]
/// listings, each at least 1 ms, under the name it has in `after`; a thread
/// new in `after` counts in full.
pub(super) fn busiest(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    n: usize,
) -> Vec<OtherTask> {
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for (tid, (name, run)) in after {
        // By id alone: a kernel worker's name changes with the work it
        // runs. (An id reused by a new thread meanwhile counts as nothing.)
        let earlier = before.get(tid).map_or(0, |(_, r)| *r);
        *by_name.entry(name).or_default() += run.saturating_sub(earlier);
    }
    let mut ranked: Vec<(&str, u64)> = by_name
        .into_iter()
        .filter(|&(_, ns)| ns >= 1_000_000)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(name, ns)| OtherTask {
            name: name.to_string(),
            cpu_ms: ns as f64 / 1e6,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_and_run_queue_waits_are_read_from_proc_text() {
        let stat = "cpu  366303 0 37048 1989040 996 0 5492 9644 0 0\n\
                    cpu0 183000 0 18000 990000 500 0 2700 4799 0 0\n\
                    cpu1 183303 0 19048 999040 496 0 2792 4845 0 0\n\
                    cpu10 1 0 1 1 0 0 0 7 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(steal_ticks(stat, &[0]), Some(4799));
        assert_eq!(steal_ticks(stat, &[1]), Some(4845));
        assert_eq!(steal_ticks(stat, &[0, 1]), Some(9644));
        assert_eq!(steal_ticks(stat, &[10]), Some(7), "cpu10 is not cpu1");
        assert_eq!(steal_ticks(stat, &[2]), None, "no line for cpu2");
        assert_eq!(steal_ticks("cpu0 1 2 3\n", &[0]), None, "no steal field");
        assert_eq!(schedstat_wait_ns("81234567 4500123 977\n"), Some(4_500_123));
        assert_eq!(schedstat_wait_ns("81234567\n"), None);
    }

    #[test]
    fn the_busiest_other_tasks_are_ranked_by_growth_and_grouped_by_name() {
        let listing = |rows: &[(u32, &str, u64)]| -> HashMap<u32, (String, u64)> {
            rows.iter()
                .map(|&(tid, name, ms)| (tid, (name.to_string(), ms * 1_000_000)))
                .collect()
        };
        let before = listing(&[
            (1, "containerd", 100),
            (2, "containerd", 50),
            (3, "kdamond.0", 900),
            (4, "rcu_preempt", 7),
            (5, "sshd", 10),
        ]);
        let after = listing(&[
            (1, "containerd", 104),
            (2, "containerd", 52),
            (3, "kdamond.0", 911),
            (4, "rcu_preempt", 7),
            // A thread that started meanwhile counts in full; a kernel
            // worker renamed after its current work counts by its id.
            (6, "kworker/0:1-events", 3),
            (5, "sshd-session", 12),
        ]);
        let top = busiest(&before, &after, 3);
        let named: Vec<(&str, f64)> = top.iter().map(|o| (o.name.as_str(), o.cpu_ms)).collect();
        assert_eq!(
            named,
            [
                ("kdamond.0", 11.0),
                ("containerd", 6.0),
                ("kworker/0:1-events", 3.0)
            ]
        );
        assert_eq!(
            busiest(&before, &after, 10).len(),
            4,
            "under 1 ms is left out"
        );
    }

    #[test]
    fn a_busy_process_shows_among_the_other_tasks_and_this_one_does_not() {
        let me = std::process::id();
        let before = task_run_ns(&[me]);
        assert!(!before.is_empty(), "/proc lists the machine's threads");
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let after = task_run_ns(&[me]);
        spinner.kill().unwrap();
        spinner.wait().unwrap();
        assert!(
            after
                .keys()
                .all(|tid| !std::path::Path::new(&format!("/proc/{me}/task/{tid}")).exists()),
            "this process's threads are excluded"
        );
        let top = busiest(&before, &after, 50);
        let sh = top
            .iter()
            .find(|o| o.name == "sh")
            .expect("the spinner ran");
        // A busy loop for 300 ms on a machine of two or more CPUs gets far
        // more than this unless the machine is saturated.
        assert!(sh.cpu_ms >= 30.0, "{top:?}");
    }

    #[test]
    fn interference_is_the_growth_of_the_counters() {
        let c = |steal_c, steal_s, wait_c, wait_s| InterferenceCounters {
            steal_client_ticks: steal_c,
            steal_sim_ticks: steal_s,
            run_wait_client_ns: wait_c,
            run_wait_sim_ns: wait_s,
        };
        // SAFETY: as in `since`.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let i = c(12, 7, 9_000_000, 2_500_000).since(
            &c(10, 7, 1_000_000, 500_000),
            Duration::from_secs(2),
            1,
            1,
        );
        assert_eq!(i.steal_client_ms, 2.0 * 1000.0 / hz);
        assert_eq!(i.steal_sim_ms, 0.0);
        assert_eq!(i.run_wait_client_ms, 8.0);
        assert_eq!(i.run_wait_sim_ms, 2.0);
        // Two ticks of two seconds on one CPU.
        assert_eq!(i.steal_client_share, 2.0 / hz / 2.0);
        assert_eq!(i.steal_sim_share, 0.0);
        // The share is of every CPU of the side: 300 ticks of a
        // one-second level on two shared CPUs is 1.5 s of 2.
        let shared = c(300, 300, 0, 0).since(&c(0, 0, 0, 0), Duration::from_secs(1), 2, 2);
        assert_eq!(shared.steal_client_share, 150.0 / hz);
        assert_eq!(shared.steal_sim_share, 150.0 / hz);
        let empty = c(3, 3, 0, 0).since(&c(0, 0, 0, 0), Duration::ZERO, 1, 1);
        assert_eq!(empty.steal_client_share, 0.0, "no time, no share");
    }

    #[test]
    fn a_level_is_disturbed_when_either_side_lost_over_two_per_cent_to_steal() {
        let took = |client: f64, sim: f64| Interference {
            steal_client_ms: 0.0,
            steal_sim_ms: 0.0,
            steal_client_share: client,
            steal_sim_share: sim,
            run_wait_client_ms: 0.0,
            run_wait_sim_ms: 0.0,
        };
        assert!(!took(0.0, 0.0).disturbs());
        assert!(
            !took(0.02, 0.02).disturbs(),
            "the limit itself is not over it"
        );
        assert!(took(0.021, 0.0).disturbs());
        assert!(took(0.0, 0.35).disturbs());
    }

    #[test]
    fn this_process_has_run_queue_counters() {
        // Every thread's schedstat is readable: a sum, if only of zeros.
        assert!(run_wait_ns(std::process::id()).is_some());
        assert!(
            steal_ticks(
                &std::fs::read_to_string("/proc/stat").unwrap(),
                &super::super::allowed_cpus()
            )
            .is_some()
        );
    }
}
