//! The HTTP/1.1 control API through which backends push notifications, on its own threads.
//!
//! One thread accepts; each connection gets a thread of its own (at most `max_connections`, more
//! are answered 503 and read dry by a draining thread before they close) that reads requests with
//! blocking I/O, answers them in order (keep-alive and pipelining included), and closes after an
//! idle timeout, or with 408 when a request does not arrive whole within the request timeout.
//! Request bodies are budgeted across connections ([`stats::Stats::reserve`]) before they are
//! read. A request becomes a [`Command`] handed to the [`Router`], which sends it on to the
//! workers that must see it, and the answer waits for their gathered reply; a push the workers
//! are slow to count is answered 202 all the same, since it will be delivered. Parsing ([`http`]) and routing ([`api`]) do no I/O; only
//! [`server`] touches sockets.
//!
//! With API keys configured, every request (`/healthz` and `/metrics` included) must present
//! one as `Authorization: Bearer <key>` (or the admin page's session, [`admin`]), or is
//! answered 401, decided from its head ([`access`]):
//! a request whose body has not arrived yet is answered and its connection closed before the
//! body is read, and `100 Continue` is only sent to a request that was let in. An address that
//! presents wrong keys too often is answered 429 for a while, whatever key it sends. Without a
//! key, anyone who can connect may push, which is why [`crate::server::start`] refuses a
//! non-loopback control address without one. It speaks TLS with `--control-tls-cert`, not
//! HTTP/2, and takes no chunked request bodies: every body comes with `Content-Length`. It never touches the rooms itself; each worker is the only owner of its
//! connections' state.
//!
//! [`Command`]: crate::command::Command
//! [`Router`]: crate::router::Router

use std::io;
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::ApiKeys;
use crate::config::Config;
use access::LockoutSettings;
use api::Dispatch;

pub mod access;
pub mod admin;
pub mod api;
pub mod http;
mod server;
pub mod stats;

/// How long a request waits for the event loop's answer. A push not counted by then is answered
/// 202 `{"accepted":true}` (it is in the loop's queue and will be delivered); a read is answered
/// 503.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The control API's limits.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Largest request body, in bytes; larger is answered 413 from its `Content-Length`.
    pub max_body: usize,
    /// Connections served at once, a thread each; more are answered 503 and closed.
    pub max_connections: usize,
    /// A connection idle this long between requests is closed. Zero means never.
    pub idle_timeout: Duration,
    /// A request must be read whole within this long of its first byte (of the connection's
    /// opening, for the first request), or is answered 408. Zero means no limit.
    pub request_timeout: Duration,
    /// Request body bytes held at once over all connections; see [`stats::Stats::reserve`].
    pub max_inflight_bytes: usize,
    /// How long a request waits for the event loop's answer.
    pub reply_timeout: Duration,
    /// The keys one of which every request must present; `None`: no authentication.
    pub api_keys: Option<ApiKeys>,
    /// Failed key attempts per client address, and how long they are remembered.
    pub lockout: LockoutSettings,
    /// TLS on the control listener (`--control-tls-cert`); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<crate::server::tls::Tls>>,
    /// Every flag herald was started with, secrets masked, for `GET /admin/config`.
    pub settings: std::sync::Arc<[crate::config::Setting]>,
}

impl From<&Config> for ControlOptions {
    fn from(c: &Config) -> Self {
        ControlOptions {
            max_body: c.control_max_body,
            max_connections: c.control_max_connections,
            idle_timeout: c.control_idle_timeout,
            request_timeout: c.control_request_timeout,
            max_inflight_bytes: c.control_max_inflight_bytes,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            api_keys: c.api_keys(),
            lockout: LockoutSettings {
                max_failures: c.control_auth_failures,
                window: c.control_auth_window,
                max_addresses: c.control_auth_max_addresses,
            },
            // Loaded (and its errors reported) where the listeners are bound.
            tls: None,
            settings: c.settings.clone().into(),
        }
    }
}

/// Serves the control API on `listener` until the process exits. Returns the accept thread's
/// handle.
pub fn spawn<D>(
    listener: TcpListener,
    handle: D,
    opts: ControlOptions,
) -> io::Result<JoinHandle<()>>
where
    D: Dispatch + Clone + Send + 'static,
{
    server::spawn(listener, handle, opts)
}
