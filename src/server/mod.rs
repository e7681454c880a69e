//! The runtime: [`start`] binds both listeners and runs one worker per core and the control
//! API on their threads. A worker's runtime only polls, reads, writes and wakes; what its
//! connections and sessions do is decided by its state in [`crate::core`].
//!
//! - [`event_loop`]: one worker's thin loop: poll, accept, read into the state, write what the
//!   state queued, hand connections between workers, sleep until the next deadline.
//! - `file_limit`: the process's open-file limit, which `start` warns about when it is low.
//! - [`reload`]: what herald reads again while it runs (SIGHUP): today the JWT keys.

pub mod event_loop;
mod file_limit;
pub mod reload;
pub mod tls;
pub mod transport;

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Poll, Waker};

use crate::cluster::Cluster;
use crate::command::Command;
use crate::config::{Accept, Config};
use crate::control::{self, ControlOptions};
use crate::limits::{IpLimiter, Limits, UserBuckets};
use crate::router::directory::Directory;
use crate::router::log::Log;
use crate::router::parked::Parked;
use crate::router::{Router, WorkerLink};
use event_loop::{EventLoop, WorkerShared, WAKER};
use file_limit::open_file_limit;
pub use reload::{ReloadError, Reloader};
use tls::Tls;

/// A running gateway: its bound addresses and the router that commands its workers.
pub struct Running {
    pub public_addr: SocketAddr,
    pub control_addr: SocketAddr,
    handle: Router,
    threads: Vec<JoinHandle<io::Result<()>>>,
    state_dir: Option<std::path::PathBuf>,
    reloader: Reloader,
}

/// Binds the public and control listeners, then runs the workers and the control API on
/// threads of their own.
///
/// Refuses (`InvalidInput`, before binding anything) a control address off loopback without an
/// API key: anyone who could reach it could push to every user; and origin lists that do not
/// parse.
pub fn start(config: Config) -> io::Result<Running> {
    check_control_exposure(&config)?;
    check_echo_path(&config)?;
    check_origins(&config)?;
    let workers = config.worker_count();
    let mut listeners =
        bind_public(&config, workers).map_err(|e| cannot_listen(e, "WebSocket", config.listen))?;
    let public_addr = listeners[0].local_addr()?;
    let control_listener = std::net::TcpListener::bind(config.control)
        .map_err(|e| cannot_listen(e, "control API", config.control))?;
    let control_addr = control_listener.local_addr()?;
    let tls = match config.tls_files() {
        Some(files) => Some(Arc::new(Tls::load(files).map_err(invalid)?)),
        None => None,
    };
    let control_tls = match config.control_tls_files() {
        Some(files) => Some(Arc::new(Tls::load(files).map_err(invalid)?)),
        None => None,
    };
    // Read once here, not per worker: every worker holds a clone of this one verifier, whose
    // keys a reload replaces for all of them.
    let jwt = config
        .jwt_keys()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    match &jwt {
        None => tracing::warn!(
            "JWT auth is off: clients are not authenticated and any client may subscribe to any \
             user id; set --jwt-secret, --jwt-public-key or --jwt-jwks to require a token"
        ),
        Some(jwt) => {
            let keys = jwt.verifier().keys();
            tracing::info!(
                keys = keys.keys().len(),
                kids = ?keys.keys().iter().filter_map(|k| k.kid()).collect::<Vec<_>>(),
                "JWT auth on"
            );
        }
    }

    warn_file_limit(&config, open_file_limit());

    if let Some(path) = &config.echo_path {
        tracing::warn!(
            path = %path,
            "echo route on: every message sent there comes back, unauthenticated; it exists for \
             conformance testing only"
        );
    }

    let polls = (0..workers)
        .map(|_| Poll::new())
        .collect::<io::Result<Vec<_>>>()?;
    let mut links = Vec::with_capacity(workers);
    let mut inboxes = Vec::with_capacity(workers);
    let mut handover = Vec::with_capacity(workers);
    let mut handovers = Vec::with_capacity(workers);
    for poll in &polls {
        let (tx, rx) = crossbeam_channel::unbounded();
        links.push(WorkerLink {
            tx,
            waker: Arc::new(Waker::new(poll.registry(), WAKER)?),
        });
        inboxes.push(rx);
        let (tx, rx) = crossbeam_channel::unbounded();
        handover.push(tx);
        handovers.push(rx);
    }
    let links: Arc<[WorkerLink]> = links.into();
    let handover: Arc<[_]> = handover.into();
    let cluster = cluster_of(&config)?;
    let directory = Arc::new(match cluster {
        Some(_) => Directory::recording(),
        None => Directory::default(),
    });
    let limits = Limits::from(&config);
    let start = Instant::now();
    let ips = Arc::new(Mutex::new(IpLimiter::new(limits.ip, start)));
    let sessions = Arc::new(Mutex::new(IpLimiter::new(limits.sessions, start)));
    let users = limits
        .user
        .map(|l| UserBuckets::new(l, limits.max_tracked_users, start));
    let (log, parked) = recovery_state(&config);
    let router = Router::new(
        links.clone(),
        directory.clone(),
        users,
        log.clone(),
        parked.clone(),
        cluster.clone(),
    );
    if let Some(cluster) = &cluster {
        cluster.spawn(router.clone())?;
        tracing::info!(node = %cluster.node(), prefix = %config.redis_prefix, "cluster node started");
    }

    let mut opts = ControlOptions::from(&config);
    opts.tls = control_tls.clone();
    let mut threads = Vec::with_capacity(workers);
    listeners.reverse();
    for (worker, ((poll, rx), handovers)) in
        polls.into_iter().zip(inboxes).zip(handovers).enumerate()
    {
        // `--accept handoff`: worker 0 alone holds the listener; `reuseport`: each its own.
        let listener = match config.accept {
            Accept::Reuseport => listeners.pop(),
            Accept::Handoff if worker == 0 => listeners.pop(),
            Accept::Handoff => None,
        };
        let shared = WorkerShared {
            worker,
            links: links.clone(),
            handover: handover.clone(),
            handovers,
            directory: directory.clone(),
            ips: ips.clone(),
            sessions: sessions.clone(),
            router: router.clone(),
            tls: tls.clone(),
            verifier: jwt.as_ref().map(|j| j.verifier().clone()),
        };
        let event_loop = EventLoop::new(poll, listener, rx, shared, config.clone())?;
        threads.push(
            thread::Builder::new()
                .name(format!("herald-worker-{worker}"))
                .spawn(move || event_loop.run())?,
        );
    }
    tracing::info!(workers, accept = ?config.accept, "workers started");
    control::spawn(control_listener, router.clone(), opts)?;
    Ok(Running {
        public_addr,
        control_addr,
        handle: router,
        threads,
        state_dir: config.state_dir.clone(),
        reloader: Reloader::new(jwt, tls.into_iter().chain(control_tls).collect()),
    })
}

/// With `--redis`: the cluster this node joins. Refused without recovery: the cluster's log
/// is what orders pushes and subscribes across nodes.
fn cluster_of(config: &Config) -> io::Result<Option<Cluster>> {
    let Some(url) = &config.redis else {
        return Ok(None);
    };
    if !config.recovery {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--redis needs --recovery true: the cluster's log orders pushes and subscribes across nodes",
        ));
    }
    let ca = match &config.redis_ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            io::Error::new(e.kind(), format!("--redis-ca {}: {e}", path.display()))
        })?),
        None => None,
    };
    let settings = crate::cluster::Settings {
        url: url.clone(),
        ca,
        prefix: config.redis_prefix.clone(),
        node_ttl: config.redis_node_ttl,
        window: config.recovery_window,
        user_rate: config.user_rate,
        user_burst: config.user_burst,
        emitter_key: config
            .redis_emitter
            .then(|| config.redis_emitter_key.clone()),
        emitter_room_prefix: config.redis_emitter_room_prefix.clone(),
    };
    if let Err(e) = settings.client() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--redis {}: {e}", redacted(url)),
        ));
    }
    Ok(Some(Cluster::new(settings)))
}

/// A Redis URL with its password hidden, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The recovery log and the kept Socket.IO sessions (none with `--recovery false`): read back
/// from `--state-dir` when the last exit left them there, new otherwise. A cluster node's log
/// is its part of the cluster's, which lives in Redis: never saved, always new.
fn recovery_state(config: &Config) -> (Option<Arc<Log>>, Option<Arc<Parked>>) {
    if !config.recovery {
        return (None, None);
    }
    let (window, max) = (config.recovery_window, config.recovery_max_bytes);
    let (log, parked) = match &config.state_dir {
        Some(dir) if config.redis.is_none() => (Log::load(dir, window, max), Parked::load(dir)),
        Some(dir) => (Log::new(window, max), Parked::load(dir)),
        None => (Log::new(window, max), Parked::default()),
    };
    tracing::info!(
        epoch = %format!("{:x}", log.epoch()),
        window = ?window,
        max_bytes = max,
        "recovery log ready"
    );
    (Some(Arc::new(log)), Some(Arc::new(parked)))
}

/// The public listeners: one (`--accept handoff`, or one worker), or one per worker on the same
/// port with `SO_REUSEPORT`, the kernel spreading connections over them.
fn bind_public(config: &Config, workers: usize) -> io::Result<Vec<TcpListener>> {
    if config.accept == Accept::Handoff || workers == 1 {
        return Ok(vec![listen(config.listen, false)?]);
    }
    let mut addr = config.listen;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listener = listen(addr, true)?;
        // Port 0 asks for any port: the others bind the one the first got.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Connections the kernel completes and keeps for `accept` on a public listener (capped by
/// `net.core.somaxconn`). The standard library's 128 fills in a burst of reconnecting clients,
/// and past it the kernel drops SYNs: each client retries after a second or more.
const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listener on `addr` with [`LISTEN_BACKLOG`], sharing its port with others
/// (`SO_REUSEPORT`) when `reuse_port`.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The control API pushes to any user: without a key (TLS or not) it may only listen where
/// nothing but this host can reach it.
fn check_control_exposure(config: &Config) -> io::Result<()> {
    // `to_canonical`: an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is loopback too.
    if config.control.ip().to_canonical().is_loopback() || !config.api_key.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "refusing to serve the control API on {} without --api-key: anyone who can reach it \
             could push to any user; set --api-key (HERALD_API_KEY) or use a loopback --control \
             address",
            config.control
        ),
    ))
}

/// An echo path equal to another endpoint's would never be reached (the other is routed first):
/// refused, rather than leaving the operator to wonder why the echo does not answer.
fn check_echo_path(config: &Config) -> io::Result<()> {
    match &config.echo_path {
        Some(path) if *path == config.ws_path || *path == config.socketio_path => {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--echo-path {path} is already the path of another endpoint"),
            ))
        }
        _ => Ok(()),
    }
}

/// Origin lists are checked entry by entry as the command line is read; what only the whole
/// list can show (`*` beside other entries), or a list set other than through the command line,
/// is refused here, naming its flag.
fn check_origins(config: &Config) -> io::Result<()> {
    for (flag, origins) in [
        ("--cors-origins", config.cors_origins()),
        ("--allowed-origins", config.allowed_origins()),
    ] {
        if let Err(e) = origins {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{flag}: {e}"),
            ));
        }
    }
    Ok(())
}

/// Descriptors herald needs beside its client connections: the two listeners, the poll, the
/// waker, stdio, a few to spare.
const SPARE_FILES: u64 = 32;

/// The descriptors `--max-connections` and `--control-max-connections` may take at once, when
/// the open-file `limit` is below them: past the limit accepts fail, and clients are refused
/// with a reset instead of a 503.
fn files_short(config: &Config, limit: Option<u64>) -> Option<(u64, u64)> {
    let limit = limit?;
    if config.max_connections == 0 {
        return None;
    }
    let needed =
        config.max_connections as u64 + config.control_max_connections as u64 + SPARE_FILES;
    (limit < needed).then_some((limit, needed))
}

fn warn_file_limit(config: &Config, limit: Option<u64>) {
    if let Some((limit, needed)) = files_short(config, limit) {
        tracing::warn!(
            limit,
            needed,
            "the open-file limit ({limit}) is below what --max-connections {} needs ({needed} \
             descriptors, control API included): connections past it are reset, not answered \
             503; raise it (`ulimit -n {needed}` in the shell, `LimitNOFILE={needed}` in a \
             systemd unit) or lower --max-connections",
            config.max_connections
        );
    }
}

/// A configuration that cannot be used, as the error `start` returns.
fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Says which listener could not bind; the error's kind is kept.
fn cannot_listen(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
}

impl Running {
    /// The router that commands the workers.
    pub fn handle(&self) -> &Router {
        &self.handle
    }

    /// What reads the reloadable parts of the configuration again; the binary calls it on
    /// SIGHUP. Clones reload the same running gateway.
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// Begins a graceful shutdown: no new connections, close 1001 to every client.
    pub fn shutdown(&self) {
        let _ = self.handle.send(Command::Shutdown);
    }

    /// Waits for every worker to finish (after [`Running::shutdown`] or a signal); the first
    /// error a worker returned, if any.
    pub fn join(mut self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in mem::take(&mut self.threads) {
            let outcome = match thread.join() {
                Ok(outcome) => outcome,
                Err(_) => Err(io::Error::other("a worker panicked")),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        self.save_state();
        result
    }

    /// Writes the recovery log and the kept sessions to `--state-dir`, once every worker has
    /// stopped (every session drained is kept by then).
    fn save_state(&self) {
        let (Some(dir), Some(log)) = (&self.state_dir, self.handle.log()) else {
            return;
        };
        let clustered = self.handle.cluster().is_some();
        let saved = std::fs::create_dir_all(dir)
            .and_then(|()| if clustered { Ok(0) } else { log.save(dir) })
            .and_then(|pushes| match self.handle.parked() {
                Some(parked) => parked.save(dir, crate::router::unix_ms()).map(|()| pushes),
                None => Ok(pushes),
            });
        match saved {
            Ok(pushes) => tracing::info!(
                dir = %dir.display(),
                pushes,
                sessions = self.handle.parked().map_or(0, |p| p.len()),
                "recovery state saved"
            ),
            Err(e) => tracing::error!(
                dir = %dir.display(),
                error = %e,
                "recovery state not saved: clients will be told recovered: false"
            ),
        }
    }
}

impl Drop for Running {
    /// A gateway dropped without [`Running::join`] is told to shut down, not waited for.
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_limit_below_max_connections_is_reported() {
        let mut c = Config::for_tests();
        c.max_connections = 10_000;
        c.control_max_connections = 256;
        assert_eq!(files_short(&c, Some(1024)), Some((1024, 10_288)));
        assert_eq!(files_short(&c, Some(20_000)), None);
        assert_eq!(files_short(&c, None), None);
        c.max_connections = 0;
        assert_eq!(files_short(&c, Some(1024)), None);
    }
}
