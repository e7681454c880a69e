//! TLS on a listener, with rustls: the certificate chain and key read from PEM files, one
//! `ServerConfig` for the listener's life, and the certificate swapped in place on
//! [`Tls::reload`] (SIGHUP). Connections already open keep the keys they agreed; new handshakes
//! get the new certificate. Session tickets and the session cache outlive a reload, so clients
//! resume across it.
//!
//! rustls is sans-IO: this module only builds its configuration. Moving bytes between a socket
//! and a session is `transport`'s; the HTTP and WebSocket codecs never know TLS is there.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

/// The ALPN protocol herald speaks over TLS: HTTP/1.1, which carries both the WebSocket
/// handshake and Engine.IO's long-polling.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a certificate or key could not be used, naming the file.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read, or held no PEM object of the kind wanted.
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls refused the pair: a key it cannot use, or a key that is not the certificate's.
    Pair { cert: PathBuf, reason: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File { flag, path, reason } => {
                write!(f, "{flag} {}: {reason}", path.display())
            }
            TlsError::Pair { cert, reason } => write!(
                f,
                "the key does not go with the certificate {}: {reason}",
                cert.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// Where a listener's certificate and key come from, and which flags named them (for errors).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_flag: &'static str,
    pub key_flag: &'static str,
}

/// A listener's TLS: the configuration every new session starts from.
pub struct Tls {
    files: TlsFiles,
    certs: Arc<CurrentCert>,
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Reads the certificate chain and key, and builds the configuration: TLS 1.3 and 1.2,
    /// ALPN `http/1.1`, stateless session tickets.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let key = certified_key(&files)?;
        let certs = Arc::new(CurrentCert(RwLock::new(Arc::new(key))));
        let provider = Arc::new(provider::default_provider());
        let pair = |reason: rustls::Error| TlsError::Pair {
            cert: files.cert.clone(),
            reason: reason.to_string(),
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(pair)?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // Reconnecting clients resume with a ticket instead of a full handshake: a reconnect
        // storm after a redeploy costs symmetric crypto, not a signature per client.
        config.ticketer = provider::Ticketer::new().map_err(pair)?;
        Ok(Tls {
            files,
            certs,
            config: Arc::new(config),
        })
    }

    /// Reads the files again and serves the new certificate to the handshakes that follow.
    /// On any error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = certified_key(&self.files)?;
        // A poisoned lock only means a reader panicked; the value inside is whole.
        let mut current = self.certs.0.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(key);
        Ok(())
    }

    /// A new server-side session, for a connection just accepted.
    pub fn accept(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }

    /// The certificate file, for logs.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.files.cert)
            .finish_non_exhaustive()
    }
}

/// The certificate every new handshake is given; [`Tls::reload`] replaces it.
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCert")
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The chain and key of `files`, checked to belong together.
fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let file = |flag: &'static str, path: &Path, reason: String| TlsError::File {
        flag,
        path: path.to_owned(),
        reason,
    };
    let cert_pem = std::fs::read(&files.cert)
        .map_err(|e| file(files.cert_flag, &files.cert, e.to_string()))?;
    let key_pem =
        std::fs::read(&files.key).map_err(|e| file(files.key_flag, &files.key, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(files.cert_flag, &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file(
            files.cert_flag,
            &files.cert,
            "no CERTIFICATE in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        file(
            files.key_flag,
            &files.key,
            format!("no usable private key ({e})"),
        )
    })?;
    let pair = |reason: rustls::Error| TlsError::Pair {
        cert: files.cert.clone(),
        reason: reason.to_string(),
    };
    let provider = provider::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(pair)?;
    Ok(key)
}
