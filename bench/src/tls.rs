//! `wss://`: the client side of TLS, with rustls and its `ring` provider as herald uses them.
//! One [`Client`] (one `ClientConfig`) serves every connection of a run; this module builds it
//! and moves bytes between a socket and a session. It asks nothing of the WebSocket above it:
//! the client threads write plaintext into the session and read plaintext out of it.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use clap::ValueEnum;
use mio::net::TcpStream;
use rustls::client::Resumption;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore};

/// The ALPN protocol asked for, as a browser opening a `wss://` WebSocket does.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The TLS versions a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Version {
    /// TLS 1.3 and 1.2: the server picks (herald picks 1.3).
    Any,
    #[value(name = "1.3")]
    Tls13,
    #[value(name = "1.2")]
    Tls12,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::Any => "any",
            Version::Tls13 => "1.3",
            Version::Tls12 => "1.2",
        }
    }

    fn versions(self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        match self {
            Version::Any => vec![&rustls::version::TLS13, &rustls::version::TLS12],
            Version::Tls13 => vec![&rustls::version::TLS13],
            Version::Tls12 => vec![&rustls::version::TLS12],
        }
    }
}

/// Everything a connection needs to start a session: the configuration every session shares
/// (and with it the session store, when resuming) and the name the certificate must carry.
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    /// A client that trusts the certificates in the PEM file `ca` and nothing else, and
    /// checks the server's certificate for `name`. With `resume`, sessions keep the tickets
    /// they are given in one store (rustls's default, in memory) and later handshakes resume
    /// with them; without, every handshake is a full one.
    pub fn new(ca: &Path, name: &str, version: Version, resume: bool) -> Result<Client, String> {
        let pem = std::fs::read(ca).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "--tls-ca {}: no CERTIFICATE in the file",
                ca.display()
            ));
        }
        let name =
            ServerName::try_from(name.to_owned()).map_err(|e| format!("--tls-name {name}: {e}"))?;
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&version.versions())
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Ok(Client {
            config: Arc::new(config),
            name,
        })
    }

    /// A session for a new connection; its ClientHello waits in it to be written.
    pub fn session(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(self.config.clone(), self.name.clone()).map_err(io::Error::other)
    }
}

/// Why reading a session failed.
pub enum ReadError {
    /// The peer closed: TCP EOF, or a close_notify.
    Closed,
    /// The peer broke the protocol (or the certificate was refused); the alert owed to it was
    /// sent.
    Tls(rustls::Error),
    Io(io::Error),
}

/// Plaintext from the session into `buf`, reading the socket as needed: `Ok(Some(n))` with
/// `n > 0`, or `Ok(None)` once the socket has nothing more now. `received` counts the bytes
/// read from the socket.
pub fn read(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    buf: &mut [u8],
    received: &mut u64,
) -> Result<Option<usize>, ReadError> {
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
        match tls.read_tls(stream) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => *received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
        if let Err(e) = tls.process_new_packets() {
            // Best effort: the connection is ending.
            let _ = tls.write_tls(stream);
            return Err(ReadError::Tls(e));
        }
    }
}

/// Hands the session what it takes of `out` (removing it from there) and writes its records
/// until the socket pushes back. Before the handshake is done the session keeps the plaintext
/// and sends it once it can.
pub fn write(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if !out.is_empty() {
        let taken = tls.writer().write(out)?;
        out.drain(..taken);
    }
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The version a finished handshake agreed on, as the report names it.
pub fn agreed(tls: &ClientConnection) -> Option<&'static str> {
    match tls.protocol_version()? {
        ProtocolVersion::TLSv1_3 => Some("1.3"),
        ProtocolVersion::TLSv1_2 => Some("1.2"),
        _ => Some("other"),
    }
}
