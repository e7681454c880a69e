//! JSON parsing on the hot paths, serde_json (what herald does) against simd-json doing the same
//! work: checking a pushed notification is an object and reading its keys (the control API's
//! `Notification::parse`), reading a `userIds` list (`api::user_ids`), a raw client message
//! (`raw::parse`) and a Socket.IO event's JSON (`socketio::packet::decode`).
//!
//! simd-json parses a mutable buffer in place, and herald only ever holds the text borrowed (a
//! request's body, a WebSocket message), so every simd-json case copies the text into a fresh
//! `Vec` first and counts that copy. Two simd-json routes are measured: `simd_json`, its serde
//! deserializer producing what herald produces today (a drop-in change), and `simd_json_tape`,
//! its own tape read directly (the fastest it offers, at the price of code written against it).
//! The serde_json control-API cases are copies of herald's private functions; the raw and
//! Socket.IO cases call herald itself. For `userIds`, `serde_json_direct` reads each item
//! straight into its id, as the tape route does, where herald goes through a `Value`: the
//! difference between it and `serde_json` is allocations, not the parser.

use std::collections::{HashMap, HashSet};
use std::fmt;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer as _};
use serde_json::Value;
use simd_json::prelude::*;

use herald::protocol::raw::{self, ClientEvent};
use herald::rooms::{self, UserIdError};
use herald::socketio::packet;

/// A one-user push body as a backend sends it: 227 bytes.
const PUSH_BODY: &str = r#"{"userId":"user-42","type":"comment","message":"Ann commented on your post: \"Great shot! Where was this taken? Looks amazing\"","actorId":"user-9","data":{"postId":"p-1842","commentId":"c-99120","url":"/posts/p-1842#c-99120"}}"#;

/// How many ids the `userIds` lists hold: a group chat, and a large audience.
const USER_ID_COUNTS: [usize; 2] = [100, 10_000];

/// A raw `/ws` client's subscribe.
const RAW_SUBSCRIBE: &str = r#"{"event":"subscribe","data":"user-42"}"#;

/// A Socket.IO client's subscribe, as `socketio::packet::decode` gets it (Engine.IO's `4`
/// already taken off), and its JSON part.
const SIO_SUBSCRIBE: &str = r#"2["subscribe","user-42"]"#;
const SIO_SUBSCRIBE_JSON: &str = r#"["subscribe","user-42"]"#;

/// `["user-0","user-1",...]`, one id in ten a number, as some backends send them.
fn user_ids_json(n: usize) -> String {
    let ids: Vec<Value> = (0..n)
        .map(|i| {
            if i % 10 == 9 {
                Value::from(i as u64)
            } else {
                Value::from(format!("user-{i}"))
            }
        })
        .collect();
    serde_json::to_string(&ids).unwrap_or_default()
}

/// The outcome every route of a case must agree on, so the bench cannot compare unequal work.
#[derive(Debug, PartialEq)]
struct Keys {
    has_timestamp: bool,
    is_empty: bool,
}

/// `Notification::parse` as herald does it: values skipped, keys kept.
fn notification_serde_json(text: &str) -> Option<Keys> {
    let keys: HashMap<String, IgnoredAny> = serde_json::from_str(text).ok()?;
    Some(Keys {
        has_timestamp: keys.contains_key("timestamp"),
        is_empty: keys.is_empty(),
    })
}

fn notification_simd_json(text: &str) -> Option<Keys> {
    let mut buf = text.as_bytes().to_vec();
    let keys: HashMap<String, IgnoredAny> = simd_json::serde::from_slice(&mut buf).ok()?;
    Some(Keys {
        has_timestamp: keys.contains_key("timestamp"),
        is_empty: keys.is_empty(),
    })
}

fn notification_simd_json_tape(text: &str) -> Option<Keys> {
    let mut buf = text.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut buf).ok()?;
    let object = tape.as_value().as_object()?;
    Some(Keys {
        has_timestamp: object.get("timestamp").is_some(),
        is_empty: object.is_empty(),
    })
}

/// `api::user_ids` as herald does it: a visitor reads one item at a time into a `Value`, turns it
/// into its id, and duplicates are dropped after.
struct IdsVisitor;

impl<'de> Visitor<'de> for IdsVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of user ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Value>()? {
            match rooms::user_id_from_json(&item) {
                Ok(id) => ids.push(id),
                Err(_) => return Err(serde::de::Error::custom("bad user id")),
            }
        }
        Ok(ids)
    }
}

fn dedupe(mut ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(ids.len());
    let first: Vec<bool> = ids.iter().map(|id| seen.insert(id.as_str())).collect();
    drop(seen);
    let mut first = first.into_iter();
    ids.retain(|_| first.next().unwrap_or(false));
    ids
}

fn user_ids_serde_json(text: &str) -> Option<Vec<String>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let ids = de.deserialize_any(IdsVisitor).ok()?;
    Some(dedupe(ids))
}

/// One `userIds` item read straight into its id, without a `Value` in between: the same
/// allocation pattern as the tape route, on serde_json, to tell the parser's share of a
/// difference from the allocations'.
struct DirectId(Result<String, UserIdError>);

impl<'de> Deserialize<'de> for DirectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DirectIdVisitor)
    }
}

struct DirectIdVisitor;

impl DirectIdVisitor {
    fn id(id: String) -> DirectId {
        DirectId(rooms::validate_user_id(&id).map(|()| id))
    }
}

impl<'de> Visitor<'de> for DirectIdVisitor {
    type Value = DirectId;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a user id")
    }

    fn visit_str<E>(self, s: &str) -> Result<DirectId, E> {
        Ok(Self::id(s.to_owned()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<DirectId, E> {
        Ok(Self::id(n.to_string()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<DirectId, E> {
        Ok(Self::id(n.to_string()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<DirectId, E> {
        Ok(DirectId(Err(UserIdError::NotAString)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<DirectId, E> {
        Ok(DirectId(Err(UserIdError::NotAString)))
    }

    fn visit_unit<E>(self) -> Result<DirectId, E> {
        Ok(DirectId(Err(UserIdError::NotAString)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DirectId, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(DirectId(Err(UserIdError::NotAString)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<DirectId, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(DirectId(Err(UserIdError::NotAString)))
    }
}

struct DirectIdsVisitor;

impl<'de> Visitor<'de> for DirectIdsVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of user ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(DirectId(id)) = seq.next_element()? {
            ids.push(id.map_err(|_| serde::de::Error::custom("bad user id"))?);
        }
        Ok(ids)
    }
}

fn user_ids_serde_json_direct(text: &str) -> Option<Vec<String>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let ids = de.deserialize_any(DirectIdsVisitor).ok()?;
    Some(dedupe(ids))
}

fn user_ids_simd_json(text: &str) -> Option<Vec<String>> {
    let mut buf = text.as_bytes().to_vec();
    let mut de = simd_json::Deserializer::from_slice(&mut buf).ok()?;
    let ids = (&mut de).deserialize_any(IdsVisitor).ok()?;
    Some(dedupe(ids))
}

/// `rooms::user_id_from_json` on a tape value.
fn user_id_of(v: simd_json::tape::Value<'_, '_>) -> Result<String, UserIdError> {
    let id = match v.value_type() {
        simd_json::ValueType::String => v.as_str().map(str::to_owned),
        simd_json::ValueType::I64 => v.as_i64().map(|n| n.to_string()),
        simd_json::ValueType::U64 => v.as_u64().map(|n| n.to_string()),
        _ => None,
    }
    .ok_or(UserIdError::NotAString)?;
    rooms::validate_user_id(&id)?;
    Ok(id)
}

fn user_ids_simd_json_tape(text: &str) -> Option<Vec<String>> {
    let mut buf = text.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut buf).ok()?;
    let items = tape.as_value().as_array()?;
    let ids = items
        .iter()
        .map(|v| user_id_of(v).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(dedupe(ids))
}

/// `raw::parse`'s envelope, for the simd-json serde route.
#[derive(Deserialize)]
struct Envelope {
    event: String,
    #[serde(default)]
    data: Value,
}

/// `raw::parse`'s last step, for a subscribe (the case measured).
fn subscribe_event(event: &str, id: Result<String, UserIdError>) -> Option<ClientEvent> {
    (event == "subscribe").then_some(())?;
    id.ok()
        .map(|u| ClientEvent::Subscribe(herald::rooms::Subscription::one(u)))
}

fn raw_simd_json(text: &str) -> Option<ClientEvent> {
    let mut buf = text.as_bytes().to_vec();
    let env: Envelope = simd_json::serde::from_slice(&mut buf).ok()?;
    subscribe_event(&env.event, rooms::user_id_from_json(&env.data))
}

fn raw_simd_json_tape(text: &str) -> Option<ClientEvent> {
    let mut buf = text.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut buf).ok()?;
    let env = tape.as_value();
    let event = env.get("event")?;
    subscribe_event(event.as_str()?, user_id_of(env.get("data")?))
}

/// The Socket.IO event's payload as the rest of herald takes it: a `serde_json::Value`.
fn sio_simd_json(json: &str) -> Option<Value> {
    let mut buf = json.as_bytes().to_vec();
    simd_json::serde::from_slice(&mut buf).ok()
}

/// The tape route cannot hand on a `Value`; this is its checks alone (a non-empty array whose
/// first item is a string), the least a decode would have to do.
fn sio_simd_json_tape(json: &str) -> Option<String> {
    let mut buf = json.as_bytes().to_vec();
    let tape = simd_json::to_tape(&mut buf).ok()?;
    let args = tape.as_value().as_array()?;
    args.get(0)?.as_str().map(str::to_owned)
}

fn push_body(c: &mut Criterion) {
    let expected = notification_serde_json(PUSH_BODY);
    assert!(expected.is_some());
    assert_eq!(notification_simd_json(PUSH_BODY), expected);
    assert_eq!(notification_simd_json_tape(PUSH_BODY), expected);

    let mut g = c.benchmark_group("json/push_body");
    g.throughput(Throughput::Bytes(PUSH_BODY.len() as u64));
    g.bench_function("serde_json", |b| {
        b.iter(|| notification_serde_json(black_box(PUSH_BODY)))
    });
    g.bench_function("simd_json", |b| {
        b.iter(|| notification_simd_json(black_box(PUSH_BODY)))
    });
    g.bench_function("simd_json_tape", |b| {
        b.iter(|| notification_simd_json_tape(black_box(PUSH_BODY)))
    });
    g.finish();
}

fn user_ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("json/user_ids");
    for n in USER_ID_COUNTS {
        let text = user_ids_json(n);
        let expected = user_ids_serde_json(&text);
        assert_eq!(expected.as_ref().map(Vec::len), Some(n));
        assert_eq!(user_ids_simd_json(&text), expected);
        assert_eq!(user_ids_simd_json_tape(&text), expected);
        assert_eq!(user_ids_serde_json_direct(&text), expected);

        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("serde_json", n), &text, |b, t| {
            b.iter(|| user_ids_serde_json(black_box(t)))
        });
        g.bench_with_input(BenchmarkId::new("simd_json", n), &text, |b, t| {
            b.iter(|| user_ids_simd_json(black_box(t)))
        });
        g.bench_with_input(BenchmarkId::new("simd_json_tape", n), &text, |b, t| {
            b.iter(|| user_ids_simd_json_tape(black_box(t)))
        });
        g.bench_with_input(BenchmarkId::new("serde_json_direct", n), &text, |b, t| {
            b.iter(|| user_ids_serde_json_direct(black_box(t)))
        });
    }
    g.finish();
}

fn raw_message(c: &mut Criterion) {
    let expected = raw::parse(RAW_SUBSCRIBE).ok();
    assert_eq!(expected, Some(ClientEvent::Subscribe("user-42".into())));
    assert_eq!(raw_simd_json(RAW_SUBSCRIBE), expected);
    assert_eq!(raw_simd_json_tape(RAW_SUBSCRIBE), expected);

    let mut g = c.benchmark_group("json/raw_message");
    g.throughput(Throughput::Bytes(RAW_SUBSCRIBE.len() as u64));
    g.bench_function("serde_json", |b| {
        b.iter(|| raw::parse(black_box(RAW_SUBSCRIBE)).ok())
    });
    g.bench_function("simd_json", |b| {
        b.iter(|| raw_simd_json(black_box(RAW_SUBSCRIBE)))
    });
    g.bench_function("simd_json_tape", |b| {
        b.iter(|| raw_simd_json_tape(black_box(RAW_SUBSCRIBE)))
    });
    g.finish();
}

fn socketio_event(c: &mut Criterion) {
    let expected: Option<Value> = serde_json::from_str(SIO_SUBSCRIBE_JSON).ok();
    assert!(expected.is_some());
    assert_eq!(sio_simd_json(SIO_SUBSCRIBE_JSON), expected);
    assert_eq!(
        sio_simd_json_tape(SIO_SUBSCRIBE_JSON).as_deref(),
        Some("subscribe")
    );
    let whole = packet::decode(SIO_SUBSCRIBE, 10).ok().and_then(|p| p.data);
    assert_eq!(whole, expected);

    let mut g = c.benchmark_group("json/socketio_event");
    g.throughput(Throughput::Bytes(SIO_SUBSCRIBE_JSON.len() as u64));
    g.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(SIO_SUBSCRIBE_JSON)).ok())
    });
    g.bench_function("simd_json", |b| {
        b.iter(|| sio_simd_json(black_box(SIO_SUBSCRIBE_JSON)))
    });
    g.bench_function("simd_json_tape", |b| {
        b.iter(|| sio_simd_json_tape(black_box(SIO_SUBSCRIBE_JSON)))
    });
    // The whole packet, for the share its JSON takes.
    g.throughput(Throughput::Bytes(SIO_SUBSCRIBE.len() as u64));
    g.bench_function("packet_decode", |b| {
        b.iter(|| packet::decode(black_box(SIO_SUBSCRIBE), 10).ok())
    });
    g.finish();
}

criterion_group!(benches, push_body, user_ids, raw_message, socketio_event);
criterion_main!(benches);
