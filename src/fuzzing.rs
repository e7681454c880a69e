//! Entry points for the fuzz targets in `fuzz/`, one per parser, each a whole check in itself so
//! a target is one line. Also run on a few inputs by the test suite so they cannot rot.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::auth::{self, Verifier};
use crate::command::{Command, LoopGone, PushReply, Target, UserInfo};
use crate::config::Config;
use crate::control::{api, http};
use crate::core::commands::{self, ClientCommand, Outcome, Refusal, Tokens};
use crate::core::driver::Driver;
use crate::core::identity::Identity;
use crate::http::Origins;
use crate::protocol::format::{self, Format};
use crate::protocol::raw;
use crate::proxy::{self, real_ip, ForwardHeader, RealIp, Version};
use crate::rooms::{self, ConnId, Rooms, SubscribeError};
use crate::ws::decoder::DEFAULT_MAX_FRAGMENTS;
use crate::ws::deflate::{self, Inflater};
use crate::ws::frame::encode_masked;
use crate::ws::{handshake, Decoder, Event};

/// Decodes `data` once whole and once split into reads of varying sizes drawn from its first
/// byte, and requires the same events and the same verdict either way. The first byte's top bit
/// turns permessage-deflate on, so compressed messages go through the inflater; its next bit
/// lowers the fragment limit to a few frames, so inputs of fuzzing size reach it.
pub fn frame_decoder(data: &[u8]) {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let deflate = split & 0x80 != 0;
    let max_fragments = if split & 0x40 != 0 {
        3
    } else {
        DEFAULT_MAX_FRAGMENTS
    };
    let whole = decode_all([stream].into_iter(), deflate, max_fragments);
    let split = decode_all(Reads::new(stream, split), deflate, max_fragments);
    assert_eq!(whole, split, "the split changed the result");
}

/// `stream` cut into reads of 1 to 32 bytes, as a socket might deliver it, sized by a small
/// generator seeded with `seed` (its low five bits give the first size, so a seed of 0 starts
/// with a one-byte read).
struct Reads<'a> {
    stream: &'a [u8],
    state: u32,
}

impl<'a> Reads<'a> {
    fn new(stream: &'a [u8], seed: u8) -> Self {
        Reads {
            stream,
            state: u32::from(seed) | 0x100,
        }
    }
}

impl<'a> Iterator for Reads<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.stream.is_empty() {
            return None;
        }
        let size = (self.state % 32) as usize + 1;
        // xorshift32: any nonzero state cycles through every other nonzero value.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let (read, rest) = self.stream.split_at(size.min(self.stream.len()));
        self.stream = rest;
        Some(read)
    }
}

fn decode_all<'a>(
    reads: impl Iterator<Item = &'a [u8]>,
    deflate: bool,
    max_fragments: u32,
) -> (Vec<Event>, Option<crate::ws::Error>) {
    let mut dec = Decoder::new(64 * 1024).with_max_fragments(max_fragments);
    if deflate {
        dec.enable_deflate();
    }
    decode_reads(&mut dec, reads)
}

/// Feeds `reads` to `dec` in order with the calling loop [`Decoder`] documents, checking each
/// call consumes at least a byte and no more than it was given. Returns the events up to the
/// first error, and that error. Shared by the fuzz targets and the decoder's tests.
pub fn decode_reads<'a>(
    dec: &mut Decoder,
    reads: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Event>, Option<crate::ws::Error>) {
    let mut events = Vec::new();
    for mut input in reads {
        while !input.is_empty() {
            match dec.decode(input) {
                Ok((n, ev)) => {
                    assert!(
                        n > 0 && n <= input.len(),
                        "decode consumed {n} of {}",
                        input.len()
                    );
                    input = &input[n..];
                    events.extend(ev);
                }
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// Parses an HTTP request head, validates it as a WebSocket upgrade, and reads everything the
/// server reads from one: the offered extensions and subprotocols (and the format they choose
/// with the query), the token in `Authorization` or `?token=`, and the query as Engine.IO's.
pub fn handshake(data: &[u8]) {
    let Ok(Some((req, used))) = handshake::parse_request(data, 8 * 1024) else {
        return;
    };
    assert!(used <= data.len());
    if let Some(header) = req.header("authorization") {
        let _ = auth::bearer(header);
    }
    if let Some(origin) = req.header("origin") {
        // Matched as the origin lists match it, and read as an entry of one.
        if let Ok(origins) = Origins::parse(&["https://*.example.com", "http://localhost:3000"]) {
            let _ = origins.allows(origin);
        }
        if let Ok(text) = std::str::from_utf8(origin) {
            let _ = Origins::check_entry(text);
        }
    }
    let Ok(hs) = handshake::validate_upgrade(&req) else {
        return;
    };
    let query = hs.query.as_deref();
    let _ = crate::engineio::parse_query(query);
    let _ = query.and_then(auth::query_token);
    let protocol = format::negotiate(hs.protocols.as_deref(), query)
        .ok()
        .and_then(|chosen| chosen.subprotocol);
    let agreed = handshake::Agreement {
        deflate: hs.extensions.as_deref().and_then(deflate::negotiate),
        protocol,
    };
    let mut out = Vec::new();
    handshake::write_accept_with(&hs, &agreed, &mut out);
    assert!(out.ends_with(b"\r\n\r\n"), "an unterminated 101 response");
}

/// Inflates `data` as one compressed message under a cap taken from its first two bytes: the
/// output never exceeds the cap, and feeding it in two pieces gives the same verdict.
pub fn inflate(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([*a, *b]));
    let whole = deflate::inflate(rest, max);
    if let Ok(out) = &whole {
        assert!(
            out.len() <= max,
            "{} bytes out of a cap of {max}",
            out.len()
        );
    }
    let cut = rest.len() / 2;
    let mut out = Vec::new();
    let mut inflater = Inflater::new();
    let split = inflater
        .update(&rest[..cut], &mut out, max)
        .and_then(|()| inflater.update(&rest[cut..], &mut out, max))
        .and_then(|()| inflater.finish(&mut out, max))
        .map(|()| out.clone());
    assert!(
        out.len() <= max + 1,
        "{} bytes held under a cap of {max}",
        out.len()
    );
    assert_eq!(whole, split, "the split changed the result");
}

/// Parses a client message of the raw `/ws` protocol in both formats and builds the reply its
/// event would earn, and reads the bytes as a subprotocol list and a query to choose a format
/// from.
pub fn raw_protocol(data: &[u8]) {
    raw_reply(Format::MessagePack, raw::Message::Binary(data));
    if let Ok(text) = std::str::from_utf8(data) {
        raw_reply(Format::Json, raw::Message::Text(text));
        if let Some((protocols, query)) = text.split_at_checked(text.len() / 2) {
            let _ = format::negotiate(Some(protocols), Some(query));
        }
    }
}

/// Decodes one client message and builds the reply its event is answered with, so every reply
/// builder runs on whatever a peer can make the decoder hand out. The match names every event:
/// a new one cannot be added without being fuzzed here too.
fn raw_reply(format: Format, message: raw::Message<'_>) -> Vec<u8> {
    match raw::decode(format, message) {
        Ok(raw::ClientEvent::Subscribe(sub)) => {
            let answer = raw::SubscribedAnswer {
                users: &sub.users,
                list: sub.list,
                socket_id: "socket",
                offset: sub.offset.as_deref(),
                recovered: Some(sub.offset.is_some()),
            };
            raw::subscribed(format, &answer)
        }
        Ok(raw::ClientEvent::Unsubscribe(user)) => raw::unsubscribed(format, &user),
        Ok(raw::ClientEvent::Auth(token)) => {
            assert!(
                !token.is_empty() && token.len() <= raw::MAX_TOKEN_LEN,
                "a token of {} bytes got through",
                token.len()
            );
            // The token stands in for the user id it would name once verified.
            raw::authenticated(format, &token, u64::MAX)
        }
        Err(e) => raw::error(format, &e.to_string()),
    }
}

/// A loop stand-in that answers every command at once.
struct Answer;

impl api::Dispatch for Answer {
    fn dispatch(&self, cmd: Command) -> Result<(), LoopGone> {
        match cmd {
            Command::Push { reply, .. } => reply
                .send(PushReply {
                    sockets: 1,
                    ..PushReply::default()
                })
                .map_err(|_| LoopGone),
            Command::UserInfo { reply, .. } => reply.send(UserInfo::local(1)).map_err(|_| LoopGone),
            Command::Metrics { reply } => reply.send(String::new()).map_err(|_| LoopGone),
            Command::Readiness { reply } => reply.send(true).map_err(|_| LoopGone),
            Command::Shutdown => Ok(()),
        }
    }
}

/// Parses pipelined control API requests and routes each one.
pub fn control_http(data: &[u8]) {
    let mut input = data;
    let _ = http::wants_continue(input, 64 * 1024);
    let _ = http::head(input, 64 * 1024);
    while let Ok(Some((req, used))) = http::parse(input, 64 * 1024) {
        assert!(used > 0 && used <= input.len());
        input = &input[used..];
        let resp = api::handle(&req, &Answer, Duration::from_secs(1), UNIX_EPOCH);
        let mut out = Vec::new();
        resp.write(req.keep_alive, &mut out);
    }
}

/// Decodes an Engine.IO packet, a polling payload, and the handshake query.
pub fn engineio(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::engineio::decode_text(text);
        let _ = crate::engineio::decode_payload(text);
        let _ = crate::engineio::parse_query(Some(text));
    }
    let _ = crate::engineio::decode_binary(data);
}

/// Decodes a Socket.IO packet and, when it announces attachments, feeds it the rest of `data`
/// as attachments; then reads the packet as the server does: a CONNECT's auth token, an
/// event's user id.
pub fn socketio(data: &[u8]) {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(mut packet) = crate::socketio::decode(text, 10) else {
        return;
    };
    if packet.attachments > 0 {
        let mut r = crate::socketio::Reassembler::new(packet);
        let mut chunks = rest.chunks(7);
        packet = loop {
            let Some(chunk) = chunks.next() else {
                return;
            };
            match r.push(chunk.to_vec()) {
                Ok(None) => {}
                Ok(Some((whole, _attachments))) => break whole,
                Err(_) => return,
            }
        };
    }
    if let Some(data) = &packet.data {
        let _ = auth::auth_payload_token(data);
        if let Some(args) = data.as_array() {
            for arg in args {
                let _ = rooms::user_id_from_json(arg);
            }
        }
    }
}

/// The secret the `token` target signs with: long enough for HS256.
const TOKEN_SECRET: &[u8] = b"herald fuzzing secret, 32 bytes!";

/// Verifies `data` as a token, and as the header and claims of a token signed with the right
/// key (split at the first NUL), so the claim checks behind the signature are reached too. A
/// token only verifies with `exp` in the future and a valid `sub`.
pub fn token(data: &[u8]) {
    let verifier = Verifier::from_secret(TOKEN_SECRET);
    let now = TOKEN_NOW;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verifier.verify(text, now);
    }
    if let Some(token) = signed_token(data) {
        if let Ok(verified) = verifier.verify(&token, now) {
            assert!(verified.exp > now, "an expired token verified");
            assert!(
                rooms::validate_user_id(&verified.sub).is_ok(),
                "a token with an invalid sub verified"
            );
        }
    }
}

/// The moment the `token` target verifies at, in Unix seconds.
const TOKEN_NOW: u64 = 1_700_000_000;

/// A token of `data`'s header and claims (split at the first NUL; a standard HS256 header when
/// there is none), signed with [`TOKEN_SECRET`].
fn signed_token(data: &[u8]) -> Option<String> {
    let (header, claims) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, TOKEN_SECRET);
    let signature = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, message.as_bytes()));
    Some(format!("{message}.{signature}"))
}

/// The rooms' model: which users each connection is subscribed to.
type Model = BTreeMap<ConnId, BTreeSet<String>>;

/// Rooms a connection may join in the `rooms` target: small, so the limit is reached.
const ROOMS_PER_CONN: usize = 4;

/// Connections open at once in the `rooms` target: enough to share rooms and reuse ids, few
/// enough that checking the whole model after every operation stays cheap.
const MAX_CONNS: usize = 24;

/// Applies the operations `data` spells (connect, subscribe, unsubscribe, push, disconnect; two
/// bytes each) to [`Rooms`] and to a plain model of it, and after each one requires the two to
/// agree and the rooms' invariants to hold: membership both ways, no empty room kept.
pub fn rooms(data: &[u8]) {
    let mut rooms = Rooms::new(ROOMS_PER_CONN);
    let mut model = Model::new();
    // Connection ids are slab keys in the server: freed ids are reused, lowest first.
    let mut next_id: ConnId = 0;
    for op in data.chunks_exact(2) {
        let (verb, arg) = (op[0] % 5, op[1]);
        let user = format!("u{}", arg % 16);
        let conn = model
            .keys()
            .nth(usize::from(op[0] / 5) % model.len().max(1));
        match (verb, conn.copied()) {
            (0, _) if model.len() < MAX_CONNS => {
                let id = (0..=next_id)
                    .find(|c| !model.contains_key(c))
                    .unwrap_or(next_id);
                next_id = next_id.max(id + 1);
                model.insert(id, BTreeSet::new());
            }
            (1, Some(c)) => {
                let joined = model.get_mut(&c).map(|s| (s.contains(&user), s.len()));
                let expected = match joined {
                    Some((true, _)) => Ok(false),
                    Some((false, n)) if n >= ROOMS_PER_CONN => Err(SubscribeError::TooMany {
                        max: ROOMS_PER_CONN,
                    }),
                    _ => Ok(true),
                };
                assert_eq!(rooms.subscribe(c, &user), expected, "subscribe {c} {user}");
                if expected == Ok(true) {
                    model.entry(c).or_default().insert(user.clone());
                }
            }
            (2, Some(c)) => {
                let was = model.get_mut(&c).is_some_and(|s| s.remove(&user));
                assert_eq!(rooms.unsubscribe(c, &user), was, "unsubscribe {c} {user}");
            }
            (3, _) => {
                let mut got = rooms.members(&user).to_vec();
                got.sort_unstable();
                let want: Vec<ConnId> = model
                    .iter()
                    .filter(|(_, users)| users.contains(&user))
                    .map(|(&c, _)| c)
                    .collect();
                assert_eq!(
                    got, want,
                    "a push to {user} reaches its subscribers once each"
                );
            }
            (4, Some(c)) => {
                rooms.remove_conn(c);
                model.remove(&c);
            }
            _ => {}
        }
        rooms.check_invariants();
        agree(&rooms, &model);
    }
}

/// Requires `rooms` to hold exactly what `model` says, seen from rooms and from connections.
fn agree(rooms: &Rooms, model: &Model) {
    let subscriptions: usize = model.values().map(BTreeSet::len).sum();
    assert_eq!(rooms.subscriptions(), subscriptions);
    let users: BTreeSet<&String> = model.values().flatten().collect();
    assert_eq!(
        rooms.len(),
        users.len(),
        "rooms kept: one per subscribed user"
    );
    let mut got: Vec<&str> = Vec::with_capacity(ROOMS_PER_CONN);
    for (&c, want) in model {
        got.clear();
        got.extend(rooms.rooms_of(c));
        got.sort_unstable();
        assert!(
            got.iter().copied().eq(want.iter().map(String::as_str)),
            "rooms of {c}"
        );
    }
}

/// Members in the `core_commands` target: few, so that they share rooms and ids are reused.
const CORE_MEMBERS: usize = 4;

/// Subscriptions a member may hold in the `core_commands` target: small, so the cap is reached.
const CORE_SUBSCRIPTIONS: usize = 3;

/// How long a member of the `core_commands` target may wait for its first token.
const CORE_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives [`commands::handle`] as the event loop does, with the commands, members and time
/// advances `data` spells, and after each step requires the rooms' invariants and the rules to
/// hold: a refusal changes nothing, an outcome says what the rooms now hold, a member waiting
/// for its token or closed is in no room, and with JWT auth on a member is only ever in its own
/// user's room.
///
/// The first byte is the mode: bit 0 turns JWT auth on, bits 1-2 are the leeway in seconds, and
/// bit 3 answers refusals as Socket.IO does (never closing) rather than as the raw protocol.
/// Then two bytes a step: the low three bits of the first are the verb (connect, subscribe,
/// unsubscribe, auth, refresh, a malformed message, time passing, disconnect), its other bits
/// the member; the second is the argument (a user, a token's user and lifetime, seconds).
pub fn core_commands(data: &[u8]) {
    run_core_commands(data);
}

/// [`core_commands`], returning every outcome in order, so a test can see what it reached.
fn run_core_commands(data: &[u8]) -> Vec<Result<Outcome, Refusal>> {
    let mut outcomes = Vec::new();
    let Some((&mode, steps)) = data.split_first() else {
        return outcomes;
    };
    let auth_on = mode & 1 != 0;
    let leeway = u64::from(mode >> 1 & 3);
    let raw_closes = mode & 8 == 0;
    let verifier = auth_on
        .then(|| Verifier::from_secret(TOKEN_SECRET).with_leeway(Duration::from_secs(leeway)));
    let tokens = Tokens {
        verifier: verifier.as_ref(),
        leeway_secs: leeway,
    };
    let mut rooms = Rooms::new(CORE_SUBSCRIPTIONS);
    // `None`: no connection under that id, or a closed one.
    let mut members: Vec<Option<Identity>> = vec![None; CORE_MEMBERS];
    let start = Instant::now();
    let mut elapsed = 0u64;
    for step in data_steps(steps) {
        let (verb, m, arg) = step;
        let user = format!("u{}", arg % 4);
        let now = start + Duration::from_secs(elapsed);
        let now_unix = TOKEN_NOW + elapsed;
        let command = match verb {
            0 => {
                if members[m].is_none() {
                    members[m] = Some(Identity::new(auth_on, now + CORE_AUTH_TIMEOUT));
                }
                None
            }
            1 => Some(Ok(ClientCommand::Subscribe(user.as_str().into()))),
            2 => Some(Ok(ClientCommand::Unsubscribe(user))),
            3 => Some(Ok(ClientCommand::Auth(core_token(arg, now_unix)))),
            4 if arg & 0x80 != 0 => Some(Ok(ClientCommand::Refresh(None))),
            4 => Some(Ok(ClientCommand::Refresh(Some(core_token(arg, now_unix))))),
            5 => Some(core_malformed(arg)),
            6 => {
                // Time passes, and the loop's sweep closes who ran out of it: a member that did
                // not authenticate in time (4001), one whose token expired (4003).
                elapsed += u64::from(arg);
                let now = start + Duration::from_secs(elapsed);
                let now_unix = TOKEN_NOW + elapsed;
                for (k, member) in members.iter_mut().enumerate() {
                    let out = member
                        .as_ref()
                        .is_some_and(|id| id.timed_out(now) || id.expired(now_unix));
                    if out {
                        rooms.remove_conn(k);
                        *member = None;
                    }
                }
                None
            }
            _ => {
                rooms.remove_conn(m);
                members[m] = None;
                None
            }
        };
        if let (Some(command), Some(identity)) = (command, members[m].as_mut()) {
            let before = identity.clone();
            let target = match &command {
                Ok(ClientCommand::Subscribe(sub)) => {
                    let u = &sub.users[0];
                    Some((u.clone(), rooms.members(u).contains(&m)))
                }
                Ok(ClientCommand::Unsubscribe(u)) => {
                    Some((u.clone(), rooms.members(u).contains(&m)))
                }
                _ => None,
            };
            let outcome =
                commands::handle(&mut rooms, tokens, m, identity, command, now_unix, false);
            match &outcome {
                Ok(Outcome::Subscribed { users, newly, .. }) => {
                    let user_id = &users[0];
                    assert!(rooms.members(user_id).contains(&m), "subscribed, not in");
                    assert_eq!(target, Some((user_id.clone(), !newly)), "newly");
                    assert!(identity.may_subscribe(user_id).is_ok());
                }
                Ok(Outcome::Joining(_)) => {
                    unreachable!("joins are answered later only with recovery on")
                }
                Ok(Outcome::Unsubscribed {
                    user_id,
                    was_member,
                }) => {
                    assert!(
                        !rooms.members(user_id).contains(&m),
                        "unsubscribed, still in"
                    );
                    assert_eq!(target, Some((user_id.clone(), *was_member)), "was_member");
                }
                Ok(Outcome::Authenticated { user_id, exp }) => {
                    assert!(auth_on, "a token accepted with auth off");
                    assert!(exp + leeway > now_unix, "an expired token accepted");
                    let sub = user_id.as_str().into();
                    let expires = exp + leeway;
                    assert_eq!(*identity, Identity::User { sub, expires });
                    if let Identity::User { sub, .. } = &before {
                        assert_eq!(**sub, **user_id, "a token for another user accepted");
                    }
                }
                Err(refusal) => {
                    assert_eq!(*identity, before, "a refusal changed the identity");
                    if let Some((user, was)) = &target {
                        assert_eq!(rooms.members(user).contains(&m), *was, "{refusal}");
                    }
                    if raw_closes && refusal.raw_close().is_some() {
                        rooms.remove_conn(m);
                        members[m] = None;
                    }
                }
            }
            outcomes.push(outcome);
        }
        rooms.check_invariants();
        for (k, member) in members.iter().enumerate() {
            let mut joined = rooms.rooms_of(k);
            match member {
                None => assert!(joined.next().is_none(), "closed member {k} in a room"),
                Some(Identity::Pending { .. }) => {
                    assert!(
                        joined.next().is_none(),
                        "member {k} in a room before its token"
                    )
                }
                Some(Identity::User { sub, .. }) => {
                    assert!(
                        joined.all(|u| *u == **sub),
                        "member {k} in another user's room"
                    )
                }
                Some(Identity::Anyone) => assert!(!auth_on),
            }
        }
    }
    outcomes
}

/// The steps `data` spells, two bytes each: (verb, member, argument).
fn data_steps(data: &[u8]) -> impl Iterator<Item = (u8, usize, u8)> + '_ {
    data.chunks_exact(2)
        .map(|s| (s[0] & 7, usize::from(s[0] >> 3) % CORE_MEMBERS, s[1]))
}

/// A token signed with [`TOKEN_SECRET`] for user `u{arg % 4}`, whose `exp` is from 8 seconds
/// ago to 23 seconds ahead of `now_unix` by `arg`'s upper bits, so that some are expired, some
/// expire within the leeway, and some outlive a few time steps.
fn core_token(arg: u8, now_unix: u64) -> String {
    let exp = now_unix + u64::from(arg >> 2 & 0x1f) - 8;
    let claims = format!(r#"{{"sub":"u{}","exp":{exp}}}"#, arg % 4);
    signed_token(claims.as_bytes()).unwrap_or_default()
}

/// A message the protocols cannot read as a command, as their decoders hand it on.
fn core_malformed(arg: u8) -> Result<ClientCommand, Refusal> {
    match arg % 4 {
        0 => Err(Refusal::Malformed(raw::Error::UnknownEvent("hello".into()))),
        1 => Err(Refusal::BadUserId {
            event: "subscribe",
            fault: rooms::UserIdError::Empty,
        }),
        // A token that does not verify, whoever sends it.
        2 => Ok(ClientCommand::Auth("a.b.c".into())),
        _ => Err(Refusal::from(raw::Error::BadToken(raw::TokenFault::Empty))),
    }
}

/// Connections one `core_worker` run opens at most.
const WORKER_CONNS: usize = 12;

/// Requests a `core_worker` step sends whole; `{sid}` is a live session's id, when one is.
const WORKER_REQUESTS: [&str; 10] = [
    "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /ws?format=msgpack HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n\r\n",
    "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n40",
    "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: h\r\n\r\n",
    "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: h\r\nContent-Length: 22\r\n\r\n42[\"subscribe\",\"u1\"]\u{1e}3",
    "GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: h\r\n\r\n",
];

/// Messages a `core_worker` step sends as one masked text frame: the raw protocol's and
/// Engine.IO's over a WebSocket.
const WORKER_MESSAGES: [&str; 10] = [
    r#"{"event":"subscribe","data":"u0"}"#,
    r#"{"event":"subscribe","data":{"userId":"u1"}}"#,
    r#"{"event":"unsubscribe","data":"u0"}"#,
    r#"{"event":"nonsense"}"#,
    "2probe",
    "5",
    "40",
    r#"42["subscribe","u2"]"#,
    r#"42["unsubscribe","u2"]"#,
    "3",
];

/// Time steps of a `core_worker` run, in milliseconds: from within one sweep gap to past every
/// default timeout.
const WORKER_STEPS_MS: [u64; 8] = [1, 7, 50, 300, 2_000, 10_000, 25_000, 61_000];

/// A socket that takes `left` more bytes, then would block.
struct PartialSocket {
    left: usize,
}

impl std::io::Write for PartialSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Drives a worker's whole state, as the runtime does but without a socket or a clock
/// ([`Driver`]), with the connections, bytes, pushes, partial writes, closes and time steps
/// `data` spells, and after every step requires what must hold between calls
/// ([`Driver::check`]): queue counts match the queues, rooms hold only live entries, sessions
/// and their connections name each other.
///
/// The first byte is the mode: bit 0 makes this worker 0 of 2 (so requests for the other's
/// sessions are handed over), bit 1 lowers the slow-consumer limit to 2 KiB, bit 2 ends the
/// run with a shutdown. Then two bytes a step: an operation and its argument; raw bytes take
/// as many more as the argument says.
pub fn core_worker(data: &[u8]) {
    let Some((&mode, mut steps)) = data.split_first() else {
        return;
    };
    let mut config = Config::for_tests();
    config.workers = if mode & 1 != 0 { 2 } else { 1 };
    if mode & 2 != 0 {
        config.max_queued_bytes = 2048;
    }
    let workers = usize::from(config.workers);
    let mut d = Driver::new(config, 0, workers);
    let mut conns: Vec<usize> = Vec::new();
    while let [op, arg, rest @ ..] = steps {
        steps = rest;
        let arg = *arg;
        let conn = (!conns.is_empty()).then(|| conns[usize::from(arg) % conns.len()]);
        let user = format!("u{}", arg % 3);
        match op % 12 {
            0 => {
                if conns.len() < WORKER_CONNS {
                    conns.extend(d.connect());
                }
            }
            1 => {
                let n = usize::from(arg >> 4).min(steps.len());
                let (bytes, rest) = steps.split_at(n);
                steps = rest;
                if let Some(k) = conn {
                    d.read(k, bytes);
                }
            }
            2 => {
                let sid = d.session_ids().into_iter().next().unwrap_or_default();
                let request = WORKER_REQUESTS[usize::from(arg >> 4) % WORKER_REQUESTS.len()]
                    .replace("{sid}", &sid);
                if let Some(k) = conn {
                    d.read(k, request.as_bytes());
                }
            }
            3 => {
                let message = WORKER_MESSAGES[usize::from(arg >> 4) % WORKER_MESSAGES.len()];
                if let Some(k) = conn {
                    let mask = [arg, 1, 2, 3];
                    d.read(k, &encode_masked(true, 0x1, 0, message.as_bytes(), mask));
                }
            }
            4 => {
                // Control frames: ping, pong, close.
                let opcode = [0x9, 0xA, 0x8][usize::from(arg >> 4) % 3];
                let payload: &[u8] = if opcode == 0x8 { &[0x03, 0xe8] } else { b"p" };
                if let Some(k) = conn {
                    d.read(k, &encode_masked(true, opcode, 0, payload, [9, 9, 9, 9]));
                }
            }
            5 => {
                let ms = WORKER_STEPS_MS[usize::from(arg) % WORKER_STEPS_MS.len()];
                d.advance(Duration::from_millis(ms));
            }
            6 => {
                d.push(Target::User(user), r#"{"type":"like","message":"m"}"#);
            }
            7 => {
                let users = vec![user, format!("u{}", (arg >> 2) % 3)];
                d.push(Target::Users(users), r#"{"n":1}"#);
            }
            8 => {
                d.push(Target::All, r#"{"n":2}"#);
            }
            9 => {
                if let Some(k) = conn {
                    let mut socket = PartialSocket {
                        left: usize::from(arg >> 2) * 16,
                    };
                    d.write_to(k, &mut socket);
                }
            }
            10 => {
                if let Some(k) = conn {
                    d.peer_closed(k);
                }
            }
            _ => {
                d.end_turn();
            }
        }
        d.check();
    }
    if mode & 4 != 0 {
        d.shutdown();
        d.check();
        d.advance(Duration::from_secs(60));
        d.check();
    }
}

/// Decodes `data` as the opening of a connection behind a layer-4 balancer, and requires what
/// the runtime relies on: every shorter prefix of a header (or of whatever was read) waits, or
/// gives the fault the whole gives, so a header is taken once, whole, however the bytes arrive;
/// a header takes no more bytes than it was given nor more than the caps, and the bytes after it
/// change nothing; its source and destination come together and of one family; and a version 1
/// header with addresses reads back the same once written out again.
pub fn proxy_protocol(data: &[u8]) {
    let whole = proxy::decode(data);
    let end = match whole {
        Ok(Some((_, used))) => used,
        _ => data.len(),
    };
    for n in 0..end {
        match proxy::decode(&data[..n]) {
            Ok(None) => {}
            Err(e) => assert_eq!(
                Err(e),
                whole,
                "a fault in {n} bytes the whole does not have"
            ),
            Ok(Some(_)) => panic!("a header in {n} bytes, fewer than the {end} the whole takes"),
        }
    }
    let Ok(Some((header, used))) = whole else {
        return;
    };
    assert!(
        used > 0 && used <= data.len(),
        "{used} of {} bytes",
        data.len()
    );
    assert!(used <= proxy::protocol::V1_MAX_LEN.max(proxy::protocol::V2_MAX_LEN));
    assert_eq!(
        proxy::decode(&data[..used]),
        whole,
        "the bytes after it changed the header"
    );
    let (Some(src), Some(dst)) = (header.source, header.destination) else {
        assert_eq!(
            header.source, header.destination,
            "one address without the other"
        );
        return;
    };
    assert_eq!(
        src.is_ipv4(),
        dst.is_ipv4(),
        "source and destination of two families"
    );
    if header.version == Version::V1 {
        let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
        let line = format!(
            "PROXY {family} {} {} {} {}\r\n",
            src.ip(),
            dst.ip(),
            src.port(),
            dst.port()
        );
        assert_eq!(
            proxy::decode(line.as_bytes()),
            Ok(Some((header, line.len()))),
            "{line:?} does not read back"
        );
    }
}

/// The peers the `real_ip` target takes a request from: trusted and not, IPv4, IPv6 and
/// IPv4-mapped.
const REAL_IP_PEERS: [IpAddr; 6] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0002)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
];

/// The proxies the `real_ip` target trusts.
const REAL_IP_TRUSTED: &str = "private, 203.0.113.0/24, 2001:db8:1::/48";

/// Reads `data` after its first byte as the lines (split at `\n`) of a forwarding header of a
/// request: `X-Forwarded-For` or `Forwarded` as the first byte's low bit says, from one of
/// `REAL_IP_PEERS` as its other bits say. Requires [`RealIp::client_addr`]'s one pass to
/// agree with the walk right to left it stands for, written here as plainly as it reads, and
/// the client to be the peer or an address the header names.
pub fn real_ip(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let header = if choice & 1 == 0 {
        ForwardHeader::XForwardedFor
    } else {
        ForwardHeader::Forwarded
    };
    let peer = REAL_IP_PEERS[usize::from(choice >> 1) % REAL_IP_PEERS.len()];
    let real_ip = RealIp {
        trusted: REAL_IP_TRUSTED.parse().expect("a valid list"),
        header,
    };
    let lines = rest.split(|&b| b == b'\n');
    let client = real_ip.client_addr(peer, lines.clone());

    let hops: Vec<Option<IpAddr>> = lines.flat_map(|l| real_ip::hops(header, l)).collect();
    let walked = if real_ip.trusted.contains(peer) {
        let mut nearest = peer;
        let mut found = None;
        for hop in hops.iter().rev() {
            match *hop {
                Some(ip) if real_ip.trusted.contains(ip) => nearest = ip,
                Some(ip) => {
                    found = Some(ip);
                    break;
                }
                None => break,
            }
        }
        found.unwrap_or(nearest)
    } else {
        peer
    };
    assert_eq!(
        client, walked,
        "the one pass and the walk disagree on {hops:?}"
    );
    assert!(
        client == peer || hops.contains(&Some(client)),
        "{client} is neither the peer nor in {hops:?}"
    );
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// The `raw_protocol` target reaches the `auth` event and its reply in both formats.
    #[test]
    fn raw_protocol_reaches_auth() {
        let message = json!({"event": "auth", "data": "a.b.c"});
        let text = message.to_string();
        raw_protocol(text.as_bytes());
        let reply = raw_reply(Format::Json, raw::Message::Text(&text));
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(reply["event"], "authenticated", "{reply}");
        assert_eq!(reply["data"]["userId"], "a.b.c");

        let bytes = rmp_serde::to_vec_named(&message).unwrap();
        raw_protocol(&bytes);
        let reply = raw_reply(Format::MessagePack, raw::Message::Binary(&bytes));
        let reply: Value = rmp_serde::from_slice(&reply).unwrap();
        assert_eq!(reply["event"], "authenticated", "{reply}");

        let refused = raw_reply(
            Format::Json,
            raw::Message::Text(r#"{"event":"auth","data":1}"#),
        );
        let refused: Value = serde_json::from_slice(&refused).unwrap();
        assert_eq!(refused["event"], "error", "{refused}");
    }

    /// The `token` target signs what it is given, so its claims reach the checks behind the
    /// signature: a good one verifies, an expired one and a bad `sub` do not.
    #[test]
    fn token_target_reaches_the_claim_checks() {
        let verifier = Verifier::from_secret(TOKEN_SECRET);
        let exp = TOKEN_NOW + 60;
        let good = signed_token(format!(r#"{{"sub":"alice","exp":{exp}}}"#).as_bytes()).unwrap();
        assert_eq!(verifier.verify(&good, TOKEN_NOW).unwrap().sub, "alice");
        let expired = signed_token(br#"{"sub":"alice","exp":1}"#).unwrap();
        assert!(verifier.verify(&expired, TOKEN_NOW).is_err());
        let bad_sub = signed_token(format!(r#"{{"sub":"","exp":{exp}}}"#).as_bytes()).unwrap();
        assert!(verifier.verify(&bad_sub, TOKEN_NOW).is_err());
        let none = signed_token(
            format!("{{\"alg\":\"none\"}}\0{{\"sub\":\"a\",\"exp\":{exp}}}").as_bytes(),
        )
        .unwrap();
        assert!(verifier.verify(&none, TOKEN_NOW).is_err());
        token(good.as_bytes());
    }

    /// A hand-written run of the `rooms` target: three connections, one filling its rooms up to
    /// the limit, pushes, an unsubscribe, a disconnect and the freed id reused.
    #[test]
    fn rooms_target_runs_every_operation() {
        // (verb + 5 * connection index, argument): 0 connect, 1 subscribe, 2 unsubscribe,
        // 3 push, 4 disconnect.
        let ops: &[(u8, u8)] = &[
            (0, 0),
            (0, 0),
            (0, 0),
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (1, 5), // over ROOMS_PER_CONN: refused
            (6, 1),
            (11, 1),
            (3, 1),
            (2, 2),
            (3, 2),
            (9, 0), // disconnect the second connection
            (3, 1),
            (0, 0), // reuses its id
            (6, 1),
            (3, 1),
        ];
        let data: Vec<u8> = ops.iter().flat_map(|&(a, b)| [a, b]).collect();
        rooms(&data);
    }
    /// A hand-written run of the `core_commands` target with auth on: every outcome and the
    /// refusals the rules make, a timeout and an expiry, as the raw protocol answers them.
    #[test]
    fn core_commands_target_reaches_every_outcome() {
        // Verbs: 0 connect, 1 subscribe, 2 unsubscribe, 3 auth, 4 refresh, 5 malformed,
        // 6 time passes, 7 disconnect; the member is the first byte's upper bits (m << 3).
        // A token argument is user + 4 * (seconds to `exp` + 8).
        let valid_u0 = 20 << 2; // u0, 12 s ahead
        let valid_u1 = (20 << 2) | 1;
        let steps: &[(u8, u8)] = &[
            (0, 0),            // member 0 connects
            (1, 0),            // subscribes before its token: closed (4001)
            (0, 0),            // connects again
            (3, valid_u0),     // authenticates as u0
            (1, 0),            // subscribes to u0
            (1, 0),            // again: not newly
            (1, 1),            // u1: forbidden
            (4, valid_u1),     // refresh for u1: forbidden
            (4, 0x80),         // refresh without a token
            (5, 0),            // malformed
            (5, 1),            // bad user id
            (2, 0),            // unsubscribes
            (2, 0),            // again: was not a member
            (1, 0),            // subscribes again
            (4, valid_u0),     // fresh token
            (1 << 3, 0),       // member 1 connects
            (6, 11),           // 11 s pass: member 1 timed out, member 0 still in
            ((1 << 3) | 1, 1), // member 1 is gone: nothing
            (6, 5),            // member 0's token expired: closed
            (2 << 3, 0),       // member 2 connects
            ((2 << 3) | 3, 2), // with an expired token: closed
        ];
        let mut data = vec![0b0001];
        data.extend(steps.iter().flat_map(|&(a, b)| [a, b]));
        let outcomes = run_core_commands(&data);
        let ok = |o: &Result<Outcome, Refusal>| o.as_ref().ok().cloned();
        assert!(outcomes
            .iter()
            .any(|o| matches!(ok(o), Some(Outcome::Subscribed { newly: false, .. }))));
        assert!(outcomes.iter().any(|o| matches!(
            ok(o),
            Some(Outcome::Unsubscribed {
                was_member: false,
                ..
            })
        )));
        assert!(outcomes
            .iter()
            .any(|o| matches!(ok(o), Some(Outcome::Authenticated { .. }))));
        let refusals: Vec<&Refusal> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        for want in [
            Refusal::NotAuthenticated,
            Refusal::Forbidden,
            Refusal::RefreshFailed(auth::AuthError::Missing),
            Refusal::AuthFailed(auth::AuthError::Expired),
        ] {
            assert!(
                refusals.contains(&&want),
                "{want:?} not reached: {refusals:?}"
            );
        }
        assert!(refusals.iter().any(|r| matches!(r, Refusal::Malformed(_))));
        assert!(refusals
            .iter()
            .any(|r| matches!(r, Refusal::BadUserId { .. })));
        assert_eq!(outcomes.len(), 14, "{outcomes:?}");

        // The subscription cap, with auth off, answered as Socket.IO does.
        let mut data = vec![0b1000, 0, 0];
        for user in 0..4 {
            data.extend([1, user]);
        }
        let outcomes = run_core_commands(&data);
        assert_eq!(
            outcomes.last(),
            Some(&Err(Refusal::TooManySubscriptions {
                max: CORE_SUBSCRIPTIONS
            }))
        );
    }
}
