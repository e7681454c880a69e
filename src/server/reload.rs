//! What herald reads again while it runs, without dropping a connection: on SIGHUP the binary
//! calls [`Reloader::reload`]: the JWT verification keys (every `--jwt-public-key` file and the
//! `--jwt-jwks` file) and the TLS certificates and keys (`--tls-cert`, `--control-tls-cert`).
//! Each part is reloaded on its own: a part that fails keeps what it had, and says why in the
//! log.

use std::fmt;
use std::sync::Arc;

use crate::jwt_keys::{JwtKeys, KeyError};
use crate::server::tls::{Tls, TlsError};

/// The reloadable parts of a running gateway. Cheap to clone: clones reload the same gateway.
#[derive(Debug, Clone, Default)]
pub struct Reloader {
    /// The verifier the workers share and where its keys come from; `None` when JWT auth is
    /// off.
    jwt: Option<JwtKeys>,
    /// The listeners' TLS: new handshakes get what a reload read, open connections keep
    /// theirs.
    tls: Vec<Arc<Tls>>,
}

/// A part that could not be reloaded, and why; it kept what it had.
#[derive(Debug)]
pub enum ReloadError {
    /// The JWT keys: the keys in force before stay.
    JwtKeys(KeyError),
    /// A listener's certificate and key: the pair in use stays.
    Tls(TlsError),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::JwtKeys(e) => write!(f, "JWT keys not reloaded: {e}"),
            ReloadError::Tls(e) => write!(f, "TLS certificate not reloaded: {e}"),
        }
    }
}

impl std::error::Error for ReloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReloadError::JwtKeys(e) => Some(e),
            ReloadError::Tls(e) => Some(e),
        }
    }
}

impl Reloader {
    /// Reloads `jwt`'s keys and each of `tls` when asked.
    pub fn new(jwt: Option<JwtKeys>, tls: Vec<Arc<Tls>>) -> Reloader {
        Reloader { jwt, tls }
    }

    /// Reads every reloadable part again and puts what it read in force, logging what was
    /// reloaded or why not. Every part is tried, whatever the others did; the error lists the
    /// parts that kept what they had. Callable from any thread, as often as wanted: the workers
    /// go on serving throughout, and no connection is closed.
    pub fn reload(&self) -> Result<(), Vec<ReloadError>> {
        let mut failed = Vec::new();
        if let Err(e) = self.reload_jwt_keys() {
            failed.push(e);
        }
        for tls in &self.tls {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.cert_path().display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; the one in use stays");
                    failed.push(ReloadError::Tls(e));
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    fn reload_jwt_keys(&self) -> Result<(), ReloadError> {
        let Some(jwt) = &self.jwt else {
            tracing::info!("JWT auth is off: no keys to reload");
            return Ok(());
        };
        match jwt.reload() {
            Ok(reloaded) => {
                tracing::info!(
                    keys = reloaded.keys,
                    kids = ?reloaded.kids,
                    skipped = reloaded.skipped,
                    "JWT keys reloaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "JWT keys not reloaded; the keys in force stay");
                Err(ReloadError::JwtKeys(e))
            }
        }
    }
}
