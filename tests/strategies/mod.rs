//! Generators shared by the property and differential suites.

use proptest::prelude::*;

/// Payload lengths, weighted to the edges of the three length encodings (RFC 6455 §5.2): the
/// 7-bit form up to 125, the 16-bit form from 126 to 65535, the 64-bit form from 65536.
pub fn frame_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..=8,
        4 => 122usize..=130,
        1 => 65533usize..=65538,
        3 => 0usize..=600,
    ]
}

/// `len` bytes from a seed (splitmix64): payloads of 64 KiB without asking proptest for each byte.
pub fn bytes_from(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Valid UTF-8 of exactly `len` bytes, cycling through `pool` (any chars, so 1 to 4 bytes each)
/// and padding with ASCII where the next char would not fit.
pub fn text_of_len(pool: &[char], len: usize) -> String {
    let mut s = String::with_capacity(len);
    for c in pool.iter().cycle() {
        if s.len() >= len {
            break;
        }
        if s.len() + c.len_utf8() <= len {
            s.push(*c);
        } else {
            s.push('a');
        }
    }
    s
}
