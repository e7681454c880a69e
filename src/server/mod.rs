//! The public side: the mio event loop that owns every client connection, and [`start`], which
//! binds both listeners and runs the loop and the control API on their threads.
//!
//! - [`event_loop`]: the thin loop: poll, accept, read, write, timers, commands.
//! - [`conn`]: one connection's socket, phase and write queue.
//! - `engine`: Engine.IO sessions (long-polling, WebSocket, the upgrade) and Socket.IO events.
//! - [`session`]: an Engine.IO session, a slab entry beside the connections.
//! - `http`: the public port's plain HTTP answers (polling, CORS, Engine.IO errors).
//! - `health`: `/healthz` and `/readyz` on the public port, for load balancers.
//! - [`metrics`]: the loop's counters and their Prometheus rendering.
//! - [`log_limit`]: warnings a peer can cause, at most a few lines a second of each kind.

pub mod conn;
mod engine;
pub mod event_loop;
mod health;
mod http;
pub mod log_limit;
pub mod metrics;
pub mod session;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use mio::{Poll, Waker};

use crate::command::{Command, LoopHandle};
use crate::config::Config;
use crate::control::{self, ControlOptions};
use event_loop::{EventLoop, WAKER};

/// A running gateway: its bound addresses and the handle that commands its loop.
pub struct Running {
    pub public_addr: SocketAddr,
    pub control_addr: SocketAddr,
    handle: LoopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Binds the public and control listeners, then runs the event loop and the control API on
/// threads of their own.
///
/// Refuses (`InvalidInput`, before binding anything) a control address off loopback without an
/// API key: anyone who could reach it could push to every user.
pub fn start(config: Config) -> io::Result<Running> {
    check_control_exposure(&config)?;
    check_echo_path(&config)?;
    let listener = mio::net::TcpListener::bind(config.listen)
        .map_err(|e| cannot_listen(e, "WebSocket", config.listen))?;
    let public_addr = listener.local_addr()?;
    let control_listener = std::net::TcpListener::bind(config.control)
        .map_err(|e| cannot_listen(e, "control API", config.control))?;
    let control_addr = control_listener.local_addr()?;
    if config.jwt_secret.is_none() && config.jwt_public_key.is_none() {
        tracing::warn!(
            "JWT auth is off: clients are not authenticated and any client may subscribe to any \
             user id; set --jwt-secret or --jwt-public-key to require a token"
        );
    }

    warn_file_limit(&config, open_file_limit());

    if let Some(path) = &config.echo_path {
        tracing::warn!(
            path = %path,
            "echo route on: every message sent there comes back, unauthenticated; it exists for \
             conformance testing only"
        );
    }

    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = LoopHandle::new(tx, waker);

    let opts = ControlOptions::from(&config);
    let event_loop = EventLoop::new(poll, listener, rx, config)?;
    let thread = thread::Builder::new()
        .name("herald-loop".into())
        .spawn(move || event_loop.run())?;
    control::spawn(control_listener, handle.clone(), opts)?;
    Ok(Running {
        public_addr,
        control_addr,
        handle,
        thread: Some(thread),
    })
}

/// The control API pushes to any user and has no TLS: without a key it may only listen where
/// nothing but this host can reach it.
fn check_control_exposure(config: &Config) -> io::Result<()> {
    // `to_canonical`: an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is loopback too.
    if config.control.ip().to_canonical().is_loopback() || config.api_key.is_some() {
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

/// Descriptors herald needs beside its client connections: the two listeners, the poll, the
/// waker, stdio, a few to spare.
const SPARE_FILES: u64 = 32;

/// The process's open-file limit (the soft `RLIMIT_NOFILE`); `None` when unlimited or unknown.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a live, properly aligned
    // `rlimit` owned by this frame, and keeps no reference to it.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

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

/// Says which listener could not bind; the error's kind is kept.
fn cannot_listen(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
}

impl Running {
    /// The loop's command handle.
    pub fn handle(&self) -> &LoopHandle {
        &self.handle
    }

    /// Begins a graceful shutdown: no new connections, close 1001 to every client.
    pub fn shutdown(&self) {
        let _ = self.handle.send(Command::Shutdown);
    }

    /// Waits for the loop to finish (after [`Running::shutdown`] or a signal).
    pub fn join(mut self) -> io::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the event loop panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    /// A gateway dropped without [`Running::join`] is told to shut down, not waited for.
    fn drop(&mut self) {
        if self.thread.is_some() {
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
