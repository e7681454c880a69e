//! Frame headers (RFC 6455 §5.2), masking (§5.3) and the server's frame encoder.

use bytes::Bytes;

use crate::ws::close::CloseCode;
use crate::ws::error::Error;

/// Frame opcodes (RFC 6455 §5.2). Everything else is reserved.
pub mod opcode {
    /// Continues a fragmented data message.
    pub const CONTINUATION: u8 = 0x0;
    /// A UTF-8 text message (or its first fragment).
    pub const TEXT: u8 = 0x1;
    /// A binary message (or its first fragment).
    pub const BINARY: u8 = 0x2;
    /// Connection close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;

    /// Control opcodes all have the top bit of the nibble set (RFC 6455 §5.5).
    pub fn is_control(op: u8) -> bool {
        op & 0x08 != 0
    }
}

/// The longest header: 2 fixed bytes, an 8-byte extended length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

const FIN_BIT: u8 = 0x80;
const MASK_BIT: u8 = 0x80;
const LEN_16: u8 = 0x7E;
const LEN_64: u8 = 0x7F;

/// A parsed frame header. It states facts about the wire bytes; the decoder judges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last fragment of its message.
    pub fin: bool,
    /// The three RSV bits as `0b0xyz`, x being RSV1.
    pub rsv: u8,
    /// The 4-bit opcode, not yet checked against the known ones.
    pub opcode: u8,
    /// The masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The declared payload length. Peer-controlled: never allocate from it.
    pub len: u64,
}

/// Parses a frame header from the start of `buf`.
///
/// Returns the header and its length (2 to 14 bytes), or `Ok(None)` when `buf` does not yet hold
/// the whole header. Non-minimal length encodings are accepted.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let (len, mut pos) = match b1 & 0x7F {
        LEN_16 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        LEN_64 => {
            let mut be = [0u8; 8];
            match buf.get(2..10) {
                Some(bytes) => be.copy_from_slice(bytes),
                None => return Ok(None),
            }
            let len = u64::from_be_bytes(be);
            // RFC 6455 §5.2: in the 64-bit form "the most significant bit MUST be 0".
            if len & (1 << 63) != 0 {
                return Err(Error::LengthTopBit);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    let mask = if b1 & MASK_BIT != 0 {
        match buf.get(pos..pos + 4) {
            Some(&[a, b, c, d]) => {
                pos += 4;
                Some([a, b, c, d])
            }
            _ => return Ok(None),
        }
    } else {
        None
    };
    let header = FrameHeader {
        fin: b0 & FIN_BIT != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode: b0 & 0x0F,
        mask,
        len,
    };
    Ok(Some((header, pos)))
}

/// XORs `payload` with `mask`, where `payload[0]` is byte number `offset` of the frame's payload.
///
/// The offset lets a payload arriving in pieces be unmasked piece by piece. Eight bytes are done
/// per step through a `u64`; the mask is rotated once so every 8-byte step starts at mask index 0.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let mut wide = [0u8; 8];
    wide[..4].copy_from_slice(&rotated);
    wide[4..].copy_from_slice(&rotated);
    // Native endianness on both sides: the XOR is bytewise, so byte order never matters.
    let wide = u64::from_ne_bytes(wide);

    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Whole 8-byte steps keep the mask phase, so the tail starts at rotated[0] again.
    for (byte, key) in chunks
        .into_remainder()
        .iter_mut()
        .zip(rotated.iter().cycle())
    {
        *byte ^= key;
    }
}

/// The header length a server frame with `len` payload bytes needs.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Writes a server frame header: unmasked, RSV clear, minimal length encoding.
pub fn write_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: usize) {
    let b0 = if fin { FIN_BIT } else { 0 } | (opcode & 0x0F);
    // RFC 6455 §5.1: a server MUST NOT mask any frames that it sends to the client.
    match u16::try_from(len) {
        Ok(short) if short <= 125 => out.extend_from_slice(&[b0, short as u8]),
        Ok(medium) => {
            out.extend_from_slice(&[b0, LEN_16]);
            out.extend_from_slice(&medium.to_be_bytes());
        }
        Err(_) => {
            out.extend_from_slice(&[b0, LEN_64]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Encodes a whole unfragmented server frame in a single allocation of exact size.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    write_header(&mut out, true, opcode, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Encodes a Close frame carrying `code` and as much of `reason` as fits.
///
/// The reason is cut at a char boundary so the payload stays within 125 bytes. A code that may
/// not be sent (1005, 1006, 1015, reserved ranges) yields an empty Close, which means "no status".
pub fn encode_close(code: CloseCode, reason: &str) -> Bytes {
    if !code.is_valid_on_wire() {
        return encode(opcode::CLOSE, &[]);
    }
    // RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less.
    let reason = truncate_at_char_boundary(reason, MAX_CONTROL_PAYLOAD - 2);
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.0.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode(opcode::CLOSE, &payload[..2 + reason.len()])
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Encodes a client frame: masked, with the given RSV bits. For tests, benches and fuzzing.
#[doc(hidden)]
pub fn encode_masked(fin: bool, opcode: u8, rsv: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + 4 + payload.len());
    write_header(&mut out, fin, opcode, payload.len());
    out[0] |= (rsv & 0x07) << 4;
    out[1] |= MASK_BIT;
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    fn parse_all(buf: &[u8]) -> (FrameHeader, usize) {
        match parse_header(buf) {
            Ok(Some(parsed)) => parsed,
            other => panic!("expected a header, got {other:?}"),
        }
    }

    // RFC 6455 §5.7: a single-frame unmasked text message.
    #[test]
    fn rfc_unmasked_hello() {
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F];
        assert_eq!(&encode(opcode::TEXT, b"Hello")[..], &wire);
        let (h, n) = parse_all(&wire);
        assert_eq!(n, 2);
        assert!(h.fin);
        assert_eq!((h.rsv, h.opcode, h.mask, h.len), (0, opcode::TEXT, None, 5));
    }

    // RFC 6455 §5.7: a single-frame masked text message.
    #[test]
    fn rfc_masked_hello() {
        let wire = [
            0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58,
        ];
        assert_eq!(
            encode_masked(true, opcode::TEXT, 0, b"Hello", HELLO_MASK),
            wire
        );
        let (h, n) = parse_all(&wire);
        assert_eq!(n, 6);
        assert_eq!((h.mask, h.len), (Some(HELLO_MASK), 5));
        let mut payload = wire[n..].to_vec();
        apply_mask(&mut payload, HELLO_MASK, 0);
        assert_eq!(payload, b"Hello");
    }

    // RFC 6455 §5.7: a fragmented unmasked text message.
    #[test]
    fn rfc_fragmented_hello() {
        let mut first = Vec::new();
        write_header(&mut first, false, opcode::TEXT, 3);
        first.extend_from_slice(b"Hel");
        assert_eq!(first, [0x01, 0x03, 0x48, 0x65, 0x6C]);
        let mut second = Vec::new();
        write_header(&mut second, true, opcode::CONTINUATION, 2);
        second.extend_from_slice(b"lo");
        assert_eq!(second, [0x80, 0x02, 0x6C, 0x6F]);
        let (h, _) = parse_all(&first);
        assert!(!h.fin);
        let (h, _) = parse_all(&second);
        assert_eq!((h.fin, h.opcode), (true, opcode::CONTINUATION));
    }

    // RFC 6455 §5.7: unmasked Ping and masked Pong, both with body "Hello".
    #[test]
    fn rfc_ping_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F];
        assert_eq!(&encode(opcode::PING, b"Hello")[..], &ping);
        let pong = [
            0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58,
        ];
        assert_eq!(
            encode_masked(true, opcode::PONG, 0, b"Hello", HELLO_MASK),
            pong
        );
    }

    // RFC 6455 §5.7: 256 bytes binary message in a single unmasked frame.
    #[test]
    fn rfc_256_bytes() {
        let payload = vec![0xAB; 256];
        let wire = encode(opcode::BINARY, &payload);
        assert_eq!(&wire[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(wire.len(), 4 + 256);
        assert_eq!(parse_all(&wire), (header(opcode::BINARY, 256), 4));
    }

    // RFC 6455 §5.7: 64KiB binary message in a single unmasked frame.
    #[test]
    fn rfc_64k() {
        let payload = vec![0xCD; 0x10000];
        let wire = encode(opcode::BINARY, &payload);
        let head = [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(&wire[..10], &head);
        assert_eq!(wire.len(), 10 + 0x10000);
        assert_eq!(parse_all(&wire), (header(opcode::BINARY, 0x10000), 10));
    }

    fn header(opcode: u8, len: u64) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len,
        }
    }

    #[test]
    fn length_boundaries_are_minimal() {
        for (len, head) in [(125, 2), (126, 4), (0xFFFF, 4), (0x10000, 10)] {
            let mut out = Vec::new();
            write_header(&mut out, true, opcode::BINARY, len);
            assert_eq!(out.len(), head, "len {len}");
            out.resize(head + len, 0);
            assert_eq!(parse_all(&out), (header(opcode::BINARY, len as u64), head));
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let wire = [0x82, 0x7E, 0x00, 0x05];
        assert_eq!(parse_all(&wire), (header(opcode::BINARY, 5), 4));
        let wire = [0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x05];
        assert_eq!(parse_all(&wire), (header(opcode::BINARY, 5), 10));
    }

    #[test]
    fn length_top_bit_is_rejected() {
        let wire = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0x01, 1, 2, 3, 4];
        assert_eq!(parse_header(&wire), Err(Error::LengthTopBit));
    }

    #[test]
    fn rsv_bits_and_fields() {
        let wire = [0x71, 0x80, 1, 2, 3, 4];
        let (h, n) = parse_all(&wire);
        assert_eq!(n, 6);
        assert_eq!(
            (h.fin, h.rsv, h.opcode, h.mask),
            (false, 0b111, 1, Some([1, 2, 3, 4]))
        );
        assert_eq!(parse_all(&[0xC1, 0x00]).0.rsv, 0b100);
        assert_eq!(parse_all(&[0x91, 0x00]).0.rsv, 0b001);
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let frames = [
            encode_masked(true, opcode::TEXT, 0, b"Hello", HELLO_MASK),
            encode_masked(true, opcode::BINARY, 0, &[0; 300], HELLO_MASK),
            encode_masked(true, opcode::BINARY, 0, &[0; 0x10000], HELLO_MASK),
        ];
        for frame in &frames {
            let (_, n) = parse_all(frame);
            for end in 0..n {
                assert_eq!(parse_header(&frame[..end]), Ok(None), "prefix {end}");
            }
        }
    }

    #[test]
    fn apply_mask_matches_naive_loop() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for offset in 0..8 {
            for len in 0..70 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                apply_mask(&mut fast, mask, offset);
                let naive: Vec<u8> = original
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, naive, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn apply_mask_in_pieces_equals_whole() {
        let mut whole: Vec<u8> = (0..50).collect();
        let mut pieces = whole.clone();
        apply_mask(&mut whole, HELLO_MASK, 0);
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(17);
        apply_mask(a, HELLO_MASK, 0);
        apply_mask(b, HELLO_MASK, 3);
        apply_mask(c, HELLO_MASK, 20);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn close_frames() {
        let bye = encode_close(CloseCode::NORMAL, "bye");
        assert_eq!(&bye[..], &[0x88, 0x05, 0x03, 0xE8, 0x62, 0x79, 0x65]);
        assert_eq!(&encode_close(CloseCode::NO_STATUS, "x")[..], &[0x88, 0x00]);
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        // 61 two-byte chars: 122 bytes fit, the 62nd char would need bytes 123-124.
        let reason = "é".repeat(70);
        let frame = encode_close(CloseCode::GOING_AWAY, &reason);
        assert_eq!(frame[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        let ascii = "a".repeat(200);
        let frame = encode_close(CloseCode::GOING_AWAY, &ascii);
        assert_eq!(frame.len(), 2 + 125);
    }

    #[test]
    fn encode_is_exact_size() {
        for len in [0, 1, 125, 126, 0xFFFF, 0x10000] {
            let payload = vec![0; len];
            let frame = encode(opcode::BINARY, &payload);
            assert_eq!(frame.len(), header_len(len) + len);
        }
    }

    #[test]
    fn tungstenite_reads_our_server_frames() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader as Reference;
        for len in [0, 5, 125, 126, 0xFFFF, 0x10000] {
            let frame = encode(opcode::BINARY, &vec![7; len]);
            let mut cursor = Cursor::new(&frame[..]);
            let parsed = Reference::parse(&mut cursor).ok().flatten();
            let (head, declared) = parsed.unwrap_or_else(|| panic!("len {len} not parsed"));
            assert_eq!(declared, len as u64);
            assert!(head.is_final && head.mask.is_none());
            assert_eq!(cursor.position() as usize, header_len(len));
        }
    }
}
