//! JWT verification at the handshake: one `Verifier::verify` per connection that presents a
//! token. The time per verification bounds how many handshakes a second one core can
//! authenticate.
//!
//! - `auth/verify`: each algorithm herald accepts, the refusal of a forged HS256 token, a token
//!   whose `kid` picks its key among several, and the worst a forged token can cost: tried
//!   against every key without a kid.
//! - `auth/backend`: RS256, ES256 and HS256 through herald (signatures by ring) and through
//!   jsonwebtoken's pure-Rust `rust_crypto` backend, which herald verified with before, side by
//!   side. Both are whole verifications: header, signature, then `exp` and `sub`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header};
use jsonwebtoken::{TokenData, Validation};
use serde::Deserialize;
use serde_json::json;

use herald::auth::{AuthError, Key, KeySet, Verifier, MAX_KEYS_WITHOUT_KID};

/// The HS256 secret: 32 bytes, the least RFC 7518 §3.2 allows.
const SECRET: &[u8] = b"herald-bench-secret-of-32-bytes!";
/// Another secret of the same length: what a forger signs with.
const FORGED_SECRET: &[u8] = b"not-the-secret-herald-was-given!";
const RSA_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/jwt_rs256_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/jwt_rs256_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/jwt_es256_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../tests/fixtures/jwt_es256_public.pem");

/// The clock value every verification is made at (2026-11-18), so that a run does not depend on
/// the machine's clock.
const NOW: u64 = 1_795_000_000;
/// Seconds the tokens are valid for: an hour, a common access-token lifetime.
const TTL: u64 = 3_600;
/// The user id in `sub`.
const SUB: &str = "user-123";
/// Keys in the set of the `RS256_kid_of_3` case; the token names the last.
const KEYS_BY_KID: usize = 3;

/// A token as an identity provider issues one: `sub`, `iat` and `exp`, and a `kid` when given.
fn token_with_kid(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let claims = json!({"sub": SUB, "iat": NOW, "exp": NOW + TTL});
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).expect("a signed token")
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    token_with_kid(alg, key, None)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("the RSA private key fixture")
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE).expect("the EC private key fixture")
}

fn verifier_from_pem(pem: &[u8]) -> Verifier {
    Verifier::from_public_key_pem(pem).expect("a public key fixture")
}

fn public_key(pem: &[u8]) -> Key {
    Key::from_pem(pem).expect("a public key fixture")
}

fn verify(c: &mut Criterion) {
    let hs256 = Verifier::from_secret(SECRET);
    let by_kid = Verifier::from_keys(
        KeySet::new(
            (0..KEYS_BY_KID)
                .map(|i| public_key(RSA_PUBLIC).with_kid(format!("key-{i}")))
                .collect(),
        )
        .expect("keys of distinct kids"),
    );
    let without_kid = Verifier::from_keys(
        KeySet::new(vec![public_key(RSA_PUBLIC); MAX_KEYS_WITHOUT_KID])
            .expect("as many keys without a kid as allowed"),
    );
    let cases = [
        (
            "HS256",
            hs256.clone(),
            token(Algorithm::HS256, &EncodingKey::from_secret(SECRET)),
            None,
        ),
        (
            "HS256_bad_signature",
            hs256,
            token(Algorithm::HS256, &EncodingKey::from_secret(FORGED_SECRET)),
            Some(AuthError::BadSignature),
        ),
        (
            "RS256",
            verifier_from_pem(RSA_PUBLIC),
            token(Algorithm::RS256, &rsa_key()),
            None,
        ),
        (
            "ES256",
            verifier_from_pem(EC_PUBLIC),
            token(Algorithm::ES256, &ec_key()),
            None,
        ),
        (
            "RS256_kid_of_3",
            by_kid,
            token_with_kid(
                Algorithm::RS256,
                &rsa_key(),
                Some(&format!("key-{}", KEYS_BY_KID - 1)),
            ),
            None,
        ),
        (
            "RS256_forged_against_4_keys",
            without_kid,
            {
                // A real RS256 token with its signature's last character changed.
                let mut forged = token(Algorithm::RS256, &rsa_key());
                let last = if forged.ends_with('A') { "B" } else { "A" };
                forged.pop();
                forged.push_str(last);
                forged
            },
            Some(AuthError::BadSignature),
        ),
    ];

    let mut g = c.benchmark_group("auth/verify");
    // One element is one token verified: the throughput line reads as verifications a second.
    g.throughput(Throughput::Elements(1));
    for (name, verifier, token, refusal) in &cases {
        // Each case measures the path it is named after.
        match (verifier.verify(token, NOW), refusal) {
            (Ok(claims), None) => assert_eq!(claims.sub, SUB),
            (Err(e), Some(expected)) => assert_eq!(&e, expected),
            (got, _) => panic!("{name}: unexpected {got:?}"),
        }
        println!("auth/verify/{name}: token of {} bytes", token.len());
        g.bench_with_input(BenchmarkId::from_parameter(name), token, |b, token| {
            b.iter(|| verifier.verify(black_box(token), black_box(NOW)).is_ok())
        });
    }
    g.finish();
}

/// The claims the jsonwebtoken path reads, as herald did.
#[derive(Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
}

/// A verification as herald made it with jsonwebtoken: the header's `alg` checked first, then
/// `decode` (signature, no clock-reading checks), then `exp` against `now` and `sub` read.
fn jsonwebtoken_verify(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    validation: &Validation,
    now: u64,
) -> Option<String> {
    if decode_header(token).ok()?.alg != alg {
        return None;
    }
    let TokenData { claims, .. } = decode::<Claims>(token, key, validation).ok()?;
    let exp = claims.exp?.as_u64()?;
    if now >= exp {
        return None;
    }
    match claims.sub? {
        serde_json::Value::String(sub) => Some(sub),
        _ => None,
    }
}

/// jsonwebtoken's checks as herald configured them: the one algorithm, nothing read from the
/// clock, no claim required, `aud` not looked at.
fn jsonwebtoken_validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v.required_spec_claims.clear();
    v
}

fn backend(c: &mut Criterion) {
    let cases = [
        (
            Algorithm::RS256,
            verifier_from_pem(RSA_PUBLIC),
            DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("the RSA public key fixture"),
            token(Algorithm::RS256, &rsa_key()),
        ),
        (
            Algorithm::ES256,
            verifier_from_pem(EC_PUBLIC),
            DecodingKey::from_ec_pem(EC_PUBLIC).expect("the EC public key fixture"),
            token(Algorithm::ES256, &ec_key()),
        ),
        (
            Algorithm::HS256,
            Verifier::from_secret(SECRET),
            DecodingKey::from_secret(SECRET),
            token(Algorithm::HS256, &EncodingKey::from_secret(SECRET)),
        ),
    ];
    let mut g = c.benchmark_group("auth/backend");
    g.throughput(Throughput::Elements(1));
    for (alg, herald, key, token) in &cases {
        let name = format!("{alg:?}");
        let validation = jsonwebtoken_validation(*alg);
        assert_eq!(
            jsonwebtoken_verify(token, *alg, key, &validation, NOW).as_deref(),
            Some(SUB)
        );
        assert_eq!(herald.verify(token, NOW).map(|c| c.sub).as_deref(), Ok(SUB));
        g.bench_with_input(
            BenchmarkId::new(&name, "jsonwebtoken_rust_crypto"),
            token,
            |b, token| {
                b.iter(|| {
                    jsonwebtoken_verify(black_box(token), *alg, key, &validation, black_box(NOW))
                })
            },
        );
        g.bench_with_input(BenchmarkId::new(&name, "herald_ring"), token, |b, token| {
            b.iter(|| herald.verify(black_box(token), black_box(NOW)).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, verify, backend);
criterion_main!(benches);
