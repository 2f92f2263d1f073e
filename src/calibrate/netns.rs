//! A network namespace of calibration's own: client and sim talk over a
//! loopback that no packet-filter rule of the host sees.
//!
//! On the host's loopback every segment and every acknowledgement passes
//! the host's netfilter hooks; where a container daemon has loaded its NAT
//! table (as on the machines infermark is tested on), that means connection
//! tracking on each of them. Loopback delivers a packet on the CPU that sent
//! it, so the client's CPU pays for its own acknowledgements twice: sending
//! them and receiving them for the sim's socket. That is the rig's cost, not
//! the client's: against an engine on another host the receive half runs
//! there. A fresh namespace has only its own loopback and no rules, so what
//! `calibrate` then measures is the client and the kernel's TCP alone.

use std::io;

/// The loopback of a calibration run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Network {
    /// `true` in a network namespace of the run's own.
    pub private: bool,
    /// Why a private namespace was asked for and not had, if so.
    pub fallback: Option<String>,
    /// The namespace the run was in, as `/proc/self/ns/net` names it
    /// (`net:[INODE]`).
    pub namespace: Option<String>,
}

/// Puts the calling thread on the loopback calibration measures over: a
/// private one ([`enter_private_loopback`]) unless `host_network`, and the
/// host's if the private one cannot be had, saying why. Call before the
/// runtime starts: its threads must start in the namespace.
pub fn choose_loopback(host_network: bool) -> Network {
    let fallback = if host_network {
        None
    } else {
        enter_private_loopback().err().map(|e| e.to_string())
    };
    Network {
        private: !host_network && fallback.is_none(),
        fallback,
        namespace: std::fs::read_link("/proc/thread-self/ns/net")
            .ok()
            .map(|p| p.display().to_string()),
    }
}

/// Moves the calling thread into a new network namespace and brings its
/// loopback up. Threads created afterwards, and child processes, inherit it;
/// threads that already exist keep the namespace they had.
///
/// With the capability to do so (root), only the network namespace is new.
/// Without it, a user namespace is created along with it, mapping this
/// user and group to themselves, which the kernel allows unprivileged users
/// where user namespaces are enabled; that needs a single-threaded process.
pub fn enter_private_loopback() -> io::Result<()> {
    // SAFETY: unshare takes flags only and changes the calling thread's
    // namespaces; nothing in this process holds a reference to the old ones.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(err);
        }
        enter_user_and_network_namespace()?;
    }
    loopback_up()
}

/// The unprivileged way: a user namespace in which this process holds the
/// capabilities over the network namespace created with it.
fn enter_user_and_network_namespace() -> io::Result<()> {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: as above; the kernel refuses (EINVAL) if other threads exist.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Files this process creates must still belong to its user: map the
    // user and group to themselves. An unprivileged gid_map needs setgroups
    // denied first.
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    Ok(())
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace (a new
/// namespace's loopback starts down).
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ifr` is a zeroed ifreq holding the NUL-terminated name "lo";
    // SIOCGIFFLAGS fills its flags, SIOCSIFFLAGS reads them; `fd` is ours.
    let result = unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, &src) in ifr.ifr_name.iter_mut().zip(b"lo") {
            *dst = src as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            Err(io::Error::last_os_error())
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) != 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: `fd` is open and closed once.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn namespace(path: &str) -> std::path::PathBuf {
        std::fs::read_link(path).unwrap()
    }

    /// A thread that enters its own namespace talks over a loopback of its
    /// own: a listener of the host's is not reachable from it, one of its
    /// own is. (Run as root or where user namespaces are allowed; the test
    /// harness is multi-threaded, so only the privileged path can run here.)
    #[test]
    fn a_private_loopback_is_up_and_apart_from_the_hosts() {
        let host = TcpListener::bind("127.0.0.1:0").unwrap();
        let host_addr = host.local_addr().unwrap();
        let host_ns = namespace("/proc/thread-self/ns/net");
        let inside = std::thread::spawn(move || -> io::Result<_> {
            enter_private_loopback()?;
            let ns = namespace("/proc/thread-self/ns/net");
            let reach_host = TcpStream::connect(host_addr).is_ok();
            let own = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut c = TcpStream::connect(own.local_addr().unwrap()).unwrap();
            let (mut s, _) = own.accept().unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            Ok((ns, reach_host, buf))
        })
        .join()
        .unwrap();
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let (ns, reach_host, buf) = match inside {
            Ok(v) => v,
            Err(e) if !root => {
                // Unprivileged in a multi-threaded process: the kernel
                // refuses the user namespace; the CLI path is tested end to
                // end in tests/it/bench_sim.rs.
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
                return;
            }
            Err(e) => panic!("as root: {e}"),
        };
        assert_ne!(ns, host_ns, "the thread is in a namespace of its own");
        assert!(!reach_host, "the host's listener is not on this loopback");
        assert_eq!(&buf, b"ping");
        assert_eq!(namespace("/proc/thread-self/ns/net"), host_ns);
    }
}
