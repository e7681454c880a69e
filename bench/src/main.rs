//! `herald-bench`: the end-to-end load generator for herald and for any gateway speaking the
//! same protocols (the raw `{"event","data"}` WebSocket protocol or Socket.IO v5, and the
//! `/v1/...` control API).
//!
//! The raw protocol speaks JSON or, with `--format msgpack`, MessagePack; `--deflate` offers
//! permessage-deflate on either protocol. With `--tls-ca` every WebSocket runs over TLS
//! (`wss://`), in every mode; the control API stays plain HTTP.
//!
//! One run: open `--connections` WebSockets (on `--client-threads` mio loops, at most
//! `--concurrency` handshakes in flight), subscribe connection `i` to `user-{i % users}`, then
//! push at a fixed `--rate` over keep-alive control connections (pipelined, or `--synchronous`
//! callers that wait for each answer) and measure, on every client, the latency of each delivery
//! from the push's due time, the latency of each push call, and for each push the latency of
//! its last delivery. Deliveries are checked against what the
//! generator's own subscription map says should arrive. With `--server-pid` the server's CPU time
//! and resident memory are read from `/proc`.
//!
//! `--handshakes` is a mode of its own: TLS handshakes as fast as the server takes them, each
//! connection closed once its handshake is done (see `handshakes`).
//!
//! Exit status: 0 when everything expected arrived, 2 when deliveries were lost or connections
//! or pushes failed, 1 when the run could not be made at all.

// The report's one `json!` literal has more keys than the default limit expands.
#![recursion_limit = "256"]

mod client;
mod handshakes;
mod proto;
mod pusher;
mod report;
mod soak;
mod sys;
mod tls;

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::proto::{Format, Offer, Protocol};
use crate::pusher::Pattern;
use crate::report::Report;
use crate::sys::Clock;
use crate::tls::Version;

/// End-to-end load generator for herald and gateways speaking its protocols.
///
/// Connects WebSocket clients, subscribes them to user ids, pushes notifications through the
/// control API at a fixed rate (open loop), and reports delivery latency (measured from each
/// push's due time), losses, duplicates, and optionally the server's CPU time and memory.
/// Exits 0 when nothing was lost, 2 when deliveries were lost or connections or pushes failed.
#[derive(Parser, Debug)]
#[command(name = "herald-bench", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// WebSocket server: HOST:PORT or ws://HOST:PORT[/PATH].
    #[arg(long, default_value = "127.0.0.1:5000")]
    url: String,

    /// Control API: HOST:PORT or http://HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:5001")]
    control: String,

    /// Client protocol: `raw` ({"event","data"} frames at /ws) or `socketio` (Socket.IO v5
    /// over an Engine.IO v4 WebSocket at /socket.io/).
    #[arg(long, value_enum, default_value_t = Protocol::Raw)]
    protocol: Protocol,

    /// Message encoding of the raw protocol: `json` (text frames) or `msgpack` (the same
    /// {"event","data"} envelope as MessagePack in binary frames, asked for with
    /// Sec-WebSocket-Protocol: herald.msgpack). Connections whose server does not choose
    /// herald.msgpack are counted and speak JSON. Raw protocol only.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,

    /// Offer permessage-deflate (RFC 7692) in every upgrade and inflate the messages that
    /// arrive compressed; the clients send uncompressed. The server must accept with
    /// server_no_context_takeover (one inflater per client thread serves all its connections);
    /// connections it answers without the extension are counted and run uncompressed. The
    /// report gives compressed messages and their sizes before and after inflating.
    #[arg(long)]
    deflate: bool,

    /// Upgrade request target; defaults to /ws (raw) or /socket.io/?EIO=4&transport=websocket
    /// (socketio), or the path given in --url.
    #[arg(long)]
    path: Option<String>,

    /// WebSocket connections to open.
    #[arg(long, default_value_t = 100)]
    connections: u32,

    /// Distinct user ids; connection i subscribes to user-{i % users}. Default: --connections.
    #[arg(long)]
    users: Option<u32>,

    /// Event-loop threads the connections are spread over.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,

    /// Connections in setup (connect, upgrade, subscribe) at once, over all client threads.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,

    /// Source addresses to bind before connecting, comma-separated (e.g.
    /// 127.0.0.1,127.0.0.2): connection i uses the (i % n)-th. Needed past about 28,000
    /// connections to one server address. Default: the kernel's choice.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<Ipv4Addr>,

    /// Time for one connection to connect, upgrade and get its subscription confirmed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,

    /// Who each push goes to: `broadcast` (POST /v1/broadcast), `unicast` (one random user,
    /// POST /v1/users/{u}/notifications), `multicast` (--k distinct random users,
    /// POST /v1/notifications).
    #[arg(long, value_enum, default_value_t = Pattern::Broadcast)]
    pattern: Pattern,

    /// Users per multicast push.
    #[arg(long, default_value_t = 10)]
    k: usize,

    /// Length in bytes of each notification's `message` text, filled with words (default: the
    /// one-letter "m"). Server messages under herald's compression threshold (1024 bytes by
    /// default) go uncompressed, so measuring --deflate at that threshold takes about 1000.
    #[arg(long, value_name = "BYTES")]
    message_size: Option<usize>,

    /// Pushes per second. Push k is due at start + k/rate and latency is measured from then.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,

    /// How long to push (e.g. 10s). With --pushes, whichever ends first; with neither, 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// How many pushes to send.
    #[arg(long)]
    pushes: Option<u64>,

    /// Keep-alive control connections; requests are pipelined on each and push k uses
    /// connection k % n.
    #[arg(long, default_value_t = 1)]
    control_connections: usize,

    /// Each control connection is a synchronous caller: one request at a time, the next sent
    /// when it is due and the previous one answered. Pushes the callers could not send before
    /// the schedule ended are reported as unsent, not as failures.
    #[arg(long)]
    synchronous: bool,

    /// After the last push, how long to wait for outstanding answers and deliveries.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain: Duration,

    /// Wait after every connection subscribed, before measuring idle RSS and pushing.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    idle: Duration,

    /// Connect, subscribe, wait --idle, report memory; push nothing.
    #[arg(long)]
    idle_only: bool,

    /// The server's process id: its CPU time (/proc/PID/task/*/schedstat) over the push phase
    /// and its RSS (/proc/PID/status) before, when idle and after.
    #[arg(long)]
    server_pid: Option<u32>,

    /// Pin every thread of the generator to this CPU.
    #[arg(long)]
    pin_cpu: Option<usize>,

    /// A name for the run, first word of the summary and `label` in the JSON.
    #[arg(long, default_value = "herald")]
    label: String,

    /// Write the JSON report to FILE; `-` for standard output.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write the latency distribution as CSV (percentile,latency_us) to FILE.
    #[arg(long, value_name = "FILE")]
    latency_csv: Option<PathBuf>,

    /// No progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,

    /// The largest server message a client accepts, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_message: usize,

    /// Connect over TLS (`wss://`), trusting the CA certificates in this PEM file and no
    /// other. Every mode runs over TLS then; without it, plain TCP (`ws://`).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,

    /// The name the server's certificate must carry (and the SNI sent).
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    tls_name: String,

    /// TLS versions offered: `any` (1.3 and 1.2, the server picks), `1.3` or `1.2`.
    #[arg(long, value_enum, default_value_t = Version::Any, requires = "tls_ca")]
    tls_version: Version,

    /// Resume TLS sessions: every connection shares one session store (rustls's default, in
    /// memory) and resumes with a ticket an earlier connection was given. Without it every
    /// handshake is a full one.
    #[arg(long, requires = "tls_ca")]
    tls_resume: bool,

    /// Handshakes only: for --duration (default 10s), keep --concurrency connections in flight,
    /// each connecting, completing its TLS handshake, reading the session tickets and closing;
    /// report how many completed, full or resumed, and the server's CPU per handshake. Without
    /// --tls-ca each connection closes once connected, and is done when the server closed.
    /// No WebSocket, no pushes.
    #[arg(long)]
    handshakes: bool,
}

/// Modes with flags of their own.
#[derive(clap::Subcommand, Debug)]
enum Command {
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if let Some(Command::Soak(soak)) = &args.command {
        soak::run(soak)
    } else if args.handshakes {
        run_handshakes(&args)
    } else {
        run(&args).map(|report| report.failed())
    };
    match outcome {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(2),
        Err(e) => {
            eprintln!("herald-bench: {e}");
            ExitCode::from(1)
        }
    }
}

pub(crate) type BoxError = Box<dyn std::error::Error>;

/// `HOST:PORT`, optionally with a scheme and a path: the address, the `Host` header, the path.
pub(crate) fn parse_target(spec: &str) -> Result<(SocketAddr, String, Option<String>), BoxError> {
    let rest = spec
        .split_once("://")
        .map_or(spec, |(_, rest)| rest)
        .to_string();
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), Some(rest[i..].to_string())),
        None => (rest, None),
    };
    let addrs: Vec<SocketAddr> = host
        .to_socket_addrs()
        .map_err(|e| format!("{spec}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{spec}: no address"))?;
    Ok((addr, host, path.filter(|p| p != "/")))
}

fn bar(len: u64, template: &str, quiet: bool) -> ProgressBar {
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

/// The TLS client of `--tls-ca`, or `None` for plain connections. A `wss://` URL needs one.
fn tls_client(args: &Args) -> Result<Option<Arc<tls::Client>>, BoxError> {
    let Some(ca) = &args.tls_ca else {
        if args.url.starts_with("wss://") {
            return Err("a wss:// --url needs --tls-ca".into());
        }
        return Ok(None);
    };
    let client = tls::Client::new(ca, &args.tls_name, args.tls_version, args.tls_resume)?;
    Ok(Some(Arc::new(client)))
}

/// `--handshakes`: see `handshakes`. True when any connection failed.
fn run_handshakes(args: &Args) -> Result<bool, BoxError> {
    if args.client_threads == 0 {
        return Err("--client-threads must be > 0".into());
    }
    let tls = tls_client(args)?;
    let (server, _, _) = parse_target(&args.url)?;
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    sys::maybe_pin(args.pin_cpu);
    let pid = args.server_pid;
    let concurrency = args.concurrency.max(1).div_ceil(args.client_threads);
    let cpu_start = pid.and_then(sys::cpu_ns);
    let start = Instant::now();
    let until = start + duration;
    let mut handles = Vec::with_capacity(args.client_threads);
    for t in 0..args.client_threads {
        let plan = handshakes::Plan {
            server,
            tls: tls.clone(),
            source_ips: args.source_ips.clone(),
            concurrency,
            until,
            timeout: args.connect_timeout,
            pin_cpu: args.pin_cpu,
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("handshakes-{t}"))
                .spawn(move || handshakes::run(plan))?,
        );
    }
    let mut outcome = handshakes::Outcome::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok(o)) => outcome.add(o),
            Ok(Err(e)) => *outcome.failures.entry(format!("thread: {e}")).or_default() += 1,
            Err(_) => {
                *outcome
                    .failures
                    .entry("thread panicked".into())
                    .or_default() += 1
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let own_cpu_ns = sys::own_cpu_ns();
    let server_cpu_ns = match (cpu_start, pid.and_then(sys::cpu_ns)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let per_sec = outcome.completed as f64 / seconds;
    let cpu_us = server_cpu_ns
        .filter(|_| outcome.completed > 0)
        .map(|ns| ns as f64 / 1e3 / outcome.completed as f64);
    let failed: u64 = outcome.failures.values().sum();
    let json = serde_json::json!({
        "label": args.label,
        "mode": "handshakes",
        "tls": tls.is_some(),
        "tls_version": args.tls_version.name(),
        "tls_resume": args.tls_resume,
        "concurrency": args.concurrency,
        "seconds": (seconds * 1e3).round() / 1e3,
        "completed": outcome.completed,
        "per_sec": per_sec.round(),
        "full": outcome.full,
        "resumed": outcome.resumed,
        "tls13": outcome.tls13,
        "tls12": outcome.tls12,
        "no_ticket": outcome.no_ticket,
        "failed": failed,
        "failures": outcome.failures,
        "server_cpu_ns": server_cpu_ns,
        "server_cpu_us_per_completed": cpu_us.map(|us| (us * 1e3).round() / 1e3),
        // The generator's own CPU over the run: near `seconds` means it was the limit.
        "client_cpu_ns": own_cpu_ns,
    });
    let text = serde_json::to_string_pretty(&json)?;
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{text}"),
        Some(p) => std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?,
        None => {}
    }
    let what = if tls.is_some() {
        "handshakes"
    } else {
        "connections"
    };
    let mut summary = format!(
        "{} {what}: {} in {seconds:.1} s ({per_sec:.0}/s), {} full, {} resumed, {failed} failed",
        args.label, outcome.completed, outcome.full, outcome.resumed
    );
    if let Some(us) = cpu_us {
        summary.push_str(&format!(", server CPU {us:.1} us each"));
    }
    eprintln!("{summary}");
    if failed > 0 {
        eprintln!("FAILED: {:?}", outcome.failures);
    }
    Ok(failed > 0)
}

fn run(args: &Args) -> Result<Report, BoxError> {
    if args.connections == 0 || args.client_threads == 0 || args.control_connections == 0 {
        return Err("--connections, --client-threads and --control-connections must be > 0".into());
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err("--rate must be a positive number".into());
    }
    if args.format == Format::Msgpack && args.protocol != Protocol::Raw {
        return Err("--format msgpack needs --protocol raw: Socket.IO has its own encoding".into());
    }
    let users = args.users.unwrap_or(args.connections).max(1);
    if args.pattern == Pattern::Multicast && (args.k == 0 || args.k > users as usize) {
        return Err(format!("--k must be between 1 and --users ({users})").into());
    }
    let tls = tls_client(args)?;
    let (server, host, url_path) = parse_target(&args.url)?;
    let (control, control_host, _) = parse_target(&args.control)?;
    let path = args
        .path
        .clone()
        .or(url_path)
        .unwrap_or_else(|| args.protocol.default_path().to_string());
    sys::maybe_pin(args.pin_cpu);
    let clock = Clock::new();
    let pid = args.server_pid;
    let rss_baseline = pid.and_then(sys::rss_bytes);

    // Connect and subscribe.
    let n = u64::from(args.connections);
    let progress = Arc::new(client::Progress::default());
    let client_stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let threads = args.client_threads.min(args.connections as usize);
    let per_thread_concurrency = args.concurrency.max(1).div_ceil(threads);
    let connect_start = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let plan = client::Plan {
            protocol: args.protocol,
            offer: Offer {
                deflate: args.deflate,
                msgpack: args.format == Format::Msgpack,
            },
            server,
            host: host.clone(),
            path: path.clone(),
            connections: (0..args.connections)
                .filter(|i| *i as usize % threads == t)
                .collect(),
            users,
            source_ips: args.source_ips.clone(),
            concurrency: per_thread_concurrency,
            connect_timeout: args.connect_timeout,
            max_message: args.max_message,
            pin_cpu: args.pin_cpu,
            clock,
            tls: tls.clone(),
        };
        let (p, tx, st) = (progress.clone(), ready_tx.clone(), client_stop.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("clients-{t}"))
                .spawn(move || client::run(plan, p, tx, st))?,
        );
    }
    drop(ready_tx);
    let pb = bar(
        n,
        "connecting {bar:40} {pos}/{len} subscribed {msg} [{elapsed}]",
        args.quiet,
    );
    let mut subscribed_indices: Vec<u32> = Vec::new();
    let mut readies = 0;
    while readies < threads {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(list) => {
                subscribed_indices.extend(list);
                readies += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // A thread that ended without reporting failed outright; it says why at join.
                if handles.iter().filter(|h| h.is_finished()).count() + readies >= threads {
                    break;
                }
            }
        }
        let failed = progress.failed.load(Ordering::Relaxed);
        pb.set_position(progress.subscribed.load(Ordering::Relaxed));
        if failed > 0 {
            pb.set_message(format!("({failed} failed)"));
        }
    }
    pb.finish_and_clear();
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let connections_ok = subscribed_indices.len() as u64;
    let mut subscribers = vec![0u32; users as usize];
    for i in &subscribed_indices {
        subscribers[(*i % users) as usize] += 1;
    }
    drop(subscribed_indices);

    if !args.idle.is_zero() {
        std::thread::sleep(args.idle);
    }
    let rss_idle = pid.and_then(sys::rss_bytes);

    // Push and drain.
    let message = pusher::message_text(args.message_size);
    let planned = if args.idle_only {
        0
    } else {
        let by_time = |d: Duration| (d.as_secs_f64() * args.rate).floor() as u64;
        match (args.pushes, args.duration) {
            (Some(p), Some(d)) => p.min(by_time(d)),
            (Some(p), None) => p,
            (None, Some(d)) => by_time(d),
            (None, None) => by_time(Duration::from_secs(10)),
        }
    };
    let mut push_outcome = None;
    let mut server_cpu_ns = None;
    let mut push_seconds = 0.0;
    let mut push_lag_max_us = 0;
    let mut pushes_sent = 0;
    let mut pushes_unsent = 0;
    let mut last_answer_seconds = None;
    let mut expected = 0;
    if planned > 0 {
        let cpu_start = pid.and_then(sys::cpu_ns);
        // A little ahead, so the control connections are open when push 0 is due.
        let start_ns = clock.now_ns() + 20_000_000;
        let push_stop = Arc::new(AtomicBool::new(false));
        let running = pusher::start(
            pusher::Plan {
                control,
                host: control_host,
                pattern: args.pattern,
                k: args.k,
                rate: args.rate,
                total: planned,
                connections: args.control_connections,
                synchronous: args.synchronous,
                subscribers: Arc::new(subscribers),
                subscribed_total: connections_ok,
                clock,
                start_ns,
                message: message.clone(),
                pin_cpu: args.pin_cpu,
            },
            push_stop.clone(),
        )
        .map_err(|e| format!("control API at {control}: {e}"))?;
        let pp = running.progress.clone();
        let pb = bar(
            planned,
            "pushing {bar:40} {pos}/{len} pushes {msg} [{elapsed}]",
            args.quiet,
        );
        let writers = args.control_connections as u64;
        let due_end =
            clock.instant_at(start_ns) + Duration::from_secs_f64(planned as f64 / args.rate);
        let mut drain_deadline = None;
        loop {
            std::thread::sleep(Duration::from_millis(10));
            pb.set_position(pp.sent.load(Ordering::Relaxed));
            let received = progress.received.load(Ordering::Relaxed);
            pb.set_message(format!("{received} deliveries"));
            let now = Instant::now();
            if drain_deadline.is_none()
                && (pp.writers_done.load(Ordering::Relaxed) >= writers || now >= due_end)
            {
                // Writers still busy past the schedule are behind a slow server: they get the
                // drain time too, then are stopped.
                drain_deadline = Some(now.max(due_end) + args.drain);
            }
            let all_answered = pp.readers_done.load(Ordering::Relaxed) >= writers;
            if all_answered && received >= pp.expected.load(Ordering::Relaxed) {
                break;
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                break;
            }
        }
        push_stop.store(true, Ordering::Relaxed);
        pb.finish_and_clear();
        push_outcome = Some(running.join());
        let end_ns = clock.now_ns().min(
            progress
                .last_delivery_ns
                .load(Ordering::Relaxed)
                .max(start_ns + (planned as f64 * 1e9 / args.rate) as u64),
        );
        push_seconds = end_ns.saturating_sub(start_ns) as f64 / 1e9;
        server_cpu_ns = match (cpu_start, pid.and_then(sys::cpu_ns)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        push_lag_max_us = pp.max_lag_ns.load(Ordering::Relaxed) / 1000;
        pushes_sent = pp.sent.load(Ordering::Relaxed);
        pushes_unsent = pp.unsent.load(Ordering::Relaxed);
        let last_answer = pp.last_answer_ns.load(Ordering::Relaxed);
        last_answer_seconds =
            (last_answer > 0).then(|| last_answer.saturating_sub(start_ns) as f64 / 1e9);
        expected = pp.expected.load(Ordering::Relaxed);
    }

    // Stop the clients and gather what they saw.
    client_stop.store(true, Ordering::Relaxed);
    let mut latency = pusher::latency_histogram();
    // Per push seq, the latency of its latest delivery over every client thread.
    let mut slowest: Vec<u64> = Vec::new();
    let mut report = Report {
        label: args.label.clone(),
        protocol: args.protocol.name(),
        format: args.format.name(),
        deflate: args.deflate,
        tls: tls.as_ref().map(|_| args.tls_version.name()),
        pattern: if args.idle_only {
            "idle"
        } else {
            args.pattern.name()
        },
        rate: args.rate,
        message_size: message.len(),
        users,
        connections_requested: n,
        connections_ok,
        connections_failed: n - connections_ok,
        connect_failures: Default::default(),
        connect_seconds,
        disconnected: 0,
        pushes_planned: planned,
        pushes_sent,
        pushes_unsent,
        push_statuses: Default::default(),
        push_calls: pusher::latency_histogram(),
        last_answer_seconds,
        push_errors: 0,
        push_error_messages: Vec::new(),
        push_lag_max_us,
        push_seconds,
        deliveries_expected: expected,
        deliveries_received: 0,
        deliveries_duplicates: 0,
        deliveries_unchecked: 0,
        deliveries_unparsed: 0,
        latency: latency.clone(),
        last_delivery: pusher::latency_histogram(),
        server_cpu_ns,
        rss_baseline,
        rss_idle,
        rss_after: None,
        wire: Default::default(),
    };
    for handle in handles {
        match handle.join() {
            Ok(Ok(c)) => {
                latency.add(&c.histogram)?;
                if slowest.len() < c.slowest.len() {
                    slowest.resize(c.slowest.len(), 0);
                }
                for (all, mine) in slowest.iter_mut().zip(&c.slowest) {
                    *all = (*all).max(*mine);
                }
                report.deliveries_received += c.received;
                report.deliveries_duplicates += c.duplicates;
                report.deliveries_unchecked += c.unchecked;
                report.deliveries_unparsed += c.unparsed;
                report.disconnected += c.disconnected;
                report.wire.add(&c.wire);
                for (why, count) in c.failures {
                    *report.connect_failures.entry(why).or_default() += count;
                }
            }
            Ok(Err(e)) => {
                *report
                    .connect_failures
                    .entry(format!("client thread: {e}"))
                    .or_default() += 1;
            }
            Err(_) => {
                *report
                    .connect_failures
                    .entry("client thread panicked".into())
                    .or_default() += 1;
            }
        }
    }
    report.latency = latency;
    for us in slowest.into_iter().filter(|us| *us > 0) {
        report.last_delivery.saturating_record(us);
    }
    if let Some(outcome) = push_outcome {
        let answered: u64 = outcome.statuses.values().sum();
        report.push_errors = planned.saturating_sub(answered + pushes_unsent);
        report.push_statuses = outcome.statuses;
        report.push_calls = outcome.calls;
        report.push_error_messages = outcome.errors;
    }
    report.rss_after = pid.and_then(sys::rss_bytes);

    // Say it.
    let json = serde_json::to_string_pretty(&report.to_json())?;
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => std::fs::write(p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?,
        None => {}
    }
    if let Some(p) = &args.latency_csv {
        report::write_latency_csv(p, &report.latency)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    eprintln!("{}", report.summary());
    if report.lost() > 0 {
        eprintln!(
            "LOSS: {} of {} expected deliveries never arrived ({} received, {} duplicates)",
            report.lost(),
            report.deliveries_expected,
            report.deliveries_received,
            report.deliveries_duplicates
        );
    }
    if report.deliveries_duplicates > 0 {
        eprintln!(
            "DUPLICATES: {} deliveries arrived twice",
            report.deliveries_duplicates
        );
    }
    if report.connections_failed > 0 {
        eprintln!(
            "FAILED: {} of {} connections did not subscribe: {:?}",
            report.connections_failed, n, report.connect_failures
        );
    }
    if report.disconnected > 0 {
        eprintln!(
            "FAILED: the server closed {} subscribed connections during the run",
            report.disconnected
        );
    }
    if report.wire.format_declined > 0 {
        eprintln!(
            "WARNING: {} connections were upgraded without the herald.msgpack subprotocol \
             asked for; they spoke JSON",
            report.wire.format_declined
        );
    }
    if report.wire.deflate_declined > 0 {
        eprintln!(
            "WARNING: {} connections were upgraded without the permessage-deflate offered; \
             their messages arrived uncompressed",
            report.wire.deflate_declined
        );
    }
    if args.deflate
        && report.wire.deflate_declined < report.connections_ok
        && report.deliveries_received > 0
        && report.wire.compressed_messages == 0
    {
        eprintln!(
            "WARNING: permessage-deflate was accepted but no message came compressed \
             (all under the server's size threshold?)"
        );
    }
    if report.push_errors > 0 || !report.push_error_messages.is_empty() {
        eprintln!(
            "FAILED: {} pushes got no answer: {:?}",
            report.push_errors, report.push_error_messages
        );
    }
    let refused: u64 = report
        .push_statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    if refused > 0 {
        eprintln!(
            "FAILED: {refused} pushes answered without 2xx: {:?}",
            report.push_statuses
        );
    }
    Ok(report)
}
