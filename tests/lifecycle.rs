//! Keep-alive pings and graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

#[test]
fn idle_connections_are_pinged_and_kept_while_they_answer() {
    let srv = start_server_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(500);
    });
    let mut ws = client_for(&srv, "idle");
    // tungstenite answers pings as it reads; reading a few proves they come and the socket lives.
    for _ in 0..3 {
        match ws.read().unwrap() {
            Message::Ping(p) => assert!(p.is_empty()),
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    ws.flush().unwrap();
    assert_eq!(push_to(&srv, "idle", "still here"), 1);
}

#[test]
fn a_client_that_does_not_answer_pings_is_closed() {
    let srv = start_server_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(200);
    });
    // A raw client never answers the ping.
    let mut c = RawClient::connect(srv.public_addr);
    assert_eq!(c.read_frame(), Some((0x9, vec![])));
    eventually("the silent client to be dropped", || {
        metric(&srv, "herald_ping_timeouts_total") == 1.0
    });
    let mut rest = Vec::new();
    use std::io::Read;
    assert_eq!(c.stream.read_to_end(&mut rest).ok(), Some(0));
}

#[test]
fn shutdown_closes_every_client_with_1012() {
    let srv = start_server();
    let mut clients: Vec<Client> = (0..5).map(|i| client_for(&srv, &format!("u{i}"))).collect();
    srv.shutdown();
    for ws in &mut clients {
        loop {
            match ws.read() {
                Ok(Message::Close(Some(frame))) => {
                    assert_eq!(frame.code, CloseCode::Restart);
                    break;
                }
                Ok(Message::Ping(_)) => continue,
                other => panic!("expected close 1012, got {other:?}"),
            }
        }
        // Finish the close handshake as a browser would.
        let _ = ws.flush();
    }
    drop(clients);
    srv.join().expect("the loop exits cleanly");
}

#[test]
fn shutdown_stops_accepting() {
    let srv = start_server();
    let addr = srv.public_addr;
    srv.shutdown();
    eventually("the listener to close", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    srv.join().unwrap();
}
