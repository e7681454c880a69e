//! Shared helpers: a gateway on ephemeral loopback ports, a tungstenite client, a raw frame
//! client, and a small HTTP client for the control API.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use herald::config::Config;
use herald::server::{self, Running};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long a test waits for something that should happen at once before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Client = WebSocket<TcpStream>;

/// Starts a gateway on `127.0.0.1:0` (both ports) with the default limits.
pub fn start_server() -> Running {
    start_server_with(|_| {})
}

/// Starts a gateway after letting `tweak` change its configuration.
pub fn start_server_with(tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::for_tests();
    tweak(&mut config);
    server::start(config).expect("gateway starts")
}

/// Opens a WebSocket to `/ws`.
pub fn connect(srv: &Running) -> Client {
    connect_path(srv.public_addr, "/ws")
}

pub fn connect_path(addr: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = tungstenite::client(url, stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// Reads the next text message as JSON, answering pings on the way.
pub fn recv_json(ws: &mut Client) -> Value {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

pub fn send_json(ws: &mut Client, v: Value) {
    ws.send(Message::Text(v.to_string())).expect("send");
}

/// Subscribes `ws` to `user` and returns the `subscribed` reply's data.
pub fn subscribe(ws: &mut Client, user: &str) -> Value {
    send_json(ws, json!({"event": "subscribe", "data": user}));
    let reply = recv_json(ws);
    assert_eq!(reply["event"], "subscribed", "{reply}");
    assert_eq!(reply["data"]["userId"], user);
    reply["data"].clone()
}

/// A connected and subscribed client.
pub fn client_for(srv: &Running, user: &str) -> Client {
    let mut ws = connect(srv);
    subscribe(&mut ws, user);
    ws
}

/// Reads notifications until one whose `message` is `until`; returns the `data` of each before it,
/// so "exactly once" is checked by order (a sentinel pushed last), not by waiting for silence.
pub fn notifications_until(ws: &mut Client, until: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = recv_json(ws);
        assert_eq!(m["event"], "notification", "{m}");
        if m["data"]["message"] == until {
            return seen;
        }
        seen.push(m["data"].clone());
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status, headers and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    req += "\r\n";
    if let Some(b) = body {
        req += b;
    }
    raw_http(addr, req.as_bytes())
}

/// Sends `request` as is and reads the response until the server closes.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_string(), body.to_string())
}

/// `POST` JSON to the control API; returns the status and the JSON body.
pub fn post(srv: &Running, path: &str, body: Value) -> (u16, Value) {
    let (status, _, body) = http(srv.control_addr, "POST", path, Some(&body.to_string()));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

pub fn get(srv: &Running, path: &str) -> (u16, String) {
    let (status, _, body) = http(srv.control_addr, "GET", path, None);
    (status, body)
}

/// Pushes a notification with `message` to `user`; returns how many sockets took it.
pub fn push_to(srv: &Running, user: &str, message: &str) -> u64 {
    let (status, body) = post(
        srv,
        &format!("/v1/users/{user}/notifications"),
        json!({"type": "TEST", "message": message}),
    );
    assert_eq!(status, 202, "{body}");
    body["sockets"].as_u64().unwrap()
}

/// Reads one metric's value from `/metrics` (the first sample whose name and labels start with
/// `series`).
pub fn metric(srv: &Running, series: &str) -> f64 {
    metric_at(srv.control_addr, series)
}

/// Polls `cond` until it holds or [`PATIENCE`] runs out.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw WebSocket client speaking bytes, for frames tungstenite would refuse to send.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects and completes the opening handshake by hand.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let (client, head) = RawClient::open(addr, "/ws", "");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client
    }

    /// Sends an upgrade request for `target` with `extra` header lines (each ending in CRLF)
    /// and returns the client with the response head, whatever its status.
    pub fn open(addr: SocketAddr, target: &str, extra: &str) -> (RawClient, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(upgrade_request_with(addr, target, extra).as_bytes())
            .unwrap();
        let head = read_head(&mut stream);
        if head.starts_with("HTTP/1.1 101") {
            assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        }
        (RawClient { stream }, head)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one whole server frame: (opcode, payload). Server frames are never masked.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        self.read_frame_raw()
            .map(|(b0, payload)| (b0 & 0x0F, payload))
    }

    /// Reads one whole server frame: (first byte, with FIN, RSV bits and opcode; payload).
    pub fn read_frame_raw(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).ok()?;
        assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).ok()?;
        Some((h[0], payload))
    }

    /// Reads frames until a close frame and returns its code, then checks the server ends the
    /// TCP connection.
    pub fn expect_close(&mut self) -> u16 {
        loop {
            let (op, payload) = self.read_frame().expect("a close frame before EOF");
            if op == 0x8 {
                assert!(payload.len() >= 2, "close frame carries a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let mut rest = Vec::new();
                let _ = self.stream.read_to_end(&mut rest);
                assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
                return code;
            }
        }
    }
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    herald::ws::frame::encode_masked(fin, opcode, 0, payload, [0x37, 0xfa, 0x21, 0x3d])
}

/// Seconds since the Unix epoch, the clock JWT `exp` claims count in.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Sleeps until the Unix clock reads at least `secs` (whole seconds, as in a JWT `exp`).
pub fn sleep_until_unix(secs: u64) {
    let target = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    if let Ok(left) = target.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// Opens a WebSocket to `target` with `extra` request headers (`(name, value)` pairs).
pub fn connect_with_headers(addr: SocketAddr, target: &str, extra: &[(&str, &str)]) -> Client {
    use tungstenite::client::IntoClientRequest;

    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut req = format!("ws://{addr}{target}")
        .into_client_request()
        .unwrap();
    for (name, value) in extra {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    let (ws, resp) = tungstenite::client(req, stream).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends an upgrade request for `target` with `extra` header lines (each ending in CRLF) that
/// the server must refuse; returns the status, the response head and the JSON body.
pub fn refused_upgrade(addr: SocketAddr, target: &str, extra: &str) -> (u16, String, Value) {
    let (mut c, head) = RawClient::open(addr, target, extra);
    let (status, _, _) = parse_response(head.as_bytes());
    assert_ne!(status, 101, "{target} was upgraded: {head}");
    let len = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = match len {
        Some(n) => {
            let mut b = vec![0u8; n];
            c.stream.read_exact(&mut b).expect("the whole body");
            b
        }
        None => {
            let mut b = Vec::new();
            let _ = c.stream.read_to_end(&mut b);
            b
        }
    };
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("a JSON body: {:?}", String::from_utf8_lossy(&body)));
    (status, head, body)
}

/// The value of header `name` in a response head, compared without case.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads frames until a close frame and returns its code; a text or binary message before it
/// fails the test (with its content), pings and pongs are skipped. tungstenite answers the close
/// itself; the read after it sees the server end the connection.
pub fn expect_close_code(ws: &mut Client) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code)).expect("a close code");
                loop {
                    match ws.read() {
                        Ok(Message::Close(_)) | Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                        Ok(other) => panic!("a message after the close frame: {other:?}"),
                        Err(_) => return code,
                    }
                }
            }
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
            Ok(other) => panic!("expected a close frame, got {other:?}"),
            Err(e) => panic!("expected a close frame, the connection failed: {e}"),
        }
    }
}

/// Reads the next text message as is, skipping pings and pongs.
pub fn recv_text(ws: &mut Client) -> String {
    loop {
        match ws
            .read()
            .unwrap_or_else(|e| panic!("no message within {PATIENCE:?}: {e}"))
        {
            Message::Text(t) => return t,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A Socket.IO EVENT packet `42["name",data]` as (name, data).
pub fn sio_event(packet: &str) -> (String, Value) {
    let v: Value = serde_json::from_str(
        packet
            .strip_prefix("42")
            .unwrap_or_else(|| panic!("an event packet: {packet}")),
    )
    .unwrap_or_else(|e| panic!("an event packet: {packet}: {e}"));
    (
        v[0].as_str().expect("an event name").to_string(),
        v[1].clone(),
    )
}

/// Opens an Engine.IO session on the WebSocket transport from the start and reads its open
/// packet; no Socket.IO CONNECT is sent yet.
pub fn sio_websocket(addr: SocketAddr) -> Client {
    let mut ws = connect_path(addr, "/socket.io/?EIO=4&transport=websocket");
    let open = recv_text(&mut ws);
    assert!(open.starts_with("0{"), "an open packet: {open}");
    ws
}

impl RawClient {
    /// Sends `text` in one masked text frame.
    pub fn send_text(&mut self, text: &str) {
        self.send(&client_frame(true, 0x1, text.as_bytes()));
    }

    /// Reads the next text frame as JSON, skipping pings and pongs; any other frame fails the
    /// test (a close with its code).
    pub fn recv_json(&mut self) -> Value {
        loop {
            match self.read_frame().expect("a frame") {
                (0x1, payload) => {
                    return serde_json::from_slice(&payload).expect("server sends JSON")
                }
                (0x9 | 0xA, _) => {}
                (0x8, payload) => panic!(
                    "expected a text frame, got close {:?}",
                    payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))
                ),
                (op, payload) => panic!("expected a text frame, got opcode {op:#x}: {payload:?}"),
            }
        }
    }

    /// Reads the next frame, which must be a close frame, answers it, checks the server then
    /// ends the TCP connection, and returns the close code.
    pub fn expect_close_next(&mut self) -> u16 {
        let (op, payload) = loop {
            match self.read_frame().expect("a close frame before EOF") {
                (0x9 | 0xA, _) => {}
                frame => break frame,
            }
        };
        assert_eq!(
            op,
            0x8,
            "expected a close frame, got opcode {op:#x}: {}",
            String::from_utf8_lossy(&payload)
        );
        assert!(payload.len() >= 2, "close frame carries a code");
        let code = u16::from_be_bytes([payload[0], payload[1]]);
        // RFC 6455 §5.5.1: the endpoint that receives a close frame sends one back; herald may
        // already be gone, so the write may fail.
        let _ = self
            .stream
            .write_all(&client_frame(true, 0x8, &payload[..2]));
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
        code
    }
}

/// The `herald` binary, run as its own process: for tests whose connection count needs the
/// process's own file-descriptor limit, or whose memory must be measured apart from the test's.
/// Killed when dropped.
pub struct Herald {
    pub child: std::process::Child,
    pub public_addr: SocketAddr,
    pub control_addr: SocketAddr,
}

/// Starts the binary on ephemeral loopback ports with `args` added, reads both addresses from its
/// listening line, and keeps draining its log so it never blocks on a full pipe.
pub fn spawn_herald(args: &[&str]) -> Herald {
    spawn_herald_logged(args).0
}

/// [`spawn_herald`], handing over its log: every line after the listening line, in order, until
/// the process ends. Lines may be text or JSON (`--log-format json`).
pub fn spawn_herald_logged(args: &[&str]) -> (Herald, std::sync::mpsc::Receiver<String>) {
    spawn_herald_with(args, &[])
}

/// [`spawn_herald`] with `env` variables set.
pub fn spawn_herald_env(args: &[&str], env: &[(&str, &str)]) -> Herald {
    spawn_herald_with(args, env).0
}

fn spawn_herald_with(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Herald, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("herald listening"))
        .expect("a listening line");
    let addr = |key: &str| -> SocketAddr {
        if let Ok(json) = serde_json::from_str::<Value>(&line) {
            return json["fields"][key].as_str().unwrap().parse().unwrap();
        }
        let key = format!("{key}=");
        let rest = &line[line.find(&key).expect("address in the listening line") + key.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (public_addr, control_addr) = (addr("websocket"), addr("control"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            // Nobody listening is fine: the pipe must still be drained.
            let _ = tx.send(line);
        }
    });
    let herald = Herald {
        child,
        public_addr,
        control_addr,
    };
    (herald, rx)
}

impl Herald {
    /// Stops the process with SIGTERM, as an operator would, and waits for it to exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let _ = self.child.wait();
    }

    /// The process's peak resident set size (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .expect("VmHWM in /proc/<pid>/status")
            * 1024
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`metric`] of a gateway known by its control address (a spawned [`Herald`]).
pub fn metric_at(control: SocketAddr, series: &str) -> f64 {
    let (status, _, body) = http(control, "GET", "/metrics", None);
    assert_eq!(status, 200);
    metric_in(&body, series)
}

/// The value of `series` in the Prometheus text `body`.
pub fn metric_in(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

/// A WebSocket upgrade request for `target`, as [`RawClient::open`] sends it.
pub fn upgrade_request(addr: SocketAddr, target: &str) -> String {
    upgrade_request_with(addr, target, "")
}

/// [`upgrade_request`] with `extra` header lines, each ending in CRLF.
fn upgrade_request_with(addr: SocketAddr, target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head, byte by byte so that nothing after it is consumed.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("handshake response");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

impl RawClient {
    /// [`RawClient::connect`] with a receive buffer of `rcvbuf` bytes, set before connecting so
    /// the kernel neither scales the window nor grows the buffer: a client that stops reading
    /// then holds few bytes in flight, and herald's own limits decide what happens next.
    pub fn connect_small_window(addr: SocketAddr, rcvbuf: usize) -> RawClient {
        use socket2::{Domain, Protocol, Socket, Type};

        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        socket.connect(&addr.into()).expect("tcp connect");
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(upgrade_request(addr, "/ws").as_bytes())
            .unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawClient { stream }
    }
}

/// A free loopback port (free when asked: another process may take it before it is used).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads Engine.IO packets until a Socket.IO one, answering pings.
pub fn sio_next(ws: &mut Client) -> String {
    loop {
        let p = recv_text(ws);
        if p == "2" {
            ws.send(Message::Text("3".into())).unwrap();
            continue;
        }
        return p;
    }
}
