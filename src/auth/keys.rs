//! The keys a [`Verifier`](super::Verifier) checks signatures with, and which of them a token is
//! checked against.
//!
//! A [`Key`] is one algorithm's key, the algorithm fixed by the key's type and never by a token:
//! HS256 for a secret, RS256 for an RSA key, ES256 for a P-256 key. A [`KeySet`] is the keys in
//! force. A token is checked against:
//!
//! - the key its header's `kid` names, alone, when a key has that kid;
//! - otherwise the keys of its `alg` that were given without a kid, in the order given, at most
//!   [`MAX_KEYS_WITHOUT_KID`] of them (a set with more is refused), so that a forged token costs
//!   a few signature checks at most.
//!
//! So a key given a kid verifies only the tokens that name it, and a key given without one
//! verifies the tokens of its algorithm whatever kid they carry, as the one `--jwt-public-key` or
//! the secret always has.
//!
//! Signatures are checked with *ring*: RSASSA-PKCS1-v1_5 with SHA-256 on 2048 to 8192-bit keys,
//! ECDSA on P-256 with SHA-256 over JWS's fixed-size `r || s`, HMAC-SHA-256 compared in constant
//! time. Every key is checked when it is built, so a key *ring* would refuse fails at startup or
//! reload, not on every token.

use std::fmt;

use jsonwebtoken::Algorithm;
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
};
use ring::{agreement, hmac, rand};

use super::jwt::{AuthError, ConfigError};
use super::pem;

/// Most keys without a kid one algorithm may have in a [`KeySet`]: a token whose kid names no
/// key is tried against each of them, so this bounds the work a forged token causes.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;

/// Fewest bits of an RSA modulus, counted in whole bytes as *ring*'s RS256 counts them.
const RSA_MIN_BITS: usize = 2048;
/// Most bits of an RSA modulus.
const RSA_MAX_BITS: usize = 8192;
/// Largest RSA public exponent *ring* verifies with, 2^33 - 1.
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;
/// Bytes of one P-256 coordinate.
pub(crate) const P256_COORDINATE_LEN: usize = 32;
/// SEC1's first octet of an uncompressed point.
const SEC1_UNCOMPRESSED: u8 = 0x04;

/// One verification key and the kid it was given.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    material: Material,
}

#[derive(Clone)]
enum Material {
    /// HS256.
    Hmac(hmac::Key),
    /// RS256: modulus and exponent, big-endian without leading zeros, within what *ring* takes
    /// (checked by [`Key::rsa`]).
    Rsa { n: Box<[u8]>, e: Box<[u8]> },
    /// ES256: an uncompressed SEC1 point, checked to be on P-256 by [`Key::p256`].
    P256(Box<[u8]>),
}

impl Key {
    /// An HS256 secret. Any length is taken; configuration refuses secrets shorter than
    /// [`MIN_SECRET_LEN`](super::MIN_SECRET_LEN).
    pub fn secret(secret: &[u8]) -> Key {
        Key {
            kid: None,
            material: Material::Hmac(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        }
    }

    /// The public key of a PEM file (`BEGIN PUBLIC KEY`, or PKCS#1 `BEGIN RSA PUBLIC KEY`):
    /// RS256 for an RSA key, ES256 for a P-256 key.
    pub fn from_pem(pem: &[u8]) -> Result<Key, ConfigError> {
        match pem::public_key(pem)? {
            pem::PublicKey::Rsa { n, e } => Key::rsa(&n, &e),
            pem::PublicKey::P256 { point } => Key::p256(&point),
        }
    }

    /// An RS256 key from its modulus and public exponent, big-endian (leading zeros allowed).
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Key, ConfigError> {
        let n = without_leading_zeros(n);
        let e = without_leading_zeros(e);
        let bits = match n.first() {
            Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        // The bounds of ring's RSA_PKCS1_2048_8192_SHA256, which rounds the lower one to bytes.
        if n.len() * 8 < RSA_MIN_BITS || bits > RSA_MAX_BITS {
            return Err(ConfigError::RsaKeySize { bits });
        }
        // An even modulus is no product of two odd primes; ring refuses it on every signature.
        let odd = |int: &[u8]| int.last().is_some_and(|low| low & 1 == 1);
        let exponent = if e.len() <= 8 {
            e.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b))
        } else {
            u64::MAX
        };
        if !odd(n) || !odd(e) || !(3..=RSA_MAX_EXPONENT).contains(&exponent) {
            return Err(ConfigError::InvalidRsaKey);
        }
        Ok(Key {
            kid: None,
            material: Material::Rsa {
                n: n.into(),
                e: e.into(),
            },
        })
    }

    /// An ES256 key from its SEC1 point, which must be uncompressed and on P-256.
    pub fn p256(point: &[u8]) -> Result<Key, ConfigError> {
        if point.len() != 1 + 2 * P256_COORDINATE_LEN || point[0] != SEC1_UNCOMPRESSED {
            return Err(ConfigError::InvalidEcPoint);
        }
        // ring checks a verification key only when it verifies, and tells a bad key from a bad
        // signature apart to no one. Its ECDH takes the peer's point through the same check
        // (coordinates below p, on the curve, not the identity), so an agreement with a
        // throwaway key says whether the point would ever verify anything.
        let rng = rand::SystemRandom::new();
        let valid = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
            .and_then(|mine| {
                let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
                agreement::agree_ephemeral(mine, &peer, |_| ())
            })
            .is_ok();
        if !valid {
            return Err(ConfigError::InvalidEcPoint);
        }
        Ok(Key {
            kid: None,
            material: Material::P256(point.into()),
        })
    }

    /// This key, named `kid`: from then on it verifies only the tokens that name it.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Key {
        self.kid = Some(kid.into());
        self
    }

    /// The kid this key was given, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            Material::Hmac(_) => Algorithm::HS256,
            Material::Rsa { .. } => Algorithm::RS256,
            Material::P256(_) => Algorithm::ES256,
        }
    }

    /// Whether `signature` (decoded from base64url) signs `message` (the JWS signing input,
    /// `header.payload`) under this key.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            // RFC 7518 §3.4: the ES256 signature is R and S as 32-byte big-endian integers,
            // concatenated: ring's FIXED encoding, which refuses any other length.
            Material::P256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

impl fmt::Debug for Key {
    /// The algorithm and the kid; never the material (a secret must not reach a log).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .finish()
    }
}

/// The keys in force: never empty, a secret alone or public keys only, no two of one algorithm
/// with one kid, at most [`MAX_KEYS_WITHOUT_KID`] without a kid per algorithm.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// A set of `keys`, in the order given: the order in which keys without a kid are tried.
    pub fn new(keys: Vec<Key>) -> Result<KeySet, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::NoKey);
        }
        let secret = keys.iter().any(|k| matches!(k.material, Material::Hmac(_)));
        if secret && keys.len() > 1 {
            return Err(ConfigError::SecretAndPublicKey);
        }
        for (i, key) in keys.iter().enumerate() {
            let alg = key.algorithm();
            let same = |other: &&Key| other.algorithm() == alg && other.kid == key.kid;
            if let Some(kid) = &key.kid {
                // RFC 7517 §4.5 lets keys of different types share a kid; within one type a
                // token naming it would not say which key it means.
                if keys[..i].iter().any(|k| same(&k)) {
                    return Err(ConfigError::DuplicateKid {
                        kid: kid.clone(),
                        algorithm: alg,
                    });
                }
            } else if keys[..=i].iter().filter(same).count() > MAX_KEYS_WITHOUT_KID {
                return Err(ConfigError::TooManyKeysWithoutKid {
                    algorithm: alg,
                    max: MAX_KEYS_WITHOUT_KID,
                });
            }
        }
        Ok(KeySet { keys })
    }

    /// A set of one key: cannot break any rule.
    pub fn one(key: Key) -> KeySet {
        KeySet { keys: vec![key] }
    }

    /// The keys, in the order they were given.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys `token_alg` and `token_kid` (a token's header) select, or why there are none.
    pub(crate) fn select(
        &self,
        token_alg: Algorithm,
        token_kid: Option<&str>,
    ) -> Result<Selected<'_>, AuthError> {
        if !self.keys.iter().any(|k| k.algorithm() == token_alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        if let Some(kid) = token_kid {
            let mut named = self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            if named.peek().is_some() {
                return named
                    .find(|k| k.algorithm() == token_alg)
                    .map(Selected::Named)
                    .ok_or(AuthError::WrongAlgorithm);
            }
        }
        let anonymous = |k: &Key| k.kid.is_none() && k.algorithm() == token_alg;
        if !self.keys.iter().any(anonymous) {
            return Err(match token_kid {
                Some(_) => AuthError::UnknownKid,
                None => AuthError::KidRequired,
            });
        }
        Ok(Selected::WithoutKid {
            keys: &self.keys,
            alg: token_alg,
        })
    }
}

/// The keys a token is checked against; see the module's documentation.
pub(crate) enum Selected<'a> {
    /// The key the token's kid names.
    Named(&'a Key),
    /// The keys of `alg` without a kid, among `keys`: at most [`MAX_KEYS_WITHOUT_KID`].
    WithoutKid { keys: &'a [Key], alg: Algorithm },
}

impl Selected<'_> {
    /// Whether one of the selected keys verifies `signature` over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Selected::Named(key) => key.verifies(message, signature),
            Selected::WithoutKid { keys, alg } => keys
                .iter()
                .filter(|k| k.kid.is_none() && k.algorithm() == *alg)
                .any(|k| k.verifies(message, signature)),
        }
    }
}

fn without_leading_zeros(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|&b| b != 0).unwrap_or(int.len());
    &int[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_rs256_public.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_es256_public.pem");

    fn rsa() -> Key {
        Key::from_pem(RSA_PUBLIC).unwrap()
    }

    fn ec() -> Key {
        Key::from_pem(EC_PUBLIC).unwrap()
    }

    /// Which keys of `set` (by index) `select` picks for a token of `alg` and `kid`.
    fn picked(set: &KeySet, alg: Algorithm, kid: Option<&str>) -> Result<Vec<usize>, AuthError> {
        let index = |key: &Key| set.keys.iter().position(|k| std::ptr::eq(k, key)).unwrap();
        Ok(match set.select(alg, kid)? {
            Selected::Named(key) => vec![index(key)],
            Selected::WithoutKid { keys, alg } => keys
                .iter()
                .filter(|k| k.kid.is_none() && k.algorithm() == alg)
                .map(index)
                .collect(),
        })
    }

    #[test]
    fn a_kid_selects_its_key_alone() {
        let set = KeySet::new(vec![
            rsa().with_kid("a"),
            rsa().with_kid("b"),
            rsa(),
            ec().with_kid("a"),
        ])
        .unwrap();
        assert_eq!(picked(&set, Algorithm::RS256, Some("a")), Ok(vec![0]));
        assert_eq!(picked(&set, Algorithm::RS256, Some("b")), Ok(vec![1]));
        // RFC 7517 §4.5: keys of different types may share a kid; the token's alg tells them
        // apart.
        assert_eq!(picked(&set, Algorithm::ES256, Some("a")), Ok(vec![3]));
        assert_eq!(
            picked(&set, Algorithm::ES256, Some("b")),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn an_unknown_kid_or_none_falls_to_the_keys_without_a_kid() {
        let set = KeySet::new(vec![rsa().with_kid("a"), rsa(), rsa(), ec().with_kid("e")]).unwrap();
        assert_eq!(picked(&set, Algorithm::RS256, Some("zz")), Ok(vec![1, 2]));
        assert_eq!(picked(&set, Algorithm::RS256, None), Ok(vec![1, 2]));
        // Every EC key has a kid: a token must name one.
        assert_eq!(
            picked(&set, Algorithm::ES256, Some("zz")),
            Err(AuthError::UnknownKid)
        );
        assert_eq!(
            picked(&set, Algorithm::ES256, None),
            Err(AuthError::KidRequired)
        );
        assert_eq!(
            picked(&set, Algorithm::HS256, None),
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[test]
    fn a_secret_takes_any_kid() {
        let set = KeySet::one(Key::secret(b"0123456789abcdef0123456789abcdef"));
        assert_eq!(picked(&set, Algorithm::HS256, Some("x")), Ok(vec![0]));
        assert_eq!(picked(&set, Algorithm::HS256, None), Ok(vec![0]));
    }

    #[test]
    fn sets_that_would_be_ambiguous_or_costly_are_refused() {
        assert!(matches!(KeySet::new(vec![]), Err(ConfigError::NoKey)));
        assert!(matches!(
            KeySet::new(vec![Key::secret(b"s"), rsa()]),
            Err(ConfigError::SecretAndPublicKey)
        ));
        assert!(matches!(
            KeySet::new(vec![rsa().with_kid("a"), rsa().with_kid("a")]),
            Err(ConfigError::DuplicateKid { kid, algorithm: Algorithm::RS256 }) if kid == "a"
        ));
        let without_kid = vec![rsa(); MAX_KEYS_WITHOUT_KID];
        assert!(KeySet::new(without_kid.clone()).is_ok());
        let mut too_many = without_kid;
        too_many.push(ec());
        assert!(
            KeySet::new(too_many.clone()).is_ok(),
            "counted per algorithm"
        );
        too_many.push(rsa());
        assert!(matches!(
            KeySet::new(too_many),
            Err(ConfigError::TooManyKeysWithoutKid {
                algorithm: Algorithm::RS256,
                max: MAX_KEYS_WITHOUT_KID
            })
        ));
    }

    #[test]
    fn rsa_keys_ring_would_refuse_are_refused_when_built() {
        let mut n = vec![0xc5; 256];
        let e = [0x01, 0x00, 0x01];
        assert!(Key::rsa(&n, &e).is_ok());
        // A sign octet or other leading zeros are dropped before the size is counted.
        n.insert(0, 0);
        assert!(Key::rsa(&n, &e).is_ok());
        assert!(matches!(
            Key::rsa(&[0xc5; 255], &e),
            Err(ConfigError::RsaKeySize { bits: 2040 })
        ));
        assert!(matches!(
            Key::rsa(&[0xc5; 1025], &e),
            Err(ConfigError::RsaKeySize { bits: 8200 })
        ));
        assert!(Key::rsa(&[0xc5; 1024], &e).is_ok(), "8192 bits");
        assert!(matches!(
            Key::rsa(&[0xc4; 256], &e),
            Err(ConfigError::InvalidRsaKey)
        ));
        for bad_e in [&[][..], &[1], &[2], &[4], &[0x02, 0x00, 0x00, 0x00, 0x01]] {
            assert!(
                matches!(
                    Key::rsa(&[0xc5; 256], bad_e),
                    Err(ConfigError::InvalidRsaKey)
                ),
                "{bad_e:?}"
            );
        }
        assert!(Key::rsa(&[0xc5; 256], &[3]).is_ok());
        assert!(Key::rsa(&[0xc5; 256], &[0x01, 0xff, 0xff, 0xff, 0xff]).is_ok());
    }

    #[test]
    fn p256_points_off_the_curve_are_refused() {
        let Key {
            material: Material::P256(point),
            ..
        } = ec()
        else {
            panic!("an EC key");
        };
        assert!(Key::p256(&point).is_ok());
        let mut off = point.to_vec();
        off[64] ^= 1;
        assert!(matches!(Key::p256(&off), Err(ConfigError::InvalidEcPoint)));
        let mut compressed = point[..33].to_vec();
        compressed[0] = 0x02 | (point[64] & 1);
        assert!(matches!(
            Key::p256(&compressed),
            Err(ConfigError::InvalidEcPoint)
        ));
        assert!(matches!(
            Key::p256(&[0x04; 65]),
            Err(ConfigError::InvalidEcPoint)
        ));
    }

    #[test]
    fn debug_shows_no_material() {
        let shown = format!(
            "{:?}",
            Key::secret(b"a secret nobody may log").with_kid("k")
        );
        assert_eq!(shown, r#"Key { alg: HS256, kid: Some("k") }"#);
    }
}
