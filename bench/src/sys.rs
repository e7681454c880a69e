//! What the generator asks of Linux: a clock shared by every thread, sockets bound to a source
//! address before connecting, CPU pinning, and a server's CPU time and resident memory from
//! `/proc`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix time in nanoseconds, read from one monotonic clock so that every thread agrees and a
/// latency never goes negative because the wall clock was stepped.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            base: Instant::now(),
            base_unix_ns: unix.as_nanos() as u64,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base_unix_ns + self.base.elapsed().as_nanos() as u64
    }

    /// The `Instant` at which [`Clock::now_ns`] reads `unix_ns` (never before the clock began).
    pub fn instant_at(&self, unix_ns: u64) -> Instant {
        self.base + Duration::from_nanos(unix_ns.saturating_sub(self.base_unix_ns))
    }
}

/// Starts a non-blocking connect to `server`, from `source` when given.
///
/// With a source address the socket is bound first, with `IP_BIND_ADDRESS_NO_PORT` so the port
/// is chosen at connect time and each (source, destination) pair has the whole ephemeral range.
pub fn connect(source: Option<Ipv4Addr>, server: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let (source, SocketAddr::V4(server)) = (source, server) else {
        return mio::net::TcpStream::connect(server);
    };
    let Some(source) = source else {
        return mio::net::TcpStream::connect(server.into());
    };
    // SAFETY: socket(2) takes no pointers; a valid descriptor is owned by `OwnedFd` at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int of the size passed. Failure (an old
    // kernel) only means ports are chosen at bind time, so it is ignored.
    unsafe {
        libc::setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let local = sockaddr_in(source, 0);
    // SAFETY: `local` is a live sockaddr_in and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&local as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sockaddr_in(*server.ip(), server.port());
    // SAFETY: as for bind.
    let rc = unsafe {
        libc::connect(
            raw,
            (&remote as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
    }
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(fd)))
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes within `set`; the index is checked against its capacity first.
    unsafe {
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpu out of range",
            ));
        }
        libc::CPU_SET(cpu, &mut set);
    }
    // SAFETY: pid 0 is the calling thread; `set` is live and its size is passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread when asked; a failure is reported once per thread, not fatal.
pub fn maybe_pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        if let Err(e) = pin_current_thread(cpu) {
            eprintln!("warning: cannot pin to CPU {cpu}: {e}");
        }
    }
}

/// The resident set of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time of process `pid` in nanoseconds: the sum over its threads of the first field of
/// `/proc/PID/task/TID/schedstat` (time spent on a CPU).
///
/// Threads that exit between two readings take their time with them; herald's threads live as
/// long as the process.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        {
            total += ns;
        }
    }
    Some(total)
}

/// CPU time (user and system) of this process so far, its finished threads included, in
/// nanoseconds.
pub fn own_cpu_ns() -> Option<u64> {
    // SAFETY: rusage is plain data; all zeroes is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live rusage, written by the call and read only after it succeeds.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Some(ns(usage.ru_utime) + ns(usage.ru_stime))
}

/// A small fast PRNG (xorshift64*), seeded from the OS: user picks and masking keys.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            seed = Clock::new().now_ns().to_le_bytes();
        }
        Rng(u64::from_le_bytes(seed) | 1)
    }

    /// The same sequence on every run.
    pub fn with_seed(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Makes closing `fd` send a TCP reset (RST) instead of a FIN: `SO_LINGER` on, with no time.
pub fn reset_on_close(fd: std::os::fd::RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value points to a live `linger` of the size passed; a bad descriptor
    // is an error return, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_some_and(|b| b > 0));
        assert!(cpu_ns(pid).is_some());
        assert!(own_cpu_ns().is_some());
    }

    #[test]
    fn rng_stays_below() {
        let mut rng = Rng::new();
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
