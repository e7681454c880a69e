//! A connection's socket as a worker's runtime holds it: the TCP stream, and the TLS session
//! over it when the listener speaks TLS. It reads and writes plaintext like a stream does, so
//! the runtime and the state above it are the same with TLS or without.
//!
//! With TLS, [`Socket::read`] feeds the session what the socket has and returns the plaintext
//! it decrypted; [`Socket`]'s `Write` encrypts into the session and sends what it can. What
//! the session still holds to send (handshake messages, records the socket pushed back) is
//! [`Socket::pending`]: the runtime keeps `WRITABLE` interest while it is, and calls
//! [`Socket::drain`] when the socket can take more.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::ServerConnection;

use crate::proxy;

pub struct Socket {
    pub stream: TcpStream,
    /// Boxed: a session is large, and a plain connection's slot should not carry its size.
    tls: Option<Box<ServerConnection>>,
    /// The write side is to be shut once the session's last records (its close_notify among
    /// them) are out.
    shut_when_drained: bool,
    /// `--proxy-protocol`: what arrived of the PROXY header the connection must open with;
    /// `None` once it was read (or when none is expected). Boxed, so that a plain
    /// connection's slot stays small (8 bytes rather than a `Vec`'s 24, in every socket's
    /// slot, for a buffer only `--proxy-protocol` uses and only until the header is read).
    #[allow(clippy::box_collection)]
    proxy_header: Option<Box<Vec<u8>>>,
}

impl Socket {
    pub fn plain(stream: TcpStream) -> Self {
        Socket {
            stream,
            tls: None,
            shut_when_drained: false,
            proxy_header: None,
        }
    }

    pub fn tls(stream: TcpStream, session: ServerConnection) -> Self {
        Socket {
            stream,
            tls: Some(Box::new(session)),
            shut_when_drained: false,
            proxy_header: None,
        }
    }

    /// The connection must open with a PROXY protocol header, read before anything else.
    pub fn expect_proxy_header(&mut self) {
        self.proxy_header = Some(Box::default());
    }

    pub fn awaits_proxy_header(&self) -> bool {
        self.proxy_header.is_some()
    }

    /// Adds `bytes`, read from the socket, to the PROXY header being read. Once it is whole:
    /// the header, and the bytes that followed it (the client's first, for [`Socket::feed`]).
    pub fn proxy_header(
        &mut self,
        bytes: &[u8],
    ) -> Result<Option<(proxy::Header, Vec<u8>)>, proxy::ProxyProtocolError> {
        let Some(buf) = &mut self.proxy_header else {
            return Ok(None);
        };
        buf.extend_from_slice(bytes);
        let Some((header, used)) = proxy::decode(buf)? else {
            return Ok(None);
        };
        let rest = buf.split_off(used);
        self.proxy_header = None;
        Ok(Some((header, rest)))
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a TLS handshake is still under way.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// Whether the TLS session holds records not written yet.
    pub fn pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Feeds bytes read from the socket by someone else (what followed a PROXY protocol
    /// header) to the TLS session, or hands them back when there is none.
    pub fn feed<'a>(&mut self, bytes: &'a [u8]) -> io::Result<Option<&'a [u8]>> {
        let Some(tls) = &mut self.tls else {
            return Ok(Some(bytes));
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            // 0: the session takes no more (the peer's close_notify came): the rest is dropped.
            if tls.read_tls(&mut rest)? == 0 {
                break;
            }
            process(tls, &mut self.stream)?;
        }
        Ok(None)
    }

    /// Writes what the TLS session holds until the socket pushes back; shuts the write side
    /// once it is all out, if that was asked.
    pub fn drain(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if std::mem::take(&mut self.shut_when_drained) {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Ends what this side sends: with TLS, a close_notify alert first (RFC 8446 §6.1: "Each
    /// party MUST send a "close_notify" alert before closing its write side of the
    /// connection"), then the TCP write side once that is written.
    pub fn shutdown_write(&mut self) {
        match &mut self.tls {
            None => {
                let _ = self.stream.shutdown(Shutdown::Write);
            }
            Some(tls) => {
                tls.send_close_notify();
                self.shut_when_drained = true;
                let _ = self.drain();
            }
        }
    }
}

impl Read for Socket {
    /// Plaintext: `Ok(0)` when the peer closed (TCP EOF, or a TLS close_notify), `WouldBlock`
    /// when nothing more can be had now. A TLS error answers the peer with its alert and
    /// fails the read.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.stream.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            process(tls, &mut self.stream)?;
        }
    }
}

/// Lets the session take the records it read; on a TLS error, sends the alert it owes the
/// peer (best effort: the connection is closing) and reports the error.
fn process(tls: &mut ServerConnection, stream: &mut TcpStream) -> io::Result<()> {
    if let Err(e) = tls.process_new_packets() {
        let _ = tls.write_tls(stream);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    Ok(())
}

impl Write for Socket {
    /// Plain: the socket's own write. TLS: once the records of earlier writes are all out,
    /// encrypts what the session takes of `buf` and sends what the socket takes of it; while
    /// earlier records wait, `WouldBlock`, so that the session never holds more than one
    /// write's worth and the connection's queue stays the measure of what waits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.stream.write_vectored(bufs);
        }
        self.drain()?;
        let Some(tls) = &mut self.tls else {
            return Ok(0);
        };
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = tls.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // The session's plaintext buffer is full: it is still handshaking, and sends what
            // it holds once done.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the socket does not take now waits in the session; `pending` says so.
        self.drain()?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}
