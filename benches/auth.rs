//! JWT verification at the handshake: one `Verifier::verify` per connection that presents a
//! token, for each algorithm herald accepts, and the refusal of a forged HS256 token. The time
//! per verification bounds how many handshakes a second one core can authenticate.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use herald::auth::{AuthError, Verifier};

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

/// A token as an identity provider issues one: `sub`, `iat` and `exp`.
fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let claims = json!({"sub": SUB, "iat": NOW, "exp": NOW + TTL});
    encode(&Header::new(alg), &claims, key).expect("a signed token")
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

fn verify(c: &mut Criterion) {
    let hs256 = Verifier::from_secret(SECRET);
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

criterion_group!(benches, verify);
criterion_main!(benches);
