//! The admin page on the control listener: served whole from the binary, behind a login when
//! an API key is set; its session cookie stands for the key only beside `X-Herald-Admin: 1`;
//! logins count in the lockout; the configuration it shows masks secrets; and the user lookup
//! it uses lists each of a user's sockets with what it speaks and where it is from.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEY: &str = "admin-key-5f0e2a";
const JWT_SECRET: &str = "jwt-secret-that-is-32-bytes-long-9c1";

/// One request on a fresh connection with `headers` added; a body is sent with its
/// `Content-Type`. Returns the status, head and body.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req += &format!("{name}: {value}\r\n");
    }
    if let Some((content_type, b)) = body {
        req += &format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    req += "\r\n";
    if let Some((_, b)) = body {
        req += b;
    }
    raw_http(addr, req.as_bytes())
}

const FORM: &str = "application/x-www-form-urlencoded";

/// `POST /admin/login` with `key`.
fn log_in(addr: SocketAddr, key: &str) -> (u16, String, String) {
    let body = format!("key={}", key.replace('+', "%2B"));
    call(addr, "POST", "/admin/login", &[], Some((FORM, &body)))
}

/// The session cookie a right key gets, as `herald_admin=<value>`.
fn session(addr: SocketAddr) -> String {
    let (status, head, body) = log_in(addr, KEY);
    assert_eq!(status, 303, "{head}\n{body}");
    let set = header(&head, "set-cookie").expect("Set-Cookie");
    set.split(';').next().unwrap().trim().to_owned()
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn the_page_is_served_from_the_binary_and_names_no_other_site() {
    let srv = start_server();
    let (status, head, page) = call(srv.control_addr, "GET", "/admin", &[], None);
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&head, "content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    // Without a key the page is open: the dashboard, no login form.
    assert!(page.contains("<canvas") && !page.contains("id=\"login\""));
    let mut texts = vec![page];
    for (path, content_type) in [
        ("/admin/admin.js", "text/javascript; charset=utf-8"),
        ("/admin/admin.css", "text/css; charset=utf-8"),
    ] {
        let (status, head, text) = call(srv.control_addr, "GET", path, &[], None);
        assert_eq!(
            (status, header(&head, "content-type")),
            (200, Some(content_type))
        );
        assert!(text.len() > 1000, "{path} is {} bytes", text.len());
        texts.push(text);
    }
    for text in &texts {
        for external in ["http://", "https://", "//cdn", "@import"] {
            assert!(!text.contains(external), "{external} in the page");
        }
    }
    // The page names its own files only.
    assert!(texts[0].contains("src=\"/admin/admin.js\""));
    assert!(texts[0].contains("href=\"/admin/admin.css\""));
    let (status, _, _) = call(srv.control_addr, "POST", "/admin", &[], Some((FORM, "")));
    assert_eq!(status, 405);
}

#[test]
fn with_a_key_a_login_opens_a_session_that_counts_only_beside_the_admin_header() {
    let srv = start_server_with(|c| c.api_key = vec![KEY.to_owned()]);
    let control = srv.control_addr;

    let (status, _, page) = call(control, "GET", "/admin", &[], None);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"login\"") && !page.contains("<canvas"));
    // Nothing behind the door without the key.
    let (status, _, _) = call(control, "GET", "/admin/config", &[], None);
    assert_eq!(status, 401);

    let (status, head, body) = log_in(control, "not-the-key");
    assert_eq!(status, 401, "{body}");
    assert!(header(&head, "set-cookie").is_none());
    assert_eq!(json_of(&body), json!({ "error": "unauthorized" }));

    let (status, head, _) = log_in(control, KEY);
    assert_eq!(status, 303);
    assert_eq!(header(&head, "location"), Some("/admin"));
    let set = header(&head, "set-cookie").unwrap();
    let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
    let value = attributes[0].strip_prefix("herald_admin=").unwrap();
    let (expiry, tag) = value.split_once('.').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry.abs_diff(unix_now() + 43_200) < 60, "{expiry}");
    assert_eq!(tag.len(), 43, "a base64url SHA-256 tag");
    assert_eq!(
        &attributes[1..],
        ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"]
    );
    let cookie = attributes[0].to_owned();

    // The page itself with the cookie.
    let (_, _, page) = call(control, "GET", "/admin", &[("Cookie", &cookie)], None);
    assert!(page.contains("<canvas"));

    // The cookie with the header reads the metrics and pushes.
    let admin = [("Cookie", cookie.as_str()), ("X-Herald-Admin", "1")];
    let (status, _, metrics) = call(control, "GET", "/metrics", &admin, None);
    assert_eq!(status, 200);
    assert!(metrics.contains("herald_sockets{protocol=\"raw_json\"}"));
    let mut ws = client_for(&srv, "alice");
    let push = json!({ "message": "from the admin page" }).to_string();
    let (status, _, answer) = call(
        control,
        "POST",
        "/v1/users/alice/notifications",
        &admin,
        Some(("application/json", &push)),
    );
    assert_eq!(
        (status, json_of(&answer)["sockets"].clone()),
        (202, json!(1))
    );
    let got = recv_json(&mut ws);
    assert_eq!(got["data"]["message"], "from the admin page");

    // Without the header, the cookie is no credential.
    let (status, head, body) = call(control, "GET", "/metrics", &admin[..1], None);
    assert_eq!(status, 401);
    assert_eq!(header(&head, "www-authenticate"), Some("Bearer"));
    assert_eq!(json_of(&body), json!({ "error": "unauthorized" }));
    // Nor is the header without the cookie, or beside a forged or expired one.
    let later = format!("herald_admin={}.{tag}", expiry + 3600);
    let expired = format!("herald_admin=1.{tag}");
    let cut = format!("herald_admin={expiry}.{}", &tag[..42]);
    for forged in [
        "",
        "herald_admin=",
        later.as_str(),
        expired.as_str(),
        cut.as_str(),
    ] {
        let (status, _, body) = call(
            control,
            "GET",
            "/metrics",
            &[("Cookie", forged), ("X-Herald-Admin", "1")],
            None,
        );
        assert_eq!(status, 401, "{forged}");
        assert_eq!(json_of(&body), json!({ "error": "unauthorized" }));
    }
    // The bearer key keeps working as before.
    let bearer = format!("Bearer {KEY}");
    let (status, _, _) = call(
        control,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200);

    // Logging out clears the cookie and ends the session, even for a copy of it.
    let (status, head, _) = call(control, "POST", "/admin/logout", &admin, Some((FORM, "")));
    assert_eq!(status, 303);
    let cleared = header(&head, "set-cookie").unwrap();
    assert!(cleared.starts_with("herald_admin=;") && cleared.contains("Max-Age=0"));
    let (status, _, _) = call(control, "GET", "/metrics", &admin, None);
    assert_eq!(status, 401);
    let (_, _, page) = call(control, "GET", "/admin", &admin[..1], None);
    assert!(page.contains("id=\"login\""));
}

#[test]
fn wrong_keys_at_the_login_count_toward_the_lockout() {
    let srv = start_server_with(|c| {
        c.api_key = vec![KEY.to_owned()];
        c.control_auth_failures = 3;
        c.control_auth_window = Duration::from_secs(60);
    });
    let control = srv.control_addr;
    // One wrong bearer key and two wrong logins use up the address's three failures.
    let (status, _, _) = call(
        control,
        "GET",
        "/healthz",
        &[("Authorization", "Bearer x")],
        None,
    );
    assert_eq!(status, 401);
    for wrong in ["x", ""] {
        assert_eq!(log_in(control, wrong).0, 401, "{wrong:?}");
    }
    let (status, head, body) = log_in(control, KEY);
    assert_eq!(status, 429, "{body}");
    let retry: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(header(&head, "set-cookie").is_none());
    let bearer = format!("Bearer {KEY}");
    let (status, _, _) = call(
        control,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 429);
    // The page still shows its login form.
    let (status, _, page) = call(control, "GET", "/admin", &[], None);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"login\""));
}

#[test]
fn the_configuration_masks_secrets_and_names_where_each_value_came_from() {
    let herald = spawn_herald_env(
        &["--api-key", KEY, "--workers", "2"],
        &[("HERALD_JWT_SECRET", JWT_SECRET)],
    );
    let control = herald.control_addr;
    let (status, _, page) = call(control, "GET", "/admin", &[], None);
    assert!(status == 200 && page.contains("id=\"login\""));
    let cookie = session(control);
    let admin = [("Cookie", cookie.as_str()), ("X-Herald-Admin", "1")];
    let (status, head, body) = call(control, "GET", "/admin/config", &admin, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert!(!body.contains(KEY) && !body.contains(JWT_SECRET), "{body}");
    let config = json_of(&body);
    assert_eq!(config["apiKey"], true);
    let flags = config["flags"].as_array().unwrap();
    let flag = |name: &str| {
        flags
            .iter()
            .find(|f| f["flag"] == name)
            .unwrap_or_else(|| panic!("{name} in {body}"))
            .clone()
    };
    assert_eq!(
        flag("--api-key"),
        json!({ "flag": "--api-key", "env": "HERALD_API_KEY", "value": "********",
                "source": "command line", "secret": true })
    );
    assert_eq!(
        flag("--jwt-secret"),
        json!({ "flag": "--jwt-secret", "env": "HERALD_JWT_SECRET", "value": "********",
                "source": "environment", "secret": true })
    );
    assert_eq!(flag("--workers")["value"], "2");
    assert_eq!(flag("--workers")["source"], "command line");
    assert_eq!(
        flag("--ping-interval"),
        json!({ "flag": "--ping-interval", "env": "HERALD_PING_INTERVAL", "value": "25s",
                "source": "default", "secret": false })
    );
    assert_eq!(flag("--redis")["source"], "unset");
    assert_eq!(flag("--redis")["value"], Value::Null);
    assert!(flags.iter().all(|f| f["flag"] != "--help"));
    // Another key's holder, with the bearer key, reads the same.
    let bearer = format!("Bearer {KEY}");
    let (status, _, again) = call(
        control,
        "GET",
        "/admin/config",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!((status, json_of(&again)), (200, config));
}

/// Sends a Socket.IO packet over a polling session `sid`.
fn sio_post(addr: SocketAddr, sid: &str, packet: &str) {
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, _, body) = call(addr, "POST", &path, &[], Some(("text/plain", packet)));
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// A Socket.IO client on long-polling, connected to `/` and subscribed to `user`; returns its
/// socket id.
fn sio_polling_subscribed(addr: SocketAddr, user: &str) -> String {
    let (status, _, open) = call(
        addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        None,
    );
    assert_eq!(status, 200, "{open}");
    let sid = json_of(open.strip_prefix('0').unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    sio_post(addr, &sid, "40");
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (_, _, connect) = call(addr, "GET", &path, &[], None);
    let socket_id = json_of(connect.strip_prefix("40").unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    sio_post(addr, &sid, &format!("42[\"subscribe\",\"{user}\"]"));
    socket_id
}

#[test]
fn the_user_lookup_lists_each_socket_with_its_protocol_and_address() {
    let srv = start_server();
    let user = "device-owner";
    let before = unix_now();

    let _json = client_for(&srv, user);
    let (mut msgpack, head) = RawClient::open(srv.public_addr, "/ws?format=msgpack", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let subscribe =
        rmp_serde::to_vec_named(&json!({ "event": "subscribe", "data": user })).unwrap();
    msgpack.send(&client_frame(true, 0x2, &subscribe));
    let mut sio = sio_websocket(srv.public_addr);
    sio.send(tungstenite::Message::Text("40".into())).unwrap();
    let connect = recv_text(&mut sio);
    let sio_ws_id = json_of(connect.strip_prefix("40").unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    sio.send(tungstenite::Message::Text(format!(
        "42[\"subscribe\",\"{user}\"]"
    )))
    .unwrap();
    let sio_polling_id = sio_polling_subscribed(srv.public_addr, user);

    let mut info = Value::Null;
    eventually("four sockets listed", || {
        info = json_of(&get(&srv, &format!("/v1/users/{user}")).1);
        info["sockets"] == 4
    });
    let devices = info["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 4, "{info}");
    assert!(info.get("moreDevices").is_none());
    let mut protocols: Vec<&str> = devices
        .iter()
        .map(|d| d["protocol"].as_str().unwrap())
        .collect();
    protocols.sort();
    assert_eq!(
        protocols,
        [
            "raw_json",
            "raw_msgpack",
            "socketio_polling",
            "socketio_websocket"
        ]
    );
    let by = |p: &str| devices.iter().find(|d| d["protocol"] == p).unwrap();
    assert_eq!(by("socketio_websocket")["socketId"], sio_ws_id.as_str());
    assert_eq!(by("socketio_polling")["socketId"], sio_polling_id.as_str());
    for d in devices {
        assert_eq!(d["address"], "127.0.0.1", "{d}");
        assert!(d["worker"].as_u64().unwrap() < 4, "{d}");
        assert_eq!(d["socketId"].as_str().unwrap().len(), 20, "{d}");
        let at = d["subscribedAt"].as_str().unwrap();
        // `2026-11-26T04:57:06.000Z`, no earlier than the test began.
        assert!(at.len() == 24 && at.ends_with(".000Z"), "{at}");
        assert!(at >= rfc3339(before).as_str(), "{at}");
    }

    for p in [
        "raw_json",
        "raw_msgpack",
        "socketio_websocket",
        "socketio_polling",
    ] {
        assert_eq!(
            metric(&srv, &format!("herald_sockets{{protocol=\"{p}\"}}")),
            1.0,
            "{p}"
        );
    }
}

/// `secs` since the Unix epoch as herald writes it, to the second.
fn rfc3339(secs: u64) -> String {
    herald::time::rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[test]
fn the_device_list_stops_at_a_hundred_and_says_there_are_more() {
    let srv = start_server();
    let clients: Vec<Client> = (0..101).map(|_| client_for(&srv, "crowd")).collect();
    let (status, body) = get(&srv, "/v1/users/crowd");
    assert_eq!(status, 200);
    let info = json_of(&body);
    assert_eq!(info["sockets"], 101);
    assert_eq!(info["devices"].as_array().unwrap().len(), 100);
    assert_eq!(info["moreDevices"], true);
    drop(clients);
}
