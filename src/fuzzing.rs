//! Entry points for the fuzz targets in `fuzz/`, one per parser, each a whole check in itself so
//! a target is one line. Also run on a few inputs by the test suite so they cannot rot.

use std::time::{Duration, UNIX_EPOCH};

use crate::command::{Command, LoopGone, PushReply, UserInfo};
use crate::control::{api, http};
use crate::protocol::format::{self, Format};
use crate::protocol::raw;
use crate::ws::decoder::DEFAULT_MAX_FRAGMENTS;
use crate::ws::deflate::{self, Inflater};
use crate::ws::{handshake, Decoder, Event};

/// Decodes `data` once whole and once split into chunks sized by its first byte, and requires
/// the same events and the same verdict either way. The first byte's top bit turns
/// permessage-deflate on, so compressed messages go through the inflater; its next bit lowers
/// the fragment limit to a few frames, so inputs of fuzzing size reach it.
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
    let whole = decode_all(stream, stream.len().max(1), deflate, max_fragments);
    let chunked = decode_all(stream, usize::from(split % 32) + 1, deflate, max_fragments);
    assert_eq!(whole, chunked, "the split changed the result");
}

fn decode_all(
    stream: &[u8],
    chunk: usize,
    deflate: bool,
    max_fragments: u32,
) -> (Vec<Event>, Option<crate::ws::Error>) {
    let mut dec = Decoder::new(64 * 1024).with_max_fragments(max_fragments);
    if deflate {
        dec.enable_deflate();
    }
    let mut events = Vec::new();
    for mut input in stream.chunks(chunk) {
        while !input.is_empty() {
            match dec.decode(input) {
                Ok((n, ev)) => {
                    assert!(
                        n > 0 && n <= input.len(),
                        "decode consumed {n} of {}",
                        input.len()
                    );
                    input = &input[n..];
                    if let Some(ev) = ev {
                        let closed = matches!(ev, Event::Close(_));
                        events.push(ev);
                        if closed {
                            return (events, None);
                        }
                    }
                }
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// Parses an HTTP request head and validates it as a WebSocket upgrade.
pub fn handshake(data: &[u8]) {
    if let Ok(Some((req, used))) = handshake::parse_request(data, 8 * 1024) {
        assert!(used <= data.len());
        if let Ok(hs) = handshake::validate_upgrade(&req) {
            let agreed = handshake::Agreement {
                deflate: hs.extensions.as_deref().and_then(deflate::negotiate),
                protocol: None,
            };
            let mut out = Vec::new();
            handshake::write_accept_with(&hs, &agreed, &mut out);
        }
    }
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
            Command::Shutdown => Ok(()),
        }
    }
}

/// Parses pipelined control API requests and routes each one.
pub fn control_http(data: &[u8]) {
    let mut input = data;
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
/// as attachments.
pub fn socketio(data: &[u8]) {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(packet) = crate::socketio::decode(text, 10) {
        if packet.attachments > 0 {
            let mut r = crate::socketio::Reassembler::new(packet);
            for chunk in rest.chunks(7) {
                if !matches!(r.push(chunk.to_vec()), Ok(None)) {
                    break;
                }
            }
        }
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
}
