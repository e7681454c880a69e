//! A worker's Engine.IO v4 and Socket.IO v5 side: sessions over HTTP long-polling and
//! WebSocket, the upgrade between them, and the `subscribe`/`unsubscribe` events.
//!
//! A session is a slab entry of its own ([`Entry::Session`]); the connections carrying it point
//! at it through [`Conn::session`] and it points back through its [`Transport`]. Every change
//! cuts or sets both links together (`close_session`, `unlink`), so neither ever names a slab
//! key that was freed and reused.

use std::collections::VecDeque;
use std::mem;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use tracing::debug;

use crate::auth;
use crate::core::commands::{ClientCommand, Outcome, Refusal};
use crate::core::conn::{HttpMeta, Phase, PostBody, Proto, SocketId};
use crate::core::identity::Identity;
use crate::core::polling as http;
use crate::core::session::{Session, Transport};
use crate::core::worker::{
    count_refusal, lock_ips, new_id, new_sid, over_limit, sid_worker, Entry, Io, State,
};
use crate::engineio::{self, Data, OpenParams, Packet};
use crate::fanout::text_frame;
use crate::limits::{Admit, InboundBucket, IpRefusal};
use crate::log_limit::{peer_warn, PeerFault};
use crate::protocol::raw;
use crate::rooms;
use crate::router::mailbox::{Join, JoinReply, Lookup, Since};
use crate::socketio::{self, PacketType, Reassembler};
use crate::ws::handshake::{self, HandshakeError, Request};
use crate::ws::{CloseCode, Event};

impl State {
    /// Routes a request on the Socket.IO path: a polling GET or POST, a CORS preflight, or a
    /// WebSocket upgrade (new session, or the upgrade of a polling one).
    pub(crate) fn on_engine_request(
        &mut self,
        k: usize,
        req: Request,
        rest: BytesMut,
        now: Instant,
    ) {
        let meta = HttpMeta {
            cors: http::cors(&req, &self.cors_origins),
            keep_alive: http::keep_alive(&req) && self.shutdown_deadline.is_none(),
        };
        let query = match engineio::parse_query(req.query.as_deref()) {
            Ok(q) => q,
            Err(e) => return self.engine_error(k, &e, &meta, now),
        };
        if req.method == "OPTIONS" {
            let mut out = Vec::new();
            http::write_preflight(&mut out, &req, &meta);
            return self.answer(k, out, rest, &meta, now);
        }
        let session = match &query.sid {
            None => None,
            Some(sid) => match self.session_by_sid(sid) {
                Some(s) => Some(s),
                None => return self.engine_error(k, &engineio::Error::UnknownSid, &meta, now),
            },
        };
        match query.transport {
            engineio::Transport::WebSocket => self.engine_upgrade(k, &req, session, rest, now),
            engineio::Transport::Polling => match (req.method.as_str(), session) {
                ("GET", None) => {
                    let Some(s) = self.new_session(k, Transport::Polling { get: None }, now) else {
                        return;
                    };
                    let open = self.open_packet(s, &["websocket"]);
                    let mut out = Vec::new();
                    http::write_packets(&mut out, [open.as_bytes()].into_iter(), &meta);
                    self.answer(k, out, rest, &meta, now);
                }
                ("GET", Some(s)) => self.engine_poll(k, s, meta, rest, now),
                ("POST", Some(s)) => self.engine_post(k, s, &req, meta, rest, now),
                (_, None) => self.engine_error(k, &engineio::Error::BadHandshakeMethod, &meta, now),
                (_, Some(_)) => self.engine_error(k, &engineio::Error::BadRequest, &meta, now),
            },
        }
    }

    fn session_by_sid(&mut self, sid: &str) -> Option<usize> {
        let key: SocketId = sid.as_bytes().try_into().ok()?;
        self.live_session(&key)
    }

    /// The slab key of session `sid` while it is open. A session closed during this batch
    /// keeps its id until the batch ends; a request for it must be told it is unknown, not
    /// routed to a session every handler then skips (which left the request unanswered).
    fn live_session(&mut self, sid: &SocketId) -> Option<usize> {
        let s = *self.sids.get(sid)?;
        self.io.session_mut(s).map(|_| s)
    }

    /// Opens a session for a handshake that arrived on connection `k`, or refuses it (answered
    /// on `k`, which closes) when the per-address caps or `--max-sessions` are reached: a
    /// session holds memory and a slot for as long as it lives, so it is counted, apart from
    /// the connections that carry it. Otherwise one keep-alive connection could pipeline
    /// handshakes without end.
    fn new_session(&mut self, k: usize, transport: Transport, now: Instant) -> Option<usize> {
        // Behind a trusted proxy, the client its header names (the connection is the proxy's).
        let peer = self
            .request_client
            .or(self.io.conn_mut(k).map(|c| c.peer))?;
        let admitted = lock_ips(&self.sessions)
            .on_connect(peer, now)
            .map_err(IpRefusal::of_sessions);
        if let Err(refusal) = admitted {
            count_refusal(&mut self.io.metrics, &refusal);
            debug!(conn = k, %refusal, "engine.io session refused");
            self.reject(k, &HandshakeError::Refused(refusal), now);
            return None;
        }
        let sid = new_sid(self.worker);
        let deadline = now + self.connect_timeout();
        let mut session = Session::new(sid, transport, peer, now, Some(deadline));
        session.identity = Identity::new(self.verifier.is_some(), deadline);
        session.inbound = InboundBucket::new(self.limits.client.as_ref());
        let s = self.io.entries.insert(Entry::Session(session));
        self.sids.insert(sid, s);
        self.io.metrics.sessions_opened += 1;
        debug!(session = s, "engine.io session open");
        Some(s)
    }

    /// How long a session may go without an accepted CONNECT: `--connect-timeout`, or
    /// `--auth-timeout` when that is shorter and auth is on.
    fn connect_timeout(&self) -> std::time::Duration {
        match self.verifier {
            Some(_) => self.config.connect_timeout.min(self.config.auth_timeout),
            None => self.config.connect_timeout,
        }
    }

    fn open_packet(&mut self, s: usize, upgrades: &[&str]) -> String {
        let sid = match self.io.session_mut(s) {
            Some(sess) => sess.sid,
            None => return String::new(),
        };
        engineio::open_packet(&OpenParams {
            sid: std::str::from_utf8(&sid).unwrap_or(""),
            upgrades,
            ping_interval_ms: self.config.ping_interval.as_millis() as u64,
            ping_timeout_ms: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload as u64,
        })
    }

    /// Answers an Engine.IO protocol error as the reference server does and closes.
    fn engine_error(&mut self, k: usize, e: &engineio::Error, meta: &HttpMeta, now: Instant) {
        debug!(conn = k, error = %e, "engine.io request refused");
        *self
            .io
            .metrics
            .handshakes_rejected
            .entry(e.status())
            .or_default() += 1;
        let mut out = Vec::new();
        let meta = HttpMeta {
            keep_alive: false,
            ..meta.clone()
        };
        http::write_engine_error(&mut out, e, &meta);
        if self.io.send(k, &Bytes::from(out)) {
            self.enter_closing(k, now);
        }
    }

    /// Writes a complete HTTP answer to `k`, then puts it back to reading requests with `rest`
    /// as the start of the next (or closes). The next request is parsed by the loop in
    /// `on_http`, never from here: pipelined requests must not recurse.
    pub(crate) fn answer(
        &mut self,
        k: usize,
        out: Vec<u8>,
        rest: BytesMut,
        meta: &HttpMeta,
        now: Instant,
    ) {
        if let Some(conn) = self.io.conn_mut(k) {
            conn.served = true;
        }
        if !self.io.send(k, &Bytes::from(out)) {
            return;
        }
        if !meta.keep_alive {
            return self.enter_closing(k, now);
        }
        let deadline = now + self.config.handshake_timeout;
        if let Some(conn) = self.io.conn_mut(k) {
            conn.phase = Phase::Http {
                head: rest,
                deadline,
            };
        }
    }

    /// A WebSocket on the Socket.IO path: a new session (`sid` absent) or a polling session's
    /// upgrade probe.
    fn engine_upgrade(
        &mut self,
        k: usize,
        req: &Request,
        session: Option<usize>,
        rest: BytesMut,
        now: Instant,
    ) {
        let hs = match handshake::validate_upgrade(req) {
            Ok(hs) => hs,
            Err(e) => return self.reject(k, &e, now),
        };
        let s = match session {
            None => match self.new_session(k, Transport::WebSocket { ws: k }, now) {
                Some(s) => s,
                None => return,
            },
            Some(s) => {
                let Some(sess) = self.io.session_mut(s) else {
                    return;
                };
                // Engine.IO: only a polling session upgrades, and only once at a time. As the
                // reference server does, a WebSocket for a session that has one (or is probing
                // one) is opened and closed at once, and the session keeps its own: a client's
                // WebSocket library sees a close, not a failed handshake it may throw on.
                let Transport::Polling { get } = sess.transport else {
                    return self.open_and_close(k, &hs, now);
                };
                sess.transport = Transport::Upgrading { get, ws: k };
                s
            }
        };
        if let Some(conn) = self.io.conn_mut(k) {
            conn.session = Some(s);
            conn.served = true;
        }
        let agreed = self.agree(&hs);
        let mut out = Vec::with_capacity(256);
        handshake::write_accept_with(&hs, &agreed, &mut out);
        if session.is_none() {
            let open = self.open_packet(s, &[]);
            out.extend_from_slice(&text_frame(&[open.as_bytes()]));
        }
        self.open_websocket(k, Proto::EngineIo, &agreed, out, &rest, now);
    }

    /// Completes the WebSocket handshake `hs` on `k`, then closes it (1008) without a session.
    fn open_and_close(&mut self, k: usize, hs: &handshake::Handshake, now: Instant) {
        let agreed = self.agree(hs);
        let mut out = Vec::with_capacity(256);
        handshake::write_accept_with(hs, &agreed, &mut out);
        if self.open_websocket(k, Proto::EngineIo, &agreed, out, &[], now) {
            self.start_close(k, CloseCode::POLICY, "session already upgraded", now);
        }
    }

    /// A polling GET: answered at once when packets wait, else held until some do.
    fn engine_poll(&mut self, k: usize, s: usize, meta: HttpMeta, rest: BytesMut, now: Instant) {
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        match sess.transport {
            Transport::WebSocket { .. } => {
                self.engine_error(k, &engineio::Error::BadRequest, &meta, now)
            }
            // Engine.IO: a second GET while one is pending is an error that closes the session.
            Transport::Polling { get: Some(_) } | Transport::Upgrading { get: Some(_), .. } => {
                peer_warn!(
                    self.io.metrics.peer_warnings,
                    PeerFault::Protocol,
                    now,
                    session = s,
                    "overlapping polling GET; closing the session"
                );
                self.close_session(s, "overlapping GET", None, now);
                self.engine_error(k, &engineio::Error::BadRequest, &meta, now);
            }
            Transport::Polling { get: None } | Transport::Upgrading { get: None, .. } => {
                match &mut sess.transport {
                    Transport::Polling { get } | Transport::Upgrading { get, .. } => *get = Some(k),
                    Transport::WebSocket { .. } => {}
                }
                let ready = !sess.queue.is_empty();
                if let Some(conn) = self.io.conn_mut(k) {
                    conn.session = Some(s);
                    conn.served = true;
                    conn.phase = Phase::Poll {
                        meta,
                        pending: rest,
                    };
                }
                if ready {
                    self.io.flush_poll(s, now);
                }
            }
        }
    }

    /// A polling POST: its body carries client packets.
    fn engine_post(
        &mut self,
        k: usize,
        s: usize,
        req: &Request,
        meta: HttpMeta,
        rest: BytesMut,
        now: Instant,
    ) {
        let len = req
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let Some(need) = len else {
            return self.engine_error(k, &engineio::Error::BadRequest, &meta, now);
        };
        if need > self.config.max_payload {
            let e = engineio::Error::PayloadTooLarge {
                len: need as u64,
                max: self.config.max_payload as u64,
            };
            self.close_session(s, "payload too large", None, now);
            return self.engine_error(k, &e, &meta, now);
        }
        let Some(sid) = self.io.session_mut(s).map(|sess| sess.sid) else {
            return;
        };
        let deadline = now + self.config.handshake_timeout;
        if let Some(conn) = self.io.conn_mut(k) {
            conn.served = true;
            conn.phase = Phase::Body(Box::new(PostBody {
                body: Vec::with_capacity(need.min(rest.len().max(64))),
                need,
                meta,
                deadline,
                sid,
            }));
        }
        self.on_body(k, &rest, now);
    }

    /// Body bytes of a polling POST; once complete, its packets are handled and it is answered.
    pub(crate) fn on_body(&mut self, k: usize, data: &[u8], now: Instant) {
        let idle = self.config.handshake_timeout;
        let Some(conn) = self.io.conn_mut(k) else {
            return;
        };
        let Phase::Body(post) = &mut conn.phase else {
            return;
        };
        post.body.extend_from_slice(data);
        if post.body.len() < post.need {
            return;
        }
        let placeholder = Phase::Http {
            head: BytesMut::new(),
            deadline: now + idle,
        };
        let Phase::Body(post) = mem::replace(&mut conn.phase, placeholder) else {
            return;
        };
        let PostBody {
            mut body,
            need,
            meta,
            sid,
            ..
        } = *post;
        let rest = BytesMut::from(&body[need..]);
        body.truncate(need);
        let Some(s) = self.live_session(&sid) else {
            return self.engine_error(k, &engineio::Error::UnknownSid, &meta, now);
        };
        let packets = std::str::from_utf8(&body)
            .ok()
            .and_then(|text| engineio::decode_payload(text).ok());
        let Some(packets) = packets else {
            self.close_session(s, "invalid polling payload", None, now);
            return self.engine_error(k, &engineio::Error::BadRequest, &meta, now);
        };
        self.polled_packets(s, packets.into(), now);
        let mut out = Vec::new();
        http::write_ok(&mut out, &meta);
        self.answer(k, out, rest, &meta, now);
    }

    /// Packets a polling POST brought to session `s`, each counted against its bucket; while a
    /// join of the session waits for the log, they wait behind it.
    pub(crate) fn polled_packets(&mut self, s: usize, mut packets: VecDeque<Packet>, now: Instant) {
        while let Some(packet) = packets.pop_front() {
            let Some(sess) = self.io.session_mut(s) else {
                break;
            };
            if sess.joining {
                sess.held.push_back(packet);
                sess.held.extend(packets);
                return;
            }
            let admit = match &self.limits.client {
                Some(limit) => sess.inbound.admit(limit, self.epoch.millis(now)),
                None => Admit::Yes,
            };
            match admit {
                Admit::Yes => self.on_engine_packet(s, packet, None, now),
                Admit::DropAndWarn => {
                    self.io.metrics.rate_limited_client += 1;
                    self.socketio_error(s, "rate limited", now);
                }
                Admit::Drop => self.io.metrics.rate_limited_client += 1,
                Admit::Close => {
                    self.io.metrics.rate_limited_client += 1;
                    peer_warn!(
                        self.io.metrics.peer_warnings,
                        PeerFault::Rate,
                        now,
                        session = s,
                        "client kept sending over its message rate; closing"
                    );
                    self.close_session(s, "rate limit exceeded", None, now);
                    break;
                }
            }
        }
    }

    /// A WebSocket message on a connection carrying an Engine.IO session.
    pub(crate) fn on_engine_message(&mut self, k: usize, message: Event, now: Instant) {
        let Some(s) = self.io.conn_mut(k).and_then(|c| c.session) else {
            return;
        };
        let packet = match message {
            Event::Text(text) => engineio::decode_text(&text),
            Event::Binary(bytes) => Ok(engineio::decode_binary(&bytes)),
            _ => return,
        };
        match packet {
            Ok(p) => self.on_engine_packet(s, p, Some(k), now),
            Err(e) => {
                debug!(session = s, error = %e, "invalid engine.io packet");
                self.close_session(s, "invalid packet", Some(CloseCode::PROTOCOL_ERROR), now);
            }
        }
    }

    /// One Engine.IO packet from the client, via polling (`ws` None) or WebSocket `ws`.
    fn on_engine_packet(&mut self, s: usize, packet: Packet, ws: Option<usize>, now: Instant) {
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        let probing = match (sess.transport, ws) {
            (Transport::Upgrading { ws: w, .. }, Some(k)) => w == k,
            _ => false,
        };
        match packet {
            // Engine.IO v4 upgrade: the client probes the new WebSocket with `2probe`; the server
            // answers `3probe` on it and sends a noop on the pending GET so polling pauses.
            Packet::Ping(data) if data == "probe" && probing => {
                if let Some(k) = ws {
                    self.io.send(k, &text_frame(&[b"3probe"]));
                }
                self.session_send(s, &Bytes::from_static(b"6"), now);
            }
            Packet::Ping(data) => {
                let pong = Bytes::from(format!("3{data}"));
                self.session_send(s, &pong, now);
            }
            Packet::Pong(_) => sess.awaiting_pong = false,
            // `5` on the probed WebSocket: it takes over; what polling had queued goes over it.
            Packet::Upgrade if probing => {
                let Transport::Upgrading { get, ws: w } = sess.transport else {
                    return;
                };
                let queued = mem::take(&mut sess.queue);
                sess.queued = 0;
                sess.transport = Transport::WebSocket { ws: w };
                if let Some(g) = get {
                    self.io.answer_poll(g, [&b"6"[..]].into_iter(), now);
                }
                for p in queued {
                    self.io.send(w, &text_frame(&[&p]));
                }
                debug!(session = s, "upgraded to websocket");
            }
            Packet::Message(Data::Text(text)) => self.on_socketio(s, &text, now),
            Packet::Message(Data::Binary(bytes)) => self.on_socketio_binary(s, bytes, now),
            Packet::Close => {
                // engine.io's polling transport answers a GET held when the client closes with a
                // noop (`Polling.onClose`): the client ended the session itself, and a close
                // packet (`1`) would say the server did.
                if let Some(g) = sess.take_get() {
                    self.io.answer_poll(g, [&b"6"[..]].into_iter(), now);
                }
                self.close_session(s, "client closed", Some(CloseCode::NORMAL), now)
            }
            Packet::Noop => {}
            Packet::Open(_) | Packet::Upgrade => {
                self.close_session(s, "unexpected packet", Some(CloseCode::PROTOCOL_ERROR), now)
            }
        }
    }

    fn on_socketio(&mut self, s: usize, text: &str, now: Instant) {
        match socketio::decode(text, self.config.max_attachments) {
            Ok(p) if p.attachments > 0 => {
                if let Some(sess) = self.io.session_mut(s) {
                    sess.binary = Some(Box::new(Reassembler::new(p)));
                }
            }
            Ok(p) => self.on_socketio_packet(s, p, now),
            Err(e) => self.socketio_fault(s, &e, "invalid socket.io packet; closing", now),
        }
    }

    /// Session `s` sent a packet or attachment that cannot be taken: a (rate-limited) warning
    /// saying `what`, and the session closed as a protocol error (1002 on its WebSocket).
    fn socketio_fault(&mut self, s: usize, e: &socketio::Error, what: &str, now: Instant) {
        peer_warn!(
            self.io.metrics.peer_warnings,
            PeerFault::Protocol,
            now,
            session = s,
            error = %e,
            "{what}"
        );
        self.close_session(s, "invalid packet", Some(CloseCode::PROTOCOL_ERROR), now);
    }

    fn on_socketio_binary(&mut self, s: usize, bytes: Vec<u8>, now: Instant) {
        let max_held = self.io.max_queued;
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        let Some(reassembler) = sess.binary.as_mut() else {
            return self.close_session(
                s,
                "unexpected binary",
                Some(CloseCode::PROTOCOL_ERROR),
                now,
            );
        };
        // Attachments announced and partly sent wait here for the rest: charged against the
        // same bound as what waits to be written to the client, so a client that never sends
        // the last one holds at most `--max-queued-bytes`.
        if over_limit(reassembler.held_bytes(), bytes.len(), max_held) {
            debug!(
                session = s,
                "binary attachments over --max-queued-bytes; closing"
            );
            self.io.metrics.attachments_refused += 1;
            self.socketio_error(s, "attachments too large", now);
            let code = Some(CloseCode::TOO_BIG);
            return self.close_session(s, "attachments too large", code, now);
        }
        match reassembler.push(bytes) {
            Ok(None) => {}
            Ok(Some((packet, _attachments))) => {
                sess.binary = None;
                self.on_socketio_packet(s, packet, now);
            }
            Err(e) => self.socketio_fault(s, &e, "invalid binary attachment; closing", now),
        }
    }

    fn on_socketio_packet(&mut self, s: usize, p: socketio::Packet, now: Instant) {
        let unix = self.unix(now).as_secs();
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        let on_root = p.namespace == "/";
        match p.kind {
            PacketType::Connect if on_root => {
                if let Some(verifier) = &self.verifier {
                    // Socket.IO: the CONNECT packet's payload is the client's `auth` option.
                    let token = p.data.as_ref().and_then(auth::auth_payload_token);
                    let verified = match token {
                        Some(token) => verifier.verify(token, unix),
                        None => Err(auth::AuthError::Missing),
                    };
                    match verified {
                        Ok(claims) => {
                            let leeway = self.config.jwt_leeway.as_secs();
                            sess.identity = Identity::user(claims, leeway);
                        }
                        Err(e) => {
                            // The session stays: the client may CONNECT again with another
                            // token until the connect deadline.
                            debug!(session = s, error = %e, "CONNECT refused");
                            self.io.metrics.auth_failures += 1;
                            let reply = socketio::encode_connect_error("/", e.message());
                            return self.send_socketio(s, &reply, now);
                        }
                    }
                }
                // The reference server's connect timer fires once, for a client that never
                // connected; one that leaves `/` later keeps its session.
                sess.connect_deadline = None;
                if self.parked.is_none() || sess.socket.is_some() {
                    let socket = *sess.socket.get_or_insert_with(new_id);
                    let pid = sess.pid;
                    let sid = std::str::from_utf8(&socket).unwrap_or("");
                    let pid = pid.as_ref().and_then(|p| std::str::from_utf8(p).ok());
                    let reply = socketio::encode_connect(sid, pid);
                    return self.send_socketio(s, &reply, now);
                }
                let join = self.connect_join(s, p.data.as_ref(), now);
                self.start_join(join);
            }
            PacketType::Connect => {
                debug!(session = s, namespace = %p.namespace, "unknown namespace");
                let reply = socketio::encode_connect_error(&p.namespace, "Invalid namespace");
                self.send_socketio(s, &reply, now);
            }
            // The session stays open, as the reference server keeps it, until the client
            // closes it or stops answering pings. Its identity is left as it was: with no socket
            // no event is served, and the next CONNECT sets it from that CONNECT's token.
            PacketType::Disconnect if on_root => {
                sess.socket = None;
                self.rooms.remove_conn(s);
                // Ended by its client: no node of a cluster may take it back.
                self.forget_session(s);
            }
            PacketType::Event | PacketType::BinaryEvent if on_root && sess.socket.is_some() => {
                self.on_socketio_event(s, p.id, p.data.unwrap_or(Value::Null), now)
            }
            PacketType::ConnectError => {
                self.close_session(s, "invalid packet", Some(CloseCode::PROTOCOL_ERROR), now)
            }
            // herald asks for no acks, and serves no namespace but `/`.
            _ => debug!(session = s, kind = ?p.kind, namespace = %p.namespace, "packet ignored"),
        }
    }

    /// `subscribe`, `unsubscribe` and `refresh`. Another event is ignored, as the reference
    /// server ignores an event nobody listens to, except that an ack it asks for is answered
    /// `[{"error":"unknown event"}]`, so the client's `emitWithAck` has its answer at once
    /// instead of timing out.
    ///
    /// `refresh` takes a fresh token (`"<jwt>"` or `{"token":"<jwt>"}`) for the same user: it
    /// moves the session's expiry and emits `authenticated` `{userId, exp}`. Each answer is
    /// emitted as an event, and the ack, when asked for, gets the same.
    fn on_socketio_event(&mut self, s: usize, ack: Option<u64>, data: Value, now: Instant) {
        let Value::Array(args) = data else {
            return;
        };
        let arg = args.get(1);
        let command = match args.first().and_then(Value::as_str) {
            Some("subscribe") => rooms::subscription_from_json(arg.unwrap_or(&Value::Null))
                .map(ClientCommand::Subscribe)
                .map_err(|fault| Refusal::BadUserId {
                    event: "subscribe",
                    fault,
                }),
            Some("unsubscribe") => {
                event_user_id("unsubscribe", arg).map(ClientCommand::Unsubscribe)
            }
            Some("refresh") => Ok(ClientCommand::Refresh(refresh_token(arg))),
            other => {
                debug!(session = s, event = ?other, "unknown event ignored");
                if let Some(id) = ack {
                    let reply = json!({"error": "unknown event"});
                    self.send_socketio(s, &socketio::encode_ack(id, &[reply]), now);
                }
                return;
            }
        };
        let Some(outcome) = self.client_command(s, command, now) else {
            return;
        };
        let (event, reply) = match outcome {
            Ok(Outcome::Subscribed { users, list, .. }) => {
                let socket_id = self.io.session_mut(s).map_or("", |sess| sess.socket_str());
                let answer = raw::SubscribedAnswer {
                    users: &users,
                    list,
                    socket_id,
                    offset: None,
                    recovered: None,
                };
                ("subscribed", answer.to_json())
            }
            Ok(Outcome::Joining(sub)) => {
                let Some(sess) = self.io.session_mut(s) else {
                    return;
                };
                let join = Join {
                    member: s,
                    id: sess.sid,
                    held: self.rooms.rooms_of(s).map(str::to_owned).collect(),
                    users: sub.users,
                    since: sub.offset.map_or(Since::Now, Since::Client),
                    reply: JoinReply::Event {
                        ack,
                        list: sub.list,
                    },
                    lookup: None,
                };
                return self.start_join(join);
            }
            Ok(Outcome::Unsubscribed { user_id, .. }) => {
                self.share_session(s, now);
                ("unsubscribed", json!({"userId": user_id}))
            }
            Ok(Outcome::Authenticated { user_id, exp }) => {
                ("authenticated", json!({"userId": user_id, "exp": exp}))
            }
            // Never a close: a session sends events only once its CONNECT was accepted.
            Err(refusal) => return self.refuse(s, ack, &refusal.to_string(), now),
        };
        self.send_socketio(
            s,
            &socketio::encode_event(event, std::slice::from_ref(&reply)),
            now,
        );
        if let Some(id) = ack {
            self.send_socketio(s, &socketio::encode_ack(id, &[reply]), now);
        }
    }

    /// Session `s`'s token expired without a `refresh`: it is told why, disconnected from its
    /// namespace (so socket.io-client does not reconnect on its own with the stale token), and
    /// closed (4003 on a WebSocket).
    pub(crate) fn session_token_expired(&mut self, s: usize, now: Instant) {
        debug!(session = s, "token expired");
        self.io.metrics.tokens_expired += 1;
        let error = socketio::encode_event("error", &[json!({"message": "token expired"})]);
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        if let Transport::WebSocket { .. } = sess.transport {
            self.send_socketio(s, &error, now);
            self.send_socketio(s, &socketio::encode_disconnect(), now);
        } else {
            // Over polling both wait for the close, so that one answer to the held GET carries
            // the reason, the DISCONNECT and the close packet together.
            for packet in [error, socketio::encode_disconnect()] {
                let packet = Bytes::from(format!("4{packet}"));
                sess.queued += packet.len();
                sess.queue.push_back(packet);
            }
        }
        self.close_session(s, "token expired", Some(CloseCode::TOKEN_EXPIRED), now);
    }

    /// The join a CONNECT to `/` makes with recovery on: a session taken back, when the
    /// client's `auth` names one kept under its `pid` (and, with JWT auth on, its token names
    /// the same user); a new one otherwise. The CONNECT is answered once the log placed it,
    /// after what the session missed.
    fn connect_join(&mut self, s: usize, auth: Option<&Value>, now: Instant) -> Join {
        let now_ms = self.unix(now).as_millis() as u64;
        let field = |name: &str| {
            auth.and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (pid, offset) = (field("pid"), field("offset"));
        let (eio_sid, user) = match self.io.session_mut(s) {
            Some(sess) => (
                sess.sid,
                match &sess.identity {
                    Identity::User { sub, .. } => Some(sub.to_string()),
                    _ => None,
                },
            ),
            None => (SocketId::default(), None),
        };
        let mut left_behind = None;
        let kept = match (&self.parked, &pid) {
            (Some(parked), Some(pid)) => match parked.take(pid, now_ms).or_else(|| {
                // Its client came back before herald noticed it left: still connected. The
                // Engine.IO session left behind is closed, by its own worker.
                let (session, left) = parked.take_over(pid, user.as_deref(), eio_sid)?;
                left_behind = Some(left);
                Some(session)
            }) {
                // A pid alone never authenticates: the token must name the same user.
                Some(kept) if kept.user == user => Some(kept),
                Some(other) => {
                    debug!(
                        session = s,
                        "kept session is another user's: not taken back"
                    );
                    parked.park(pid.clone(), other, now_ms);
                    None
                }
                None => None,
            },
            _ => None,
        };
        if let Some(left) = left_behind {
            match sid_worker(&left) {
                Some(w) if w != self.worker && w < self.workers => self.taken_over.push((w, left)),
                _ => self.close_taken_over(&left, now),
            }
        }
        let as_id = |text: &str| -> Option<SocketId> { text.as_bytes().try_into().ok() };
        let taken = kept.and_then(|k| {
            let pid = as_id(pid.as_deref()?)?;
            Join::taken_back(s, eio_sid, k, pid, offset.clone())
        });
        if let Some(join) = taken {
            debug!(session = s, users = join.users.len(), "session taken back");
            return join;
        }
        // In a cluster another node may have kept it.
        let lookup = pid
            .filter(|_| self.config.redis.is_some() && self.parked.is_some())
            .map(|pid| Lookup { pid, user, offset });
        Join {
            member: s,
            id: eio_sid,
            users: Vec::new(),
            held: Vec::new(),
            since: Since::Now,
            reply: JoinReply::Connect {
                sid: new_id(),
                pid: new_id(),
                recovering: false,
            },
            lookup,
        }
    }

    /// Closes this worker's Engine.IO session `sid`, whose client took its Socket.IO session
    /// over on another Engine.IO session: its transport is dead or about to be, and it no
    /// longer holds the `pid`, so it keeps nothing and ends nothing.
    pub(crate) fn close_taken_over(&mut self, sid: &SocketId, now: Instant) {
        if let Some(&old) = self.sids.get(sid) {
            debug!(session = old, "connected session taken over by its client");
            self.close_session(old, "taken over by its client", None, now);
        }
    }

    /// Accepts session `s`'s CONNECT to `/`: `0{"sid":...,"pid":...}`.
    pub(crate) fn socketio_connected(
        &mut self,
        s: usize,
        sid: &str,
        pid: Option<&str>,
        now: Instant,
    ) {
        self.send_socketio(s, &socketio::encode_connect(sid, pid), now);
    }

    /// Emits `subscribed` with `data` and, last, the log's newest offset (which socket.io-client
    /// keeps as the offset to recover from, as it keeps a notification's), and answers the ack
    /// with `data` when one was asked for.
    pub(crate) fn socketio_subscribed(
        &mut self,
        s: usize,
        ack: Option<u64>,
        data: Value,
        offset: &str,
        now: Instant,
    ) {
        let event = socketio::encode_event("subscribed", &[data.clone(), Value::from(offset)]);
        self.send_socketio(s, &event, now);
        if let Some(id) = ack {
            self.send_socketio(s, &socketio::encode_ack(id, &[data]), now);
        }
    }

    /// Emits `error` `{message}`, and answers the ack with `{error}`.
    pub(crate) fn socketio_refuse(
        &mut self,
        s: usize,
        ack: Option<u64>,
        message: &str,
        now: Instant,
    ) {
        self.refuse(s, ack, message, now);
    }

    /// Emits `error` `{message}` to session `s`.
    pub(crate) fn socketio_error(&mut self, s: usize, message: &str, now: Instant) {
        self.refuse(s, None, message, now);
    }

    /// Emits `error` `{message}`, and answers the ack with `{error}` so a callback never hangs.
    fn refuse(&mut self, s: usize, ack: Option<u64>, message: &str, now: Instant) {
        debug!(session = s, message, "event refused");
        self.send_socketio(
            s,
            &socketio::encode_event("error", &[json!({"message": message})]),
            now,
        );
        if let Some(id) = ack {
            self.send_socketio(
                s,
                &socketio::encode_ack(id, &[json!({"error": message})]),
                now,
            );
        }
    }

    /// Sends a Socket.IO packet (without Engine.IO's `4`) to session `s`.
    fn send_socketio(&mut self, s: usize, packet: &str, now: Instant) {
        let mut bytes = Vec::with_capacity(packet.len() + 1);
        bytes.push(b'4');
        bytes.extend_from_slice(packet.as_bytes());
        self.session_send(s, &Bytes::from(bytes), now);
    }

    /// Sends an encoded Engine.IO packet to session `s` over whichever transport it has.
    pub(crate) fn session_send(&mut self, s: usize, packet: &Bytes, now: Instant) -> bool {
        self.io.session_send(s, packet, now)
    }

    /// Ends session `s`: leaves its rooms, answers a held GET with a close packet, and closes its
    /// WebSocket with `ws_code` (or drops it at once when `None`).
    pub(crate) fn close_session(
        &mut self,
        s: usize,
        why: &str,
        ws_code: Option<CloseCode>,
        now: Instant,
    ) {
        self.forget_session(s);
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        debug!(session = s, why, "closing engine.io session");
        let transport = sess.transport;
        // What waited for the next poll (an error event saying why, say) goes out before the
        // close packet when a GET is held.
        let queued = mem::take(&mut sess.queue);
        sess.queued = 0;
        self.io.kill(s);
        self.rooms.remove_conn(s);
        let (get, ws) = match transport {
            Transport::Polling { get } => (get, None),
            Transport::Upgrading { get, ws } => (get, Some(ws)),
            Transport::WebSocket { ws } => (None, Some(ws)),
        };
        if let Some(g) = get {
            let close: &[u8] = b"1";
            let packets = queued.iter().map(|p| &p[..]).chain(std::iter::once(close));
            self.io.answer_poll(g, packets, now);
        }
        if let Some(w) = ws {
            if let Some(conn) = self.io.conn_mut(w) {
                conn.session = None;
            }
            match ws_code {
                Some(code) => self.start_close(w, code, why, now),
                None => {
                    if self.io.conn_mut(w).is_some_and(|c| c.is_open()) {
                        self.io.metrics.count_close(CloseCode::ABNORMAL);
                    }
                    self.io.kill(w);
                }
            }
        }
    }

    /// Cuts the link between connection `k` and its session, when `k` stops carrying it.
    pub(crate) fn unlink(&mut self, k: usize, now: Instant) {
        let Some(s) = self.io.conn_mut(k).and_then(|c| c.session.take()) else {
            return;
        };
        let Some(sess) = self.io.session_mut(s) else {
            return;
        };
        match sess.transport {
            // The connection holding the session's GET is gone with the GET unanswered (the
            // client reset it, closed it, or it failed): as engine.io's polling transport ("poll
            // connection closed prematurely"), the transport is lost. The client reconnects and
            // may take the session back (recovery on) at once, rather than finding it still
            // open until the ping timeout.
            Transport::Polling { get: Some(g) } if g == k => {
                sess.transport = Transport::Polling { get: None };
                sess.last_poll = now;
                self.park(s, now);
                self.close_session(s, "poll connection closed", None, now);
            }
            Transport::Upgrading { get, ws } if ws == k => {
                sess.transport = Transport::Polling { get };
            }
            Transport::Upgrading { get: Some(g), ws } if g == k => {
                sess.transport = Transport::Upgrading { get: None, ws };
                sess.last_poll = now;
            }
            // The WebSocket was the session: the client reconnects with a new one, and may take
            // this one back (recovery on). `k` is closing already, on its own terms; the
            // session lets go of it first.
            Transport::WebSocket { ws } if ws == k => {
                sess.transport = Transport::Polling { get: None };
                self.park(s, now);
                self.close_session(s, "transport closed", None, now);
            }
            _ => {}
        }
    }
}

/// The user id a `subscribe` or `unsubscribe` event carries as its argument.
fn event_user_id(event: &'static str, arg: Option<&Value>) -> Result<String, Refusal> {
    rooms::user_id_from_json(arg.unwrap_or(&Value::Null))
        .map_err(|fault| Refusal::BadUserId { event, fault })
}

/// The token a `refresh` event carries: `"<jwt>"` or `{"token":"<jwt>"}`.
fn refresh_token(arg: Option<&Value>) -> Option<String> {
    match arg {
        Some(Value::String(token)) => Some(token.clone()),
        Some(payload) => auth::auth_payload_token(payload).map(str::to_owned),
        None => None,
    }
}

impl Io {
    /// Sends an encoded Engine.IO packet to session `s`: as a text frame on its WebSocket, or
    /// queued for its next polling GET and flushed to a held one.
    pub(crate) fn session_send(&mut self, s: usize, packet: &Bytes, now: Instant) -> bool {
        let max_queued = self.max_queued;
        let Some(sess) = self.session_mut(s) else {
            return false;
        };
        match sess.transport {
            Transport::WebSocket { ws } => self.send(ws, &text_frame(&[packet])),
            Transport::Polling { get } | Transport::Upgrading { get, .. } => {
                if over_limit(sess.queued, packet.len(), max_queued) {
                    self.slow_consumer(s);
                    return false;
                }
                sess.queued += packet.len();
                sess.queue.push_back(packet.clone());
                if get.is_some() {
                    self.flush_poll(s, now);
                }
                true
            }
        }
    }

    /// Answers session `s`'s held GET with every queued packet.
    pub(crate) fn flush_poll(&mut self, s: usize, now: Instant) {
        let Some(sess) = self.session_mut(s) else {
            return;
        };
        let get = match &mut sess.transport {
            Transport::Polling { get } | Transport::Upgrading { get, .. } => get.take(),
            Transport::WebSocket { .. } => None,
        };
        let Some(g) = get else {
            return;
        };
        sess.last_poll = now;
        let queue = mem::take(&mut sess.queue);
        sess.queued = 0;
        self.answer_poll(g, queue.iter().map(|b| &b[..]), now);
    }

    /// Answers held GET `g` with `packets` and returns it to reading requests; cuts its link.
    pub(crate) fn answer_poll<'a>(
        &mut self,
        g: usize,
        packets: impl Iterator<Item = &'a [u8]> + Clone,
        now: Instant,
    ) {
        let (idle, close_timeout, closing_all) = (self.idle, self.close_timeout, self.closing_all);
        let Some(conn) = self.conn_mut(g) else {
            return;
        };
        let Phase::Poll { .. } = conn.phase else {
            return;
        };
        conn.session = None;
        let Phase::Poll { meta, pending } = mem::replace(
            &mut conn.phase,
            Phase::Http {
                head: BytesMut::new(),
                deadline: now + idle,
            },
        ) else {
            return;
        };
        let keep_alive = meta.keep_alive && !closing_all;
        let mut out = Vec::new();
        let meta = HttpMeta { keep_alive, ..meta };
        http::write_packets(&mut out, packets, &meta);
        if let Phase::Http { head, .. } = &mut conn.phase {
            *head = pending;
        }
        if mem::take(&mut conn.read_paused) {
            self.resume.push(g);
        }
        if !self.send(g, &Bytes::from(out)) {
            return;
        }
        if !keep_alive {
            self.close_after_flush(g, now + close_timeout);
        } else if self
            .conn_mut(g)
            .is_some_and(|c| matches!(&c.phase, Phase::Http { head, .. } if !head.is_empty()))
        {
            self.reparse.push(g);
        }
    }

    /// Shuts `k`'s write side once its queue drains and waits for its EOF until `deadline`.
    pub(crate) fn close_after_flush(&mut self, k: usize, deadline: Instant) {
        let Some(conn) = self.conn_mut(k) else {
            return;
        };
        conn.phase = Phase::Closing { deadline };
        conn.shutdown_when_flushed = true;
        if conn.out.is_empty() {
            self.write_now.push(k);
        }
    }
}
