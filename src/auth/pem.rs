//! Public keys from PEM files: the base64 armour (RFC 7468), and the few DER structures a JWT
//! verification key comes in: `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7, `BEGIN PUBLIC KEY`)
//! holding an RSA or an EC key, and PKCS#1's `RSAPublicKey` (RFC 8017 §A.1.1, `BEGIN RSA PUBLIC
//! KEY`). Anything else, private keys included, is refused.
//!
//! The DER reader takes definite, minimal lengths only, and nothing after the outer structure.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::jwt::ConfigError;

/// A public key as a PEM file holds it, before its numbers are checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// RSA: modulus and public exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// EC on P-256: the SEC1 point as stored (`0x04 || x || y` when uncompressed).
    P256 { point: Vec<u8> },
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;

/// rsaEncryption, 1.2.840.113549.1.1.1 (RFC 8017 §A.1).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1 (RFC 5480 §2.1.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// secp256r1, also named prime256v1 or P-256: 1.2.840.10045.3.1.7 (RFC 5480 §2.1.1.1).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The public key in `pem`: its first PEM block, which must be a `PUBLIC KEY` or an `RSA PUBLIC
/// KEY`.
pub(crate) fn public_key(pem: &[u8]) -> Result<PublicKey, ConfigError> {
    let (label, der) = first_block(pem).ok_or(ConfigError::InvalidPem)?;
    match label {
        "PUBLIC KEY" => subject_public_key_info(&der),
        "RSA PUBLIC KEY" => {
            let (n, e) = rsa_public_key(&der).ok_or(ConfigError::InvalidPem)?;
            Ok(PublicKey::Rsa { n, e })
        }
        // A private key given where the public one belongs is refused rather than half used.
        _ => Err(ConfigError::InvalidPem),
    }
}

/// The label and the decoded bytes of the first PEM block in `pem`.
fn first_block(pem: &[u8]) -> Option<(&str, Vec<u8>)> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + "-----".len()..];
    let end = body.find(&format!("-----END {label}-----"))?;
    // RFC 7468 §3: the base64 text may be broken into lines, and parsers should ignore
    // whitespace.
    let base64: Vec<u8> = body[..end]
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    Some((label, STANDARD.decode(base64).ok()?))
}

/// RFC 5280 §4.1.2.7: `SEQUENCE { SEQUENCE { algorithm OID, parameters }, BIT STRING }`.
fn subject_public_key_info(der: &[u8]) -> Result<PublicKey, ConfigError> {
    let mut outer = Der(der);
    let mut spki = Der(outer.read(SEQUENCE).ok_or(ConfigError::InvalidPem)?);
    if !outer.is_empty() {
        return Err(ConfigError::InvalidPem);
    }
    let mut algorithm = Der(spki.read(SEQUENCE).ok_or(ConfigError::InvalidPem)?);
    let bits = spki.read(BIT_STRING).ok_or(ConfigError::InvalidPem)?;
    // A key's bit string is whole octets: its first octet, the count of unused bits, is 0.
    let key = match bits.split_first() {
        Some((0, key)) if spki.is_empty() => key,
        _ => return Err(ConfigError::InvalidPem),
    };
    let oid = algorithm.read(OID).ok_or(ConfigError::InvalidPem)?;
    if oid == OID_RSA_ENCRYPTION {
        // RFC 3279 §2.3.1: the parameters field MUST have ASN.1 type NULL; some writers leave
        // it out.
        if !algorithm.is_empty() {
            let null = algorithm.read(NULL);
            if null != Some(&[][..]) || !algorithm.is_empty() {
                return Err(ConfigError::InvalidPem);
            }
        }
        let (n, e) = rsa_public_key(key).ok_or(ConfigError::InvalidPem)?;
        return Ok(PublicKey::Rsa { n, e });
    }
    if oid == OID_EC_PUBLIC_KEY {
        // RFC 5480 §2.1.1: the parameters are the curve's OID (namedCurve).
        let curve = algorithm.read(OID).ok_or(ConfigError::UnsupportedCurve)?;
        if curve != OID_P256 || !algorithm.is_empty() {
            return Err(ConfigError::UnsupportedCurve);
        }
        return Ok(PublicKey::P256 {
            point: key.to_vec(),
        });
    }
    Err(ConfigError::InvalidPem)
}

/// RFC 8017 §A.1.1: `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`;
/// both returned without sign octet.
fn rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut outer = Der(der);
    let mut key = Der(outer.read(SEQUENCE)?);
    let n = positive(key.read(INTEGER)?)?;
    let e = positive(key.read(INTEGER)?)?;
    (outer.is_empty() && key.is_empty()).then(|| (n.to_vec(), e.to_vec()))
}

/// The magnitude of a DER INTEGER that must be positive: its sign octet (`0x00` before a high
/// bit) dropped.
fn positive(int: &[u8]) -> Option<&[u8]> {
    match int {
        [] => None,
        [first, ..] if first & 0x80 != 0 => None,
        [0, rest @ ..] => Some(rest),
        _ => Some(int),
    }
}

/// A cursor over DER bytes.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The contents of the next element, which must have tag `tag`; the cursor moves past it.
    fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&found, rest) = self.0.split_first()?;
        if found != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            // X.690 §10.1: DER uses the definite form (no 0x80), in as few octets as possible.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (octets, rest) = rest.split_at(count);
            if octets[0] == 0 {
                return None;
            }
            let len = octets
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            if len < 0x80 {
                return None;
            }
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (contents, rest) = rest.split_at(len);
        self.0 = rest;
        Some(contents)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_rs256_public.pem");
    const RSA_PKCS1: &[u8] = include_bytes!("../../tests/fixtures/jwt_rs256_public_pkcs1.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_es256_public.pem");
    const P384_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt_p384_public.pem");

    #[test]
    fn spki_and_pkcs1_hold_the_same_rsa_key() {
        let spki = public_key(RSA_PUBLIC).unwrap();
        assert_eq!(spki, public_key(RSA_PKCS1).unwrap());
        let PublicKey::Rsa { n, e } = spki else {
            panic!("an RSA key");
        };
        assert_eq!(n.len(), 256, "2048 bits, sign octet dropped");
        assert_eq!(e, [0x01, 0x00, 0x01]);
    }

    #[test]
    fn an_ec_key_is_an_uncompressed_p256_point() {
        let PublicKey::P256 { point } = public_key(EC_PUBLIC).unwrap() else {
            panic!("an EC key");
        };
        assert_eq!((point.len(), point[0]), (65, 0x04));
    }

    #[test]
    fn other_curves_are_unsupported() {
        assert!(matches!(
            public_key(P384_PUBLIC),
            Err(ConfigError::UnsupportedCurve)
        ));
    }

    #[test]
    fn broken_armour_or_der_is_refused() {
        let text = std::str::from_utf8(RSA_PUBLIC).unwrap();
        let cases = [
            String::new(),
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".to_owned(),
            text.replace("-----END PUBLIC KEY-----", ""),
            text.replace("-----END PUBLIC KEY-----", "-----END RSA PUBLIC KEY-----"),
            // One base64 character changed to one outside the alphabet.
            text.replacen('M', "!", 1),
            // Truncated inside the DER.
            {
                let der = first_block(RSA_PUBLIC).unwrap().1;
                let short = STANDARD.encode(&der[..der.len() - 1]);
                format!("-----BEGIN PUBLIC KEY-----\n{short}\n-----END PUBLIC KEY-----\n")
            },
            // Something after the outer SEQUENCE.
            {
                let mut der = first_block(RSA_PUBLIC).unwrap().1;
                der.push(0);
                let long = STANDARD.encode(&der);
                format!("-----BEGIN PUBLIC KEY-----\n{long}\n-----END PUBLIC KEY-----\n")
            },
        ];
        for pem in &cases {
            assert!(
                matches!(public_key(pem.as_bytes()), Err(ConfigError::InvalidPem)),
                "{pem}"
            );
        }
    }

    #[test]
    fn der_lengths_must_be_definite_and_minimal() {
        assert_eq!(Der(&[0x02, 0x01, 0x05]).read(INTEGER), Some(&[0x05][..]));
        assert_eq!(Der(&[0x02, 0x01, 0x05]).read(SEQUENCE), None, "wrong tag");
        assert_eq!(
            Der(&[0x30, 0x80, 0x00, 0x00]).read(SEQUENCE),
            None,
            "indefinite"
        );
        assert_eq!(
            Der(&[0x02, 0x81, 0x01, 0x05]).read(INTEGER),
            None,
            "long for short"
        );
        assert_eq!(
            Der(&[0x02, 0x82, 0x00, 0x81]).read(INTEGER),
            None,
            "leading zero"
        );
        assert_eq!(Der(&[0x02, 0x02, 0x05]).read(INTEGER), None, "past the end");
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0xab; 0x80]);
        assert_eq!(Der(&long).read(0x04).map(<[u8]>::len), Some(0x80));
    }

    #[test]
    fn integers_must_be_positive() {
        assert_eq!(positive(&[0x00, 0x80]), Some(&[0x80][..]));
        assert_eq!(positive(&[0x01, 0x00]), Some(&[0x01, 0x00][..]));
        assert_eq!(positive(&[0x80]), None);
        assert_eq!(positive(&[]), None);
    }
}
