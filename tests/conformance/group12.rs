//! Group 12, permessage-deflate (RFC 7692): messages of 16 bytes to 128 KiB, sent compressed
//! (and cut into frames of 256 bytes to 32 KiB in the later cases), echoed back, for five kinds
//! of data. The client offers what Autobahn's default offer says and inflates each echo with a
//! fresh inflater, which checks that herald honours the `server_no_context_takeover` it agreed.
//!
//! Two things are scaled down from Autobahn:
//! - Autobahn sends 1000 messages per case; here each case sends `min(1000, 1 MiB / size)`
//!   messages (1000 up to 1 KiB, 8 at 128 KiB), so the two groups together stay within seconds.
//! - Autobahn's data files (a JSON file, a bitmap, Goethe's Faust from Project Gutenberg, an
//!   HTML page, a PDF) are not shipped; each is stood in for by generated data of the same kind:
//!   structured text with non-ASCII characters, a smooth 8-bit image, German verse, HTML markup,
//!   and bytes that barely compress (which herald then echoes uncompressed: RSV1 is chosen per
//!   message).

use std::net::SocketAddr;

use super::client::*;

/// Autobahn's `MSG_SIZES`: (message size, fragment size or 0 for one frame).
pub const SIZES: [(usize, usize); 18] = [
    (16, 0),
    (64, 0),
    (256, 0),
    (1024, 0),
    (4096, 0),
    (8192, 0),
    (16384, 0),
    (32768, 0),
    (65536, 0),
    (131072, 0),
    (8192, 256),
    (16384, 256),
    (32768, 256),
    (65536, 256),
    (131072, 256),
    (131072, 1024),
    (131072, 4096),
    (131072, 32768),
];

/// Autobahn's default offer (`PerMessageDeflateOffer()`).
pub const DEFAULT_OFFER: &str =
    "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// Messages per case: Autobahn's 1000, capped at 1 MiB of payload per case.
pub fn count(size: usize) -> usize {
    ((1 << 20) / size).clamp(1, 1000)
}

/// One of Autobahn's data sets, generated.
pub struct Data {
    pub name: &'static str,
    /// Sent as binary messages, cut anywhere; or as text, cut between characters.
    pub binary: bool,
    pub bytes: Vec<u8>,
}

impl Data {
    /// The messages Autobahn's `sendOne` takes from the data: `len` units (bytes, or characters
    /// of text) at a time, wrapping around the end.
    pub fn messages(&self, len: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        let units: Vec<&[u8]> = if self.binary {
            self.bytes.chunks(1).collect()
        } else {
            let text = std::str::from_utf8(&self.bytes).expect("text data is UTF-8");
            text.char_indices()
                .map(|(i, c)| &self.bytes[i..i + c.len_utf8()])
                .collect()
        };
        let mut at = 0;
        std::iter::repeat_with(move || {
            let msg: Vec<u8> = (0..len)
                .flat_map(|k| units[(at + k) % units.len()])
                .copied()
                .collect();
            at = (at + len) % units.len();
            msg
        })
    }

    fn op(&self) -> u8 {
        if self.binary {
            OP_BINARY
        } else {
            OP_TEXT
        }
    }
}

/// A message as a client sends it: compressed when deflate was agreed, then cut into frames of
/// `frag` bytes when it is longer (Autobahn's `autoFragmentSize`, applied after compression).
pub fn message(op: u8, payload: &[u8], deflate_on: bool, frag_size: usize) -> Vec<u8> {
    let (body, rsv) = if deflate_on {
        (deflate(payload), 0b100)
    } else {
        (payload.to_vec(), 0)
    };
    if frag_size == 0 || body.len() <= frag_size {
        return frame_rsv(true, rsv, op, &body);
    }
    let count = body.len().div_ceil(frag_size);
    body.chunks(frag_size)
        .enumerate()
        .flat_map(|(i, chunk)| {
            let first = i == 0;
            frame_rsv(
                i + 1 == count,
                if first { rsv } else { 0 },
                if first { op } else { OP_CONT },
                chunk,
            )
        })
        .collect()
}

/// One case: a connection with `offer`, whose agreement must be `agreed` (the response's
/// extension value, or `None` for a declined offer); then the messages, each echoed.
pub fn echo_case(
    addr: SocketAddr,
    offer: &str,
    agreed: Option<&str>,
    data: &Data,
    (size, frag_size): (usize, usize),
) {
    let mut ws = Ws::connect_with(addr, &format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    assert_eq!(extensions(&ws.head), agreed, "{}", ws.head);
    let op = data.op();
    for payload in data.messages(size).take(count(size)) {
        ws.send(&message(op, &payload, ws.deflate, frag_size), How::Whole);
        let want = if data.binary {
            binary(&payload)
        } else {
            text(&payload)
        };
        ws.expect(&want);
    }
    ws.close_clean();
}

/// The response to an accepted offer without `server_max_window_bits`.
pub const AGREED: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn autobahn_group_12() {
    let srv = server();
    let addr = srv.public_addr;
    let mut t = Tally::new("group 12");
    for (j, data) in data_sets().iter().enumerate() {
        for (i, size) in SIZES.into_iter().enumerate() {
            t.case(format!("12.{}.{} ({})", j + 1, i + 1, data.name), || {
                echo_case(addr, DEFAULT_OFFER, Some(AGREED), data, size)
            });
        }
    }
    t.finish();
}

/// The echo of compressible data comes back compressed, and of data that does not shrink,
/// plain: one case of each, counted.
#[test]
fn echoes_are_compressed_when_they_shrink() {
    let srv = server();
    let sets = data_sets();
    for (data, compressed) in [(&sets[0], true), (&sets[4], false)] {
        let mut ws = Ws::connect_with(
            srv.public_addr,
            &format!("Sec-WebSocket-Extensions: {DEFAULT_OFFER}\r\n"),
        );
        for payload in data.messages(4096).take(10) {
            ws.send(&message(data.op(), &payload, true, 0), How::Whole);
            ws.read_msg().expect("an echo");
        }
        assert_eq!(
            ws.compressed,
            if compressed { 10 } else { 0 },
            "{}",
            data.name
        );
        ws.close_clean();
    }
}

/// Stand-ins for Autobahn's five data files, in its order.
pub fn data_sets() -> Vec<Data> {
    vec![
        Data {
            name: "JSON",
            binary: false,
            bytes: json_data(),
        },
        Data {
            name: "bitmap",
            binary: true,
            bytes: bitmap(),
        },
        Data {
            name: "German verse",
            binary: true,
            bytes: verse(),
        },
        Data {
            name: "HTML",
            binary: false,
            bytes: html(),
        },
        Data {
            name: "barely compressible",
            binary: true,
            bytes: noise(),
        },
    ]
}

/// A fixed pseudo-random sequence.
fn xorshift(seed: u32) -> impl FnMut() -> u32 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    }
}

const NAMES: [&str; 6] = ["Jürgen", "Zoë", "Łukasz", "Ана", "José", "美咲"];

fn json_data() -> Vec<u8> {
    let mut r = xorshift(7);
    let mut s = String::from("[");
    for i in 0..2500 {
        let name = NAMES[r() as usize % NAMES.len()];
        s += &format!(
            "{{\"id\":{i},\"user\":\"{name}\",\"score\":{},\"tags\":[\"α\",\"β\",\"{}\"],\
             \"read\":{},\"note\":\"notification № {}\"}},",
            r() % 10_000,
            r() % 97,
            r().is_multiple_of(2),
            r() % 1000
        );
    }
    s.pop();
    s.push(']');
    s.into_bytes()
}

fn bitmap() -> Vec<u8> {
    let mut r = xorshift(11);
    // A BMP file header and 256-entry grey palette, then 512x512 pixels of smooth shading.
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&(54u32 + 1024 + 512 * 512).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(54u32 + 1024).to_le_bytes());
    b.extend_from_slice(&[40, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 1, 0, 8, 0]);
    b.resize(54, 0);
    b.extend((0..=255u8).flat_map(|g| [g, g, g, 0]));
    for y in 0..512u32 {
        for x in 0..512u32 {
            let d = (x as i32 - 256).pow(2) + (y as i32 - 200).pow(2);
            b.push(((d / 300) as u32 + (x ^ y) / 64 + r() % 4) as u8);
        }
    }
    b
}

fn verse() -> Vec<u8> {
    // Goethe, Faust I, "Nacht" (public domain).
    let lines = [
        "Habe nun, ach! Philosophie,",
        "Juristerei und Medizin,",
        "Und leider auch Theologie!",
        "Durchaus studiert, mit heißem Bemühn.",
        "Da steh ich nun, ich armer Tor!",
        "Und bin so klug als wie zuvor;",
        "Heiße Magister, heiße Doktor gar",
        "Und ziehe schon an die zehen Jahr",
        "Herauf, herab und quer und krumm",
        "Meine Schüler an der Nase herum –",
    ];
    let mut r = xorshift(13);
    let mut s = String::new();
    for n in 0..6000 {
        let line = lines[r() as usize % lines.len()];
        s += &format!("{line:<40}{}\n", 354 + n);
    }
    s.into_bytes()
}

fn html() -> Vec<u8> {
    let mut r = xorshift(17);
    let mut s = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Benachrichtigungen</title></head><body><table>\n");
    for i in 0..3000 {
        let name = NAMES[r() as usize % NAMES.len()];
        s += &format!(
            "<tr class=\"row-{}\"><td><a href=\"/users/{i}\">{name}</a></td><td>{} neue Einträge</td><td>€{}.{:02}</td></tr>\n",
            i % 2,
            r() % 50,
            r() % 500,
            r() % 100
        );
    }
    s += "</table></body></html>\n";
    s.into_bytes()
}

fn noise() -> Vec<u8> {
    let mut r = xorshift(19);
    let mut b = b"%PDF-1.4\n".to_vec();
    while b.len() < 300_000 {
        b.extend_from_slice(b"stream\n");
        b.extend((0..4000).map(|_| r() as u8));
        b.extend_from_slice(b"\nendstream\n");
    }
    b
}
