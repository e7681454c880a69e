//! The soak's sampler: once a second, each herald process's resident memory, descriptors and
//! CPU from `/proc`, its gauges from `/metrics`, and the run's own counters, as one [`Sample`].
//!
//! Processes are named by pid or by a pid file read again at every sample, so that a herald
//! restarted under a new pid is followed; one not there (exited, restarting, a file missing)
//! has empty fields for that sample. Samples fall on a fixed grid from the start: a slow sample
//! (a node not answering `/metrics`) delays only itself, and a tick it overran is skipped, not
//! made up for. The sampler only observes: it never judges a run.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pusher::parse_response;
use crate::soak::pushers::{response_body, Live};
use crate::soak::record::{Sample, ServerSample};
use crate::sys::{self, Clock};

/// How long one `/metrics` call may take, connecting included.
pub const METRICS_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest the sampler sleeps at once, so that it sees `stop` soon.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// What the sampler watches.
pub struct Plan {
    /// herald processes by pid, sampled first.
    pub pids: Vec<u32>,
    /// Files holding a herald pid, read again at every sample.
    pub pid_files: Vec<PathBuf>,
    /// Server `i`'s `/metrics` is asked on `controls[i]` (address, `Host` header), when there is
    /// one.
    pub controls: Vec<(SocketAddr, String)>,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    pub interval: Duration,
    /// The run's clock: a sample's `t` is read from it.
    pub clock: Clock,
}

/// Starts sampling every `plan.interval` until `stop`; the thread returns the samples.
pub fn start(
    plan: Plan,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<Vec<Sample>>> {
    if plan.interval.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a sampling interval above 0",
        ));
    }
    std::thread::Builder::new()
        .name("soak-sampler".into())
        .spawn(move || run(&plan, &live, &stop))
}

/// What the previous sample read of one process, for the CPU used since.
#[derive(Clone, Copy)]
struct CpuMark {
    pid: u32,
    cpu_ns: u64,
    at: Instant,
}

fn run(plan: &Plan, live: &Live, stop: &AtomicBool) -> Vec<Sample> {
    let servers = plan.pids.len() + plan.pid_files.len();
    let started_ns = plan.clock.now_ns();
    let started = plan.clock.instant_at(started_ns);
    let mut samples = Vec::new();
    let mut marks: Vec<Option<CpuMark>> = vec![None; servers];
    let mut last = (0u64, 0u64, 0u64);
    let mut tick = 1u32;
    loop {
        let due = started + plan.interval * tick;
        while Instant::now() < due && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                due.saturating_duration_since(Instant::now())
                    .min(SLEEP_SLICE),
            );
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut sample = Sample {
            t: plan.clock.now_ns().saturating_sub(started_ns) as f64 / 1e9,
            ..Sample::default()
        };
        // The run's counters first, at `t`: the servers' figures may take a while to come.
        let counters = (
            live.deliveries.load(Ordering::Relaxed),
            live.pushes_accepted.load(Ordering::Relaxed),
            live.pushes_failed.load(Ordering::Relaxed),
        );
        sample.clients_connected = live.clients_connected.load(Ordering::Relaxed);
        sample.deliveries = counters.0.saturating_sub(last.0);
        sample.pushes_accepted = counters.1.saturating_sub(last.1);
        sample.pushes_failed = counters.2.saturating_sub(last.2);
        last = counters;
        for (i, mark) in marks.iter_mut().enumerate() {
            let pid = match plan.pids.get(i) {
                Some(&pid) => Some(pid),
                None => read_pid_file(&plan.pid_files[i - plan.pids.len()]),
            };
            let mut server = process_sample(pid.filter(|&p| alive(p)), mark);
            if let Some(control) = plan.controls.get(i) {
                if let Some(m) = fetch_metrics(control, plan.api_key.as_deref()) {
                    server.connections = m.connections;
                    server.subscriptions = m.subscriptions;
                    server.deliveries_total = m.deliveries_total;
                }
            }
            sample.servers.push(server);
        }
        samples.push(sample);
        tick = next_tick(Instant::now().duration_since(started), plan.interval);
    }
    samples
}

/// The tick on the grid (`interval`, `2 interval`, ... from the start) that follows `elapsed`:
/// a sample that overran a tick skips it rather than catching up, and the grid never drifts.
fn next_tick(elapsed: Duration, interval: Duration) -> u32 {
    (elapsed.as_nanos() / interval.as_nanos()) as u32 + 1
}

/// Resident memory, descriptors and CPU of `pid` (none when `None`); `mark` holds the previous
/// CPU reading and is replaced by this one. CPU is known only when the previous sample read the
/// same process.
fn process_sample(pid: Option<u32>, mark: &mut Option<CpuMark>) -> ServerSample {
    let Some(pid) = pid else {
        *mark = None;
        return ServerSample::default();
    };
    let now = Instant::now();
    let cpu_now = sys::cpu_ns(pid);
    let cpu = match (*mark, cpu_now) {
        (Some(m), Some(ns)) if m.pid == pid => {
            let wall = now.duration_since(m.at).as_nanos() as f64;
            (wall > 0.0).then(|| ns.saturating_sub(m.cpu_ns) as f64 / wall)
        }
        _ => None,
    };
    *mark = cpu_now.map(|cpu_ns| CpuMark {
        pid,
        cpu_ns,
        at: now,
    });
    ServerSample {
        pid: Some(pid),
        rss_bytes: sys::rss_bytes(pid),
        fds: open_fds(pid),
        cpu,
        ..ServerSample::default()
    }
}

/// The pid a pid file holds (decimal, surrounding whitespace allowed).
fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether process `pid` is there and not a zombie (a killed herald its parent has not reaped
/// yet holds no memory and no descriptors worth charting).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Entries of `/proc/PID/fd`. None rather than 0 for a process caught exiting (its descriptors
/// closed before it is a zombie): herald always holds its listeners.
fn open_fds(pid: u32) -> Option<u64> {
    let n = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    (n > 0).then_some(n)
}

/// The gauges read from one `/metrics` answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    pub connections: Option<u64>,
    pub subscriptions: Option<u64>,
    pub deliveries_total: Option<u64>,
}

/// Reads `herald_connections`, `herald_subscriptions` and `herald_deliveries_total` from
/// Prometheus text: unlabelled lines only, comments skipped, a value that is not a whole
/// number >= 0 left out.
pub fn parse_metrics(text: &str) -> Metrics {
    let mut m = Metrics::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let slot = match name {
            "herald_connections" => &mut m.connections,
            "herald_subscriptions" => &mut m.subscriptions,
            "herald_deliveries_total" => &mut m.deliveries_total,
            _ => continue,
        };
        *slot = value.parse::<u64>().ok().or_else(|| {
            let v: f64 = value.parse().ok()?;
            (v.is_finite() && v >= 0.0 && v.fract() == 0.0).then_some(v as u64)
        });
    }
    m
}

/// Asks `GET /metrics` on a fresh connection, within [`METRICS_TIMEOUT`]; `None` on any
/// failure.
fn fetch_metrics((addr, host): &(SocketAddr, String), api_key: Option<&str>) -> Option<Metrics> {
    let deadline = Instant::now() + METRICS_TIMEOUT;
    let left = || Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
    let mut stream = TcpStream::connect_timeout(addr, METRICS_TIMEOUT).ok()?;
    let mut request = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(key) = api_key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    request.push_str("\r\n");
    stream.set_write_timeout(left()).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some((status, len)) = parse_response(&buf).ok()? {
            if status != 200 {
                return None;
            }
            let body = response_body(&buf[..len])?;
            return Some(parse_metrics(std::str::from_utf8(&body).ok()?));
        }
        stream.set_read_timeout(left()).ok()?;
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::process::Command;

    use super::*;

    const METRICS: &str = "\
# HELP herald_connections Open TCP connections on the public port.
# TYPE herald_connections gauge
herald_connections 1200
# HELP herald_connections_accepted_total TCP connections accepted.
# TYPE herald_connections_accepted_total counter
herald_connections_accepted_total 98765
herald_sockets{protocol=\"raw_json\"} 400
herald_worker_connections{worker=\"0\"} 600
herald_subscriptions 1500
herald_subscriptions_total 7
herald_deliveries_total 4.5e6
herald_deliveries_compressed_total 3
";

    #[test]
    fn metrics_text_gives_the_unlabelled_gauges() {
        assert_eq!(
            parse_metrics(METRICS),
            Metrics {
                connections: Some(1200),
                subscriptions: Some(1500),
                deliveries_total: Some(4_500_000),
            }
        );
        assert_eq!(parse_metrics(""), Metrics::default());
        // Labelled only, malformed or negative: not known.
        let odd = "herald_connections{worker=\"1\"} 3\nherald_subscriptions -1\n\
                   herald_deliveries_total NaN\nherald_connections\n";
        assert_eq!(parse_metrics(odd), Metrics::default());
        // Windows line ends and a timestamp after the value.
        let crlf = "herald_connections 5 1700000000000\r\nherald_subscriptions 6\r\n";
        assert_eq!(parse_metrics(crlf).connections, Some(5));
        assert_eq!(parse_metrics(crlf).subscriptions, Some(6));
    }

    #[test]
    fn ticks_stay_on_the_grid() {
        let s = Duration::from_secs(1);
        assert_eq!(next_tick(Duration::from_millis(1003), s), 2);
        assert_eq!(next_tick(Duration::from_millis(1999), s), 2);
        // A sample that took 1.5 s past tick 2: tick 3 is skipped, the next is at 4 s.
        assert_eq!(next_tick(Duration::from_millis(3500), s), 4);
    }

    /// A process that exited and was reaped: its pid names nothing now.
    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn cpu_is_known_between_two_readings_of_one_process() {
        let me = std::process::id();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut mark = None;
        let first = process_sample(Some(me), &mut mark);
        assert_eq!(first.pid, Some(me));
        assert!(first.rss_bytes.is_some_and(|b| b > 0));
        assert!(first.fds.is_some_and(|n| n >= 3));
        assert_eq!(first.cpu, None, "no reading before");
        let second = process_sample(Some(me), &mut mark);
        assert!(second.cpu.is_some_and(|c| c >= 0.0));
        // Another process under the same name (a restart): CPU since its own first reading.
        let other = process_sample(Some(child.id()), &mut mark);
        assert_eq!(other.cpu, None);
        let gone = process_sample(None, &mut mark);
        assert!(gone.pid.is_none() && gone.rss_bytes.is_none() && gone.fds.is_none());
        assert!(mark.is_none());
        let _ = child.kill();
        let _ = child.wait();
        assert!(alive(me));
        assert!(!alive(dead_pid()));
    }

    /// Answers `GET /metrics` with [`METRICS`] when it carries the key, 401 otherwise.
    fn metrics_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while crate::proto::find(&buf, b"\r\n\r\n").is_none() {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let answer = if head.starts_with("GET /metrics ")
                    && head.contains("Authorization: Bearer k3y\r\n")
                {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{METRICS}",
                        METRICS.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn samples_follow_pids_pid_files_metrics_and_counters() {
        let dir = std::env::temp_dir().join(format!("herald-soak-sampler-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let own = dir.join("own.pid");
        let dead = dir.join("dead.pid");
        std::fs::write(&own, format!("{}\n", std::process::id())).unwrap();
        std::fs::write(&dead, dead_pid().to_string()).unwrap();
        // Nothing listens on a port just freed.
        let refused = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let live = Arc::new(Live::default());
        live.deliveries.store(100, Ordering::Relaxed);
        live.pushes_accepted.store(7, Ordering::Relaxed);
        live.pushes_failed.store(2, Ordering::Relaxed);
        live.clients_connected.store(42, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Plan {
            pids: vec![std::process::id()],
            pid_files: vec![own.clone(), dir.join("missing.pid"), dead.clone()],
            controls: vec![(metrics_server(), "m".into()), (refused, "r".into())],
            api_key: Some("k3y".into()),
            interval: Duration::from_millis(100),
            clock: Clock::new(),
        };
        let sampler = start(plan, live.clone(), stop.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(450));
        stop.store(true, Ordering::Relaxed);
        let samples = sampler.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        assert!(samples.len() >= 2, "{} samples", samples.len());
        assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
        assert!(samples[0].t >= 0.1);
        // Counters: the interval's share, all of it in the first sample.
        assert_eq!(samples.iter().map(|s| s.deliveries).sum::<u64>(), 100);
        assert_eq!(samples[0].deliveries, 100);
        assert_eq!(samples.iter().map(|s| s.pushes_accepted).sum::<u64>(), 7);
        assert_eq!(samples.iter().map(|s| s.pushes_failed).sum::<u64>(), 2);
        assert!(samples.iter().all(|s| s.clients_connected == 42));
        for s in &samples {
            assert_eq!(s.servers.len(), 4);
            let (by_pid, by_file) = (&s.servers[0], &s.servers[1]);
            for server in [by_pid, by_file] {
                assert_eq!(server.pid, Some(std::process::id()));
                assert!(server.rss_bytes.is_some() && server.fds.is_some());
            }
            assert_eq!(by_pid.connections, Some(1200));
            assert_eq!(by_pid.subscriptions, Some(1500));
            assert_eq!(by_pid.deliveries_total, Some(4_500_000));
            // The second control refuses; the others have none.
            assert_eq!(by_file.connections, None);
            for gone in &s.servers[2..] {
                assert!(gone.pid.is_none() && gone.rss_bytes.is_none() && gone.fds.is_none());
                assert!(gone.cpu.is_none() && gone.connections.is_none());
            }
        }
        assert!(samples[0].servers[0].cpu.is_none());
        assert!(samples[1].servers[0].cpu.is_some());
    }
}
