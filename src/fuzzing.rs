//! Entry points for the fuzz targets in `fuzz/`, one per parser, each a whole check in itself so
//! a target is one line. Also run on a few inputs by the test suite so they cannot rot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::auth::{self, Verifier};
use crate::command::{Command, LoopGone, PushReply, UserInfo};
use crate::control::{api, http};
use crate::protocol::format::{self, Format};
use crate::protocol::raw;
use crate::rooms::{self, ConnId, Rooms, SubscribeError};
use crate::ws::decoder::DEFAULT_MAX_FRAGMENTS;
use crate::ws::deflate::{self, Inflater};
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
        Ok(raw::ClientEvent::Subscribe(user)) => raw::subscribed(format, &user, "socket"),
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
            Command::UserInfo { reply, .. } => {
                reply.send(UserInfo { sockets: 1 }).map_err(|_| LoopGone)
            }
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
    let key = EncodingKey::from_secret(TOKEN_SECRET);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).ok()?;
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
}
