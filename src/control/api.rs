//! Routes and handlers of the control API. No sockets: [`handle`] takes a parsed request and a
//! way to reach the event loop, and returns the response.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer as _};
use serde_json::error::Category;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::http::{Method, Request, Response};
use super::stats::Stats;
use crate::command::{Command, Device, LoopGone, LoopHandle, PushReply, Target, UserInfo};
use crate::http::{percent_decode, PercentError, Plus};
use crate::limits::retry_after_secs;
use crate::rooms::{self, UserIdError};
use crate::router::Router;
use crate::time;

/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// How a handler reaches the workers: the [`Router`] in the server; a [`LoopHandle`] on a fake
/// loop in tests.
pub trait Dispatch {
    fn dispatch(&self, cmd: Command) -> Result<(), LoopGone>;
}

impl Dispatch for Router {
    fn dispatch(&self, cmd: Command) -> Result<(), LoopGone> {
        self.send(cmd)
    }
}

impl Dispatch for LoopHandle {
    fn dispatch(&self, cmd: Command) -> Result<(), LoopGone> {
        self.send(cmd)
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub enum ApiError {
    /// An API key is configured and the request did not present one as `Authorization: Bearer`.
    Unauthorized,
    /// The request's address presented wrong keys too often (`--control-auth-failures` within
    /// `--control-auth-window`); its key was not compared. Its window ends after `retry_after`.
    TooManyAuthFailures {
        retry_after: Duration,
    },
    NoRoute {
        path: String,
    },
    /// The path exists; `allow` lists the methods it takes.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// The percent-decoded path is not UTF-8.
    PathNotUtf8,
    BadUserId(UserIdError),
    InvalidJson(serde_json::Error),
    /// A JSON value that had to be an object was not; names it.
    NotAnObject {
        what: &'static str,
    },
    /// `notification` missing from a batch or broadcast body.
    MissingNotification,
    /// `userIds` missing, not an array, or empty.
    UserIdsNotAList,
    /// `userIds[index]` is not a valid user id.
    BadUserIdAt {
        index: usize,
        err: UserIdError,
    },
    /// A one-user push the user's push bucket refused; nothing was delivered. The bucket holds
    /// a token again after `retry_after`.
    RateLimited {
        retry_after: Duration,
    },
    /// The loop has stopped (or dropped the command without answering).
    LoopGone,
    /// The loop did not answer a read (a user's sockets, the metrics) within the reply timeout.
    /// A push is never answered this: once sent to the loop it will be delivered.
    NoAnswer,
    /// The request's body would take the bytes held by the control API past
    /// `--control-max-inflight-bytes`; it was not read, and nothing was delivered.
    TooManyBytesInFlight,
}

impl ApiError {
    /// The status answered for this error; the one place that decides it.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Unauthorized => 401,
            ApiError::NoRoute { .. } => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::BadPercentEncoding
            | ApiError::PathNotUtf8
            | ApiError::BadUserId(_)
            | ApiError::InvalidJson(_)
            | ApiError::NotAnObject { .. }
            | ApiError::MissingNotification
            | ApiError::UserIdsNotAList
            | ApiError::BadUserIdAt { .. } => 400,
            ApiError::RateLimited { .. } | ApiError::TooManyAuthFailures { .. } => 429,
            ApiError::LoopGone | ApiError::NoAnswer | ApiError::TooManyBytesInFlight => 503,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthorized => f.write_str("unauthorized"),
            ApiError::TooManyAuthFailures { .. } => {
                f.write_str("too many failed API key attempts from this address; retry later")
            }
            ApiError::NoRoute { path } => write!(f, "no route for {path}"),
            ApiError::MethodNotAllowed { allow } => write!(f, "method not allowed; use {allow}"),
            ApiError::BadPercentEncoding => f.write_str("invalid percent-encoding in path"),
            ApiError::PathNotUtf8 => f.write_str("path is not valid UTF-8 once decoded"),
            ApiError::BadUserId(e) => e.fmt(f),
            ApiError::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            ApiError::NotAnObject { what } => write!(f, "{what} must be a JSON object"),
            ApiError::MissingNotification => f.write_str("notification is required"),
            ApiError::UserIdsNotAList => {
                f.write_str("userIds must be a non-empty array of strings or integers")
            }
            ApiError::BadUserIdAt { index, err } => write!(f, "userIds[{index}]: {err}"),
            ApiError::RateLimited { .. } => f.write_str("rate limited"),
            ApiError::LoopGone => f.write_str("gateway is shutting down"),
            ApiError::NoAnswer => f.write_str("gateway did not answer in time"),
            ApiError::TooManyBytesInFlight => {
                f.write_str("too many request bytes in flight; nothing was delivered, retry")
            }
        }
    }
}

impl std::error::Error for ApiError {}

impl From<&ApiError> for Response {
    fn from(e: &ApiError) -> Self {
        match e {
            // RFC 9110 §15.5.6: a 405 MUST carry Allow.
            ApiError::MethodNotAllowed { allow } => {
                Response::error(e.status(), &e.to_string()).with_header("Allow", (*allow).into())
            }
            // RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate with a challenge.
            ApiError::Unauthorized => Response::error(e.status(), &e.to_string())
                .with_header("WWW-Authenticate", "Bearer".into()),
            // The wait is in the body as well, for clients that do not read headers.
            ApiError::RateLimited { retry_after }
            | ApiError::TooManyAuthFailures { retry_after } => {
                let secs = retry_after_secs(*retry_after);
                Response::json(
                    e.status(),
                    &json!({ "error": e.to_string(), "retryAfter": secs }),
                )
                .with_header("Retry-After", secs.to_string())
            }
            // The budget frees as the loop takes commands, which is quick when it is healthy.
            ApiError::TooManyBytesInFlight => {
                Response::error(e.status(), &e.to_string()).with_header("Retry-After", "1".into())
            }
            _ => Response::error(e.status(), &e.to_string()),
        }
    }
}

impl From<UserIdError> for ApiError {
    fn from(e: UserIdError) -> Self {
        ApiError::BadUserId(e)
    }
}

/// Answers one request that was let in. `now` stamps notifications that carry no `timestamp`
/// of their own.
pub fn handle(
    req: &Request,
    loop_: &impl Dispatch,
    reply_timeout: Duration,
    now: SystemTime,
) -> Response {
    start(req, loop_, reply_timeout, None, now).finish()
}

/// Starts answering one request that [`super::access::Access`] let in (it decides before
/// routing, so that without the key every path answers alike: neither which routes exist nor
/// which methods they take is told): validates it and hands its command to the loop, without
/// waiting for the loop's answer. A connection with several pipelined requests starts them
/// all, then finishes them in order, so the loop takes them in one batch. `stats`, when given,
/// are the control API's own counters, appended to `/metrics`.
pub fn start(
    req: &Request,
    loop_: &impl Dispatch,
    reply_timeout: Duration,
    stats: Option<&Stats>,
    now: SystemTime,
) -> Pending {
    let ctx = Ctx {
        loop_,
        reply_timeout,
        stats,
        now,
    };
    match route(req, &ctx) {
        Ok(pending) => pending,
        Err(e) => Pending::Ready(Response::from(&e)),
    }
}

/// A request whose answer may still be on its way from the loop.
pub enum Pending {
    Ready(Response),
    Push {
        rx: Receiver<PushReply>,
        deadline: Instant,
        /// A [`Target::User`] push: refused whole when rate limited, and answered without a
        /// `rateLimited` count.
        one_user: bool,
    },
    UserInfo {
        user_id: String,
        rx: Receiver<UserInfo>,
        deadline: Instant,
    },
    Metrics {
        rx: Receiver<String>,
        deadline: Instant,
        /// The control API's own counters, appended to the loop's.
        control: String,
    },
    Readiness {
        rx: Receiver<bool>,
        deadline: Instant,
    },
}

/// A request's answer, and for a push the loop had not counted in time, the channel its count
/// will still come on.
pub struct Answer {
    pub response: Response,
    /// Set when a push was answered 202 `{"accepted":true}` at the reply deadline: its command is
    /// in the loop's queue, so it will be delivered (a timeout must not answer a failure: a
    /// backend that retries would deliver it twice). The loop answers here once it has taken
    /// the command; until then the request's bytes are still held.
    pub unconfirmed: Option<Receiver<PushReply>>,
}

impl Pending {
    /// Waits for the loop's answer (until the request's reply deadline) and builds the response.
    pub fn finish(self) -> Response {
        self.answer().response
    }

    /// [`Pending::finish`], keeping the channel of a push answered before the loop counted it.
    pub fn answer(self) -> Answer {
        let result = match self {
            Pending::Ready(response) => Ok(response),
            Pending::Push {
                rx,
                deadline,
                one_user,
            } => match wait(&rx, deadline) {
                Err(ApiError::NoAnswer) => {
                    return Answer {
                        response: Response::json(202, &json!({ "accepted": true })),
                        unconfirmed: Some(rx),
                    }
                }
                result => result.and_then(|reply| push_answer(reply, one_user)),
            },
            Pending::UserInfo {
                user_id,
                rx,
                deadline,
            } => wait(&rx, deadline).map(|mut info| {
                let mut body =
                    json!({ "userId": user_id, "online": info.sockets > 0, "sockets": info.sockets });
                if !info.addresses.is_empty() {
                    info.addresses.sort_unstable();
                    info.addresses.dedup();
                    body["addresses"] = json!(info.addresses);
                }
                if !info.devices.is_empty() {
                    body["devices"] = devices(&mut info.devices);
                    if info.more_devices {
                        body["moreDevices"] = json!(true);
                    }
                }
                if let Some(nodes) = info.nodes {
                    body["nodes"] = json!(nodes);
                }
                if let Some(cluster) = info.cluster {
                    body["cluster"] = json!(cluster.as_str());
                }
                Response::json(200, &body)
            }),
            Pending::Metrics {
                rx,
                deadline,
                control,
            } => wait(&rx, deadline)
                .map(|text| Response::text(200, METRICS_CONTENT_TYPE, text + &control)),
            // A loop that is gone or does not answer takes no clients either.
            Pending::Readiness { rx, deadline } => match wait(&rx, deadline) {
                Ok(true) => Ok(Response::json(200, &json!({ "status": "ok" }))),
                Ok(false) | Err(_) => Ok(Response::json(503, &json!({ "status": "draining" }))),
            },
        };
        Answer {
            response: result.unwrap_or_else(|e| Response::from(&e)),
            unconfirmed: None,
        }
    }
}

struct Ctx<'a, D> {
    loop_: &'a D,
    reply_timeout: Duration,
    stats: Option<&'a Stats>,
    now: SystemTime,
}

impl<D> Ctx<'_, D> {
    /// When a command sent now stops waiting for the loop's answer.
    fn deadline(&self) -> Instant {
        Instant::now() + self.reply_timeout
    }
}

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

fn route<D: Dispatch>(req: &Request, ctx: &Ctx<'_, D>) -> Result<Pending, ApiError> {
    let segments = decode_segments(&req.path)?;
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    // HEAD is answered as GET; the server leaves the body out.
    let get = matches!(req.method, Method::Get | Method::Head);
    let post = req.method == Method::Post;
    match segs.as_slice() {
        ["healthz"] if get => Ok(Pending::Ready(Response::json(
            200,
            &json!({ "status": "ok" }),
        ))),
        ["readyz"] if get => readiness(ctx),
        ["metrics"] if get => metrics(ctx),
        ["v1", "users", user_id] if get => user_info(user_id, ctx),
        ["v1", "users", user_id, "notifications"] if post => {
            rooms::validate_user_id(user_id)?;
            let notification = Notification::parse(json_text(&req.body)?, "notification")?;
            push(Target::User((*user_id).to_owned()), notification, ctx)
        }
        ["v1", "notifications"] if post => {
            let body = Envelope::parse(&req.body)?;
            let user_ids = user_ids(body.user_ids)?;
            push(Target::Users(user_ids), body.notification()?, ctx)
        }
        ["v1", "broadcast"] if post => {
            let body = Envelope::parse(&req.body)?;
            push(Target::All, body.notification()?, ctx)
        }
        ["healthz"] | ["readyz"] | ["metrics"] | ["v1", "users", _] => {
            Err(ApiError::MethodNotAllowed { allow: GET })
        }
        ["v1", "users", _, "notifications"] | ["v1", "notifications"] | ["v1", "broadcast"] => {
            Err(ApiError::MethodNotAllowed { allow: POST })
        }
        _ => Err(ApiError::NoRoute {
            path: req.path.clone(),
        }),
    }
}

fn metrics<D: Dispatch>(ctx: &Ctx<'_, D>) -> Result<Pending, ApiError> {
    let (reply, rx) = crossbeam_channel::bounded(1);
    ctx.loop_
        .dispatch(Command::Metrics { reply })
        .map_err(|LoopGone| ApiError::LoopGone)?;
    let mut control = String::new();
    if let Some(stats) = ctx.stats {
        stats.render(&mut control);
    }
    Ok(Pending::Metrics {
        rx,
        deadline: ctx.deadline(),
        control,
    })
}

fn readiness<D: Dispatch>(ctx: &Ctx<'_, D>) -> Result<Pending, ApiError> {
    let (reply, rx) = crossbeam_channel::bounded(1);
    if ctx.loop_.dispatch(Command::Readiness { reply }).is_err() {
        return Ok(Pending::Ready(Response::json(
            503,
            &json!({ "status": "draining" }),
        )));
    }
    Ok(Pending::Readiness {
        rx,
        deadline: ctx.deadline(),
    })
}

fn user_info<D: Dispatch>(user_id: &str, ctx: &Ctx<'_, D>) -> Result<Pending, ApiError> {
    rooms::validate_user_id(user_id)?;
    let (reply, rx) = crossbeam_channel::bounded(1);
    ctx.loop_
        .dispatch(Command::UserInfo {
            user_id: user_id.to_owned(),
            reply,
        })
        .map_err(|LoopGone| ApiError::LoopGone)?;
    Ok(Pending::UserInfo {
        user_id: user_id.to_owned(),
        rx,
        deadline: ctx.deadline(),
    })
}

/// Stamps and sends a notification; the loop's count is waited for in [`Pending::finish`].
fn push<D: Dispatch>(
    target: Target,
    notification: Notification<'_>,
    ctx: &Ctx<'_, D>,
) -> Result<Pending, ApiError> {
    let one_user = matches!(target, Target::User(_));
    // Serialized here, once: the loop frames these bytes once and shares them with every socket.
    let notification = notification.stamped(ctx.now);
    let (reply, rx) = crossbeam_channel::bounded(1);
    ctx.loop_
        .dispatch(Command::Push {
            target,
            notification,
            reply,
        })
        .map_err(|LoopGone| ApiError::LoopGone)?;
    // From here the push will be delivered (unless the loop stops first): a slow loop makes
    // its answer 202 without counts, never an error.
    Ok(Pending::Push {
        rx,
        deadline: ctx.deadline(),
        one_user,
    })
}

/// A user's sockets on this node, the longest subscribed first.
fn devices(devices: &mut [Device]) -> Value {
    devices.sort_by(|a, b| (a.subscribed_at, &a.socket_id).cmp(&(b.subscribed_at, &b.socket_id)));
    let list: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!({
                "socketId": d.socket_id,
                "protocol": d.protocol.label(),
                "address": d.address,
                "worker": d.worker,
                "subscribedAt": time::rfc3339_millis(UNIX_EPOCH + Duration::from_secs(d.subscribed_at)),
            })
        })
        .collect();
    Value::Array(list)
}

/// The answer to a push the loop has counted. A one-user push the user's bucket refused is an
/// error (nothing was delivered); a many-user push or a broadcast skips the limited users and
/// says how many it skipped.
fn push_answer(reply: PushReply, one_user: bool) -> Result<Response, ApiError> {
    let PushReply {
        sockets,
        rate_limited,
        retry_after,
        offset,
        nodes,
        cluster,
    } = reply;
    // Routed through Redis, a push's sockets are on other machines: the nodes it went to are
    // what this one knows.
    let mut body = match nodes {
        Some(nodes) => json!({ "nodes": nodes }),
        None => json!({ "sockets": sockets }),
    };
    if let Some(cluster) = cluster {
        body["cluster"] = json!(cluster.as_str());
    }
    if one_user {
        if let Some(retry_after) = retry_after {
            return Err(ApiError::RateLimited { retry_after });
        }
    } else {
        body["rateLimited"] = json!(rate_limited);
    }
    if let Some(offset) = offset {
        body["offset"] = json!(&*offset);
    }
    Ok(Response::json(202, &body))
}

/// A notification as a backend sent it: JSON text checked to be an object, never rebuilt. Its
/// bytes go to clients as they came, with `timestamp` spliced in when it has none.
struct Notification<'a> {
    /// The object's text, outer white space trimmed: `{` ... `}`.
    text: &'a str,
    has_timestamp: bool,
    is_empty: bool,
}

impl<'a> Notification<'a> {
    /// Checks `text` is a JSON object and notes its top-level keys; `what` names it in errors.
    fn parse(text: &'a str, what: &'static str) -> Result<Self, ApiError> {
        // Values are skipped, not built: only the keys are kept.
        let keys: HashMap<String, IgnoredAny> =
            serde_json::from_str(text).map_err(|e| match e.classify() {
                Category::Data => ApiError::NotAnObject { what },
                _ => ApiError::InvalidJson(e),
            })?;
        Ok(Notification {
            text: text.trim_matches(|c: char| c.is_ascii_whitespace()),
            has_timestamp: keys.contains_key("timestamp"),
            is_empty: keys.is_empty(),
        })
    }

    /// The bytes to send: the original gateway stamped every notification but kept a sender's
    /// own `timestamp`.
    fn stamped(&self, now: SystemTime) -> Bytes {
        if self.has_timestamp {
            return Bytes::copy_from_slice(self.text.as_bytes());
        }
        // A JSON object's text ends with its closing brace.
        let open = self.text.strip_suffix('}').unwrap_or(self.text).trim_end();
        let ts = time::rfc3339_millis(now);
        let mut out = String::with_capacity(open.len() + ts.len() + 16);
        out.push_str(open);
        if !self.is_empty {
            out.push(',');
        }
        out.push_str("\"timestamp\":\"");
        out.push_str(&ts);
        out.push_str("\"}");
        Bytes::from(out)
    }
}

/// The body of a multi-user push or a broadcast: `{"userIds": [...], "notification": {...}}`.
#[derive(Deserialize)]
struct Envelope<'a> {
    /// Kept as text and read id by id in [`user_ids`]: a megabyte of ids built as a `Value`
    /// first would take ten times that.
    #[serde(rename = "userIds", borrow, default)]
    user_ids: Option<&'a RawValue>,
    #[serde(borrow, default)]
    notification: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        let text = json_text(body)?;
        // A derived struct would also take a JSON array, field by field; a body is an object.
        if !text.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => ApiError::NotAnObject { what: "body" },
                Err(e) => ApiError::InvalidJson(e),
            });
        }
        serde_json::from_str(text).map_err(|e| match e.classify() {
            Category::Data => ApiError::NotAnObject { what: "body" },
            _ => ApiError::InvalidJson(e),
        })
    }

    fn notification(&self) -> Result<Notification<'a>, ApiError> {
        let raw = self.notification.ok_or(ApiError::MissingNotification)?;
        Notification::parse(raw.get(), "notification")
    }
}

/// The body as text: JSON is UTF-8.
fn json_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::InvalidJson(serde::de::Error::custom(format!("body is not UTF-8: {e}")))
    })
}

fn wait<T>(rx: &Receiver<T>, deadline: Instant) -> Result<T, ApiError> {
    rx.recv_deadline(deadline).map_err(|e| match e {
        RecvTimeoutError::Timeout => ApiError::NoAnswer,
        // The loop dropped the reply sender unanswered: it is stopping.
        RecvTimeoutError::Disconnected => ApiError::LoopGone,
    })
}

/// `userIds` as a list of valid ids, duplicates removed, first occurrence kept in order. Each
/// item is built alone and turned into its id at once, so the list costs its ids and no more.
fn user_ids(raw: Option<&RawValue>) -> Result<Vec<String>, ApiError> {
    let raw = raw.ok_or(ApiError::UserIdsNotAList)?;
    let mut fault = None;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let ids = de
        .deserialize_any(IdsVisitor { fault: &mut fault })
        .map_err(|_| fault.take().unwrap_or(ApiError::UserIdsNotAList))?;
    if ids.is_empty() {
        return Err(ApiError::UserIdsNotAList);
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let first: Vec<bool> = ids.iter().map(|id| seen.insert(id.as_str())).collect();
    drop(seen);
    let mut first = first.into_iter();
    let mut ids = ids;
    ids.retain(|_| first.next().unwrap_or(false));
    Ok(ids)
}

/// Reads a JSON array of user ids; anything else is refused. A bad item is left in `fault`.
struct IdsVisitor<'f> {
    fault: &'f mut Option<ApiError>,
}

impl<'de> Visitor<'de> for IdsVisitor<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of user ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Value>()? {
            let index = ids.len();
            match rooms::user_id_from_json(&item) {
                Ok(id) => ids.push(id),
                Err(err) => {
                    *self.fault = Some(ApiError::BadUserIdAt { index, err });
                    return Err(serde::de::Error::custom("bad user id"));
                }
            }
        }
        Ok(ids)
    }
}

/// Splits the path on `/` and percent-decodes each segment, so an encoded `%2F` stays inside
/// its segment. The leading `/` yields no segment.
fn decode_segments(path: &str) -> Result<Vec<String>, ApiError> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/')
        // RFC 3986: a `+` in a path is itself, not a space.
        .map(|segment| {
            percent_decode(segment, Plus::Literal).map_err(|e| match e {
                PercentError::BadEscape { .. } => ApiError::BadPercentEncoding,
                PercentError::NotUtf8 => ApiError::PathNotUtf8,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::UNIX_EPOCH;

    use super::*;

    macro_rules! stamps {
        ($($name:ident: $input:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let n = Notification::parse($input, "notification").unwrap();
                let got = n.stamped(UNIX_EPOCH);
                assert_eq!(std::str::from_utf8(&got).unwrap(), $want);
                let _: Value = serde_json::from_slice(&got).expect("still JSON");
            }
        )*};
    }

    stamps! {
        stamp_empty_object: " { } " => r#"{"timestamp":"1970-01-01T00:00:00.000Z"}"#;
        stamp_spliced_before_the_brace: "{\"a\": 1 }\n" => r#"{"a": 1,"timestamp":"1970-01-01T00:00:00.000Z"}"#;
        stamp_kept_when_given: r#"{"timestamp":"then","a":[1,{"b":"}"}]}"# => r#"{"timestamp":"then","a":[1,{"b":"}"}]}"#;
        stamp_escaped_key_counts: r#"{"time\u0073tamp":1}"# => r#"{"time\u0073tamp":1}"#;
        stamp_nested_key_does_not_count: r#"{"data":{"timestamp":1}}"# => r#"{"data":{"timestamp":1},"timestamp":"1970-01-01T00:00:00.000Z"}"#;
    }

    /// A command as the fake loop saw it (commands themselves hold channels).
    #[derive(Debug, PartialEq)]
    enum Seen {
        Push(Target, String),
        UserInfo(String),
        Metrics,
        Readiness,
    }

    enum Behaviour {
        /// Answer every command at once.
        Answer,
        /// Answer every command at once, as if every user's push bucket were empty: a one-user
        /// push is refused with this wait, a many-user push or a broadcast skips `users`.
        RateLimit { retry_after: Duration, users: usize },
        /// Refuse to take commands.
        Gone,
        /// Take commands and drop them unanswered.
        Drop,
        /// Take commands and keep them, never answering.
        Hold,
    }

    struct FakeLoop {
        behaviour: Behaviour,
        sockets: usize,
        seen: RefCell<Vec<Seen>>,
        held: RefCell<Vec<Command>>,
    }

    impl FakeLoop {
        fn new(behaviour: Behaviour) -> Self {
            FakeLoop {
                behaviour,
                sockets: 3,
                seen: RefCell::new(Vec::new()),
                held: RefCell::new(Vec::new()),
            }
        }
    }

    impl Dispatch for FakeLoop {
        fn dispatch(&self, cmd: Command) -> Result<(), LoopGone> {
            match self.behaviour {
                Behaviour::Gone => return Err(LoopGone),
                Behaviour::Drop => return Ok(()),
                Behaviour::Hold => {
                    self.held.borrow_mut().push(cmd);
                    return Ok(());
                }
                Behaviour::Answer | Behaviour::RateLimit { .. } => {}
            }
            let sockets = self.sockets;
            let seen = match cmd {
                Command::Push {
                    target,
                    notification,
                    reply,
                } => {
                    let answer = match (&self.behaviour, &target) {
                        (Behaviour::RateLimit { retry_after, .. }, Target::User(_)) => PushReply {
                            sockets: 0,
                            rate_limited: 1,
                            retry_after: Some(*retry_after),
                            ..PushReply::default()
                        },
                        (Behaviour::RateLimit { users, .. }, _) => PushReply {
                            sockets,
                            rate_limited: *users,
                            ..PushReply::default()
                        },
                        _ => PushReply {
                            sockets,
                            ..PushReply::default()
                        },
                    };
                    let _ = reply.send(answer);
                    Seen::Push(target, String::from_utf8(notification.to_vec()).unwrap())
                }
                Command::UserInfo { user_id, reply } => {
                    let _ = reply.send(UserInfo::local(sockets));
                    Seen::UserInfo(user_id)
                }
                Command::Metrics { reply } => {
                    let _ = reply.send("herald_sockets 3\n".to_owned());
                    Seen::Metrics
                }
                Command::Readiness { reply } => {
                    let _ = reply.send(true);
                    Seen::Readiness
                }
                Command::Shutdown => panic!("the API never sends Shutdown"),
            };
            self.seen.borrow_mut().push(seen);
            Ok(())
        }
    }

    /// 2026-11-26T04:57:06.123Z
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_669_026_123)
    }
    const NOW: &str = "2026-11-26T04:57:06.123Z";

    fn request(method: Method, path: &str, body: &str) -> Request {
        Request {
            method,
            path: path.to_owned(),
            query: None,
            keep_alive: true,
            expect_continue: false,
            content_type: Some("application/json".to_owned()),
            authorization: None,
            cookie: None,
            admin: false,
            body: body.as_bytes().to_vec(),
        }
    }

    fn call(fake: &FakeLoop, method: Method, path: &str, body: &str) -> (u16, Value) {
        let resp = handle(
            &request(method, path, body),
            fake,
            Duration::from_millis(20),
            now(),
        );
        let v = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp.status, v)
    }

    fn error_of(fake: &FakeLoop, method: Method, path: &str, body: &str) -> (u16, String) {
        let (status, v) = call(fake, method, path, body);
        (status, v["error"].as_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn push_to_one_user_adds_a_timestamp() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let (status, v) = call(
            &fake,
            Method::Post,
            "/v1/users/42/notifications",
            r#"{"title":"hi","n":1}"#,
        );
        assert_eq!((status, v), (202, json!({ "sockets": 3 })));
        assert_eq!(
            fake.seen.borrow()[0],
            Seen::Push(
                Target::User("42".into()),
                format!(r#"{{"title":"hi","n":1,"timestamp":"{NOW}"}}"#)
            )
        );
    }

    #[test]
    fn a_senders_timestamp_is_kept() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let body = r#"{"timestamp":"yesterday","title":"hi"}"#;
        let (status, _) = call(&fake, Method::Post, "/v1/users/42/notifications", body);
        assert_eq!(status, 202);
        assert_eq!(
            fake.seen.borrow()[0],
            Seen::Push(Target::User("42".into()), body.into())
        );
    }

    #[test]
    fn user_id_in_path_is_percent_decoded() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let (status, _) = call(
            &fake,
            Method::Post,
            "/v1/users/user%40x/notifications",
            "{}",
        );
        assert_eq!(status, 202);
        let (status, _) = call(&fake, Method::Get, "/v1/users/a%2Fb%20c", "");
        assert_eq!(status, 200);
        let seen = fake.seen.borrow();
        assert!(matches!(&seen[0], Seen::Push(Target::User(u), _) if u == "user@x"));
        assert_eq!(seen[1], Seen::UserInfo("a/b c".into()));
    }

    #[test]
    fn bad_percent_encoding_is_400() {
        let fake = FakeLoop::new(Behaviour::Answer);
        for path in [
            "/v1/users/a%4/notifications",
            "/v1/users/%zz",
            "/v1/users/%ff",
        ] {
            assert_eq!(call(&fake, Method::Get, path, "").0, 400, "{path}");
        }
        assert!(fake.seen.borrow().is_empty());
    }

    #[test]
    fn bad_user_id_in_path_is_400() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let (status, msg) = error_of(&fake, Method::Post, "/v1/users//notifications", "{}");
        assert_eq!((status, msg.as_str()), (400, "userId must not be empty"));
        let long = "x".repeat(rooms::MAX_USER_ID_LEN + 1);
        assert_eq!(
            call(&fake, Method::Get, &format!("/v1/users/{long}"), "").0,
            400
        );
    }

    #[test]
    fn push_to_many_users_dedupes() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let body = r#"{"userIds":["a",7,"a","7","b"],"notification":{"x":1}}"#;
        let (status, v) = call(&fake, Method::Post, "/v1/notifications", body);
        assert_eq!(
            (status, v),
            (202, json!({ "sockets": 3, "rateLimited": 0 }))
        );
        assert_eq!(
            fake.seen.borrow()[0],
            Seen::Push(
                Target::Users(vec!["a".into(), "7".into(), "b".into()]),
                format!(r#"{{"x":1,"timestamp":"{NOW}"}}"#)
            )
        );
    }

    #[test]
    fn bad_user_ids_are_400_and_named() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let cases = [
            (
                r#"{"userIds":["a","b","c",""],"notification":{}}"#,
                "userIds[3]: userId must not be empty",
            ),
            (
                r#"{"userIds":["a",1.5],"notification":{}}"#,
                "userIds[1]: userId must be a string or an integer",
            ),
            (
                r#"{"userIds":[],"notification":{}}"#,
                "userIds must be a non-empty array of strings or integers",
            ),
            (
                r#"{"userIds":"a","notification":{}}"#,
                "userIds must be a non-empty array of strings or integers",
            ),
            (
                r#"{"notification":{}}"#,
                "userIds must be a non-empty array of strings or integers",
            ),
            (r#"{"userIds":["a"]}"#, "notification is required"),
            (
                r#"{"userIds":["a"],"notification":[1]}"#,
                "notification must be a JSON object",
            ),
            (r#"["a"]"#, "body must be a JSON object"),
        ];
        for (body, want) in cases {
            let (status, msg) = error_of(&fake, Method::Post, "/v1/notifications", body);
            assert_eq!((status, msg.as_str()), (400, want), "{body}");
        }
        assert!(fake.seen.borrow().is_empty());
    }

    #[test]
    fn broadcast() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let (status, v) = call(
            &fake,
            Method::Post,
            "/v1/broadcast",
            r#"{"notification":{"m":"down at 5"}}"#,
        );
        assert_eq!(
            (status, v),
            (202, json!({ "sockets": 3, "rateLimited": 0 }))
        );
        assert_eq!(
            fake.seen.borrow()[0],
            Seen::Push(
                Target::All,
                format!(r#"{{"m":"down at 5","timestamp":"{NOW}"}}"#)
            )
        );
    }

    #[test]
    fn notification_must_be_an_object() {
        let fake = FakeLoop::new(Behaviour::Answer);
        for body in ["[1]", "\"hi\"", "null", "3"] {
            let (status, msg) = error_of(&fake, Method::Post, "/v1/users/1/notifications", body);
            assert_eq!(
                (status, msg.as_str()),
                (400, "notification must be a JSON object")
            );
        }
    }

    #[test]
    fn invalid_json_is_400() {
        let fake = FakeLoop::new(Behaviour::Answer);
        for body in ["{", "", "{\"a\":}"] {
            let (status, msg) = error_of(&fake, Method::Post, "/v1/users/1/notifications", body);
            assert_eq!(status, 400);
            assert!(msg.starts_with("invalid JSON: "), "{msg}");
        }
    }

    #[test]
    fn user_info() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let (status, v) = call(&fake, Method::Get, "/v1/users/42", "");
        assert_eq!(status, 200);
        assert_eq!(v, json!({ "userId": "42", "online": true, "sockets": 3 }));
        let mut offline = FakeLoop::new(Behaviour::Answer);
        offline.sockets = 0;
        let (_, v) = call(&offline, Method::Get, "/v1/users/42", "");
        assert_eq!(v, json!({ "userId": "42", "online": false, "sockets": 0 }));
    }

    #[test]
    fn healthz_and_metrics() {
        let fake = FakeLoop::new(Behaviour::Answer);
        assert_eq!(
            call(&fake, Method::Get, "/healthz", ""),
            (200, json!({ "status": "ok" }))
        );
        let resp = handle(
            &request(Method::Get, "/metrics", ""),
            &fake,
            Duration::from_secs(1),
            now(),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(resp.content_type, METRICS_CONTENT_TYPE);
        assert_eq!(resp.body, b"herald_sockets 3\n");
    }

    /// `/readyz` was missing: a balancer could not tell a draining herald from a healthy one.
    #[test]
    fn readyz_is_ok_until_the_loop_stops_taking_clients() {
        let fake = FakeLoop::new(Behaviour::Answer);
        assert_eq!(
            call(&fake, Method::Get, "/readyz", ""),
            (200, json!({ "status": "ok" }))
        );
        let gone = FakeLoop::new(Behaviour::Gone);
        assert_eq!(
            call(&gone, Method::Get, "/readyz", ""),
            (503, json!({ "status": "draining" }))
        );
        let silent = FakeLoop::new(Behaviour::Drop);
        assert_eq!(
            call(&silent, Method::Get, "/readyz", ""),
            (503, json!({ "status": "draining" }))
        );
        assert_eq!(call(&fake, Method::Post, "/readyz", "").0, 405);
    }

    #[test]
    fn unknown_path_is_404() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let (status, msg) = error_of(&fake, Method::Get, "/v2/things", "");
        assert_eq!((status, msg.as_str()), (404, "no route for /v2/things"));
        assert_eq!(call(&fake, Method::Get, "/healthz/", "").0, 404);
        assert_eq!(call(&fake, Method::Get, "*", "").0, 404);
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let fake = FakeLoop::new(Behaviour::Answer);
        let cases = [
            (Method::Get, "/v1/broadcast", "POST"),
            (Method::Put, "/v1/users/1/notifications", "POST"),
            (Method::Post, "/healthz", "GET, HEAD"),
            (Method::Delete, "/v1/users/1", "GET, HEAD"),
        ];
        for (method, path, allow) in cases {
            let resp = handle(
                &request(method, path, ""),
                &fake,
                Duration::from_secs(1),
                now(),
            );
            assert_eq!(resp.status, 405, "{path}");
            assert_eq!(resp.content_type, "application/json");
            assert_eq!(resp.headers, vec![("Allow", allow.to_owned())]);
        }
    }

    #[test]
    fn loop_gone_is_503() {
        for behaviour in [Behaviour::Gone, Behaviour::Drop] {
            let fake = FakeLoop::new(behaviour);
            let (status, msg) = error_of(
                &fake,
                Method::Post,
                "/v1/broadcast",
                r#"{"notification":{}}"#,
            );
            assert_eq!((status, msg.as_str()), (503, "gateway is shutting down"));
        }
    }

    #[test]
    fn no_answer_is_503() {
        let fake = FakeLoop::new(Behaviour::Hold);
        let (status, msg) = error_of(&fake, Method::Get, "/v1/users/1", "");
        assert_eq!(
            (status, msg.as_str()),
            (503, "gateway did not answer in time")
        );
        assert_eq!(fake.held.borrow().len(), 1);
    }

    #[test]
    fn a_push_the_loop_has_not_counted_in_time_is_accepted_not_failed() {
        let fake = FakeLoop::new(Behaviour::Hold);
        for (path, body) in [
            ("/v1/users/1/notifications", "{}"),
            (
                "/v1/notifications",
                r#"{"userIds":["a"],"notification":{}}"#,
            ),
            ("/v1/broadcast", r#"{"notification":{}}"#),
        ] {
            let req = request(Method::Post, path, body);
            let answer = start(&req, &fake, Duration::from_millis(20), None, now()).answer();
            assert_eq!(answer.response.status, 202, "{path}");
            assert_eq!(answer.response.body, br#"{"accepted":true}"#);
            assert!(answer.unconfirmed.is_some(), "{path}");
        }
        assert_eq!(fake.held.borrow().len(), 3);
    }

    #[test]
    fn too_many_bytes_in_flight_is_503_with_retry_after() {
        let resp = Response::from(&ApiError::TooManyBytesInFlight);
        assert_eq!(resp.status, 503);
        assert_eq!(resp.headers, vec![("Retry-After", "1".to_owned())]);
    }

    fn limited(retry_after: Duration) -> FakeLoop {
        FakeLoop::new(Behaviour::RateLimit {
            retry_after,
            users: 2,
        })
    }

    #[test]
    fn a_rate_limited_one_user_push_is_429_with_retry_after() {
        let fake = limited(Duration::from_millis(1_500));
        let resp = handle(
            &request(Method::Post, "/v1/users/42/notifications", "{}"),
            &fake,
            Duration::from_secs(1),
            now(),
        );
        assert_eq!(resp.status, 429);
        assert_eq!(resp.headers, vec![("Retry-After", "2".to_owned())]);
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v, json!({ "error": "rate limited", "retryAfter": 2 }));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        for (wait, secs) in [(1, "1"), (1_000, "1"), (1_001, "2"), (20_000, "20")] {
            let resp = Response::from(&ApiError::RateLimited {
                retry_after: Duration::from_millis(wait),
            });
            assert_eq!(
                resp.headers,
                vec![("Retry-After", secs.to_owned())],
                "{wait}"
            );
        }
    }

    #[test]
    fn many_user_pushes_and_broadcasts_count_the_limited() {
        let fake = limited(Duration::from_secs(1));
        let many = r#"{"userIds":["a","b","c"],"notification":{}}"#;
        assert_eq!(
            call(&fake, Method::Post, "/v1/notifications", many),
            (202, json!({ "sockets": 3, "rateLimited": 2 }))
        );
        assert_eq!(
            call(
                &fake,
                Method::Post,
                "/v1/broadcast",
                r#"{"notification":{}}"#
            ),
            (202, json!({ "sockets": 3, "rateLimited": 2 }))
        );
    }

    #[test]
    fn refusals_at_the_door_are_401_and_429_with_retry_after() {
        let resp = Response::from(&ApiError::Unauthorized);
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.headers,
            vec![("WWW-Authenticate", "Bearer".to_owned())]
        );
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v, json!({ "error": "unauthorized" }));

        let resp = Response::from(&ApiError::TooManyAuthFailures {
            retry_after: Duration::from_millis(59_001),
        });
        assert_eq!(resp.status, 429);
        assert_eq!(resp.headers, vec![("Retry-After", "60".to_owned())]);
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(
            v,
            json!({
                "error": "too many failed API key attempts from this address; retry later",
                "retryAfter": 60
            })
        );
    }
}
