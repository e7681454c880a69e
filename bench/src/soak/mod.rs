//! `herald-bench soak`: a long run of clients that come and go while pushes flow, checked for
//! every notification owed.
//!
//! Clients of four kinds (raw JSON, raw MessagePack with permessage-deflate, Socket.IO over
//! WebSocket, Socket.IO over long-polling) connect, subscribe, stay a random time, drop in one of
//! four ways (a clean close, a TCP reset, a silent vanish without FIN, a reset in the middle of a
//! frame), stay away a random time and come back asking for what they missed: raw clients with
//! their last offset, Socket.IO clients with their session id and offset. Pushers make unicast,
//! multi-user and broadcast pushes at given rates; every answer is kept. Once a second herald's
//! resident memory, descriptors, CPU and `/metrics` are sampled.
//!
//! At the end, every client's history is checked against the pushes the control API accepted
//! (see `ledger`): each notification a client was owed is received once, in order.

pub mod chart;
pub mod clients;
pub mod ledger;
pub mod pushers;
pub mod record;
pub mod sampler;

use std::path::PathBuf;
use std::time::Duration;

/// A range of durations, `MIN..MAX` (e.g. `5s..60s`) or one duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub min: Duration,
    pub max: Duration,
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        let parse = |t: &str| humantime::parse_duration(t.trim()).map_err(|e| format!("{t}: {e}"));
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let d = parse(s)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!("{s}: the first bound is above the second"));
        }
        Ok(Span { min, max })
    }
}

/// Weights by name, `name=weight,...` (e.g. `raw-json=4,socketio-polling=1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights(pub Vec<(String, f64)>);

impl std::str::FromStr for Weights {
    type Err = String;
    fn from_str(s: &str) -> Result<Weights, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part.split_once('=').unwrap_or((part, "1"));
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| format!("{part}: the weight is not a number"))?;
            if !(w >= 0.0 && w.is_finite()) {
                return Err(format!("{part}: a weight is a number >= 0"));
            }
            out.push((name.trim().to_string(), w));
        }
        if out.iter().all(|(_, w)| *w == 0.0) {
            return Err(format!("{s}: no weight above 0"));
        }
        Ok(Weights(out))
    }
}

/// `herald-bench soak`: clients that come, go and recover while pushes flow, for as long as
/// asked; every notification owed is checked.
///
/// The run has three phases: ramp (every client connects and subscribes), churn (--duration:
/// clients stay, drop and return; pushes flow), settle (--settle: no more drops, every client
/// away comes back, pushes still flow), then pushes stop and deliveries drain (--drain). A
/// client is owed every push for its user (and every broadcast) logged after its first
/// subscription, across every return that herald answered as recovered; a return answered
/// `recovered: false` starts a new history from that answer's offset.
///
/// Exit status: 0 when nothing owed was lost, duplicated or out of order, no return in the same
/// epoch within the recovery window was refused (unless --allow-unrecovered), and every client
/// is back at the end; 2 otherwise; 1 when the run could not be made.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Public addresses of herald, comma-separated (HOST:PORT or ws://HOST:PORT): a client
    /// connects to the next one on every (re)connection, skipping those that refuse.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:5000")]
    pub url: Vec<String>,

    /// Control API addresses, comma-separated: pusher i starts on the i-th and moves to the
    /// next when one does not answer.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:5001")]
    pub control: Vec<String>,

    /// The control API key (`Authorization: Bearer`), when herald has one.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Clients (logical devices): each holds at most one connection at a time.
    #[arg(long, default_value_t = 1000)]
    pub clients: u32,

    /// Distinct users; client i is user `{prefix}{i % users}`. Default: clients / 2 (two
    /// devices per user).
    #[arg(long)]
    pub users: Option<u32>,

    /// User id prefix.
    #[arg(long, default_value = "soak-")]
    pub user_prefix: String,

    /// The mix of client kinds, by weight: raw-json, raw-msgpack (MessagePack with
    /// permessage-deflate), socketio-ws, socketio-polling.
    #[arg(
        long,
        default_value = "raw-json=4,raw-msgpack=2,socketio-ws=3,socketio-polling=1"
    )]
    pub mix: Weights,

    /// How clients drop, by weight: clean (a WebSocket close frame; over polling, the
    /// connection closed with a FIN, as a page going away leaves it), reset (TCP RST),
    /// vanish (no FIN: the socket is left silent, and closed --reap-after later whether or
    /// not its client came back),
    /// midframe (half a frame sent, then RST).
    #[arg(long, default_value = "clean=1,reset=1,vanish=1,midframe=1")]
    pub drops: Weights,

    /// How long a client stays connected before it drops (uniform in the range). 0 or less
    /// than the run: no drop.
    #[arg(long, default_value = "10s..60s")]
    pub stay: Span,

    /// How long a dropped client stays away before coming back, whether or not herald noticed
    /// it left (a vanished client is noticed only after --reap-after).
    #[arg(long, default_value = "100ms..10s")]
    pub away: Span,

    /// herald's time to notice a silent client (its ping interval plus ping timeout).
    #[arg(long, default_value = "45s", value_parser = humantime::parse_duration)]
    pub reap_after: Duration,

    /// herald's --recovery-window: a return later than this may be refused without fault.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub recovery_window: Duration,

    /// Pushes per second to one random user, over all pushers.
    #[arg(long, default_value_t = 50.0)]
    pub unicast_rate: f64,

    /// Pushes per second to --k random users at once.
    #[arg(long, default_value_t = 5.0)]
    pub multi_rate: f64,

    /// Users per multi-user push.
    #[arg(long, default_value_t = 10)]
    pub k: usize,

    /// Broadcasts per second.
    #[arg(long, default_value_t = 0.5)]
    pub broadcast_rate: f64,

    /// Pusher threads, each a synchronous caller on its own keep-alive connection.
    #[arg(long, default_value_t = 2)]
    pub pushers: usize,

    /// The churn phase: clients drop and return.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// After churn: no more drops; the clients away come back; pushes go on. Default: the
    /// longest time away (--away's bound) plus 5 s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub settle: Option<Duration>,

    /// After the last push: how long to wait for deliveries still owed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,

    /// A client that cannot (re)connect tries again after a delay doubling from 100 ms to this.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,

    /// Time for one connection to connect, upgrade and get its subscription answered.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Connections in setup at once, over all client threads.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,

    /// Client event-loop threads.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// Source addresses for the clients, comma-separated (client i binds the (i % n)-th).
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<std::net::Ipv4Addr>,

    /// A herald process to sample (RSS, descriptors, CPU) every second; repeatable.
    #[arg(long)]
    pub server_pid: Vec<u32>,

    /// A file holding a herald process id, read again every second (to follow restarts);
    /// repeatable, sampled after the --server-pid ones.
    #[arg(long)]
    pub pid_file: Vec<PathBuf>,

    /// Accept `recovered: false` in the same epoch within the window (Redis unreachable, a
    /// test that kills nodes): counted, not failed.
    #[arg(long)]
    pub allow_unrecovered: bool,

    /// Seed of every random choice (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Write one row per second (RSS, descriptors, CPU, connections, deliveries) to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Draw RSS, descriptors, connections and deliveries per second over time to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Write the summary as JSON to FILE (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// A line on standard error every N seconds while running (0: none).
    #[arg(long, default_value_t = 10)]
    pub progress_every: u64,
}

/// What a run found, as printed and written with --json.
struct Outcome {
    verdict: ledger::Verdict,
    stats: clients::Stats,
    returns: ledger::Returns,
    stranded: u64,
    pushes: Vec<record::PushRecord>,
    samples: Vec<record::Sample>,
    kinds: [u64; 4],
    ramp_s: f64,
    churn_at: f64,
    elapsed_s: f64,
    received: u64,
    skipped: u64,
}

/// Runs a soak; true when a check failed.
pub fn run(args: &SoakArgs) -> Result<bool, crate::BoxError> {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    if args.clients == 0 || args.client_threads == 0 || args.pushers == 0 {
        return Err("--clients, --client-threads and --pushers must be > 0".into());
    }
    let users = args.users.unwrap_or((args.clients / 2).max(1)).max(1);
    let mix = weights(
        &args.mix,
        &clients::Kind::ALL.map(clients::Kind::name),
        "--mix",
    )?;
    let drops = weights(
        &args.drops,
        &clients::DropMode::ALL.map(clients::DropMode::name),
        "--drops",
    )?;
    let mut nodes = Vec::new();
    for url in &args.url {
        let (addr, host, _) = crate::parse_target(url)?;
        nodes.push(clients::Node { addr, host });
    }
    let mut controls = Vec::new();
    for c in &args.control {
        let (addr, host, _) = crate::parse_target(c)?;
        controls.push((addr, host));
    }
    let clock = crate::sys::Clock::new();
    let seed = args.seed.unwrap_or_else(|| clock.now_ns());
    let settle = args
        .settle
        .unwrap_or_else(|| args.away.max + Duration::from_secs(5));

    // Kinds drawn once, by weight, from the seed: the same seed gives the same clients.
    let mut rng = crate::sys::Rng::with_seed(seed);
    let mut per_thread: Vec<Vec<(u32, clients::Kind)>> = vec![Vec::new(); args.client_threads];
    let mut kinds = [0u64; 4];
    for i in 0..args.clients {
        let x = unit(&mut rng) * mix[3];
        let k = mix.iter().position(|&upto| x < upto).unwrap_or(0);
        kinds[k] += 1;
        per_thread[i as usize % args.client_threads].push((i, clients::Kind::ALL[k]));
    }

    let live = Arc::new(pushers::Live::default());
    let phase = Arc::new(AtomicU8::new(clients::RAMP));
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = sampler::start(
        sampler::Plan {
            pids: args.server_pid.clone(),
            pid_files: args.pid_file.clone(),
            controls: controls.clone(),
            api_key: args.api_key.clone(),
            interval: Duration::from_secs(1),
            clock,
        },
        live.clone(),
        sampling.clone(),
    )?;
    let t0 = Instant::now();
    let since = |t: Instant| t.duration_since(t0).as_secs_f64();

    let mut threads = Vec::new();
    for (t, mine) in per_thread.into_iter().enumerate() {
        let plan = clients::Plan {
            thread: t,
            clients: mine,
            users,
            user_prefix: args.user_prefix.clone(),
            nodes: nodes.clone(),
            ws_path: "/ws".into(),
            socketio_path: "/socket.io/".into(),
            source_ips: args.source_ips.clone(),
            concurrency: args.concurrency.div_ceil(args.client_threads).max(1),
            connect_timeout: args.connect_timeout,
            stay: args.stay,
            away: args.away,
            drops,
            reap_after: args.reap_after,
            recovery_window: args.recovery_window,
            max_backoff: args.max_backoff,
            seed,
        };
        let (phase, live) = (phase.clone(), live.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("soak-clients-{t}"))
                .spawn(move || clients::run(plan, phase, live))?,
        );
    }

    let progress = |what: &str| {
        eprintln!(
            "soak {:>6.0}s {what}: {} clients subscribed, {} notifications, {} pushes accepted, {} failed",
            t0.elapsed().as_secs_f64(),
            live.clients_connected.load(Ordering::Relaxed),
            live.deliveries.load(Ordering::Relaxed),
            live.pushes_accepted.load(Ordering::Relaxed),
            live.pushes_failed.load(Ordering::Relaxed),
        );
    };
    let every = Duration::from_secs(args.progress_every.max(1));
    let wait = |until: Instant, what: &str, done: &dyn Fn() -> bool| {
        let mut next = Instant::now() + every;
        while Instant::now() < until && !done() {
            std::thread::sleep(Duration::from_millis(50));
            if args.progress_every > 0 && Instant::now() >= next {
                progress(what);
                next += every;
            }
        }
    };

    // Ramp: every client subscribed, or a minute and a second per 200 clients.
    let ramp_limit = Duration::from_secs(60 + u64::from(args.clients) / 200);
    let all = u64::from(args.clients);
    wait(t0 + ramp_limit, "ramp", &|| {
        live.clients_connected.load(Ordering::Relaxed) >= all
    });
    let ramp_s = since(Instant::now());
    progress("ramp done");

    // Churn, with pushes.
    let stop_pushing = Arc::new(AtomicBool::new(false));
    let pushing = pushers::start(
        pushers::Plan {
            controls: controls.clone(),
            api_key: args.api_key.clone(),
            users,
            user_prefix: args.user_prefix.clone(),
            unicast_rate: args.unicast_rate,
            multi_rate: args.multi_rate,
            k: args.k.min(users as usize).max(1),
            broadcast_rate: args.broadcast_rate,
            pushers: args.pushers,
            seed: seed ^ 0x5eed,
            clock,
        },
        stop_pushing.clone(),
        live.clone(),
    )?;
    phase.store(clients::CHURN, Ordering::Relaxed);
    let churn_at = since(Instant::now());
    wait(Instant::now() + args.duration, "churn", &|| false);
    phase.store(clients::SETTLE, Ordering::Relaxed);
    progress("settle");
    wait(Instant::now() + settle, "settle", &|| false);
    stop_pushing.store(true, Ordering::Relaxed);
    let pushes = pushing.join();
    progress("pushes stopped; drain");

    // Drain: until nothing arrived for two seconds, or --drain.
    let mut last = (live.deliveries.load(Ordering::Relaxed), Instant::now());
    let drain_until = Instant::now() + args.drain;
    while Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(100));
        let d = live.deliveries.load(Ordering::Relaxed);
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(2) {
            break;
        }
    }
    // One more sample with everything settled, then stop.
    std::thread::sleep(Duration::from_millis(1100));
    phase.store(clients::STOP, Ordering::Relaxed);
    let mut histories = Vec::new();
    let mut stats = clients::Stats::default();
    for t in threads {
        let report = t.join().map_err(|_| "a client thread panicked")??;
        histories.extend(report.histories);
        stats.add(&report.stats);
    }
    sampling.store(true, Ordering::Relaxed);
    let samples = sampler.join().map_err(|_| "the sampler panicked")?;
    let elapsed_s = since(Instant::now());

    let verdict = ledger::verify(&pushes, &histories);
    let mut returns = ledger::Returns::default();
    for h in &histories {
        returns.add(&h.returns);
    }
    let stranded = histories.iter().filter(|h| h.stranded).count() as u64;
    let outcome = Outcome {
        verdict,
        stats,
        returns,
        stranded,
        pushes,
        samples,
        kinds,
        ramp_s,
        churn_at,
        elapsed_s,
        received: live.deliveries.load(Ordering::Relaxed),
        skipped: live.pushes_skipped.load(Ordering::Relaxed),
    };
    let failed = !outcome.verdict.clean()
        || outcome.stranded > 0
        || (outcome.returns.refused > 0 && !args.allow_unrecovered);
    print!("{}", summary(args, &outcome, failed));
    let json = to_json(args, seed, users, &outcome, failed);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json)?;
        if path.as_os_str() == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n")?;
        }
    }
    if let Some(path) = &args.csv {
        chart::write_csv(path, &outcome.samples)?;
    }
    if let Some(path) = &args.svg {
        let marks = vec![
            (outcome.churn_at, "churn".to_string()),
            (
                outcome.churn_at + args.duration.as_secs_f64(),
                "settle".to_string(),
            ),
            (
                outcome.churn_at + (args.duration + settle).as_secs_f64(),
                "drain".to_string(),
            ),
        ];
        let title = format!(
            "herald soak: {} clients, {} churn",
            args.clients,
            humantime::format_duration(args.duration)
        );
        chart::write_svg(path, &outcome.samples, &title, &marks)?;
    }
    Ok(failed)
}

/// A number in [0, 1) from the generator.
fn unit(rng: &mut crate::sys::Rng) -> f64 {
    rng.below(1 << 53) as f64 / (1u64 << 53) as f64
}

/// Cumulative weights in the order of `names`; an unknown name is an error.
fn weights(w: &Weights, names: &[&str; 4], flag: &str) -> Result<[f64; 4], String> {
    let mut each = [0.0; 4];
    for (name, weight) in &w.0 {
        let i = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("{flag}: unknown {name} (one of {})", names.join(", ")))?;
        each[i] += weight;
    }
    let mut acc = 0.0;
    Ok(each.map(|x| {
        acc += x;
        acc
    }))
}

fn summary(args: &SoakArgs, o: &Outcome, failed: bool) -> String {
    use std::fmt::Write as _;
    let v = &o.verdict;
    let mut s = String::new();
    let accepted = o.pushes.iter().filter(|p| p.accepted()).count();
    let logged = o.pushes.iter().filter(|p| p.offset.is_some()).count();
    let degraded = o.pushes.iter().filter(|p| p.degraded).count();
    let _ = writeln!(
        s,
        "soak: {} clients ({}), ramp {:.1}s, churn {}, {:.0}s in all",
        args.clients,
        clients::Kind::ALL
            .iter()
            .zip(o.kinds)
            .map(|(k, n)| format!("{n} {}", k.name()))
            .collect::<Vec<_>>()
            .join(", "),
        o.ramp_s,
        humantime::format_duration(args.duration),
        o.elapsed_s
    );
    let _ = writeln!(
        s,
        "  connections {}, sessions {}, drops {} ({}), ended by herald {}, failed attempts {}",
        o.stats.connects,
        o.stats.sessions.iter().sum::<u64>(),
        o.stats.drops.iter().sum::<u64>(),
        clients::DropMode::ALL
            .iter()
            .zip(o.stats.drops)
            .map(|(m, n)| format!("{n} {}", m.name()))
            .collect::<Vec<_>>()
            .join(", "),
        o.stats.ended_by_server.values().sum::<u64>(),
        o.stats.failed.values().sum::<u64>(),
    );
    let _ = writeln!(
        s,
        "  returns: {} recovered, {} told not recovered (new epoch), {} too late, {} refused; {} stranded; epoch changed under {} connected",
        o.returns.recovered, o.returns.new_epoch, o.returns.late, o.returns.refused, o.stranded, o.returns.epoch_changed
    );
    let _ = writeln!(
        s,
        "  pushes {} made, {} accepted ({} logged, {} degraded), {} failed; {} notifications received",
        o.pushes.len(),
        accepted,
        logged,
        degraded,
        o.pushes.len() - accepted,
        o.received
    );
    let _ = writeln!(
        s,
        "  owed {}, delivered {}, lost {}, duplicated {}, out of order {}, misrouted {}, unconfirmed {}",
        v.owed, v.delivered, v.lost, v.duplicated, v.out_of_order, v.misrouted, v.unconfirmed
    );
    if v.before_start > 0 || v.foreign_epoch > 0 {
        let _ = writeln!(
            s,
            "  received at or before their chain's start {}, of an epoch left {}",
            v.before_start, v.foreign_epoch
        );
    }
    for (i, f) in chart::server_figures(&o.samples, o.churn_at)
        .iter()
        .enumerate()
    {
        let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
        let n = |x: Option<u64>| x.map_or("-".into(), |x| x.to_string());
        let _ = writeln!(
            s,
            "  server {i}: RSS MiB {} / {} / {} (after ramp / peak / end), fds {} / {} / {}",
            mib(f.rss_start),
            mib(f.rss_peak),
            mib(f.rss_end),
            n(f.fds_start),
            n(f.fds_peak),
            n(f.fds_end)
        );
    }
    for (why, n) in o.stats.ended_by_server.iter().take(8) {
        let _ = writeln!(s, "  ended by herald: {why}: {n}");
    }
    for (why, n) in o.stats.failed.iter().take(8) {
        let _ = writeln!(s, "  failed attempt: {why}: {n}");
    }
    for e in v.examples.iter().take(10) {
        let _ = writeln!(s, "  ! {e}");
    }
    for e in v.notes.iter().take(5) {
        let _ = writeln!(s, "  - {e}");
    }
    let skipped = o.skipped;
    if skipped > 0 {
        let _ = writeln!(
            s,
            "  pushes skipped (a pusher over a second behind): {skipped}"
        );
    }
    let _ = writeln!(s, "  {}", if failed { "FAILED" } else { "passed" });
    s
}

fn to_json(args: &SoakArgs, seed: u64, users: u32, o: &Outcome, failed: bool) -> serde_json::Value {
    use serde_json::json;
    let v = &o.verdict;
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    for p in &o.pushes {
        *by_status.entry(p.status.to_string()).or_default() += 1;
    }
    let servers: Vec<_> = chart::server_figures(&o.samples, o.churn_at)
        .iter()
        .map(|f| {
            json!({
                "rss_start": f.rss_start, "rss_peak": f.rss_peak, "rss_end": f.rss_end,
                "fds_start": f.fds_start, "fds_peak": f.fds_peak, "fds_end": f.fds_end,
            })
        })
        .collect();
    json!({
        "seed": seed,
        "clients": args.clients,
        "users": users,
        "kinds": clients::Kind::ALL.iter().zip(o.kinds).map(|(k, n)| (k.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "ramp_s": o.ramp_s,
        "churn_s": args.duration.as_secs_f64(),
        "elapsed_s": o.elapsed_s,
        "connections": o.stats.connects,
        "sessions": clients::Kind::ALL.iter().zip(o.stats.sessions).map(|(k, n)| (k.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "drops": clients::DropMode::ALL.iter().zip(o.stats.drops).map(|(m, n)| (m.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "ended_by_server": o.stats.ended_by_server,
        "failed_attempts": o.stats.failed,
        "errors": o.stats.errors,
        "returns": {
            "recovered": o.returns.recovered,
            "new_epoch": o.returns.new_epoch,
            "late": o.returns.late,
            "refused": o.returns.refused,
            "epoch_changed_while_connected": o.returns.epoch_changed,
        },
        "stranded": o.stranded,
        "pushes": {
            "made": o.pushes.len(),
            "accepted": o.pushes.iter().filter(|p| p.accepted()).count(),
            "logged": o.pushes.iter().filter(|p| p.offset.is_some()).count(),
            "degraded": o.pushes.iter().filter(|p| p.degraded).count(),
            "by_status": by_status,
            "accepted_by_node": (0..args.control.len())
                .map(|n| o.pushes.iter().filter(|p| p.node == n && p.accepted()).count())
                .collect::<Vec<_>>(),
        },
        "received": o.received,
        "pushes_skipped": o.skipped,
        "owed": v.owed,
        "delivered": v.delivered,
        "lost": v.lost,
        "duplicated": v.duplicated,
        "out_of_order": v.out_of_order,
        "misrouted": v.misrouted,
        "unconfirmed": v.unconfirmed,
        "before_start": v.before_start,
        "foreign_epoch": v.foreign_epoch,
        "unlogged": v.unlogged,
        "accepted_without_offset": v.accepted_without_offset,
        "examples": v.examples,
        "notes": v.notes,
        "servers": servers,
        "passed": !failed,
    })
}
