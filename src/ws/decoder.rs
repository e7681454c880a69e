//! The streaming message decoder: client bytes in, whole messages and control frames out.

use crate::ws::close::CloseCode;
use crate::ws::deflate::{InflateError, Inflater};
use crate::ws::error::Error;
use crate::ws::frame::{self, opcode, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};

/// RSV1: permessage-deflate's "Per-Message Compressed" bit, within [`FrameHeader::rsv`].
const RSV1: u8 = 0b100;

/// Compressed payload bytes unmasked at a time on their way to the inflater.
const UNMASK_CHUNK: usize = 4096;

/// Frames one data message may span unless [`Decoder::with_max_fragments`] says otherwise.
///
/// Browsers and WebSocket libraries send a message as one frame, or cut it into a few large
/// ones; a thousand fragments is already far past any honest client.
pub const DEFAULT_MAX_FRAGMENTS: u32 = 1024;

/// What a completed stretch of client bytes amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, reassembled and UTF-8 validated.
    Text(String),
    /// A whole binary message, reassembled.
    Binary(Vec<u8>),
    /// A Ping and its application data (at most 125 bytes).
    Ping(Vec<u8>),
    /// A Pong and its application data (at most 125 bytes).
    Pong(Vec<u8>),
    /// A Close, with its status code and reason when the frame had a body.
    Close(Option<(CloseCode, String)>),
}

/// The frame whose payload is arriving.
#[derive(Debug)]
struct Payload {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Payload bytes of this frame still to come.
    remaining: u64,
    /// Payload bytes of this frame already unmasked: the mask phase of the next byte.
    seen: usize,
}

/// Whether the decoder still accepts bytes, or why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Failed(Error),
}

/// Decodes the client-to-server byte stream of one WebSocket connection (RFC 6455 §5).
///
/// # Calling order
///
/// Feed every byte read from the socket, in order:
///
/// ```
/// # use herald::ws::{Decoder, Event, Error};
/// # fn handle(_: Option<Event>) {}
/// # fn run(dec: &mut Decoder, mut input: &[u8]) -> Result<(), Error> {
/// while !input.is_empty() {
///     let (n, ev) = dec.decode(input)?;
///     input = &input[n..];
///     handle(ev);
/// }
/// # Ok(()) }
/// ```
///
/// `decode` stops right after the byte that completes an event. When no event completes it
/// consumes all of `input`: a partial header (at most 14 bytes) is copied into the decoder and a
/// partial payload is unmasked into its message buffer, so the caller never keeps leftovers.
/// As a result the same bytes, split at any positions across calls, give the same events and
/// the same error.
///
/// After an error or a Close event the decoder is finished: a later call returns the same error
/// again, or, after a Close, consumes its input without events. What follows a Close on the wire
/// is the caller's to discard.
///
/// Memory: a data message grows only as its payload bytes arrive, never from a declared length,
/// and the buffers are released when the message completes, so an idle decoder holds no heap.
///
/// Work: a data message spans at most `max_fragments` frames, so a peer cannot keep one message
/// open forever with empty continuations that cost it six bytes each and add nothing to the
/// size the length limit sees.
#[derive(Debug)]
pub struct Decoder {
    /// Upper bound on a data message's total payload, checked from each frame header.
    max_message: u64,
    /// Upper bound on the frames of one data message: its first frame and its continuations.
    /// Control frames between fragments are not part of the message and do not count.
    max_fragments: u32,
    /// Frames of the data message in progress so far, its first one included; 0 between
    /// messages. Never exceeds `max_fragments`: the frame that would is refused.
    fragments: u32,
    /// permessage-deflate was agreed: RSV1 on a message's first frame marks it compressed.
    deflate: bool,
    /// The inflater of the compressed data message arriving, if it is compressed. It lives only
    /// as long as that message (the agreed `client_no_context_takeover`).
    inflater: Option<Box<Inflater>>,
    /// Bytes of a header split across calls; only the first `head_len` are meaningful.
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    /// The frame whose payload is arriving, once its header has been accepted.
    frame: Option<Payload>,
    /// The opcode (TEXT or BINARY) of the data message being reassembled, if any.
    message: Option<u8>,
    /// The unmasked payload of the data message so far.
    buf: Vec<u8>,
    /// `buf[..checked]` is known to be valid UTF-8 (text messages only); what follows is at most
    /// an incomplete sequence still waiting for bytes.
    checked: usize,
    /// The last data message completed had arrived compressed.
    last_compressed: bool,
    /// The unmasked payload of the control frame arriving, at most 125 bytes.
    control: Vec<u8>,
    state: State,
}

impl Decoder {
    /// A decoder accepting data messages of up to `max_message` payload bytes, in at most
    /// [`DEFAULT_MAX_FRAGMENTS`] frames each.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message: max_message as u64,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            fragments: 0,
            deflate: false,
            inflater: None,
            last_compressed: false,
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            frame: None,
            message: None,
            buf: Vec::new(),
            checked: 0,
            control: Vec::new(),
            state: State::Open,
        }
    }

    /// Accepts data messages of at most `max` frames each (the first frame and its
    /// continuations); the frame after those fails the decoder with
    /// [`Error::TooManyFragments`]. With 0 no data message is accepted at all.
    pub fn with_max_fragments(mut self, max: u32) -> Self {
        self.max_fragments = max;
        self
    }

    /// Accepts messages compressed with the permessage-deflate agreed on the handshake.
    pub fn enable_deflate(&mut self) {
        self.deflate = true;
    }

    /// Whether the data message last returned had arrived compressed.
    pub fn message_was_compressed(&self) -> bool {
        self.last_compressed
    }

    /// True when the decoder holds no buffered bytes (no partial header, frame or message) and
    /// therefore no heap memory.
    pub fn is_idle(&self) -> bool {
        self.head_len == 0
            && self.frame.is_none()
            && self.message.is_none()
            && self.inflater.is_none()
            && self.buf.capacity() == 0
            && self.control.capacity() == 0
    }

    /// Consumes a prefix of `input` and returns how much, with the event that prefix completed.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), Error> {
        match &self.state {
            State::Open => {}
            State::Closed => return Ok((input.len(), None)),
            State::Failed(err) => return Err(err.clone()),
        }
        let result = self.decode_open(input);
        match &result {
            Err(err) => {
                self.state = State::Failed(err.clone());
                self.release();
            }
            Ok((_, Some(Event::Close(_)))) => {
                self.state = State::Closed;
                self.release();
            }
            Ok(_) => {}
        }
        result
    }

    fn decode_open(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), Error> {
        let mut pos = 0;
        loop {
            if self.frame.is_none() {
                match self.read_header(&input[pos..])? {
                    (n, Some(header)) => {
                        pos += n;
                        self.start_frame(header)?;
                    }
                    (n, None) => return Ok((pos + n, None)),
                }
            }
            // `start_frame` succeeded, so a frame is current; should that ever not hold, going
            // round reads the next header instead of panicking.
            let Some(frame) = self.frame.as_mut() else {
                continue;
            };
            let available = input.len() - pos;
            let take = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
            let chunk = &input[pos..pos + take];
            pos += take;
            frame.remaining -= take as u64;
            let (mask, seen, fin) = (frame.mask, frame.seen, frame.fin);
            frame.seen += take;
            let done = frame.remaining == 0;
            let is_control = opcode::is_control(frame.opcode);
            if is_control {
                let start = self.control.len();
                self.control.extend_from_slice(chunk);
                frame::apply_mask(&mut self.control[start..], mask, seen);
            } else {
                if self.inflater.is_some() {
                    self.inflate(chunk, mask, seen, done && fin)?;
                } else {
                    let start = self.buf.len();
                    self.buf.extend_from_slice(chunk);
                    frame::apply_mask(&mut self.buf[start..], mask, seen);
                }
                if self.message == Some(opcode::TEXT) {
                    // Checked as bytes arrive, so a bad byte fails the connection at once rather
                    // than after the rest of a large message has been buffered.
                    self.check_utf8(done && fin)?;
                }
            }
            if done {
                if let Some(event) = self.finish_frame()? {
                    return Ok((pos, Some(event)));
                }
            } else {
                // Not done means the input ran out before the payload did.
                return Ok((pos, None));
            }
        }
    }

    /// Reads a header from the stashed bytes plus `input`. Returns the bytes of `input` used and
    /// the header when complete; when incomplete, all of `input` has been stashed.
    fn read_header(&mut self, input: &[u8]) -> Result<(usize, Option<FrameHeader>), Error> {
        if self.head_len == 0 {
            if let Some((header, n)) = frame::parse_header(input)? {
                return Ok((n, Some(header)));
            }
            // Incomplete headers are shorter than MAX_HEADER_LEN, so the copy always fits.
            let n = input.len().min(MAX_HEADER_LEN);
            self.head[..n].copy_from_slice(&input[..n]);
            self.head_len = n;
            return Ok((n, None));
        }
        let have = self.head_len;
        let take = input.len().min(MAX_HEADER_LEN - have);
        self.head[have..have + take].copy_from_slice(&input[..take]);
        match frame::parse_header(&self.head[..have + take])? {
            Some((header, n)) => {
                self.head_len = 0;
                Ok((n - have, Some(header)))
            }
            None => {
                self.head_len = have + take;
                Ok((take, None))
            }
        }
    }

    /// Judges a complete header against the connection's state and makes it the current frame.
    fn start_frame(&mut self, h: FrameHeader) -> Result<(), Error> {
        // RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is not
        // masked."
        let Some(mask) = h.mask else {
            return Err(Error::UnmaskedFrame);
        };
        let allowed_rsv = if self.deflate { RSV1 } else { 0 };
        // RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines
        // meanings for non-zero values."
        if h.rsv & !allowed_rsv != 0 {
            return Err(Error::ReservedBits);
        }
        let compressed = h.rsv & RSV1 != 0;
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
        // frames and non-first fragments of a data message. An endpoint receiving such a frame
        // MUST _Fail the WebSocket Connection_."
        if compressed && (opcode::is_control(h.opcode) || h.opcode == opcode::CONTINUATION) {
            return Err(Error::MisplacedCompressedBit);
        }
        match h.opcode {
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or
                // less and MUST NOT be fragmented."
                if !h.fin {
                    return Err(Error::FragmentedControlFrame);
                }
                if h.len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(Error::ControlFrameTooLong);
                }
                // RFC 6455 §5.4: control frames MAY be injected in the middle of a fragmented
                // message; they use their own buffer so the message in progress is untouched.
            }
            opcode::CONTINUATION => {
                // RFC 6455 §5.4: a fragmented message is an initial frame with FIN clear followed
                // by continuation frames; a continuation on its own belongs to no message.
                if self.message.is_none() {
                    return Err(Error::UnexpectedContinuation);
                }
                self.count_fragment()?;
                self.check_size(h.len)?;
            }
            opcode::TEXT | opcode::BINARY => {
                // RFC 6455 §5.4: "The fragments of one message MUST NOT be interleaved between
                // the fragments of another message unless an extension has been negotiated".
                if self.message.is_some() {
                    return Err(Error::ExpectedContinuation);
                }
                self.fragments = 0;
                self.count_fragment()?;
                self.check_size(h.len)?;
                self.message = Some(h.opcode);
                self.checked = 0;
                self.last_compressed = compressed;
                if compressed {
                    self.inflater = Some(Box::default());
                }
            }
            // RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint MUST
            // _Fail the WebSocket Connection_."
            other => return Err(Error::UnknownOpcode(other)),
        }
        self.frame = Some(Payload {
            fin: h.fin,
            opcode: h.opcode,
            mask,
            remaining: h.len,
            seen: 0,
        });
        Ok(())
    }

    /// Counts one more frame of the data message in progress, refusing the one past the limit.
    fn count_fragment(&mut self) -> Result<(), Error> {
        // RFC 6455 §5.4: "A fragmented message consists of a single frame with the FIN bit clear
        // and an opcode other than 0, followed by zero or more frames with the FIN bit clear and
        // the opcode set to 0". Nothing bounds the "zero or more", and empty continuations slip
        // under the length limit. §10.4 names the attack: "a malicious endpoint can try to
        // exhaust its peer's memory or mount a denial-of-service attack by [...] sending a long
        // stream of small frames that are a part of a fragmented message", and implementations
        // "MUST protect themselves against exceeding those limits".
        if self.fragments >= self.max_fragments {
            return Err(Error::TooManyFragments {
                max: self.max_fragments,
            });
        }
        self.fragments += 1;
        Ok(())
    }

    /// Rejects a data frame whose declared length would take the message over the limit, before
    /// any of its payload is buffered.
    fn check_size(&self, len: u64) -> Result<(), Error> {
        // RFC 6455 §10.4: implementations SHOULD impose a limit on frame sizes and the total
        // message size after reassembly from multiple frames. A compressed message's wire bytes
        // are held to the same limit as its inflated ones.
        let so_far = match &self.inflater {
            Some(inflater) => inflater.total_in(),
            None => self.buf.len() as u64,
        };
        let size = so_far.saturating_add(len);
        if size > self.max_message {
            return Err(Error::MessageTooLong {
                size,
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// Unmasks and inflates a chunk of a compressed message's payload into the message buffer;
    /// `last` marks the end of the message. The compressed bytes pass through a small stack
    /// buffer and are never held, and the inflated ones never exceed the limit by more than one
    /// byte.
    fn inflate(
        &mut self,
        chunk: &[u8],
        mask: [u8; 4],
        seen: usize,
        last: bool,
    ) -> Result<(), Error> {
        let Some(inflater) = self.inflater.as_mut() else {
            return Ok(());
        };
        let max = usize::try_from(self.max_message).unwrap_or(usize::MAX);
        let mut scratch = [0u8; UNMASK_CHUNK];
        let mut offset = seen;
        let mut result = Ok(());
        for piece in chunk.chunks(UNMASK_CHUNK) {
            let unmasked = &mut scratch[..piece.len()];
            unmasked.copy_from_slice(piece);
            frame::apply_mask(unmasked, mask, offset);
            offset += piece.len();
            result = inflater.update(unmasked, &mut self.buf, max);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && last {
            result = inflater.finish(&mut self.buf, max);
            self.inflater = None;
        }
        result.map_err(|e| self.inflate_fault(e))
    }

    /// The error answering an inflate fault. Text inflated before the fault is checked first, so
    /// that a bad UTF-8 sequence in it is the verdict however the input was split: had the bytes
    /// arrived in smaller pieces, it would have been found before the fault was reached.
    fn inflate_fault(&mut self, e: InflateError) -> Error {
        if self.message == Some(opcode::TEXT) {
            if let Err(utf8) = self.check_utf8(false) {
                return utf8;
            }
        }
        match e {
            InflateError::TooLong { .. } => Error::InflatedTooLong {
                max: self.max_message,
            },
            InflateError::Corrupt => Error::BadCompressedData,
        }
    }

    /// Validates the text bytes appended since the last check. `complete` marks the end of the
    /// message, where an unfinished sequence is no longer allowed.
    fn check_utf8(&mut self, complete: bool) -> Result<(), Error> {
        match std::str::from_utf8(&self.buf[self.checked..]) {
            Ok(_) => self.checked = self.buf.len(),
            // RFC 6455 §8.1: on finding that a text byte stream is not valid UTF-8 the endpoint
            // MUST _Fail the WebSocket Connection_. An impossible byte fails at once.
            Err(e) if e.error_len().is_some() => return Err(Error::InvalidUtf8),
            // RFC 6455 §5.6: "a particular text frame might include a partial UTF-8 sequence;
            // however, the whole message MUST contain valid UTF-8."
            Err(_) if complete => return Err(Error::InvalidUtf8),
            Err(e) => self.checked += e.valid_up_to(),
        }
        Ok(())
    }

    /// Called when the current frame's payload is complete: yields its event, if it ends one.
    fn finish_frame(&mut self) -> Result<Option<Event>, Error> {
        let Some(done) = self.frame.take() else {
            return Ok(None);
        };
        let event = match done.opcode {
            opcode::PING => Event::Ping(std::mem::take(&mut self.control)),
            opcode::PONG => Event::Pong(std::mem::take(&mut self.control)),
            opcode::CLOSE => Event::Close(parse_close(&std::mem::take(&mut self.control))?),
            _ if !done.fin => return Ok(None),
            _ => {
                // Taking the buffer hands its memory to the event and leaves the decoder empty.
                let payload = std::mem::take(&mut self.buf);
                self.checked = 0;
                self.fragments = 0;
                match self.message.take() {
                    Some(opcode::TEXT) => {
                        Event::Text(String::from_utf8(payload).map_err(|_| Error::InvalidUtf8)?)
                    }
                    _ => Event::Binary(payload),
                }
            }
        };
        Ok(Some(event))
    }

    /// Drops every buffer once the decoder is finished.
    fn release(&mut self) {
        self.head_len = 0;
        self.frame = None;
        self.message = None;
        self.fragments = 0;
        self.inflater = None;
        self.buf = Vec::new();
        self.checked = 0;
        self.control = Vec::new();
    }
}

/// Reads a Close frame's body: nothing, or a status code followed by a UTF-8 reason.
fn parse_close(body: &[u8]) -> Result<Option<(CloseCode, String)>, Error> {
    match body {
        [] => Ok(None),
        // RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
        // unsigned integer (in network byte order) representing a status code".
        [_] => Err(Error::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            // RFC 6455 §7.4.1: 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close
            // control frame by an endpoint"; the reserved ranges carry no meaning either.
            if !code.is_valid_on_wire() {
                return Err(Error::InvalidCloseCode(code.0));
            }
            // RFC 6455 §5.5.1: the body "MAY contain UTF-8-encoded data with value /reason/".
            let reason = std::str::from_utf8(reason).map_err(|_| Error::InvalidCloseReason)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_masked;

    const LIMIT: usize = 1 << 10;
    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        encode_masked(fin, op, 0, payload, MASK)
    }

    fn cat(frames: &[&[u8]]) -> Vec<u8> {
        frames.concat()
    }

    /// A masked frame whose length uses the 64-bit form even though it is short, so the longest
    /// header shape can be exercised without 64 KiB payloads.
    fn frame_len64(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | op, 0x80 | 0x7F];
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&MASK);
        let start = out.len();
        out.extend_from_slice(payload);
        frame::apply_mask(&mut out[start..], MASK, 0);
        out
    }

    use crate::fuzzing::decode_reads as run;

    fn run_whole(bytes: &[u8]) -> (Vec<Event>, Option<Error>) {
        run(&mut Decoder::new(LIMIT), [bytes])
    }

    fn text(s: &str) -> Event {
        Event::Text(s.to_owned())
    }

    macro_rules! refused {
        ($($name:ident: $bytes:expr => $err:expr, $code:expr;)*) => {$(
            #[test]
            fn $name() {
                let (_, err) = run_whole(&$bytes);
                assert_eq!(err, Some($err));
                assert_eq!(CloseCode::from(&$err), $code);
            }
        )*};
    }

    refused! {
        unmasked_frame: [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F]
            => Error::UnmaskedFrame, CloseCode::PROTOCOL_ERROR;
        rsv1_set: encode_masked(true, opcode::TEXT, 0b100, b"x", MASK)
            => Error::ReservedBits, CloseCode::PROTOCOL_ERROR;
        rsv2_set: encode_masked(true, opcode::TEXT, 0b010, b"x", MASK)
            => Error::ReservedBits, CloseCode::PROTOCOL_ERROR;
        rsv3_set: encode_masked(true, opcode::PING, 0b001, b"", MASK)
            => Error::ReservedBits, CloseCode::PROTOCOL_ERROR;
        opcode_3: frame(true, 0x3, b"") => Error::UnknownOpcode(0x3), CloseCode::PROTOCOL_ERROR;
        opcode_b: frame(true, 0xB, b"") => Error::UnknownOpcode(0xB), CloseCode::PROTOCOL_ERROR;
        ping_of_126: frame(true, opcode::PING, &[0x00; 126])
            => Error::ControlFrameTooLong, CloseCode::PROTOCOL_ERROR;
        fragmented_ping: frame(false, opcode::PING, b"")
            => Error::FragmentedControlFrame, CloseCode::PROTOCOL_ERROR;
        stray_continuation: frame(true, opcode::CONTINUATION, b"x")
            => Error::UnexpectedContinuation, CloseCode::PROTOCOL_ERROR;
        continuation_after_complete_message: cat(&[
            &frame(true, opcode::TEXT, b"a"),
            &frame(true, opcode::CONTINUATION, b"b"),
        ]) => Error::UnexpectedContinuation, CloseCode::PROTOCOL_ERROR;
        text_while_fragmented: cat(&[
            &frame(false, opcode::TEXT, b"a"),
            &frame(true, opcode::TEXT, b"b"),
        ]) => Error::ExpectedContinuation, CloseCode::PROTOCOL_ERROR;
        length_top_bit: [0x82, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x37, 0xFA]
            => Error::LengthTopBit, CloseCode::PROTOCOL_ERROR;
        close_one_byte: frame(true, opcode::CLOSE, &[0x03])
            => Error::BadClosePayload, CloseCode::PROTOCOL_ERROR;
        close_1005: frame(true, opcode::CLOSE, &[0x03, 0xED])
            => Error::InvalidCloseCode(1005), CloseCode::PROTOCOL_ERROR;
        close_999: frame(true, opcode::CLOSE, &[0x03, 0xE7])
            => Error::InvalidCloseCode(999), CloseCode::PROTOCOL_ERROR;
        close_2999: frame(true, opcode::CLOSE, &[0x0B, 0xB7])
            => Error::InvalidCloseCode(2999), CloseCode::PROTOCOL_ERROR;
        close_5000: frame(true, opcode::CLOSE, &[0x13, 0x88])
            => Error::InvalidCloseCode(5000), CloseCode::PROTOCOL_ERROR;
        close_bad_reason: frame(true, opcode::CLOSE, &[0x03, 0xE8, 0x62, 0xFF])
            => Error::InvalidCloseReason, CloseCode::PROTOCOL_ERROR;
        invalid_utf8_single_frame: frame(true, opcode::TEXT, b"ab\xFFcd")
            => Error::InvalidUtf8, CloseCode::INVALID_PAYLOAD;
        // A surrogate (ED A0 80) in the first fragment; the final fragment never arrives.
        invalid_utf8_first_fragment: frame(false, opcode::TEXT, b"\xCE\xBA\xED\xA0\x80")
            => Error::InvalidUtf8, CloseCode::INVALID_PAYLOAD;
        // F4 starts a sequence in one fragment; 90 in the next would exceed U+10FFFF. The message
        // is still unfinished when the fault is seen.
        invalid_utf8_across_fragments: cat(&[
            &frame(false, opcode::TEXT, b"a\xF4"),
            &frame(false, opcode::CONTINUATION, b"\x90\x80\x80"),
        ]) => Error::InvalidUtf8, CloseCode::INVALID_PAYLOAD;
        truncated_utf8_at_end: cat(&[
            &frame(false, opcode::TEXT, b"a"),
            &frame(true, opcode::CONTINUATION, b"\xE2\x82"),
        ]) => Error::InvalidUtf8, CloseCode::INVALID_PAYLOAD;
        // Only the header: the fault is decided before any payload is buffered.
        too_long_single_frame: frame(true, opcode::BINARY, &[0x00; LIMIT + 1])[..8]
            => Error::MessageTooLong { size: LIMIT as u64 + 1, max: LIMIT as u64 },
            CloseCode::TOO_BIG;
        too_long_fragments: cat(&[
            &frame(false, opcode::BINARY, &[0x00; 1000]),
            &frame(true, opcode::CONTINUATION, &[0x00; 100])[..8],
        ]) => Error::MessageTooLong { size: 1100, max: LIMIT as u64 }, CloseCode::TOO_BIG;
    }

    macro_rules! accepted {
        ($($name:ident: $bytes:expr => [$($event:expr),* $(,)?];)*) => {$(
            #[test]
            fn $name() {
                let (events, err) = run_whole(&$bytes);
                assert_eq!(err, None);
                assert_eq!(events, vec![$($event),*]);
            }
        )*};
    }

    accepted! {
        rfc_masked_hello: [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
            => [text("Hello")];
        fragmented_text_with_ping_between: cat(&[
            &frame(false, opcode::TEXT, b"Hel"),
            &frame(true, opcode::PING, b"p"),
            &frame(true, opcode::CONTINUATION, b"lo"),
        ]) => [Event::Ping(b"p".to_vec()), text("Hello")];
        utf8_split_inside_a_char: cat(&[
            &frame(false, opcode::TEXT, b"\xCE\xBA\xE1"),
            &frame(false, opcode::CONTINUATION, b"\xBD"),
            &frame(true, opcode::CONTINUATION, b"\xB9\xCF\x83\xCE\xBC\xCE\xB5"),
        ]) => [text("\u{3BA}\u{1F79}\u{3C3}\u{3BC}\u{3B5}")];
        empty_text: frame(true, opcode::TEXT, b"") => [text("")];
        empty_binary: frame(true, opcode::BINARY, b"") => [Event::Binary(Vec::new())];
        ping_of_125: frame(true, opcode::PING, &[0xA5; 125]) => [Event::Ping(vec![0xA5; 125])];
        pong: frame(true, opcode::PONG, b"x") => [Event::Pong(b"x".to_vec())];
        message_at_limit: frame(true, opcode::BINARY, &[0x01; LIMIT])
            => [Event::Binary(vec![0x01; LIMIT])];
        close_bye: frame(true, opcode::CLOSE, &[0x03, 0xE8, 0x62, 0x79, 0x65])
            => [Event::Close(Some((CloseCode::NORMAL, "bye".to_owned())))];
        close_empty: frame(true, opcode::CLOSE, b"") => [Event::Close(None)];
        close_3000: frame(true, opcode::CLOSE, &[0x0B, 0xB8])
            => [Event::Close(Some((CloseCode(3000), String::new())))];
        close_4999: frame(true, opcode::CLOSE, &[0x13, 0x87])
            => [Event::Close(Some((CloseCode(4999), String::new())))];
        non_minimal_length: frame_len64(opcode::TEXT, b"hi") => [text("hi")];
        bytes_after_close_are_ignored: cat(&[
            &frame(true, opcode::CLOSE, b""),
            &[0x81, 0x00],
        ]) => [Event::Close(None)];
    }

    /// One data message cut into `parts`: the first frame of opcode `op`, continuations after
    /// it, FIN on the last only.
    fn fragments(op: u8, parts: &[&[u8]]) -> Vec<u8> {
        let last = parts.len().saturating_sub(1);
        let frames: Vec<Vec<u8>> = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let op = if i == 0 { op } else { opcode::CONTINUATION };
                frame(i == last, op, part)
            })
            .collect();
        frames.concat()
    }

    /// The fragment flood: a text frame with FIN clear, then empty continuations that never end
    /// the message, `frames` frames in all.
    fn flood(frames: usize) -> Vec<u8> {
        let mut out = frame(false, opcode::TEXT, b"x");
        let empty = frame(false, opcode::CONTINUATION, b"");
        for _ in 1..frames {
            out.extend_from_slice(&empty);
        }
        out
    }

    /// A small fragment limit, so that the cases stay short.
    const FRAGMENTS: u32 = 4;

    macro_rules! fragment_cases {
        ($($name:ident: $max:expr, $deflate:expr, $bytes:expr => $events:expr, $err:expr;)*) => {$(
            #[test]
            fn $name() {
                let mut dec = Decoder::new(LIMIT).with_max_fragments($max);
                if $deflate {
                    dec.enable_deflate();
                }
                let (events, err) = run(&mut dec, [&$bytes[..]]);
                assert_eq!((events, err), ($events, $err));
                assert!(dec.is_idle());
            }
        )*};
    }

    fragment_cases! {
        fragments_exactly_max: FRAGMENTS, false,
            fragments(opcode::TEXT, &[b"a", b"b", b"c", b"d"])
            => vec![text("abcd")], None;
        fragments_one_over_max: FRAGMENTS, false,
            fragments(opcode::TEXT, &[b"a", b"b", b"c", b"d", b"e"])
            => vec![], Some(Error::TooManyFragments { max: FRAGMENTS });
        fragments_empty_ones_count: FRAGMENTS, false,
            fragments(opcode::BINARY, &[b"", b"", b"", b"", b""])
            => vec![], Some(Error::TooManyFragments { max: FRAGMENTS });
        fragments_single_frame_message_at_max_one: 1, false,
            cat(&[&frame(true, opcode::TEXT, b"a"), &frame(true, opcode::BINARY, b"b")])
            => vec![text("a"), Event::Binary(b"b".to_vec())], None;
        fragments_two_frames_over_max_one: 1, false,
            fragments(opcode::TEXT, &[b"a", b"b"])
            => vec![], Some(Error::TooManyFragments { max: 1 });
        fragments_max_zero_refuses_every_message: 0, false, frame(true, opcode::TEXT, b"a")
            => vec![], Some(Error::TooManyFragments { max: 0 });
        fragments_max_zero_still_answers_pings: 0, false, frame(true, opcode::PING, b"p")
            => vec![Event::Ping(b"p".to_vec())], None;
        // RFC 6455 §5.4: control frames "MAY be injected in the middle of a fragmented message";
        // they are not fragments of it.
        fragments_pings_between_do_not_count: FRAGMENTS, false, cat(&[
            &frame(false, opcode::TEXT, b"a"),
            &frame(true, opcode::PING, b"1"),
            &frame(false, opcode::CONTINUATION, b"b"),
            &frame(true, opcode::PONG, b"2"),
            &frame(true, opcode::PING, b"3"),
            &frame(false, opcode::CONTINUATION, b"c"),
            &frame(true, opcode::PING, b"4"),
            &frame(true, opcode::CONTINUATION, b"d"),
        ]) => vec![
            Event::Ping(b"1".to_vec()),
            Event::Pong(b"2".to_vec()),
            Event::Ping(b"3".to_vec()),
            Event::Ping(b"4".to_vec()),
            text("abcd"),
        ], None;
        fragments_count_restarts_with_each_message: FRAGMENTS, false, cat(&[
            &fragments(opcode::TEXT, &[b"a", b"b", b"c", b"d"]),
            &frame(true, opcode::BINARY, b"e"),
            &fragments(opcode::BINARY, &[b"f", b"g", b"h", b"i"]),
            &fragments(opcode::TEXT, &[b"j", b"k", b"l", b"m"]),
        ]) => vec![
            text("abcd"),
            Event::Binary(b"e".to_vec()),
            Event::Binary(b"fghi".to_vec()),
            text("jklm"),
        ], None;
        fragments_count_restarts_but_still_binds: FRAGMENTS, false, cat(&[
            &fragments(opcode::TEXT, &[b"a", b"b", b"c", b"d"]),
            &fragments(opcode::TEXT, &[b"a", b"b", b"c", b"d", b"e"]),
        ]) => vec![text("abcd")], Some(Error::TooManyFragments { max: FRAGMENTS });
        // permessage-deflate: RSV1 on the first frame only; the continuations count the same.
        fragments_deflate_exactly_max: FRAGMENTS, true, cat(&[
            &compressed(false, opcode::TEXT, &Z_HELLO[..2]),
            &frame(false, opcode::CONTINUATION, &Z_HELLO[2..4]),
            &frame(true, opcode::PING, b""),
            &frame(false, opcode::CONTINUATION, &Z_HELLO[4..6]),
            &frame(true, opcode::CONTINUATION, &Z_HELLO[6..]),
        ]) => vec![Event::Ping(Vec::new()), text("Hello")], None;
        fragments_deflate_one_over_max: FRAGMENTS, true, cat(&[
            &compressed(false, opcode::TEXT, &Z_HELLO[..2]),
            &frame(false, opcode::CONTINUATION, &Z_HELLO[2..4]),
            &frame(false, opcode::CONTINUATION, &Z_HELLO[4..6]),
            &frame(false, opcode::CONTINUATION, &Z_HELLO[6..]),
            &frame(true, opcode::CONTINUATION, b""),
        ]) => vec![], Some(Error::TooManyFragments { max: FRAGMENTS });
        fragments_deflate_empty_flood: FRAGMENTS, true, cat(&[
            &compressed(false, opcode::BINARY, &Z_HELLO[..2]),
            &flood(5_000)[frame(false, opcode::TEXT, b"x").len()..],
        ]) => vec![], Some(Error::TooManyFragments { max: FRAGMENTS });
        fragments_default_limit_exactly: DEFAULT_MAX_FRAGMENTS, false,
            fragments(opcode::BINARY, &vec![&b"z"[..]; DEFAULT_MAX_FRAGMENTS as usize])
            => vec![Event::Binary(vec![b'z'; DEFAULT_MAX_FRAGMENTS as usize])], None;
        fragments_empty_flood_of_thousands: DEFAULT_MAX_FRAGMENTS, false, flood(5_000)
            => vec![], Some(Error::TooManyFragments { max: DEFAULT_MAX_FRAGMENTS });
    }

    #[test]
    fn new_decoder_has_the_default_fragment_limit() {
        let (_, err) = run_whole(&flood(DEFAULT_MAX_FRAGMENTS as usize));
        assert_eq!(err, None, "a message of exactly the limit, unfinished");
        let (_, err) = run_whole(&flood(DEFAULT_MAX_FRAGMENTS as usize + 1));
        assert_eq!(
            err,
            Some(Error::TooManyFragments {
                max: DEFAULT_MAX_FRAGMENTS
            })
        );
        assert_eq!(
            CloseCode::from(&Error::TooManyFragments { max: 1 }),
            CloseCode::TOO_BIG
        );
    }

    /// The flood one frame at a time: every frame up to the limit is taken, and the one past it
    /// fails from its header alone, before any of its payload.
    #[test]
    fn empty_continuation_flood_fails_at_the_frame_past_the_limit() {
        let mut dec = Decoder::new(LIMIT);
        let first = frame(false, opcode::TEXT, b"x");
        assert_eq!(dec.decode(&first), Ok((first.len(), None)));
        let empty = frame(false, opcode::CONTINUATION, b"");
        for n in 2..=DEFAULT_MAX_FRAGMENTS {
            assert_eq!(dec.decode(&empty), Ok((empty.len(), None)), "frame {n}");
        }
        let with_payload = frame(false, opcode::CONTINUATION, b"payload");
        assert_eq!(
            dec.decode(&with_payload[..6]),
            Err(Error::TooManyFragments {
                max: DEFAULT_MAX_FRAGMENTS
            })
        );
        assert!(dec.is_idle(), "a failed decoder lets go of the message");
    }

    #[test]
    fn fragment_limit_holds_however_the_bytes_are_split() {
        let stream = cat(&[
            &fragments(opcode::TEXT, &[b"He", b"", b"llo"]),
            &frame(false, opcode::BINARY, b"a"),
            &frame(true, opcode::PING, b""),
            &flood(4)[frame(false, opcode::TEXT, b"x").len()..],
        ]);
        let whole = run(
            &mut Decoder::new(LIMIT).with_max_fragments(3),
            [&stream[..]],
        );
        assert_eq!(
            whole,
            (
                vec![text("Hello"), Event::Ping(Vec::new())],
                Some(Error::TooManyFragments { max: 3 })
            )
        );
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            let mut dec = Decoder::new(LIMIT).with_max_fragments(3);
            assert_eq!(run(&mut dec, [a, b]), whole, "split at {i}");
        }
        let mut dec = Decoder::new(LIMIT).with_max_fragments(3);
        assert_eq!(run(&mut dec, stream.chunks(1)), whole, "byte by byte");
    }

    /// Feeds `stream` whole, split once at every position, split twice at every pair of
    /// positions, and byte by byte: every way must give the one-shot outcome.
    fn assert_split_invariant(stream: &[u8]) -> (Vec<Event>, Option<Error>) {
        let whole = run_whole(stream);
        for i in 0..=stream.len() {
            let (a, rest) = stream.split_at(i);
            assert_eq!(
                run(&mut Decoder::new(LIMIT), [a, rest]),
                whole,
                "split at {i}"
            );
            for j in i..=stream.len() {
                let (b, c) = rest.split_at(j - i);
                let got = run(&mut Decoder::new(LIMIT), [a, b, c]);
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
        assert_eq!(
            run(&mut Decoder::new(LIMIT), stream.chunks(1)),
            whole,
            "byte by byte"
        );
        whole
    }

    #[test]
    fn splits_do_not_change_events() {
        let stream = cat(&[
            &frame(false, opcode::TEXT, "Hé".as_bytes()),
            &frame(true, opcode::PING, b"ping"),
            &frame(true, opcode::CONTINUATION, "llo wörld".as_bytes()),
            &frame(true, opcode::BINARY, &[0x5A; 130]),
            &frame_len64(opcode::BINARY, b"sixty-four"),
            &frame(true, opcode::CLOSE, &[0x03, 0xE8, 0x62, 0x79, 0x65]),
        ]);
        let (events, err) = assert_split_invariant(&stream);
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                Event::Ping(b"ping".to_vec()),
                text("Héllo wörld"),
                Event::Binary(vec![0x5A; 130]),
                Event::Binary(b"sixty-four".to_vec()),
                Event::Close(Some((CloseCode::NORMAL, "bye".to_owned()))),
            ]
        );
    }

    #[test]
    fn splits_do_not_change_the_error() {
        let stream = cat(&[
            &frame(false, opcode::TEXT, b"Hel"),
            &frame(true, opcode::PING, b""),
            &frame(
                false,
                opcode::CONTINUATION,
                b"lo \xCE\xBA then \xC0\xAF and more",
            ),
            &frame(true, opcode::CONTINUATION, b"never reached"),
        ]);
        let (events, err) = assert_split_invariant(&stream);
        assert_eq!(events, vec![Event::Ping(Vec::new())]);
        assert_eq!(err, Some(Error::InvalidUtf8));
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_ends() {
        let bad = frame(true, opcode::TEXT, b"ok\xFF and a long tail of valid text");
        let mut dec = Decoder::new(LIMIT);
        // Header (6 bytes) plus "ok\xFF": the rest of the frame is not needed to fail.
        assert_eq!(
            run(&mut dec, [&bad[..9]]),
            (Vec::new(), Some(Error::InvalidUtf8))
        );
    }

    #[test]
    fn finished_decoder_stays_finished() {
        let mut dec = Decoder::new(LIMIT);
        assert_eq!(dec.decode(&[0x81, 0x00]), Err(Error::UnmaskedFrame));
        assert_eq!(
            dec.decode(&frame(true, opcode::PING, b"")),
            Err(Error::UnmaskedFrame)
        );
        assert!(dec.is_idle());

        let mut dec = Decoder::new(LIMIT);
        let close = frame(true, opcode::CLOSE, b"");
        assert_eq!(
            dec.decode(&close),
            Ok((close.len(), Some(Event::Close(None))))
        );
        let ping = frame(true, opcode::PING, b"");
        assert_eq!(dec.decode(&ping), Ok((ping.len(), None)));
    }

    #[test]
    fn returns_right_after_each_event() {
        let first = frame(true, opcode::TEXT, b"a");
        let stream = cat(&[&first, &frame(true, opcode::TEXT, b"b")]);
        let mut dec = Decoder::new(LIMIT);
        assert_eq!(dec.decode(&stream), Ok((first.len(), Some(text("a")))));
        assert_eq!(
            dec.decode(&stream[first.len()..]),
            Ok((first.len(), Some(text("b"))))
        );
    }

    #[test]
    fn declared_length_is_not_allocated() {
        let big = frame(true, opcode::BINARY, &[0x00; 0x10000]);
        let mut dec = Decoder::new(0x10000);
        // 14-byte header claiming 64 KiB, then one payload byte.
        assert_eq!(dec.decode(&big[..15]), Ok((15, None)));
        assert_eq!(dec.buf.len(), 1);
        assert!(dec.buf.capacity() < 64, "capacity {}", dec.buf.capacity());
    }

    #[test]
    fn idle_means_no_memory() {
        let mut dec = Decoder::new(LIMIT);
        assert!(dec.is_idle());
        let msg = frame(true, opcode::BINARY, &[0x01; 300]);
        assert_eq!(dec.decode(&msg[..3]), Ok((3, None)));
        assert!(!dec.is_idle(), "partial header");
        assert_eq!(dec.decode(&msg[3..20]), Ok((17, None)));
        assert!(!dec.is_idle(), "partial payload");
        assert!(matches!(
            dec.decode(&msg[20..]),
            Ok((_, Some(Event::Binary(_))))
        ));
        assert!(dec.is_idle());

        let first = frame(false, opcode::TEXT, b"abc");
        assert_eq!(dec.decode(&first), Ok((first.len(), None)));
        assert!(!dec.is_idle(), "fragmented message in progress");
        let ping = frame(true, opcode::PING, b"p");
        assert!(matches!(dec.decode(&ping), Ok((_, Some(Event::Ping(_))))));
        assert!(!dec.is_idle(), "the ping must not disturb the message");
        let last = frame(true, opcode::CONTINUATION, b"d");
        assert_eq!(dec.decode(&last), Ok((last.len(), Some(text("abcd")))));
        assert!(dec.is_idle());
        assert_eq!((dec.buf.capacity(), dec.control.capacity()), (0, 0));
    }

    /// A decoder that agreed permessage-deflate.
    fn deflating() -> Decoder {
        let mut dec = Decoder::new(LIMIT);
        dec.enable_deflate();
        dec
    }

    fn compressed(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        encode_masked(fin, op, 0b100, payload, MASK)
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let compressed = crate::ws::deflate::Compressor::new(6).compress(&[data], &mut out);
        assert_eq!(compressed, Ok(()));
        out
    }

    /// RFC 7692 §7.2.3.1: "Hello", compressed.
    const Z_HELLO: [u8; 7] = [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00];

    macro_rules! deflate_cases {
        ($($name:ident: $bytes:expr => $events:expr, $err:expr;)*) => {$(
            #[test]
            fn $name() {
                let (events, err) = run(&mut deflating(), [&$bytes[..]]);
                assert_eq!((events, err), ($events, $err));
            }
        )*};
    }

    deflate_cases! {
        deflate_rfc_hello: compressed(true, opcode::TEXT, &Z_HELLO) => vec![text("Hello")], None;
        // RFC 7692 §7.2.3.1's fragmented form: RSV1 on the first frame only.
        deflate_rfc_hello_fragmented: cat(&[
            &compressed(false, opcode::TEXT, &Z_HELLO[..3]),
            &frame(true, opcode::CONTINUATION, &Z_HELLO[3..]),
        ]) => vec![text("Hello")], None;
        deflate_ping_between_fragments: cat(&[
            &compressed(false, opcode::TEXT, &Z_HELLO[..2]),
            &frame(true, opcode::PING, b"p"),
            &frame(true, opcode::CONTINUATION, &Z_HELLO[2..]),
        ]) => vec![Event::Ping(b"p".to_vec()), text("Hello")], None;
        deflate_uncompressed_still_fine: cat(&[
            &frame(true, opcode::TEXT, b"plain"),
            &compressed(true, opcode::BINARY, &deflate(&[7; 300])),
        ]) => vec![text("plain"), Event::Binary(vec![7; 300])], None;
        deflate_rsv1_on_ping: compressed(true, opcode::PING, b"")
            => vec![], Some(Error::MisplacedCompressedBit);
        deflate_rsv1_on_close: compressed(true, opcode::CLOSE, b"")
            => vec![], Some(Error::MisplacedCompressedBit);
        deflate_rsv1_on_continuation: cat(&[
            &compressed(false, opcode::TEXT, &Z_HELLO[..3]),
            &compressed(true, opcode::CONTINUATION, &Z_HELLO[3..]),
        ]) => vec![], Some(Error::MisplacedCompressedBit);
        deflate_rsv2_still_refused: encode_masked(true, opcode::TEXT, 0b110, &Z_HELLO, MASK)
            => vec![], Some(Error::ReservedBits);
        deflate_corrupt: compressed(true, opcode::TEXT, &[0xFF, 0xFF, 0xFF])
            => vec![], Some(Error::BadCompressedData);
        deflate_bomb: compressed(true, opcode::BINARY, &deflate(&[0; 64 << 10]))
            => vec![], Some(Error::InflatedTooLong { max: LIMIT as u64 });
        deflate_invalid_utf8_inside: compressed(true, opcode::TEXT, &deflate(b"ok \xC0\xAF"))
            => vec![], Some(Error::InvalidUtf8);
    }

    #[test]
    fn rsv1_without_agreement_is_refused() {
        let (_, err) = run_whole(&compressed(true, opcode::TEXT, &Z_HELLO));
        assert_eq!(err, Some(Error::ReservedBits));
    }

    #[test]
    fn deflate_limit_counts_inflated_and_wire_bytes() {
        let at_limit = deflate(&[b'a'; LIMIT]);
        let (events, err) = run(
            &mut deflating(),
            [&compressed(true, opcode::TEXT, &at_limit)[..]],
        );
        assert_eq!((events, err), (vec![text(&"a".repeat(LIMIT))], None));
        // Incompressible data larger on the wire than the limit is refused from its header.
        let wire = frame(true, opcode::BINARY, &[0; LIMIT + 1]);
        let (_, err) = run(
            &mut deflating(),
            [&compressed(true, opcode::BINARY, &wire[..])[..8]],
        );
        assert!(matches!(err, Some(Error::MessageTooLong { .. })), "{err:?}");
    }

    #[test]
    fn deflate_bomb_never_holds_more_than_the_limit() {
        let bomb = compressed(true, opcode::BINARY, &deflate(&[0; 256 << 10]));
        let mut dec = deflating();
        // Fed in small pieces: the fault comes while the buffer is at most one byte over.
        let mut high_water = 0;
        let mut fault = None;
        for piece in bomb.chunks(16) {
            match dec.decode(piece) {
                Ok(_) => high_water = high_water.max(dec.buf.capacity()),
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            }
        }
        assert_eq!(fault, Some(Error::InflatedTooLong { max: LIMIT as u64 }));
        assert!(high_water <= 2 * LIMIT + 2, "buffer grew to {high_water}");
        assert!(dec.is_idle(), "a failed decoder lets go of its inflater");
    }

    #[test]
    fn deflate_splits_do_not_change_events() {
        let stream = cat(&[
            &compressed(false, opcode::TEXT, &Z_HELLO[..4]),
            &frame(true, opcode::PING, b"x"),
            &frame(true, opcode::CONTINUATION, &Z_HELLO[4..]),
            &compressed(true, opcode::BINARY, &deflate(&[3; 200])),
        ]);
        let whole = run(&mut deflating(), [&stream[..]]);
        assert_eq!(
            whole,
            (
                vec![
                    Event::Ping(b"x".to_vec()),
                    text("Hello"),
                    Event::Binary(vec![3; 200])
                ],
                None
            )
        );
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(run(&mut deflating(), [a, b]), whole, "split at {i}");
        }
        let mut dec = deflating();
        assert_eq!(run(&mut dec, stream.chunks(1)), whole, "byte by byte");
        assert!(dec.is_idle(), "no inflater outlives its message");
    }

    /// A small deterministic generator (xorshift64*), so failures replay exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random messages, randomly fragmented with pings between fragments, encoded by tungstenite
    /// as a reference client and checked byte for byte against `encode_masked`, then fed in
    /// random chunk sizes: the decoder must give back exactly what was sent.
    #[test]
    fn random_messages_round_trip() {
        use tungstenite::protocol::frame::coding::OpCode;
        use tungstenite::protocol::frame::{Frame, FrameHeader as RefHeader};

        const ALPHABET: [&str; 6] = ["a", "Z", " ", "é", "€", "𝄞"];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut push = |rng: &mut Rng, fin: bool, op: u8, payload: &[u8]| {
            let mask = rng.next().to_le_bytes()[..4]
                .try_into()
                .unwrap_or([0x01, 0x02, 0x03, 0x04]);
            let header = RefHeader {
                is_final: fin,
                opcode: OpCode::from(op),
                mask: Some(mask),
                ..RefHeader::default()
            };
            let mut reference = Vec::new();
            let formatted = Frame::from_payload(header, payload.to_vec()).format(&mut reference);
            assert!(formatted.is_ok());
            let ours = encode_masked(fin, op, 0, payload, mask);
            assert_eq!(ours, reference);
            stream.extend_from_slice(&ours);
        };
        for _ in 0..300 {
            let is_text = rng.below(2) == 0;
            let payload: Vec<u8> = if is_text {
                let chars = rng.below(200);
                (0..chars)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect::<String>()
                    .into_bytes()
            } else {
                let len = [0, 1, 125, 126, 300, LIMIT][rng.below(6)];
                (0..len).map(|_| rng.next() as u8).collect()
            };
            // Cut points anywhere, including inside multi-byte chars.
            let mut cuts: Vec<usize> = (0..rng.below(4))
                .map(|_| rng.below(payload.len() + 1))
                .collect();
            cuts.sort_unstable();
            cuts.push(payload.len());
            let mut start = 0;
            for (i, &end) in cuts.iter().enumerate() {
                let op = match (i, is_text) {
                    (0, true) => opcode::TEXT,
                    (0, false) => opcode::BINARY,
                    _ => opcode::CONTINUATION,
                };
                push(&mut rng, i + 1 == cuts.len(), op, &payload[start..end]);
                start = end;
                // Pings go between fragments, so they come out before the message they split.
                if i + 1 < cuts.len() && rng.below(3) == 0 {
                    let data: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
                    push(&mut rng, true, opcode::PING, &data);
                    expected.push(Event::Ping(data));
                }
            }
            expected.push(match String::from_utf8(payload) {
                Ok(s) if is_text => Event::Text(s),
                Ok(s) => Event::Binary(s.into_bytes()),
                Err(e) => Event::Binary(e.into_bytes()),
            });
        }
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rng.below(64).clamp(1, rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        let mut dec = Decoder::new(LIMIT);
        let (events, err) = run(&mut dec, chunks);
        assert_eq!(err, None);
        let first_difference = events.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "events differ");
        assert_eq!(events.len(), expected.len());
        assert!(dec.is_idle());
    }
}
