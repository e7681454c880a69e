//! JWT verification: one configured algorithm and key, a clock value passed in.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs1::DecodeRsaPublicKey;
use serde::Deserialize;

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
    /// Not three base64url parts, undecodable JSON, or a claim of the wrong type.
    Malformed,
    /// The header's `alg` is not the one configured (including `none`).
    WrongAlgorithm,
    /// The signature does not verify with the configured key.
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

    fn from_jwt(e: &jsonwebtoken::errors::Error) -> AuthError {
        match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthError::WrongAlgorithm
            }
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
            _ => AuthError::Malformed,
        }
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

/// Why a [`Verifier`] could not be built from the configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// Both a shared secret and a public key were given; herald verifies with one.
    SecretAndPublicKey,
    /// The HS256 secret is shorter than [`MIN_SECRET_LEN`].
    SecretTooShort { len: usize, min: usize },
    /// The public key file could not be read.
    ReadPublicKey {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// Not a PEM RSA or EC public key.
    InvalidPem,
    /// An EC key on a curve other than P-256 (ES256 is the only EC algorithm accepted).
    UnsupportedCurve,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SecretAndPublicKey => {
                f.write_str("--jwt-secret and --jwt-public-key are exclusive: give one")
            }
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
            ConfigError::InvalidPem => {
                f.write_str("--jwt-public-key is not a PEM RSA or EC (P-256) public key")
            }
            ConfigError::UnsupportedCurve => {
                f.write_str("--jwt-public-key is an EC key not on P-256; only ES256 is supported")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::ReadPublicKey { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Verifies JWTs signed with one algorithm and one key, fixed at construction.
///
/// Build it with [`Verifier::from_secret`] or [`Verifier::from_public_key_pem`], narrow it with
/// [`Verifier::with_issuer`], [`Verifier::with_audience`] and [`Verifier::with_leeway`], then call
/// [`Verifier::verify`] with the current Unix time.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The only algorithm accepted. Fixed by the key type, never read from a token: a token
    /// choosing its own algorithm is how HS256-with-the-RSA-public-key forgeries work.
    alg: Algorithm,
    key: DecodingKey,
    issuer: Option<String>,
    audience: Option<String>,
    /// Seconds of clock skew forgiven on `exp` and `nbf`.
    leeway: u64,
    /// jsonwebtoken's checks, derived from the fields above by `rebuild`. Its clock-reading
    /// `exp`/`nbf` checks are off: this module checks them against the `now` it is given.
    validation: Validation,
}

impl Verifier {
    /// HS256 with a shared secret. The caller should refuse secrets shorter than
    /// [`MIN_SECRET_LEN`] (configuration does); this constructor takes any.
    pub fn from_secret(secret: &[u8]) -> Verifier {
        Verifier::new(Algorithm::HS256, DecodingKey::from_secret(secret))
    }

    /// RS256 or ES256 with a PEM public key (`BEGIN PUBLIC KEY`, or PKCS#1 `BEGIN RSA PUBLIC
    /// KEY`); the algorithm follows from the key type. EC keys must be on P-256.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Verifier, ConfigError> {
        // jsonwebtoken would take a private key here and fail on every token; refuse it now.
        if !matches!(pem_label(pem), Some("PUBLIC KEY" | "RSA PUBLIC KEY")) {
            return Err(ConfigError::InvalidPem);
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            // Parsed now so that a broken key fails at startup rather than on every token.
            let der = key
                .try_get_as_bytes()
                .map_err(|_| ConfigError::InvalidPem)?;
            if rsa::RsaPublicKey::from_pkcs1_der(der).is_err() {
                return Err(ConfigError::InvalidPem);
            }
            return Ok(Verifier::new(Algorithm::RS256, key));
        }
        let key = DecodingKey::from_ec_pem(pem).map_err(|_| ConfigError::InvalidPem)?;
        // The backend's ES256 verifier parses the point as P-256: a P-384 (or invalid) point
        // fails here, at startup.
        let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        if (provider.verifier_factory)(&Algorithm::ES256, &key).is_err() {
            return Err(ConfigError::UnsupportedCurve);
        }
        Ok(Verifier::new(Algorithm::ES256, key))
    }

    fn new(alg: Algorithm, key: DecodingKey) -> Verifier {
        let mut v = Verifier {
            alg,
            key,
            issuer: None,
            audience: None,
            leeway: 0,
            validation: Validation::new(alg),
        };
        v.rebuild();
        v
    }

    /// Require `iss` to equal `issuer`. Without it, `iss` is not looked at.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Verifier {
        self.issuer = Some(issuer.into());
        self.rebuild();
        self
    }

    /// Require `aud` to name `audience`. Without it, `aud` is not looked at.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Verifier {
        self.audience = Some(audience.into());
        self.rebuild();
        self
    }

    /// Forgive this much clock skew between the token's issuer and herald on `exp` and `nbf`.
    /// JWT times are whole seconds, so sub-second parts are dropped.
    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        self.leeway = leeway.as_secs();
        self
    }

    /// The one algorithm this verifier accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    fn rebuild(&mut self) {
        let mut v = Validation::new(self.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        v.required_spec_claims.clear();
        // jsonwebtoken skips `iss`/`aud` checks when the claim is absent; making it required
        // when configured turns an absent claim into a refusal.
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".to_owned());
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".to_owned());
            }
            // Not configured: ignore `aud` rather than refuse every token that carries one.
            None => v.validate_aud = false,
        }
        self.validation = v;
    }

    /// Checks `token` at time `now_unix_secs` (seconds since the Unix epoch) and returns its
    /// claims. Checks, in order: length, algorithm, signature, `iss`/`aud` when configured,
    /// `exp` (required), `nbf` (when present), `sub`.
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
        // Looked at before jsonwebtoken so that `alg: none` and other algorithms it does not
        // know are named `WrongAlgorithm`, not `Malformed`.
        if header_alg(token)? != alg_name(self.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::from_jwt(&e))?;
        let claims = data.claims;

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
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(AuthError::BadSub),
        };
        validate_user_id(&sub).map_err(|_| AuthError::BadSub)?;
        Ok(Claims { sub, exp })
    }
}

/// The claims herald reads, each kept loose so that a wrong type is reported as the fault it
/// is rather than as a JSON error.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
}

/// RFC 7519 §2 NumericDate: seconds since the epoch, possibly with a fraction, which is dropped.
fn numeric_date(v: &serde_json::Value) -> Result<u64, AuthError> {
    let n = match v {
        serde_json::Value::Number(n) => n,
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

/// The label of the first PEM block (`PUBLIC KEY` in `-----BEGIN PUBLIC KEY-----`).
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    Some(&rest[..rest.find("-----")?])
}

/// The `alg` of a token's header, without checking anything else.
fn header_alg(token: &str) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let h: Header = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    Ok(h.alg)
}

/// The JOSE name of the algorithms a [`Verifier`] can be built with.
fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        // Unreachable through the constructors; a name no header carries refuses everything.
        _ => "",
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
}
