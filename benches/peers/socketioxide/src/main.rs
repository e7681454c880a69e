//! The notification gateway written the way a socketioxide user would write it: the comparison
//! peer for herald's benchmarks.
//!
//! Socket.IO at `/socket.io/` on `PORT` (5000): `subscribe` joins room `user_<id>` and answers
//! `subscribed` `{userId, socketId}`, `unsubscribe` leaves it. The control API on `CONTROL_PORT`
//! (5001): `POST /v1/users/{userId}/notifications`, `POST /v1/notifications`,
//! `POST /v1/broadcast`, each adding `timestamp` and answering 202 `{"sockets": N}`.
//! Both listen on 127.0.0.1 unless `HOST` says otherwise. Ports may also be given as
//! `--port P --control-port C`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use socketioxide::extract::{Data, SocketRef};
use socketioxide::socket::{DisconnectReason, Sid};
use socketioxide::SocketIo;

/// What the NestJS gateway keeps: the sockets of each user, and how many sockets are open.
#[derive(Default)]
struct Gateway {
    /// user id -> ids of the sockets subscribed to it.
    user_connections: Mutex<HashMap<String, HashSet<Sid>>>,
    /// Open sockets on `/`, for the broadcast's answer.
    connected: AtomicUsize,
}

#[derive(Clone)]
struct AppState {
    io: SocketIo,
    gateway: Arc<Gateway>,
}

/// A user id sent as a string or a number, as socket.io-client users do.
fn user_id(data: &Value) -> Option<String> {
    match data {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn room(user_id: &str) -> String {
    format!("user_{user_id}")
}

/// The notification with `timestamp` (ISO 8601, milliseconds) added unless present.
fn stamped(notification: Value) -> Option<Value> {
    let mut object: Map<String, Value> = match notification {
        Value::Object(o) => o,
        _ => return None,
    };
    object.entry("timestamp").or_insert_with(|| {
        Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string())
    });
    Some(Value::Object(object))
}

fn accepted(sockets: usize) -> (StatusCode, Json<Value>) {
    (StatusCode::ACCEPTED, Json(json!({ "sockets": sockets })))
}

fn bad_request(message: &str) -> (StatusCode, Json<Value>) {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message })))
}

fn on_connect(socket: SocketRef, gateway: Arc<Gateway>) {
    gateway.connected.fetch_add(1, Ordering::Relaxed);

    let g = gateway.clone();
    socket.on(
        "subscribe",
        move |s: SocketRef, Data::<Value>(data)| async move {
            let Some(user) = user_id(&data) else {
                let _ = s.emit("error", &json!({ "message": "userId required" }));
                return;
            };
            s.join(room(&user));
            g.user_connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(user.clone())
                .or_default()
                .insert(s.id);
            let _ = s.emit("subscribed", &json!({ "userId": user, "socketId": s.id }));
        },
    );

    let g = gateway.clone();
    socket.on(
        "unsubscribe",
        move |s: SocketRef, Data::<Value>(data)| async move {
            let Some(user) = user_id(&data) else { return };
            s.leave(room(&user));
            let mut map = g.user_connections.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(set) = map.get_mut(&user) {
                set.remove(&s.id);
                if set.is_empty() {
                    map.remove(&user);
                }
            }
            drop(map);
            let _ = s.emit("unsubscribed", &json!({ "userId": user }));
        },
    );

    socket.on_disconnect(move |s: SocketRef, _reason: DisconnectReason| async move {
        gateway.connected.fetch_sub(1, Ordering::Relaxed);
        let mut map = gateway
            .user_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.retain(|_, set| {
            set.remove(&s.id);
            !set.is_empty()
        });
    });
}

async fn push_to_user(
    State(app): State<AppState>,
    Path(user): Path<String>,
    Json(notification): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(n) = stamped(notification) else {
        return bad_request("notification must be an object");
    };
    let _ = app.io.to(room(&user)).emit("notification", &n).await;
    let sockets = app
        .gateway
        .user_connections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&user)
        .map_or(0, HashSet::len);
    accepted(sockets)
}

async fn push_to_users(
    State(app): State<AppState>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(users) = body.get("userIds").and_then(Value::as_array) else {
        return bad_request("userIds must be an array");
    };
    let users: Vec<String> = users.iter().filter_map(user_id).collect();
    let Some(n) = body.get("notification").cloned().and_then(stamped) else {
        return bad_request("notification must be an object");
    };
    let rooms: Vec<String> = users.iter().map(|u| room(u)).collect();
    // One emit to the union of the rooms: a socket in several of them gets it once.
    let _ = app.io.to(rooms).emit("notification", &n).await;
    let sockets = {
        let map = app
            .gateway
            .user_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut seen = HashSet::new();
        for user in &users {
            if let Some(set) = map.get(user) {
                seen.extend(set.iter().copied());
            }
        }
        seen.len()
    };
    accepted(sockets)
}

async fn broadcast(
    State(app): State<AppState>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Some(n) = body.get("notification").cloned().and_then(stamped) else {
        return bad_request("notification must be an object");
    };
    let _ = app.io.emit("notification", &n).await;
    accepted(app.gateway.connected.load(Ordering::Relaxed))
}

/// `--name value` from the command line, else the environment variable, else the default.
fn port(flag: &str, env: &str, default: u16) -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let ws_port = port("--port", "PORT", 5000);
    let control_port = port("--control-port", "CONTROL_PORT", 5001);

    let gateway = Arc::new(Gateway::default());
    let (layer, io) = SocketIo::new_layer();
    let g = gateway.clone();
    io.ns("/", move |s: SocketRef| async move { on_connect(s, g) });

    let ws_app = Router::new().layer(layer);
    let control_app = Router::new()
        .route("/v1/users/{user_id}/notifications", post(push_to_user))
        .route("/v1/notifications", post(push_to_users))
        .route("/v1/broadcast", post(broadcast))
        .with_state(AppState { io, gateway });

    let ws_listener = tokio::net::TcpListener::bind((host.as_str(), ws_port)).await?;
    let control_listener = tokio::net::TcpListener::bind((host.as_str(), control_port)).await?;
    eprintln!(
        "listening websocket={} control={}",
        ws_listener.local_addr()?,
        control_listener.local_addr()?
    );
    // Small frames go out at once, as herald and Node's HTTP server send them.
    let ws_listener = ws_listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let control_listener = control_listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });

    let ws = tokio::spawn(async move { axum::serve(ws_listener, ws_app).await });
    let control = tokio::spawn(async move { axum::serve(control_listener, control_app).await });
    tokio::select! {
        r = ws => r??,
        r = control => r??,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
