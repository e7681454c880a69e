//! The JWT verification keys as the configuration gives them: `--jwt-secret`, or PEM files
//! (`--jwt-public-key PATH` or `KID=PATH`, repeated) and a JWKS file (`--jwt-jwks`). They are
//! read into a [`KeySet`] at start ([`JwtKeys::load`]), and read again on a reload
//! ([`JwtKeys::reload`], which SIGHUP calls through [`crate::server::Reloader`]).
//!
//! The keys themselves, which of them a token is checked against, and the verification are
//! [`crate::auth`]'s; this module only reads files and says which one was at fault.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::auth::{self, ConfigError, Key, KeySet, Skipped, Verifier, MIN_SECRET_LEN};

/// One `--jwt-public-key`: a PEM file, and the kid that tokens signed with its key carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    /// Without one, the key verifies the tokens of its algorithm whatever their kid.
    pub kid: Option<String>,
    pub path: PathBuf,
}

impl KeyPath {
    /// `PATH`, or `KID=PATH`: an `=` before any `/` ends a kid, so a path whose first
    /// component holds an `=` is written `./a=b.pem` (or given a kid).
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let (kid, path) = match text.split_once('=') {
            Some((kid, path)) if !kid.contains('/') => (Some(kid), path),
            _ => (None, text),
        };
        if kid == Some("") {
            return Err(format!("{text:?}: empty kid before '='"));
        }
        if path.is_empty() {
            return Err(format!("{text:?}: no path"));
        }
        Ok(KeyPath {
            kid: kid.map(str::to_owned),
            path: path.into(),
        })
    }
}

impl From<PathBuf> for KeyPath {
    /// A key without a kid.
    fn from(path: PathBuf) -> KeyPath {
        KeyPath { kid: None, path }
    }
}

/// Where the JWT verification keys come from. Empty: JWT auth is off.
#[derive(Clone, Default)]
pub struct KeySources {
    /// `--jwt-secret`: held in memory, the same on every reload. Exclusive with the files.
    pub secret: Option<String>,
    /// `--jwt-public-key`, in the order given.
    pub public_keys: Vec<KeyPath>,
    /// `--jwt-jwks`.
    pub jwks: Option<PathBuf>,
}

impl fmt::Debug for KeySources {
    /// The files; the secret only as set or not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySources")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("public_keys", &self.public_keys)
            .field("jwks", &self.jwks)
            .finish()
    }
}

/// The keys [`KeySources::load`] read, and the JWKS keys it passed over.
#[derive(Debug)]
pub struct Loaded {
    pub keys: KeySet,
    pub skipped: Vec<Skipped>,
}

impl KeySources {
    /// Whether no key is configured at all.
    pub fn is_empty(&self) -> bool {
        self.secret.is_none() && self.public_keys.is_empty() && self.jwks.is_none()
    }

    /// Reads every file and builds the set: the public keys in the order given, then the
    /// JWKS's in its order. Logs a warning for each JWKS key passed over.
    pub fn load(&self) -> Result<Loaded, KeyError> {
        if let Some(secret) = &self.secret {
            if !self.public_keys.is_empty() || self.jwks.is_some() {
                return Err(ConfigError::SecretAndPublicKey.into());
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(ConfigError::SecretTooShort {
                    len: secret.len(),
                    min: MIN_SECRET_LEN,
                }
                .into());
            }
            return Ok(Loaded {
                keys: KeySet::one(Key::secret(secret.as_bytes())),
                skipped: Vec::new(),
            });
        }
        let mut keys = Vec::new();
        for KeyPath { kid, path } in &self.public_keys {
            let pem = std::fs::read(path).map_err(|error| ConfigError::ReadPublicKey {
                path: path.clone(),
                error,
            })?;
            let key = Key::from_pem(&pem).map_err(|e| KeyError::in_file(PUBLIC_KEY, path, e))?;
            keys.push(match kid {
                Some(kid) => key.with_kid(kid),
                None => key,
            });
        }
        let mut skipped = Vec::new();
        if let Some(path) = &self.jwks {
            let json = std::fs::read(path).map_err(|error| ConfigError::ReadJwks {
                path: path.clone(),
                error,
            })?;
            let jwks = auth::jwks::parse(&json).map_err(|e| KeyError::in_file(JWKS, path, e))?;
            for s in &jwks.skipped {
                tracing::warn!(
                    file = %path.display(),
                    index = s.index,
                    kid = s.kid.as_deref().unwrap_or(""),
                    reason = %s.reason,
                    "JWKS key skipped"
                );
            }
            keys.extend(jwks.keys);
            skipped = jwks.skipped;
        }
        Ok(Loaded {
            keys: KeySet::new(keys)?,
            skipped,
        })
    }
}

const PUBLIC_KEY: &str = "--jwt-public-key";
const JWKS: &str = "--jwt-jwks";

/// Why the keys could not be put in force: the fault, and the file it is in when the fault is
/// in a file's content (a file that cannot be read is named by the fault itself).
#[derive(Debug)]
pub struct KeyError {
    /// The flag and the file.
    pub file: Option<(&'static str, PathBuf)>,
    pub error: ConfigError,
}

impl KeyError {
    fn in_file(flag: &'static str, path: &Path, error: ConfigError) -> KeyError {
        KeyError {
            file: Some((flag, path.to_owned())),
            error,
        }
    }
}

impl From<ConfigError> for KeyError {
    fn from(error: ConfigError) -> KeyError {
        KeyError { file: None, error }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some((flag, path)) => write!(f, "{flag} {}: {}", path.display(), self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The verifier every worker holds a clone of, and where its keys come from.
#[derive(Debug, Clone)]
pub struct JwtKeys {
    sources: KeySources,
    verifier: Verifier,
}

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys now in force.
    pub keys: usize,
    /// Their kids, in order, for those that have one.
    pub kids: Vec<String>,
    /// JWKS keys passed over (each logged as it was).
    pub skipped: usize,
}

impl JwtKeys {
    /// Loads the keys of `sources` into a verifier, which `narrow` gives its issuer, audience
    /// and leeway.
    pub fn load(
        sources: KeySources,
        narrow: impl FnOnce(Verifier) -> Verifier,
    ) -> Result<JwtKeys, KeyError> {
        let loaded = sources.load()?;
        Ok(JwtKeys {
            verifier: narrow(Verifier::from_keys(loaded.keys)),
            sources,
        })
    }

    /// The verifier; its clones share the keys a reload replaces.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Where the keys come from.
    pub fn sources(&self) -> &KeySources {
        &self.sources
    }

    /// Reads every key file and the JWKS file again and, when all of them read and make a valid
    /// set, puts the new keys in force for every clone of the verifier at once: a token is
    /// verified with the old set or the new one, never a mix. On any error the keys in force
    /// stay, and the error is returned for the caller to log. A secret is the same on every
    /// reload.
    pub fn reload(&self) -> Result<Reloaded, KeyError> {
        let loaded = self.sources.load()?;
        let reloaded = Reloaded {
            keys: loaded.keys.keys().len(),
            kids: loaded
                .keys
                .keys()
                .iter()
                .filter_map(|k| k.kid().map(str::to_owned))
                .collect(),
            skipped: loaded.skipped.len(),
        };
        self.verifier.replace_keys(loaded.keys);
        Ok(reloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
            .iter()
            .collect()
    }

    #[test]
    fn key_paths_parse() {
        let parsed = |s: &str| KeyPath::parse(s).map(|k| (k.kid, k.path));
        assert_eq!(parsed("key.pem"), Ok((None, "key.pem".into())));
        assert_eq!(
            parsed("2024-06=keys/a.pem"),
            Ok((Some("2024-06".to_owned()), "keys/a.pem".into()))
        );
        assert_eq!(
            parsed("k=/etc/herald/a=b.pem"),
            Ok((Some("k".to_owned()), "/etc/herald/a=b.pem".into()))
        );
        assert_eq!(
            parsed("/etc/herald/a=b.pem"),
            Ok((None, "/etc/herald/a=b.pem".into()))
        );
        assert_eq!(parsed("./a=b.pem"), Ok((None, "./a=b.pem".into())));
        assert!(parsed("=key.pem").is_err());
        assert!(parsed("kid=").is_err());
        assert!(parsed("").is_err());
    }

    #[test]
    fn a_fault_in_a_file_names_the_file() {
        let sources = KeySources {
            public_keys: vec![
                fixture("jwt_rs256_public.pem").into(),
                fixture("jwt_p384_public.pem").into(),
            ],
            ..KeySources::default()
        };
        let err = sources.load().unwrap_err();
        assert!(matches!(err.error, ConfigError::UnsupportedCurve));
        let shown = err.to_string();
        assert!(
            shown.starts_with("--jwt-public-key ") && shown.contains("jwt_p384_public.pem: "),
            "{shown}"
        );
        // An unreadable file is named by the fault itself, once.
        let sources = KeySources {
            jwks: Some(fixture("no-such.json")),
            ..KeySources::default()
        };
        let shown = sources.load().unwrap_err().to_string();
        assert_eq!(shown.matches("no-such.json").count(), 1, "{shown}");
        assert!(shown.starts_with("cannot read --jwt-jwks "), "{shown}");
    }

    #[test]
    fn the_secret_is_exclusive_and_long_enough() {
        let secret = "0123456789abcdef0123456789abcdef".to_owned();
        let with_key = KeySources {
            secret: Some(secret.clone()),
            public_keys: vec![fixture("jwt_rs256_public.pem").into()],
            ..KeySources::default()
        };
        assert!(matches!(
            with_key.load().unwrap_err().error,
            ConfigError::SecretAndPublicKey
        ));
        let short = KeySources {
            secret: Some("short".to_owned()),
            ..KeySources::default()
        };
        assert!(matches!(
            short.load().unwrap_err().error,
            ConfigError::SecretTooShort { len: 5, min: 32 }
        ));
        let debug = format!(
            "{:?}",
            KeySources {
                secret: Some(secret.clone()),
                ..KeySources::default()
            }
        );
        assert!(!debug.contains(&secret), "{debug}");
    }
}
