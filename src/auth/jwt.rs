//! JWT verification: the keys in force (a secret, or public keys chosen by `kid`), claims
//! checked against a clock value passed in.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
pub use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::jwks::Skipped;
use super::keys::{Key, KeySet};
use crate::rooms::validate_user_id;

/// Longest token [`Verifier::verify`] looks at, in bytes. Real tokens are a few hundred bytes;
/// the bound keeps a peer from making herald base64-decode and parse megabytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Shortest HS256 secret [`Verifier::from_secret`] should be given, in bytes.
/// RFC 7518 §3.2: "A key of the same size as the hash output (for instance, 256 bits for
/// "HS256") or larger MUST be used with this algorithm."
pub const MIN_SECRET_LEN: usize = 32;

/// What a verified token says: whose connection this is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The herald user id, from `sub`; already checked by [`validate_user_id`].
    pub sub: String,
    /// Expiry, seconds since the Unix epoch, from `exp`. The caller may close the connection then.
    pub exp: u64,
}

/// Why a token was refused. The variant names the fault for logs; what the client is told is
/// [`AuthError::message`], which reveals nothing but "expired or not".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was presented (or an empty one).
    Missing,
    /// The token is longer than [`MAX_TOKEN_LEN`]; it was not parsed.
    TooLong { len: usize, max: usize },
    /// Not three base64url parts, undecodable JSON, a claim of the wrong type, or a header
    /// listing extensions in `crit`.
    Malformed,
    /// The header's `alg` is not one any key in force verifies (including `none`), or not the
    /// one of the key its `kid` names.
    WrongAlgorithm,
    /// The header's `kid` names no key in force, and no key of its algorithm was given without
    /// a kid.
    UnknownKid,
    /// The header has no `kid`, and every key of its algorithm has one.
    KidRequired,
    /// The signature does not verify with the key (or keys) the header selects.
    BadSignature,
    /// `exp` (plus leeway) is at or before now. A token without `exp` is
    /// [`AuthError::Malformed`]: herald accepts no token that lives forever.
    Expired,
    /// `nbf` (minus leeway) is after now.
    NotYetValid,
    /// No `sub` claim.
    MissingSub,
    /// `sub` is not a string, or not a valid herald user id (empty, too long).
    BadSub,
    /// An issuer is configured and `iss` is absent or different.
    WrongIssuer,
    /// An audience is configured and `aud` is absent or does not name it.
    WrongAudience,
}

impl AuthError {
    /// The short text a client is sent. Only expiry is told apart, so that a client knows to
    /// fetch a fresh token; every other fault is "unauthorized", so a forger learns nothing
    /// about which check failed.
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::Expired => "token expired",
            _ => "unauthorized",
        }
    }

    /// Whether the token was good but is past its `exp`.
    pub fn is_expired(&self) -> bool {
        matches!(self, AuthError::Expired)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("no token"),
            AuthError::TooLong { len, max } => {
                write!(f, "token of {len} bytes is longer than the {max} allowed")
            }
            AuthError::Malformed => f.write_str("malformed token"),
            AuthError::WrongAlgorithm => f.write_str("token signed with another algorithm"),
            AuthError::UnknownKid => f.write_str("token kid names no key in force"),
            AuthError::KidRequired => {
                f.write_str("token has no kid, and every key of its algorithm has one")
            }
            AuthError::BadSignature => f.write_str("token signature does not verify"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not valid yet (nbf)"),
            AuthError::MissingSub => f.write_str("token has no sub"),
            AuthError::BadSub => f.write_str("token sub is not a valid user id"),
            AuthError::WrongIssuer => f.write_str("token iss is not the configured issuer"),
            AuthError::WrongAudience => {
                f.write_str("token aud does not name the configured audience")
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// Why verification keys could not be put in force: at startup, the configuration is refused;
/// on a reload, the keys in force stay.
#[derive(Debug)]
pub enum ConfigError {
    /// Both a shared secret and a public key were given; herald verifies with one or the other.
    SecretAndPublicKey,
    /// The HS256 secret is shorter than [`MIN_SECRET_LEN`].
    SecretTooShort { len: usize, min: usize },
    /// A public key file could not be read.
    ReadPublicKey {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not a PEM RSA or EC public key.
    InvalidPem,
    /// An EC key on a curve other than P-256 (ES256 is the only EC algorithm accepted).
    UnsupportedCurve,
    /// An RSA modulus outside the 2048 to 8192 bits RS256 keys may have here.
    RsaKeySize { bits: usize },
    /// An RSA key no signature could verify under: an even modulus, or a public exponent that
    /// is even, below 3 or above 2^33 - 1.
    InvalidRsaKey,
    /// An EC public key that is not an uncompressed point on P-256.
    InvalidEcPoint,
    /// The JWKS file could not be read.
    ReadJwks {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The JWKS file is not JSON, or not an object with a `keys` array.
    InvalidJwks { why: String },
    /// A key of the JWKS (its place in `keys`, from 0) is of a type herald uses but broken.
    InvalidJwk {
        index: usize,
        kid: Option<String>,
        why: String,
    },
    /// The JWKS holds no key herald can use; why each was passed over.
    NoUsableJwk { skipped: Vec<Skipped> },
    /// Two keys of one algorithm have the same kid: a token naming it would not say which.
    DuplicateKid { kid: String, algorithm: Algorithm },
    /// More keys without a kid for one algorithm than a token is tried against.
    TooManyKeysWithoutKid { algorithm: Algorithm, max: usize },
    /// No key at all.
    NoKey,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SecretAndPublicKey => f.write_str(
                "--jwt-secret is exclusive with --jwt-public-key and --jwt-jwks: give a secret or \
                 public keys",
            ),
            ConfigError::SecretTooShort { len, min } => write!(
                f,
                "--jwt-secret is {len} bytes; HS256 needs at least {min} (RFC 7518 §3.2)"
            ),
            ConfigError::ReadPublicKey { path, error } => {
                write!(
                    f,
                    "cannot read --jwt-public-key {}: {error}",
                    path.display()
                )
            }
            ConfigError::InvalidPem => f.write_str(
                "not a PEM RSA or EC (P-256) public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)",
            ),
            ConfigError::UnsupportedCurve => {
                f.write_str("an EC key not on P-256; only ES256 is supported")
            }
            ConfigError::RsaKeySize { bits } => write!(
                f,
                "an RSA key of {bits} bits; RS256 keys must have 2048 to 8192 bits"
            ),
            ConfigError::InvalidRsaKey => f.write_str(
                "not a usable RSA public key (even modulus, or exponent even, below 3 or above \
                 2^33 - 1)",
            ),
            ConfigError::InvalidEcPoint => {
                f.write_str("not an uncompressed point on P-256 (EC public key)")
            }
            ConfigError::ReadJwks { path, error } => {
                write!(f, "cannot read --jwt-jwks {}: {error}", path.display())
            }
            ConfigError::InvalidJwks { why } => write!(f, "not a JWK Set: {why}"),
            ConfigError::InvalidJwk { index, kid, why } => {
                write!(f, "key {index}")?;
                if let Some(kid) = kid {
                    write!(f, " (kid {kid:?})")?;
                }
                write!(f, ": {why}")
            }
            ConfigError::NoUsableJwk { skipped } => {
                f.write_str("no key herald can use")?;
                for s in skipped {
                    write!(f, "; key {}: {}", s.index, s.reason)?;
                }
                Ok(())
            }
            ConfigError::DuplicateKid { kid, algorithm } => {
                write!(f, "two {algorithm:?} keys have kid {kid:?}")
            }
            ConfigError::TooManyKeysWithoutKid { algorithm, max } => write!(
                f,
                "more than {max} {algorithm:?} keys without a kid; give the others a kid \
                 (KID=PATH, or kid in the JWKS)"
            ),
            ConfigError::NoKey => f.write_str("no verification key"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::ReadPublicKey { error, .. } | ConfigError::ReadJwks { error, .. } => {
                Some(error)
            }
            _ => None,
        }
    }
}

/// Verifies JWTs with the keys in force: one secret, or public keys (see [`KeySet`] for which
/// key a token is checked against). A key's algorithm is fixed by its type, never read from a
/// token: a token choosing its own algorithm is how HS256-with-the-RSA-public-key forgeries
/// work.
///
/// Build it with [`Verifier::from_secret`], [`Verifier::from_public_key_pem`] or
/// [`Verifier::from_keys`], narrow it with [`Verifier::with_issuer`], [`Verifier::with_audience`]
/// and [`Verifier::with_leeway`], then call [`Verifier::verify`] with the current Unix time.
///
/// Clones share the keys: [`Verifier::replace_keys`] on one puts new keys in force for all of
/// them, from their next verification on. Each verification reads the keys once, so it sees
/// either the old set or the new one whole.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The keys in force. A verification takes a read lock only to clone the inner `Arc`, and a
    /// replacement a write lock only to swap it: neither waits on a signature check.
    keys: Arc<RwLock<Arc<KeySet>>>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Seconds of clock skew forgiven on `exp` and `nbf`.
    leeway: u64,
}

impl Verifier {
    /// HS256 with a shared secret. The caller should refuse secrets shorter than
    /// [`MIN_SECRET_LEN`] (configuration does); this constructor takes any.
    pub fn from_secret(secret: &[u8]) -> Verifier {
        Verifier::from_keys(KeySet::one(Key::secret(secret)))
    }

    /// RS256 or ES256 with a PEM public key (`BEGIN PUBLIC KEY`, or PKCS#1 `BEGIN RSA PUBLIC
    /// KEY`); the algorithm follows from the key type. EC keys must be on P-256.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Verifier, ConfigError> {
        Ok(Verifier::from_keys(KeySet::one(Key::from_pem(pem)?)))
    }

    /// With the keys of `keys`.
    pub fn from_keys(keys: KeySet) -> Verifier {
        Verifier {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            issuer: None,
            audience: None,
            leeway: 0,
        }
    }

    /// Require `iss` to equal `issuer` (or, in a list, to name it). Without it, `iss` is not
    /// looked at.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Verifier {
        self.issuer = Some(issuer.into());
        self
    }

    /// Require `aud` to name `audience`. Without it, `aud` is not looked at.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Verifier {
        self.audience = Some(audience.into());
        self
    }

    /// Forgive this much clock skew between the token's issuer and herald on `exp` and `nbf`.
    /// JWT times are whole seconds, so sub-second parts are dropped.
    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        self.leeway = leeway.as_secs();
        self
    }

    /// The algorithm of the first key in force: with one key, the one algorithm accepted.
    pub fn algorithm(&self) -> Algorithm {
        // Never empty: `KeySet` refuses to be.
        self.keys().keys()[0].algorithm()
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<KeySet> {
        // A writer only swaps the `Arc`, which cannot panic halfway: a poisoned lock still
        // holds a whole key set.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `keys` in force for this verifier and every clone of it. Verifications under way
    /// finish with the keys they started with.
    pub fn replace_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Checks `token` at time `now_unix_secs` (seconds since the Unix epoch) and returns its
    /// claims. Checks, in order: length, shape, algorithm and key (by `kid`), signature,
    /// `iss`/`aud` when configured, `exp` (required), `nbf` (when present), `sub`.
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header = Header::decode(header_b64)?;
        let alg = algorithm(&header.alg).ok_or(AuthError::WrongAlgorithm)?;
        // RFC 7515 §4.1.11: "If any of the listed extension Header Parameters are not
        // understood and supported by the recipient, then the JWS is invalid." herald supports
        // none, and "crit" MUST NOT be an empty list.
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let keys = self.keys();
        let selected = keys.select(alg, header.kid.as_deref())?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::Malformed)?;
        // RFC 7515 §5.2: the signature is over the ASCII of `header.payload`, as sent.
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !selected.verify(signing_input.as_bytes(), &signature) {
            return Err(AuthError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| AuthError::Malformed)?;
        let claims: RawClaims =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Malformed)?;
        self.check(claims, now_unix_secs)
    }

    /// The checks behind the signature, in the order herald has always made them.
    fn check(&self, claims: RawClaims, now_unix_secs: u64) -> Result<Claims, AuthError> {
        // A configured issuer or audience is required: an absent claim (or one that is not a
        // string or a list of strings) is refused as a wrong one is.
        if let Some(issuer) = &self.issuer {
            if names(claims.iss.as_ref(), issuer) != Some(true) {
                return Err(AuthError::WrongIssuer);
            }
        }
        if let Some(audience) = &self.audience {
            if names(claims.aud.as_ref(), audience) != Some(true) {
                return Err(AuthError::WrongAudience);
            }
        }

        // RFC 7519 §4.1.4: "the current date/time MUST be before the expiration date/time".
        let exp = match claims.exp {
            Some(v) => numeric_date(&v)?,
            None => return Err(AuthError::Malformed),
        };
        if now_unix_secs >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        // RFC 7519 §4.1.5: "the current date/time MUST be after or equal to the not-before
        // date/time".
        if let Some(v) = claims.nbf {
            if numeric_date(&v)? > now_unix_secs.saturating_add(self.leeway) {
                return Err(AuthError::NotYetValid);
            }
        }
        let sub = match claims.sub {
            None => return Err(AuthError::MissingSub),
            Some(Value::String(s)) => s,
            Some(_) => return Err(AuthError::BadSub),
        };
        validate_user_id(&sub).map_err(|_| AuthError::BadSub)?;
        Ok(Claims { sub, exp })
    }
}

/// The header members herald reads. Others are ignored, as RFC 7515 §4 lets a recipient do with
/// parameters it does not use (`crit` aside).
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Header {
    fn decode(encoded: &str) -> Result<Header, AuthError> {
        let json = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| AuthError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)
    }
}

/// The claims herald reads, each kept loose so that a wrong type is reported as the fault it
/// is rather than as a JSON error. A claim given twice is malformed.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
}

/// Whether `claim` (`iss` or `aud`) is `wanted` or a list naming it; `None` when it is absent or
/// neither a string nor a list of strings.
fn names(claim: Option<&Value>, wanted: &str) -> Option<bool> {
    match claim? {
        Value::String(s) => Some(s == wanted),
        Value::Array(items) => items.iter().try_fold(false, |found, item| {
            // RFC 7519 §4.1.3: a list is "an array of case-sensitive strings"; one holding
            // anything else names no one.
            let item = item.as_str()?;
            Some(found || item == wanted)
        }),
        _ => None,
    }
}

/// RFC 7519 §2 NumericDate: seconds since the epoch, possibly with a fraction, which is dropped.
fn numeric_date(v: &Value) -> Result<u64, AuthError> {
    let n = match v {
        Value::Number(n) => n,
        _ => return Err(AuthError::Malformed),
    };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        // `as` saturates at u64::MAX for floats too large.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f as u64),
        _ => Err(AuthError::Malformed),
    }
}

/// The algorithms herald verifies, by their JOSE names; the keys in force narrow them further.
fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    use super::*;
    use crate::rooms::MAX_USER_ID_LEN;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000;
    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_rs256_public.pem");
    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt_rs256_private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_es256_public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt_es256_private.pem");
    const P384_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_p384_public.pem");

    fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
        encode(&Header::new(alg), &claims, key).unwrap()
    }

    fn hs256(claims: Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
    }

    fn rs256(claims: Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        sign(Algorithm::RS256, &key, claims)
    }

    fn es256(claims: Value) -> String {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        sign(Algorithm::ES256, &key, claims)
    }

    fn hs() -> Verifier {
        Verifier::from_secret(SECRET)
    }

    fn rs() -> Verifier {
        Verifier::from_public_key_pem(RSA_PUBLIC).unwrap()
    }

    fn es() -> Verifier {
        Verifier::from_public_key_pem(EC_PUBLIC).unwrap()
    }

    fn ok(sub: &str, exp: u64) -> Result<Claims, AuthError> {
        Ok(Claims {
            sub: sub.to_owned(),
            exp,
        })
    }

    /// A token whose header and claims are given as JSON text and whose signature is `sig`,
    /// for headers `encode` will not write (`alg: none`).
    fn hand_made(header: &str, claims: &str, sig: &str) -> String {
        format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    fn good_claims() -> Value {
        json!({"sub": "alice", "exp": NOW + 60})
    }

    macro_rules! verify_cases {
        ($($name:ident: $verifier:expr, $token:expr => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let token: String = $token;
                    assert_eq!($verifier.verify(&token, NOW), $expected);
                }
            )*
        };
    }

    verify_cases! {
        hs256_good: hs(), hs256(good_claims()) => ok("alice", NOW + 60);
        hs256_wrong_secret: hs(),
            sign(Algorithm::HS256, &EncodingKey::from_secret(b"another secret of 32 bytes......"),
                 good_claims())
            => Err(AuthError::BadSignature);
        hs256_payload_swapped: hs(), {
            let good = hs256(good_claims());
            let other = hs256(json!({"sub": "mallory", "exp": NOW + 60}));
            let g: Vec<&str> = good.split('.').collect();
            let o: Vec<&str> = other.split('.').collect();
            format!("{}.{}.{}", g[0], o[1], g[2])
        } => Err(AuthError::BadSignature);
        expired_by_one_second: hs(), hs256(json!({"sub": "alice", "exp": NOW - 1}))
            => Err(AuthError::Expired);
        expires_this_second: hs(), hs256(json!({"sub": "alice", "exp": NOW}))
            => Err(AuthError::Expired);
        expired_within_leeway: hs().with_leeway(Duration::from_secs(10)),
            hs256(json!({"sub": "alice", "exp": NOW - 5})) => ok("alice", NOW - 5);
        expired_beyond_leeway: hs().with_leeway(Duration::from_secs(10)),
            hs256(json!({"sub": "alice", "exp": NOW - 10})) => Err(AuthError::Expired);
        exp_missing: hs(), hs256(json!({"sub": "alice"})) => Err(AuthError::Malformed);
        exp_not_a_number: hs(), hs256(json!({"sub": "alice", "exp": "tomorrow"}))
            => Err(AuthError::Malformed);
        exp_negative: hs(), hs256(json!({"sub": "alice", "exp": -1}))
            => Err(AuthError::Malformed);
        exp_fractional: hs(), hs256(json!({"sub": "alice", "exp": (NOW + 60) as f64 + 0.5}))
            => ok("alice", NOW + 60);
        exp_huge_with_leeway: hs().with_leeway(Duration::from_secs(60)),
            hs256(json!({"sub": "alice", "exp": u64::MAX})) => ok("alice", u64::MAX);
        nbf_in_future: hs(), hs256(json!({"sub": "alice", "exp": NOW + 60, "nbf": NOW + 30}))
            => Err(AuthError::NotYetValid);
        nbf_within_leeway: hs().with_leeway(Duration::from_secs(10)),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "nbf": NOW + 5})) => ok("alice", NOW + 60);
        nbf_now: hs(), hs256(json!({"sub": "alice", "exp": NOW + 60, "nbf": NOW}))
            => ok("alice", NOW + 60);
        nbf_not_a_number: hs(), hs256(json!({"sub": "alice", "exp": NOW + 60, "nbf": "now"}))
            => Err(AuthError::Malformed);
        sub_missing: hs(), hs256(json!({"exp": NOW + 60})) => Err(AuthError::MissingSub);
        sub_empty: hs(), hs256(json!({"sub": "", "exp": NOW + 60})) => Err(AuthError::BadSub);
        sub_too_long: hs(),
            hs256(json!({"sub": "a".repeat(MAX_USER_ID_LEN + 1), "exp": NOW + 60}))
            => Err(AuthError::BadSub);
        sub_longest_allowed: hs(),
            hs256(json!({"sub": "a".repeat(MAX_USER_ID_LEN), "exp": NOW + 60}))
            => ok(&"a".repeat(MAX_USER_ID_LEN), NOW + 60);
        sub_number: hs(), hs256(json!({"sub": 42, "exp": NOW + 60})) => Err(AuthError::BadSub);
        iss_matches: hs().with_issuer("auth.example"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "iss": "auth.example"}))
            => ok("alice", NOW + 60);
        iss_wrong: hs().with_issuer("auth.example"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "iss": "evil.example"}))
            => Err(AuthError::WrongIssuer);
        iss_missing_when_enforced: hs().with_issuer("auth.example"), hs256(good_claims())
            => Err(AuthError::WrongIssuer);
        aud_matches: hs().with_audience("herald"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "aud": "herald"}))
            => ok("alice", NOW + 60);
        aud_listed: hs().with_audience("herald"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "aud": ["billing", "herald"]}))
            => ok("alice", NOW + 60);
        aud_wrong: hs().with_audience("herald"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "aud": "billing"}))
            => Err(AuthError::WrongAudience);
        aud_missing_when_enforced: hs().with_audience("herald"), hs256(good_claims())
            => Err(AuthError::WrongAudience);
        iss_aud_ignored_when_not_configured: hs(),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "iss": "x", "aud": ["y"]}))
            => ok("alice", NOW + 60);
        alg_none: hs(),
            hand_made(r#"{"alg":"none","typ":"JWT"}"#, r#"{"sub":"alice","exp":1700000060}"#, "")
            => Err(AuthError::WrongAlgorithm);
        alg_none_against_rs256: rs(),
            hand_made(r#"{"alg":"none"}"#, r#"{"sub":"alice","exp":1700000060}"#, "")
            => Err(AuthError::WrongAlgorithm);
        alg_hs384_against_hs256: hs(),
            sign(Algorithm::HS384, &EncodingKey::from_secret(SECRET), good_claims())
            => Err(AuthError::WrongAlgorithm);
        // The classic confusion attack: the RSA public key is public, so a forger HMACs with
        // it and hopes the verifier lets the token's `alg` pick HS256.
        hs256_with_rsa_public_key_as_secret: rs(),
            sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC), good_claims())
            => Err(AuthError::WrongAlgorithm);
        hs256_with_ec_public_key_as_secret: es(),
            sign(Algorithm::HS256, &EncodingKey::from_secret(EC_PUBLIC), good_claims())
            => Err(AuthError::WrongAlgorithm);
        header_without_alg: hs(),
            hand_made(r#"{"typ":"JWT"}"#, r#"{"sub":"alice","exp":1700000060}"#, "AAAA")
            => Err(AuthError::Malformed);
        claims_not_json: hs(), hand_made(r#"{"alg":"HS256"}"#, "not json", "AAAA")
            => Err(AuthError::BadSignature);
        garbage: hs(), "not a token".to_owned() => Err(AuthError::Malformed);
        three_empty_parts: hs(), "..".to_owned() => Err(AuthError::Malformed);
        four_parts: hs(), format!("{}.x", hs256(good_claims())) => Err(AuthError::Malformed);
        header_not_base64: hs(), "@@@.e30.AAAA".to_owned() => Err(AuthError::Malformed);
        empty_token: hs(), String::new() => Err(AuthError::Missing);
        too_long: hs(), "a".repeat(MAX_TOKEN_LEN + 1)
            => Err(AuthError::TooLong { len: MAX_TOKEN_LEN + 1, max: MAX_TOKEN_LEN });
        rs256_round_trip: rs(), rs256(good_claims()) => ok("alice", NOW + 60);
        rs256_expired: rs(), rs256(json!({"sub": "alice", "exp": NOW - 1}))
            => Err(AuthError::Expired);
        es256_round_trip: es(), es256(good_claims()) => ok("alice", NOW + 60);
        es256_against_rs256: rs(), es256(good_claims()) => Err(AuthError::WrongAlgorithm);
        rs256_against_es256: es(), rs256(good_claims()) => Err(AuthError::WrongAlgorithm);
        rs256_against_hs256: hs(), rs256(good_claims()) => Err(AuthError::WrongAlgorithm);
    }

    #[test]
    fn algorithm_follows_the_key() {
        assert_eq!(hs().algorithm(), Algorithm::HS256);
        assert_eq!(rs().algorithm(), Algorithm::RS256);
        assert_eq!(es().algorithm(), Algorithm::ES256);
    }

    #[test]
    fn pkcs1_rsa_public_key_accepted() {
        let pem = include_bytes!("../../tests/fixtures/jwt_rs256_public_pkcs1.pem");
        let v = Verifier::from_public_key_pem(pem).unwrap();
        assert_eq!(v.verify(&rs256(good_claims()), NOW), ok("alice", NOW + 60));
    }

    #[test]
    fn pem_refused() {
        let refused = |pem: &[u8]| Verifier::from_public_key_pem(pem).err();
        assert!(matches!(
            refused(b"not a pem"),
            Some(ConfigError::InvalidPem)
        ));
        assert!(matches!(refused(b""), Some(ConfigError::InvalidPem)));
        assert!(matches!(
            refused(P384_PUBLIC),
            Some(ConfigError::UnsupportedCurve)
        ));
        // A private key given where the public one belongs is refused rather than half used.
        assert!(matches!(
            refused(RSA_PRIVATE),
            Some(ConfigError::InvalidPem)
        ));
        assert!(matches!(refused(EC_PRIVATE), Some(ConfigError::InvalidPem)));
    }

    #[test]
    fn client_message_tells_only_expiry() {
        let all = [
            AuthError::Missing,
            AuthError::TooLong { len: 1, max: 0 },
            AuthError::Malformed,
            AuthError::WrongAlgorithm,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::MissingSub,
            AuthError::BadSub,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
        ];
        for e in &all {
            assert!(!e.to_string().is_empty());
            if *e == AuthError::Expired {
                assert_eq!(e.message(), "token expired");
                assert!(e.is_expired());
            } else {
                assert_eq!(e.message(), "unauthorized", "{e:?}");
                assert!(!e.is_expired());
            }
        }
    }

    /// RFC 7515 Appendix A: the JWS examples. Their claims are `iss`, `exp` (1300819380) and a
    /// private claim, no `sub`: a token whose signature verifies gets as far as `MissingSub`.
    const RFC7515_NOW: u64 = 1_300_819_379;
    const RFC7515_PAYLOAD: &str =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

    /// `token` verifies up to its missing `sub`, and any change to its last signature
    /// character makes the signature fail.
    fn assert_rfc7515_example(verifier: &Verifier, token: &str) {
        assert_eq!(
            verifier.verify(token, RFC7515_NOW),
            Err(AuthError::MissingSub)
        );
        assert_eq!(
            verifier
                .clone()
                .with_issuer("joe")
                .verify(token, RFC7515_NOW),
            Err(AuthError::MissingSub)
        );
        let mut tampered = token.to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            verifier.verify(&tampered, RFC7515_NOW),
            Err(AuthError::BadSignature)
        );
    }

    fn from_jwks(jwks: Value) -> Verifier {
        let jwks = crate::auth::jwks::parse(jwks.to_string().as_bytes()).unwrap();
        Verifier::from_keys(KeySet::new(jwks.keys).unwrap())
    }

    #[test]
    fn rfc7515_a1_hs256() {
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let token = format!(
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{RFC7515_PAYLOAD}.\
             dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_rfc7515_example(&Verifier::from_secret(&key), &token);
    }

    #[test]
    fn rfc7515_a2_rs256() {
        let verifier = from_jwks(json!({"keys": [{
            "kty": "RSA",
            "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJ\
                  PMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0L\
                  OL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZl\
                  xvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAc\
                  DTW9gb54h4FRWyuXpoQ",
            "e": "AQAB"
        }]}));
        let token = format!(
            "eyJhbGciOiJSUzI1NiJ9.{RFC7515_PAYLOAD}.\
             cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_\
             O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIAR\
             NPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ\
             1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
        );
        assert_rfc7515_example(&verifier, &token);
    }

    #[test]
    fn rfc7515_a3_es256() {
        let verifier = from_jwks(json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }]}));
        let token = format!(
            "eyJhbGciOiJFUzI1NiJ9.{RFC7515_PAYLOAD}.\
             DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
        );
        assert_rfc7515_example(&verifier, &token);
    }

    /// A token signed with `key`, whose header is `header` (JSON text, naming `alg`).
    fn signed_with_header(alg: Algorithm, key: &EncodingKey, header: &str) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(good_claims().to_string())
        );
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
        format!("{message}.{signature}")
    }

    #[test]
    fn a_header_listing_critical_extensions_is_refused() {
        let key = EncodingKey::from_secret(SECRET);
        let plain = signed_with_header(Algorithm::HS256, &key, r#"{"alg":"HS256"}"#);
        assert_eq!(hs().verify(&plain, NOW), ok("alice", NOW + 60));
        for header in [
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"HS256","crit":[]}"#,
        ] {
            let token = signed_with_header(Algorithm::HS256, &key, header);
            assert_eq!(
                hs().verify(&token, NOW),
                Err(AuthError::Malformed),
                "{header}"
            );
        }
        let kid_not_a_string =
            signed_with_header(Algorithm::HS256, &key, r#"{"alg":"HS256","kid":7}"#);
        assert_eq!(
            hs().verify(&kid_not_a_string, NOW),
            Err(AuthError::Malformed)
        );
    }

    /// An RS256 and an ES256 key, named `rsa` and `ec`.
    fn named_keys() -> Verifier {
        Verifier::from_keys(
            KeySet::new(vec![
                Key::from_pem(RSA_PUBLIC).unwrap().with_kid("rsa"),
                Key::from_pem(EC_PUBLIC).unwrap().with_kid("ec"),
            ])
            .unwrap(),
        )
    }

    fn with_kid(alg: Algorithm, key: &EncodingKey, kid: &str) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        encode(&header, &good_claims(), key).unwrap()
    }

    #[test]
    fn the_kid_picks_the_key() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let v = named_keys();
        assert_eq!(
            v.verify(&with_kid(Algorithm::RS256, &rsa, "rsa"), NOW),
            ok("alice", NOW + 60)
        );
        assert_eq!(
            v.verify(&with_kid(Algorithm::ES256, &ec, "ec"), NOW),
            ok("alice", NOW + 60)
        );
        assert_eq!(
            v.verify(&with_kid(Algorithm::RS256, &rsa, "ec"), NOW),
            Err(AuthError::WrongAlgorithm)
        );
        assert_eq!(
            v.verify(&with_kid(Algorithm::RS256, &rsa, "other"), NOW),
            Err(AuthError::UnknownKid)
        );
        assert_eq!(
            v.verify(&rs256(good_claims()), NOW),
            Err(AuthError::KidRequired)
        );
        assert_eq!(
            v.verify(&hs256(good_claims()), NOW),
            Err(AuthError::WrongAlgorithm)
        );
        // A single key given without a kid takes tokens naming any, as it always has.
        assert_eq!(
            rs().verify(&with_kid(Algorithm::RS256, &rsa, "from-the-idp"), NOW),
            ok("alice", NOW + 60)
        );
        assert_eq!(
            hs().verify(
                &with_kid(Algorithm::HS256, &EncodingKey::from_secret(SECRET), "x"),
                NOW
            ),
            ok("alice", NOW + 60)
        );
    }

    #[test]
    fn replaced_keys_are_in_force_for_every_clone() {
        let v = rs().with_audience("herald");
        let clone = v.clone();
        let token = es256(json!({"sub": "alice", "exp": NOW + 60, "aud": "herald"}));
        assert_eq!(clone.verify(&token, NOW), Err(AuthError::WrongAlgorithm));
        v.replace_keys(KeySet::one(Key::from_pem(EC_PUBLIC).unwrap()));
        assert_eq!(clone.verify(&token, NOW), ok("alice", NOW + 60));
        assert_eq!(clone.algorithm(), Algorithm::ES256);
    }

    verify_cases! {
        iss_listed: hs().with_issuer("auth.example"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "iss": ["other", "auth.example"]}))
            => ok("alice", NOW + 60);
        iss_not_a_string: hs().with_issuer("auth.example"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "iss": 7}))
            => Err(AuthError::WrongIssuer);
        iss_ignored_when_not_configured_whatever_its_type: hs(),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "iss": 7, "aud": {}}))
            => ok("alice", NOW + 60);
        aud_list_with_a_number: hs().with_audience("herald"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "aud": ["herald", 7]}))
            => Err(AuthError::WrongAudience);
        aud_empty_list: hs().with_audience("herald"),
            hs256(json!({"sub": "alice", "exp": NOW + 60, "aud": []}))
            => Err(AuthError::WrongAudience);
        wrong_issuer_told_before_expiry: hs().with_issuer("auth.example"),
            hs256(json!({"sub": "alice", "exp": NOW - 1, "iss": "evil.example"}))
            => Err(AuthError::WrongIssuer);
        claim_given_twice: hs(),
            {
                let message = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
                    URL_SAFE_NO_PAD.encode(r#"{"sub":"alice","exp":1700000060,"sub":"bob"}"#)
                );
                let key = EncodingKey::from_secret(SECRET);
                let signature =
                    jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
                format!("{message}.{signature}")
            }
            => Err(AuthError::Malformed);
        signature_not_base64url: hs(),
            format!("{}.{}.@@", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#), URL_SAFE_NO_PAD.encode("{}"))
            => Err(AuthError::Malformed);
        es256_signature_of_the_wrong_length: es(),
            {
                let token = es256(good_claims());
                format!("{token}AAAA")
            }
            => Err(AuthError::BadSignature);
    }

    #[test]
    fn a_kid_refusal_tells_the_client_nothing_more() {
        for e in [AuthError::UnknownKid, AuthError::KidRequired] {
            assert_eq!(e.message(), "unauthorized");
            assert!(!e.is_expired());
            assert!(e.to_string().contains("kid"), "{e}");
        }
    }
}
