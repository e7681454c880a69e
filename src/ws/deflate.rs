//! permessage-deflate (RFC 7692), server side, doing no I/O: agreeing the extension from a
//! client's `Sec-WebSocket-Extensions` offer, compressing one message on its own, and inflating
//! one client message under a hard output cap.
//!
//! herald always agrees `server_no_context_takeover` and `client_no_context_takeover`, so every
//! message, both ways, is compressed against an empty LZ77 window. That is what lets one
//! compressed frame of a push be shared by every compressing recipient (with context takeover
//! each recipient's bytes would differ), and what keeps the per-connection cost of compression at
//! zero: no deflate or inflate window outlives the message it serves. Per-connection zlib
//! windows are the memory that made Socket.IO and `ws` turn compression off by default.
//!
//! It does not choose the threshold below which messages go uncompressed, nor which messages a
//! connection gets compressed; those belong to [`crate::fanout`] and the server loop.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's registered name (RFC 7692 §7).
pub const EXTENSION: &str = "permessage-deflate";

/// RFC 7692 §7.2.1: the empty stored block's tail a sender removes, and a receiver puts back
/// (§7.2.2) before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The LZ77 window herald compresses with, 2^15 bytes: one window for every connection, so one
/// compressed frame serves them all.
const WINDOW_BITS: u8 = 15;

/// Output room handed to the inflater per step; also the most a message can overshoot the cap
/// by before it is refused is one byte, never a step.
const INFLATE_STEP: usize = 16 * 1024;

/// The parameters herald agreed to on one handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The accepted offer carried `server_max_window_bits=15`, which the response must repeat.
    echo_server_max_window_bits: bool,
}

impl Agreed {
    /// The value of the `Sec-WebSocket-Extensions` response header.
    pub fn response_value(&self) -> &'static str {
        // RFC 7692 §7.1.1.1: "A server MAY include the "server_no_context_takeover" extension
        // parameter in an extension negotiation response even if the extension negotiation
        // offer being accepted by the extension negotiation response didn't include [it]."
        // RFC 7692 §7.1.1.2: "By including the "client_no_context_takeover" extension parameter
        // in an extension negotiation response, a server prevents the peer client from using
        // context takeover." It is always asked for: no inflate window outlives a message.
        if self.echo_server_max_window_bits {
            // RFC 7692 §7.1.2.1: "A server accepts an extension negotiation offer with this
            // parameter by including the "server_max_window_bits" extension parameter in the
            // extension negotiation response to send back to the client with the same or
            // smaller value as the offer."
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
    }
}

/// Picks the first `permessage-deflate` offer in a `Sec-WebSocket-Extensions` value that herald
/// can honour, or `None` to decline the extension (always legal, RFC 7692 §5).
///
/// The value is read once, left to right, with no backtracking and no allocation. A value that
/// does not follow RFC 6455 §9.1's grammar declines everything, since its offers' boundaries
/// cannot be trusted.
pub fn negotiate(header: &str) -> Option<Agreed> {
    let mut p = Scanner {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        // RFC 7230 §7: a recipient MUST accept (and ignore) empty list elements.
        loop {
            p.skip_space();
            if !p.eat(b',') {
                break;
            }
        }
        if p.done() {
            return None;
        }
        let name = p.token()?;
        let mut offer = name.eq_ignore_ascii_case(EXTENSION).then(Offer::default);
        loop {
            p.skip_space();
            if p.eat(b';') {
                p.skip_space();
                let param = p.token()?;
                p.skip_space();
                let value = if p.eat(b'=') {
                    p.skip_space();
                    Some(p.value()?)
                } else {
                    None
                };
                offer = offer.and_then(|o| o.with(param, value));
            } else if p.eat(b',') || p.done() {
                break;
            } else {
                return None;
            }
        }
        if let Some(offer) = offer {
            return Some(offer.agreed());
        }
    }
}

/// The parameters of one `permessage-deflate` offer seen so far.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: bool,
    client_max_window_bits: bool,
}

impl Offer {
    /// Adds parameter `name`; `None` declines the offer.
    ///
    /// RFC 7692 §7: "A server MUST decline an extension negotiation offer for this extension if
    /// any of the following conditions are met: The negotiation offer contains an extension
    /// parameter not defined for use in an offer. The negotiation offer has an extension
    /// parameter with an invalid value. The negotiation offer has multiple extension parameters
    /// with the same name. The server doesn't support the offered configuration."
    fn with(mut self, name: &str, value: Option<Value<'_>>) -> Option<Self> {
        let seen = match name {
            "server_no_context_takeover" if value.is_none() => &mut self.server_no_context_takeover,
            "client_no_context_takeover" if value.is_none() => &mut self.client_no_context_takeover,
            "server_max_window_bits" => {
                // One compressed frame serves every connection, so herald compresses with one
                // window, 2^15; a smaller one is an offered configuration it does not support.
                if window_bits(value?)? != WINDOW_BITS {
                    return None;
                }
                &mut self.server_max_window_bits
            }
            "client_max_window_bits" => {
                // With or without a value: herald inflates with the largest window, so whatever
                // the client uses is fine and the response leaves the parameter out (§7.1.2.2).
                if let Some(v) = value {
                    window_bits(v)?;
                }
                &mut self.client_max_window_bits
            }
            _ => return None,
        };
        if std::mem::replace(seen, true) {
            return None;
        }
        Some(self)
    }

    fn agreed(&self) -> Agreed {
        Agreed {
            echo_server_max_window_bits: self.server_max_window_bits,
        }
    }
}

/// A window size parameter's value: RFC 7692 §7.1.2.1 "a decimal integer value [...] in the
/// range between 8 to 15 inclusive", written without leading zeros.
fn window_bits(v: Value<'_>) -> Option<u8> {
    let Value::Token(s) = v else {
        return None;
    };
    if s.starts_with('0') || s.len() > 2 {
        return None;
    }
    s.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// An extension parameter's value.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    /// A token, or a quoted-string whose content is a token and has no escapes.
    Token(&'a str),
    /// Anything else: syntactically fine, but never a value herald accepts.
    Other,
}

/// A cursor over a header value.
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// A non-empty RFC 7230 token, or `None`.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|&b| is_tchar(b)) {
            self.i += 1;
        }
        // tchars are ASCII, so the slice is valid UTF-8.
        (self.i > start)
            .then(|| std::str::from_utf8(&self.s[start..self.i]).ok())
            .flatten()
    }

    /// A token or a quoted-string, or `None` when neither is there.
    fn value(&mut self) -> Option<Value<'a>> {
        if !self.eat(b'"') {
            return self.token().map(Value::Token);
        }
        let start = self.i;
        let mut plain = true;
        loop {
            match *self.s.get(self.i)? {
                b'"' => break,
                b'\\' => {
                    // RFC 7230 §3.2.6 quoted-pair; the escaped octet is skipped, and the value
                    // is not one herald accepts (RFC 6455 §9.1 wants a token after unescaping,
                    // and no valid parameter value needs an escape).
                    plain = false;
                    self.i += 1;
                    self.s.get(self.i)?;
                }
                b => plain &= is_tchar(b),
            }
            self.i += 1;
        }
        let inner = &self.s[start..self.i];
        self.i += 1;
        Some(match std::str::from_utf8(inner) {
            Ok(s) if plain && !s.is_empty() => Value::Token(s),
            _ => Value::Other,
        })
    }
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Compresses messages one at a time, each on its own (`server_no_context_takeover`).
///
/// One per event loop: its window and hash tables (a few hundred KiB) are reused for every
/// message rather than held per connection.
pub struct Compressor {
    inner: Compress,
}

/// The compressor failed; the message goes out uncompressed instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressError;

impl Compressor {
    /// A compressor at zlib `level` (0 = store, 1 = fastest, 9 = smallest).
    pub fn new(level: u32) -> Self {
        Compressor {
            inner: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// Appends the compressed payload of one message, the concatenation of `parts`, to `out`.
    /// On error `out` is left as it was.
    pub fn compress(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), CompressError> {
        let start = out.len();
        // Each message starts from an empty window: what server_no_context_takeover promises.
        self.inner.reset();
        let result = self.run(parts, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn run(
        &mut self,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), CompressError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        out.reserve(total / 2 + 64);
        for part in parts {
            let mut input = *part;
            while !input.is_empty() {
                if out.capacity() - out.len() < 64 {
                    out.reserve(out.capacity().max(64));
                }
                let before = self.inner.total_in();
                self.inner
                    .compress_vec(input, out, FlushCompress::None)
                    .map_err(|_| CompressError)?;
                let used = (self.inner.total_in() - before) as usize;
                input = &input[used..];
            }
        }
        // RFC 7692 §7.2.1: "If the resulting data does not end with an empty DEFLATE block with
        // no compression (the "BTYPE" bits are set to 00), append an empty DEFLATE block with no
        // compression to the tail end." A sync flush ends the data with exactly that block.
        loop {
            out.reserve(out.capacity().max(64));
            self.inner
                .compress_vec(&[], out, FlushCompress::Sync)
                .map_err(|_| CompressError)?;
            // Output room left over means the flush is complete.
            if out.len() < out.capacity() {
                break;
            }
        }
        // "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end."
        if out.len() < start + TAIL.len() || !out.ends_with(&TAIL) {
            return Err(CompressError);
        }
        out.truncate(out.len() - TAIL.len());
        Ok(())
    }
}

/// Why a compressed client message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Inflating would take the message past `max` bytes.
    TooLong { max: usize },
    /// The data is not valid DEFLATE.
    Corrupt,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooLong { max } => {
                write!(f, "decompressed message exceeds the limit of {max} bytes")
            }
            InflateError::Corrupt => f.write_str("compressed message is not valid DEFLATE data"),
        }
    }
}

/// Inflates one compressed client message as its bytes arrive.
///
/// Exists only while such a message is in flight: the agreed `client_no_context_takeover`
/// means the next message starts from an empty window, so nothing is kept between messages.
pub struct Inflater {
    inner: Decompress,
    /// The DEFLATE data ended (a block with BFINAL set); anything after it is ignored.
    ended: bool,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.inner.total_in())
            .field("total_out", &self.inner.total_out())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            inner: Decompress::new(false),
            ended: false,
        }
    }

    /// Compressed bytes taken in so far.
    pub fn total_in(&self) -> u64 {
        self.inner.total_in()
    }

    /// Inflates `input`, the next compressed bytes of the message, appending to `out`. Fails
    /// as soon as `out` would exceed `max` bytes, having grown it to at most `max + 1`.
    pub fn update(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        while !self.ended {
            let room = (max + 1).saturating_sub(out.len()).min(INFLATE_STEP);
            let len = out.len();
            out.resize(len + room, 0);
            let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(input, &mut out[len..], FlushDecompress::None);
            let consumed = (self.inner.total_in() - in0) as usize;
            let produced = (self.inner.total_out() - out0) as usize;
            out.truncate(len + produced);
            input = &input[consumed..];
            if out.len() > max {
                return Err(InflateError::TooLong { max });
            }
            match status {
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(_) => {
                    // Output room to spare means the inflater holds nothing back; with the
                    // input used up, this step is done.
                    if input.is_empty() && produced < room {
                        return Ok(());
                    }
                    if consumed == 0 && produced == 0 {
                        return Err(InflateError::Corrupt);
                    }
                }
                Err(_) => return Err(InflateError::Corrupt),
            }
        }
        Ok(())
    }

    /// Ends the message. RFC 7692 §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail
    /// end of the payload of the message. Decompress the resulting data using DEFLATE."
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        self.update(&TAIL, out, max)
    }
}

/// Inflates one whole compressed message payload, refusing output over `max` bytes.
pub fn inflate(payload: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let mut inflater = Inflater::new();
    inflater.update(payload, &mut out, max)?;
    inflater.finish(&mut out, max)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(header: &str) -> Option<String> {
        negotiate(header).map(|a| format!("Sec-WebSocket-Extensions: {}\r\n", a.response_value()))
    }

    const PLAIN: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
                         server_no_context_takeover; client_no_context_takeover\r\n";
    const WITH_BITS: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
                             server_no_context_takeover; client_no_context_takeover; \
                             server_max_window_bits=15\r\n";

    macro_rules! negotiates {
        ($($name:ident: $offer:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(accepted($offer).as_deref(), $want, "offer {:?}", $offer);
            }
        )*};
    }

    negotiates! {
        bare: "permessage-deflate" => Some(PLAIN);
        chromium: "permessage-deflate; client_max_window_bits" => Some(PLAIN);
        node_ws: "permessage-deflate; client_max_window_bits" => Some(PLAIN);
        no_space: "permessage-deflate;client_max_window_bits=10" => Some(PLAIN);
        both_no_context: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            => Some(PLAIN);
        server_bits_15: "permessage-deflate; server_max_window_bits=15" => Some(WITH_BITS);
        server_bits_quoted: "permessage-deflate; server_max_window_bits=\"15\"" => Some(WITH_BITS);
        // A smaller server window cannot be honoured; the next offer is a fallback.
        server_bits_10_declined: "permessage-deflate; server_max_window_bits=10" => None;
        fallback_offer: "permessage-deflate; server_max_window_bits=10, permessage-deflate"
            => Some(PLAIN);
        other_extension_first: "x-webkit-deflate-frame, permessage-deflate" => Some(PLAIN);
        other_extension_only: "x-webkit-deflate-frame; no_context_takeover" => None;
        case_of_name: "PerMessage-Deflate" => Some(PLAIN);
        empty_elements: ", ,permessage-deflate ," => Some(PLAIN);
        unknown_param: "permessage-deflate; mystery" => None;
        param_case_matters: "permessage-deflate; Client_Max_Window_Bits" => None;
        duplicate_param: "permessage-deflate; client_max_window_bits; client_max_window_bits" => None;
        value_on_flag: "permessage-deflate; server_no_context_takeover=1" => None;
        missing_server_bits_value: "permessage-deflate; server_max_window_bits" => None;
        bits_too_small: "permessage-deflate; client_max_window_bits=7" => None;
        bits_too_large: "permessage-deflate; client_max_window_bits=16" => None;
        bits_leading_zero: "permessage-deflate; client_max_window_bits=09" => None;
        bits_escaped: "permessage-deflate; server_max_window_bits=\"1\\5\"" => None;
        syntax_error_declines_all: "permessage-deflate; =15" => None;
        unterminated_quote: "permessage-deflate; client_max_window_bits=\"15" => None;
        stray_byte: "permessage-deflate @" => None;
        empty: "" => None;
    }

    #[test]
    fn negotiation_is_linear_on_hostile_input() {
        // Thousands of parameters and elements: one pass, no allocation per item.
        let many = format!("{}permessage-deflate", "a; b=\"c\", ".repeat(10_000));
        assert_eq!(accepted(&many).as_deref(), Some(PLAIN));
        let bad = "permessage-deflate; x".repeat(10_000);
        assert_eq!(accepted(&bad), None);
    }

    /// RFC 7692 §7.2.3.1: "Hello" compressed with a compressed block.
    const HELLO: [u8; 7] = [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00];

    #[test]
    fn rfc_hello_inflates() {
        assert_eq!(inflate(&HELLO, 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_hello_in_a_stored_block() {
        // RFC 7692 §7.2.3.3: "Hello" in a DEFLATE block with no compression.
        let stored = [
            0x00, 0x05, 0x00, 0xFA, 0xFF, 0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x00,
        ];
        assert_eq!(inflate(&stored, 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_hello_with_bfinal() {
        // RFC 7692 §7.2.3.4: a block with BFINAL set; the appended tail is ignored.
        let bfinal = [0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&bfinal, 100).unwrap(), b"Hello");
    }

    #[test]
    fn inflate_split_anywhere() {
        for at in 0..=HELLO.len() {
            let mut out = Vec::new();
            let mut inf = Inflater::new();
            inf.update(&HELLO[..at], &mut out, 100).unwrap();
            inf.update(&HELLO[at..], &mut out, 100).unwrap();
            inf.finish(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello", "split at {at}");
        }
    }

    #[test]
    fn compress_strips_the_tail_and_round_trips() {
        let mut c = Compressor::new(1);
        let mut out = Vec::new();
        c.compress(&[b"Hel", b"lo"], &mut out).unwrap();
        assert!(!out.ends_with(&TAIL));
        assert_eq!(inflate(&out, 100).unwrap(), b"Hello");
        // Every message stands alone: the same input gives the same bytes again.
        let mut again = Vec::new();
        c.compress(&[b"Hello"], &mut again).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn compress_large_and_incompressible() {
        let mut c = Compressor::new(1);
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut out = b"prefix".to_vec();
        c.compress(&[&text[..1000], &text[1000..]], &mut out)
            .unwrap();
        assert_eq!(&out[..6], b"prefix", "compress appends");
        assert_eq!(inflate(&out[6..], text.len()).unwrap(), text);
        let mut noise = vec![0u8; 50_000];
        let mut x = 0x1234_5678u32;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let mut out = Vec::new();
        c.compress(&[&noise], &mut out).unwrap();
        assert_eq!(inflate(&out, noise.len()).unwrap(), noise);
    }

    #[test]
    fn bomb_is_refused_at_the_cap() {
        let mut c = Compressor::new(9);
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        c.compress(&[&zeros], &mut bomb).unwrap();
        assert!(
            bomb.len() < 20_000,
            "10 MiB of zeros deflates to {}",
            bomb.len()
        );
        let mut out = Vec::new();
        let mut inf = Inflater::new();
        let err = inf.update(&bomb, &mut out, 1000).unwrap_err();
        assert_eq!(err, InflateError::TooLong { max: 1000 });
        assert!(out.len() <= 1001 && out.capacity() < 1000 + INFLATE_STEP);
        // Exactly at the cap is fine.
        assert_eq!(inflate(&bomb, 10 << 20).unwrap().len(), 10 << 20);
        assert!(inflate(&bomb, (10 << 20) - 1).is_err());
    }

    #[test]
    fn corrupt_data_is_refused() {
        // BTYPE 11 is reserved.
        assert_eq!(
            inflate(&[0xFF, 0xFF, 0xFF], 100),
            Err(InflateError::Corrupt)
        );
        // A stored block whose NLEN is not LEN's complement.
        assert_eq!(
            inflate(&[0x00, 0x05, 0x00, 0x00, 0x00, 0x48], 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn empty_message() {
        let mut c = Compressor::new(1);
        let mut out = Vec::new();
        c.compress(&[], &mut out).unwrap();
        assert_eq!(inflate(&out, 0).unwrap(), b"");
        // A single 0x00 byte is the shortest empty message: with the tail restored, an empty
        // stored block.
        assert_eq!(inflate(&[0x00], 0).unwrap(), b"");
    }
}
