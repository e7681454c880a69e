//! The fuzz targets' entry points run on a few hand-made inputs, so a change that breaks one
//! fails here rather than in a fuzzing run.

use herald::fuzzing;
use herald::ws::frame::encode_masked;

#[test]
fn frame_decoder_agrees_with_itself_split_or_whole() {
    let mask = [9, 8, 7, 6];
    let stream = [
        encode_masked(false, 0x1, 0, "héllo ".as_bytes(), mask),
        encode_masked(true, 0x9, 0, b"ping", mask),
        encode_masked(true, 0x0, 0, "wörld".as_bytes(), mask),
        encode_masked(true, 0x2, 0, &[0u8; 300], mask),
        // "Hello" compressed (RFC 7692 §7.2.3.1): a compressed message when the split byte's top
        // bit turns deflate on, reserved bits otherwise.
        encode_masked(
            true,
            0x1,
            0b100,
            &[0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00],
            mask,
        ),
        encode_masked(true, 0x1, 0, &[0xCE, 0xFF], mask),
    ]
    .concat();
    for split in 0..=255u8 {
        let mut data = vec![split];
        data.extend_from_slice(&stream);
        fuzzing::frame_decoder(&data);
    }
}

#[test]
fn other_entry_points_take_any_bytes() {
    let inputs: [&[u8]; 8] = [
        b"EIO=4&transport=polling&sid=abc",
        b"4hello\x1e2probe\x1ebAQIDBA==",
        b"51-[\"x\",{\"_placeholder\":true,\"num\":0}]\0\x01\x02",
        b"",
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"POST /v1/users/u/notifications HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /metrics HTTP/1.1\r\n\r\n",
        br#"{"event":"subscribe","data":"u"}"#,
        &[0xFF, 0x00, 0x80],
    ];
    for data in inputs {
        fuzzing::handshake(data);
        fuzzing::inflate(data);
        fuzzing::inflate(&[&[0x10, 0x00][..], data].concat());
        fuzzing::raw_protocol(data);
        fuzzing::control_http(data);
        fuzzing::engineio(data);
        fuzzing::socketio(data);
        fuzzing::token(data);
        fuzzing::rooms(data);
        fuzzing::core_commands(data);
        fuzzing::core_worker(data);
        fuzzing::proxy_protocol(data);
        fuzzing::real_ip(data);
    }
}

/// The PROXY protocol target on the spec's headers, each followed by a request and cut short,
/// and the forwarding header target on each of its peers and both headers.
#[test]
fn proxy_entry_points_take_the_spec_examples() {
    let signature = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let v2_ipv4 = [
        &signature[..],
        &[0x21, 0x11, 0x00, 0x0C],
        &[192, 0, 2, 1, 198, 51, 100, 1, 0xDC, 0x04, 0x01, 0xBB],
    ]
    .concat();
    let v2_local = [&signature[..], &[0x20, 0x00, 0x00, 0x00]].concat();
    let headers: [&[u8]; 5] = [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n",
        b"PROXY UNKNOWN\r\n",
        &v2_ipv4,
        &v2_local,
    ];
    for header in headers {
        let data = [header, b"GET / HTTP/1.1\r\n\r\n"].concat();
        for n in 0..=data.len() {
            fuzzing::proxy_protocol(&data[..n]);
        }
    }
    let lines: [&[u8]; 3] = [
        b"6.6.6.6, 192.0.2.60, 10.0.0.2\n[2001:db8::1]:4711, unknown",
        b"for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https\nfor=10.0.0.2",
        b"for=\"_gazonk\";host=\"a,b\", ::ffff:10.0.0.3, 10.0.0.4",
    ];
    for choice in 0..=12u8 {
        for line in lines {
            fuzzing::real_ip(&[&[choice][..], line].concat());
        }
    }
}

/// Found by the `frame_decoder` target: a compressed text frame whose inflated bytes begin with
/// invalid UTF-8 and whose DEFLATE data then turns corrupt. Fed whole, the inflater reached the
/// corrupt data before the UTF-8 check ran and the verdict was 1007 "bad compressed data"; fed in
/// 1-byte pieces, the UTF-8 check ran first and the verdict was "invalid UTF-8". Now the inflated
/// text is checked before an inflate fault is reported, whatever the split.
#[test]
fn inflate_fault_after_bad_utf8_has_one_verdict() {
    let crash = [
        0xc0, 0xc1, 0xfa, 0xfb, 0x7e, 0xff, 0xac, 0x00, 0x0b, 0x16, 0x16, 0x16, 0x16, 0xff, 0x5b,
    ];
    fuzzing::frame_decoder(&crash);
}

/// The `core_worker` target on runs of the shape it reads (a few connections, then requests,
/// frames, pushes, partial writes, closes and time steps in random order), drawn from a fixed
/// seed: every run must keep the state's invariants, so a change that breaks one fails here
/// without a fuzzing run.
#[test]
fn a_driven_worker_keeps_its_invariants_over_generated_runs() {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let mut data = vec![(next() & 7) as u8];
        let mut conns = 0;
        for _ in 0..10 + next() % 120 {
            let r = next();
            let op = if conns < 3 && r % 4 == 0 {
                conns += 1;
                0
            } else {
                ((r >> 8) % 12) as u8
            };
            let arg = (r >> 20) as u8;
            data.extend([op, arg]);
            if op == 1 {
                data.extend((0..arg >> 4).map(|_| (next() >> 30) as u8));
            }
        }
        fuzzing::core_worker(&data);
    }
}
