//! The public side: the mio event loop that owns every client connection, and [`start`], which
//! binds both listeners and runs the loop and the control API on their threads.
//!
//! - [`event_loop`]: the thin loop: poll, accept, read, write, timers, commands.
//! - [`conn`]: one connection's socket, phase and write queue.
//! - `engine`: Engine.IO sessions (long-polling, WebSocket, the upgrade) and Socket.IO events.
//! - [`session`]: an Engine.IO session, a slab entry beside the connections.
//! - `http`: the public port's plain HTTP answers (polling, CORS, Engine.IO errors).
//! - [`metrics`]: the loop's counters and their Prometheus rendering.

pub mod conn;
mod engine;
pub mod event_loop;
mod http;
mod identity;
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
pub fn start(config: Config) -> io::Result<Running> {
    let listener = mio::net::TcpListener::bind(config.listen)?;
    let public_addr = listener.local_addr()?;
    let control_listener = std::net::TcpListener::bind(config.control)?;
    let control_addr = control_listener.local_addr()?;

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
