//! A broadcast reaches every open socket, subscribed or not.

mod common;

use common::*;
use serde_json::json;

const CONNECTIONS: usize = 2_000;

#[test]
fn broadcast_reaches_2000_connections_once_each() {
    let srv = start_server();
    let mut clients: Vec<Client> = (0..CONNECTIONS)
        .map(|i| {
            let mut ws = connect(&srv);
            if i % 2 == 0 {
                subscribe(&mut ws, &format!("user-{}", i % 100));
            }
            ws
        })
        .collect();
    let (status, body) = post(
        &srv,
        "/v1/broadcast",
        json!({"notification": {"type": "SYSTEM", "message": "all"}}),
    );
    assert_eq!(
        (status, body["sockets"].as_u64()),
        (202, Some(CONNECTIONS as u64))
    );
    let (status, _) = post(
        &srv,
        "/v1/broadcast",
        json!({"notification": {"message": "sentinel"}}),
    );
    assert_eq!(status, 202);
    for ws in &mut clients {
        let got = notifications_until(ws, "sentinel");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["type"], "SYSTEM");
    }
    assert_eq!(metric(&srv, "herald_pushes_total{kind=\"broadcast\"}"), 2.0);
    assert_eq!(
        metric(&srv, "herald_deliveries_total"),
        2.0 * CONNECTIONS as f64
    );
}
