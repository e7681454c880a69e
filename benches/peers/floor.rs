//! The floor: the least a gateway can do per delivery, measured beside herald and its peers.
//!
//! One thread, one mio loop, herald's own codecs for the handshake and the frame. A WebSocket
//! at `/ws` may send text messages; each is answered with a `subscribed` frame and the socket is
//! remembered under the user id in the message's `data`. A POST on the control port to one of
//! herald's three push routes builds ONE frame `{"event":"notification","data":<notification>}`
//! and `write`s it to every target socket, queueing only what would block, then answers
//! 202 `{"sockets":N}`. Nothing else: no pings, no timestamps, no limits, no validation beyond
//! what parsing needs. What remains per delivery is the kernel's cost of a small `write`.
//!
//! With `--coalesce N` (N > 1) it is the coalesced floor: a socket's frames wait until N are
//! queued and go out in one `writev`, so what remains per delivery is a 1/N share of a system
//! call. A batch that is not full is written once the loop has had nothing to do for
//! [`COALESCE_IDLE`]; under steady load every batch is full, so this floor bounds CPU, not latency.
//!
//! ```sh
//! cargo run --release --example floor -- --listen 127.0.0.1:7000 --control 127.0.0.1:7001
//! cargo run --release --example floor -- --listen 127.0.0.1:7000 --control 127.0.0.1:7001 --coalesce 16
//! ```

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::Value;
use slab::Slab;

use herald::ws::frame::{self, opcode};
use herald::ws::handshake::{parse_request, validate_upgrade, write_accept};

const WS_LISTENER: Token = Token(usize::MAX - 1);
const CONTROL_LISTENER: Token = Token(usize::MAX - 2);
/// Largest request head, for the handshake and the control API alike.
const MAX_HEAD: usize = 8192;
/// How long the loop must have nothing to do before batches that are not full are written.
const COALESCE_IDLE: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Before the `101`: `inbuf` collects the request head.
    Handshake,
    /// An open WebSocket; `inbuf` collects client frames.
    WebSocket,
    /// A keep-alive control connection; `inbuf` collects requests.
    Control,
}

struct Conn {
    stream: TcpStream,
    kind: Kind,
    /// Bytes read and not yet consumed as a whole request or frame.
    inbuf: Vec<u8>,
    /// Bytes the socket would not take yet; while non-empty the socket is registered WRITABLE.
    outbuf: Vec<u8>,
    /// With `--coalesce`: frames waiting for the batch to fill, written before anything else.
    pending: Vec<Bytes>,
    /// User ids this socket subscribed to, to forget it when it goes.
    users: Vec<String>,
}

struct Floor {
    poll: Poll,
    conns: Slab<Conn>,
    /// user id -> the sockets subscribed to it.
    users: HashMap<String, Vec<Token>>,
    /// Frames per `writev` (1: every frame is written at once).
    coalesce: usize,
    /// Sockets that may hold pending frames (a token may be stale or listed with none left).
    batching: Vec<Token>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut listen, mut control): (SocketAddr, SocketAddr) =
        ("127.0.0.1:5000".parse()?, "127.0.0.1:5001".parse()?);
    let mut coalesce = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse()?,
            "--control" => control = value.parse()?,
            "--coalesce" => coalesce = value.parse::<usize>()?.max(1),
            _ => {
                return Err(format!(
                    "unknown flag {flag}; use --listen ADDR --control ADDR [--coalesce N]"
                )
                .into())
            }
        }
    }

    let poll = Poll::new()?;
    let mut ws_listener = TcpListener::bind(listen)?;
    let mut control_listener = TcpListener::bind(control)?;
    poll.registry()
        .register(&mut ws_listener, WS_LISTENER, Interest::READABLE)?;
    poll.registry()
        .register(&mut control_listener, CONTROL_LISTENER, Interest::READABLE)?;
    eprintln!(
        "herald listening websocket={} control={}",
        ws_listener.local_addr()?,
        control_listener.local_addr()?
    );

    let mut floor = Floor {
        poll,
        conns: Slab::new(),
        users: HashMap::new(),
        coalesce,
        batching: Vec::new(),
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let timeout = (!floor.batching.is_empty()).then_some(COALESCE_IDLE);
        if let Err(e) = floor.poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if events.is_empty() {
            floor.flush_batches();
            continue;
        }
        for event in events.iter() {
            match event.token() {
                WS_LISTENER => floor.accept(&ws_listener, Kind::Handshake)?,
                CONTROL_LISTENER => floor.accept(&control_listener, Kind::Control)?,
                token => {
                    let mut alive = true;
                    if event.is_writable() {
                        alive = floor.flush(token);
                    }
                    if alive && event.is_readable() {
                        alive = floor.read(token, &mut buf);
                    }
                    if !alive {
                        floor.close(token);
                    }
                }
            }
        }
    }
}

impl Floor {
    fn accept(&mut self, listener: &TcpListener, kind: Kind) -> io::Result<()> {
        loop {
            let (mut stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors or a connection reset before accept: skip it.
                Err(_) => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let token = Token(entry.key());
            self.poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)?;
            entry.insert(Conn {
                stream,
                kind,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                pending: Vec::new(),
                users: Vec::new(),
            });
        }
    }

    /// Reads until `WouldBlock` and handles every whole unit read. Returns false to close.
    fn read(&mut self, token: Token, buf: &mut [u8]) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(token.0) else {
                return false;
            };
            match conn.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        let Some(conn) = self.conns.get(token.0) else {
            return false;
        };
        match conn.kind {
            Kind::Handshake => self.handshake(token),
            Kind::WebSocket => self.frames(token),
            Kind::Control => self.requests(token),
        }
    }

    fn handshake(&mut self, token: Token) -> bool {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return false;
        };
        let (req, head_len) = match parse_request(&conn.inbuf, MAX_HEAD) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return true,
            Err(_) => return false,
        };
        let hs = match validate_upgrade(&req) {
            Ok(hs) if hs.path == "/ws" => hs,
            _ => return false,
        };
        conn.inbuf.drain(..head_len);
        conn.kind = Kind::WebSocket;
        let mut out = Vec::with_capacity(160);
        write_accept(&hs, &mut out);
        self.send(token, &out) && self.frames(token)
    }

    /// Handles every whole client frame in `inbuf`: text subscribes, close closes, the rest is
    /// ignored.
    fn frames(&mut self, token: Token) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(token.0) else {
                return false;
            };
            let (header, header_len) = match frame::parse_header(&conn.inbuf) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return true,
                Err(_) => return false,
            };
            let Ok(len) = usize::try_from(header.len) else {
                return false;
            };
            let end = header_len.saturating_add(len);
            if conn.inbuf.len() < end {
                return true;
            }
            let mut payload: Vec<u8> = conn.inbuf.drain(..end).skip(header_len).collect();
            if let Some(mask) = header.mask {
                frame::apply_mask(&mut payload, mask, 0);
            }
            let alive = match header.opcode {
                opcode::TEXT => self.subscribe(token, &payload),
                opcode::CLOSE => false,
                _ => true,
            };
            if !alive {
                return false;
            }
        }
    }

    /// Remembers the socket under the message's `data` and answers `subscribed`.
    fn subscribe(&mut self, token: Token, message: &[u8]) -> bool {
        let user = match serde_json::from_slice::<Value>(message) {
            Ok(Value::Object(mut m)) => match m.remove("data") {
                Some(Value::String(s)) => s,
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let reply = serde_json::json!({
            "event": "subscribed",
            "data": { "userId": user, "socketId": token.0.to_string() },
        })
        .to_string();
        if let Some(conn) = self.conns.get_mut(token.0) {
            if !conn.users.contains(&user) {
                conn.users.push(user.clone());
                self.users.entry(user).or_default().push(token);
            }
        }
        self.send(token, &frame::encode(opcode::TEXT, reply.as_bytes()))
    }

    /// Handles every whole HTTP request in `inbuf` (keep-alive, pipelined).
    fn requests(&mut self, token: Token) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(token.0) else {
                return false;
            };
            let (req, head_len) = match parse_request(&conn.inbuf, MAX_HEAD) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return true,
                Err(_) => return false,
            };
            let body_len = req
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let end = head_len.saturating_add(body_len);
            if conn.inbuf.len() < end {
                return true;
            }
            let body: Vec<u8> = conn.inbuf.drain(..end).skip(head_len).collect();
            let answer = match self.push(&req.method, &req.path, &body) {
                Some(sockets) => {
                    let json = format!("{{\"sockets\":{sockets}}}");
                    format!(
                        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{json}",
                        json.len()
                    )
                }
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
            };
            if !self.send(token, answer.as_bytes()) {
                return false;
            }
        }
    }

    /// Routes a control request; returns how many sockets were written to, or None for 404.
    fn push(&mut self, method: &str, path: &str, body: &[u8]) -> Option<usize> {
        if method != "POST" {
            return None;
        }
        let targets: Vec<Token>;
        let payload: Vec<u8>;
        if let Some(user) = path
            .strip_prefix("/v1/users/")
            .and_then(|p| p.strip_suffix("/notifications"))
        {
            // The body is the notification itself: wrap its bytes as they are.
            targets = self.users.get(user).cloned().unwrap_or_default();
            payload = [br#"{"event":"notification","data":"#, body, b"}"].concat();
        } else if path == "/v1/notifications" {
            let body: Value = serde_json::from_slice(body).ok()?;
            let mut tokens: Vec<Token> = body
                .get("userIds")?
                .as_array()?
                .iter()
                .filter_map(|id| match id {
                    Value::String(s) => self.users.get(s.as_str()),
                    Value::Number(n) => self.users.get(&n.to_string()),
                    _ => None,
                })
                .flatten()
                .copied()
                .collect();
            tokens.sort_unstable();
            tokens.dedup();
            targets = tokens;
            payload = notification_message(body.get("notification")?);
        } else if path == "/v1/broadcast" {
            let body: Value = serde_json::from_slice(body).ok()?;
            targets = self
                .conns
                .iter()
                .filter(|(_, c)| c.kind == Kind::WebSocket)
                .map(|(key, _)| Token(key))
                .collect();
            payload = notification_message(body.get("notification")?);
        } else {
            return None;
        }
        let frame: Bytes = frame::encode(opcode::TEXT, &payload);
        let mut dead = Vec::new();
        for &token in &targets {
            let alive = if self.coalesce > 1 {
                self.queue(token, &frame)
            } else {
                self.send(token, &frame)
            };
            if !alive {
                dead.push(token);
            }
        }
        for token in dead {
            self.close(token);
        }
        Some(targets.len())
    }

    /// Queues a frame in the socket's batch and writes the batch once it holds `coalesce`
    /// frames. Returns false when the socket failed.
    fn queue(&mut self, token: Token, frame: &Bytes) -> bool {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return false;
        };
        if !conn.outbuf.is_empty() {
            // Already waiting for the socket to drain: the frame joins the queue behind.
            conn.outbuf.extend_from_slice(frame);
            return true;
        }
        if conn.pending.is_empty() {
            self.batching.push(token);
        }
        conn.pending.push(frame.clone());
        if conn.pending.len() < self.coalesce {
            return true;
        }
        self.write_batch(token)
    }

    /// Writes every batch that is not empty; what fails is closed.
    fn flush_batches(&mut self) {
        let tokens = std::mem::take(&mut self.batching);
        for token in tokens {
            if !self.write_batch(token) {
                self.close(token);
            }
        }
    }

    /// Writes the socket's pending frames with one `writev`. Returns false when it failed.
    fn write_batch(&mut self, token: Token) -> bool {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return true;
        };
        if conn.pending.is_empty() {
            return true;
        }
        let frames = std::mem::take(&mut conn.pending);
        let total: usize = frames.iter().map(Bytes::len).sum();
        let slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
        let written = loop {
            match conn.stream.write_vectored(&slices) {
                Ok(0) => return false,
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        };
        if written == total {
            return true;
        }
        // The rest waits in `outbuf` for WRITABLE, as a plain `send` would leave it.
        let rest: Vec<u8> = frames.concat().split_off(written);
        self.send(token, &rest)
    }

    /// Writes `bytes` to the socket, or queues them behind bytes already waiting (frames of an
    /// unwritten batch first). Returns false when the socket failed.
    fn send(&mut self, token: Token, bytes: &[u8]) -> bool {
        if !self.write_batch(token) {
            return false;
        }
        let Some(conn) = self.conns.get_mut(token.0) else {
            return false;
        };
        if !conn.outbuf.is_empty() {
            conn.outbuf.extend_from_slice(bytes);
            return true;
        }
        let mut written = 0;
        while written < bytes.len() {
            match conn.stream.write(&bytes[written..]) {
                Ok(0) => return false,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if written < bytes.len() {
            conn.outbuf.extend_from_slice(&bytes[written..]);
            return self
                .poll
                .registry()
                .reregister(
                    &mut conn.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok();
        }
        true
    }

    /// Writes queued bytes until done or `WouldBlock`. Returns false when the socket failed.
    fn flush(&mut self, token: Token) -> bool {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return false;
        };
        let mut written = 0;
        while written < conn.outbuf.len() {
            match conn.stream.write(&conn.outbuf[written..]) {
                Ok(0) => return false,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        conn.outbuf.drain(..written);
        if conn.outbuf.is_empty() {
            return self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, Interest::READABLE)
                .is_ok();
        }
        true
    }

    /// Drops the connection and every subscription it holds; its token may be reused after.
    fn close(&mut self, token: Token) {
        let Some(mut conn) = self.conns.try_remove(token.0) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        for user in conn.users {
            if let Some(tokens) = self.users.get_mut(&user) {
                tokens.retain(|&t| t != token);
                if tokens.is_empty() {
                    self.users.remove(&user);
                }
            }
        }
    }
}

/// `{"event":"notification","data":<notification>}` as bytes.
fn notification_message(notification: &Value) -> Vec<u8> {
    let mut out = br#"{"event":"notification","data":"#.to_vec();
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, notification);
    out.push(b'}');
    out
}
