//! JWK Sets (RFC 7517 §5): the verification keys an identity provider publishes, as the bytes of
//! a local file.
//!
//! herald takes RSA keys (`n`, `e`, RFC 7518 §6.3.1) for RS256 and EC keys on P-256 (`crv`,
//! `x`, `y`, RFC 7518 §6.2.1) for ES256. A key that is for something else (`use` other than
//! `sig`, `key_ops` without `verify`, an `alg` other than its type's, another key type or curve,
//! an RSA size RS256 does not take here) is [`Skipped`], for the caller to warn about; a key
//! that claims to be one herald uses but is broken is an error, and so is a set with no key
//! herald can use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::jwt::ConfigError;
use super::keys::{Key, P256_COORDINATE_LEN};

/// The usable keys of a JWK Set, in the set's order, and those passed over.
#[derive(Debug)]
pub struct Jwks {
    pub keys: Vec<Key>,
    pub skipped: Vec<Skipped>,
}

/// A key of the set herald does not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its place in `keys`, from 0.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// RFC 7518 §6.3.2 and §6.2.2: the members of a private RSA or EC key. A set holding one was
/// given the signer's secret; herald refuses it rather than keep it in memory.
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// The keys of the JWK Set in `json`.
pub fn parse(json: &[u8]) -> Result<Jwks, ConfigError> {
    let set: Value = serde_json::from_slice(json).map_err(|e| ConfigError::InvalidJwks {
        why: format!("not JSON: {e}"),
    })?;
    // RFC 7517 §5.1: "The value of the "keys" member is an array of JWK values."
    let Some(members) = set.get("keys").and_then(Value::as_array) else {
        return Err(ConfigError::InvalidJwks {
            why: r#"not an object with a "keys" array"#.to_owned(),
        });
    };
    let mut jwks = Jwks {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, member) in members.iter().enumerate() {
        let invalid = |kid: Option<&str>, why: String| ConfigError::InvalidJwk {
            index,
            kid: kid.map(str::to_owned),
            why,
        };
        let Some(jwk) = member.as_object() else {
            return Err(invalid(None, "not a JSON object".to_owned()));
        };
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(invalid(None, "kid is not a string".to_owned())),
        };
        match key(jwk) {
            Ok(Usable::Yes(key)) => jwks.keys.push(match kid {
                Some(kid) => key.with_kid(kid),
                None => key,
            }),
            Ok(Usable::No(reason)) => jwks.skipped.push(Skipped {
                index,
                kid: kid.map(str::to_owned),
                reason,
            }),
            Err(why) => return Err(invalid(kid, why)),
        }
    }
    if jwks.keys.is_empty() {
        return Err(ConfigError::NoUsableJwk {
            skipped: jwks.skipped,
        });
    }
    Ok(jwks)
}

enum Usable {
    Yes(Key),
    /// Why not; a well-formed key for something else.
    No(String),
}

/// One JWK: a key herald uses, one it passes over, or why it is broken.
fn key(jwk: &Map<String, Value>) -> Result<Usable, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    // RFC 7517 §4.1: "This member MUST be present in a JWK."
    let kty = text("kty")?.ok_or("no kty")?;
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(format!(
            "holds a private key (member {private}): give herald public keys only"
        ));
    }
    // RFC 7517 §4.2: "sig" (signature) or "enc" (encryption), or another value.
    if let Some(usage) = text("use")? {
        if usage != "sig" {
            return Ok(Usable::No(format!("use is {usage:?}, not \"sig\"")));
        }
    }
    // RFC 7517 §4.3: the operations the key is for; herald verifies.
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not an array")?;
        if !ops.iter().any(|op| op == "verify") {
            return Ok(Usable::No("key_ops does not list \"verify\"".to_owned()));
        }
    }
    let (fits, key) = match kty {
        "RSA" => ("RS256", rsa(jwk)?),
        "EC" => {
            // RFC 7518 §6.2.1.1: "This member MUST be present".
            let crv = text("crv")?.ok_or("no crv")?;
            if crv != "P-256" {
                return Ok(Usable::No(format!(
                    "curve {crv:?}: herald verifies ES256, on P-256"
                )));
            }
            ("ES256", p256(jwk)?)
        }
        _ => {
            return Ok(Usable::No(format!(
                "key type {kty:?}: herald verifies with RSA and EC keys"
            )))
        }
    };
    // RFC 7517 §4.4: the algorithm the key is meant for, when the set says.
    if let Some(alg) = text("alg")? {
        if alg != fits {
            return Ok(Usable::No(format!(
                "alg {alg:?}: herald verifies {kty} keys with {fits} only"
            )));
        }
    }
    Ok(match key {
        Ok(key) => Usable::Yes(key),
        Err(ConfigError::RsaKeySize { bits }) => Usable::No(format!(
            "RSA key of {bits} bits: RS256 keys here are 2048 to 8192 bits"
        )),
        Err(e) => return Err(e.to_string()),
    })
}

/// RFC 7518 §6.3.1: `n` and `e`, both required, Base64urlUInt.
fn rsa(jwk: &Map<String, Value>) -> Result<Result<Key, ConfigError>, String> {
    let n = member(jwk, "n")?;
    let e = member(jwk, "e")?;
    Ok(Key::rsa(&n, &e))
}

/// RFC 7518 §6.2.1: `x` and `y`, each "the full size of a coordinate for the curve".
fn p256(jwk: &Map<String, Value>) -> Result<Result<Key, ConfigError>, String> {
    let x = member(jwk, "x")?;
    let y = member(jwk, "y")?;
    if x.len() != P256_COORDINATE_LEN || y.len() != P256_COORDINATE_LEN {
        return Err(format!(
            "x and y must be {P256_COORDINATE_LEN} bytes each on P-256, not {} and {}",
            x.len(),
            y.len()
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * P256_COORDINATE_LEN);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(Key::p256(&point))
}

/// A required base64url member. RFC 7515 §2 omits the padding; some writers keep it, and it
/// is forgiven.
fn member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = match jwk.get(name) {
        Some(Value::String(s)) => s.trim_end_matches('='),
        Some(_) => return Err(format!("{name} is not a string")),
        None => return Err(format!("no {name}")),
    };
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("{name} is not base64url"))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;

    /// RFC 7517 Appendix A.1, "Example Public Keys": an EC key for encryption and an RSA key
    /// for RS256.
    const RFC7517_A1: &str = r#"
     {"keys":
       [
         {"kty":"EC",
          "crv":"P-256",
          "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
          "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
          "use":"enc",
          "kid":"1"},

         {"kty":"RSA",
          "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
          "e":"AQAB",
          "alg":"RS256",
          "kid":"2011-04-29"}
       ]
     }"#;

    /// The EC key of RFC 7517 A.1 as a signing key.
    fn ec_sig() -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
            "use": "sig",
            "kid": "ec"
        })
    }

    fn parsed(set: Value) -> Result<Jwks, ConfigError> {
        parse(set.to_string().as_bytes())
    }

    /// The usable keys' (alg, kid), and the skipped keys' (index, kid).
    type Summary = (
        Vec<(Algorithm, Option<String>)>,
        Vec<(usize, Option<String>)>,
    );

    fn summary(jwks: &Jwks) -> Summary {
        (
            jwks.keys
                .iter()
                .map(|k| (k.algorithm(), k.kid().map(str::to_owned)))
                .collect(),
            jwks.skipped
                .iter()
                .map(|s| (s.index, s.kid.clone()))
                .collect(),
        )
    }

    #[test]
    fn rfc7517_a1_example_public_keys() {
        let jwks = parse(RFC7517_A1.as_bytes()).unwrap();
        assert_eq!(
            summary(&jwks),
            (
                vec![(Algorithm::RS256, Some("2011-04-29".to_owned()))],
                vec![(0, Some("1".to_owned()))]
            )
        );
        assert!(jwks.skipped[0].reason.contains("\"enc\""), "{jwks:?}");
    }

    #[test]
    fn an_ec_signing_key_is_used() {
        let jwks = parsed(json!({"keys": [ec_sig()]})).unwrap();
        assert_eq!(
            summary(&jwks),
            (vec![(Algorithm::ES256, Some("ec".to_owned()))], vec![])
        );
    }

    #[test]
    fn keys_for_something_else_are_skipped() {
        let rsa: Value = serde_json::from_str::<Value>(RFC7517_A1).unwrap()["keys"][1].clone();
        let with = |key: &Value, member: &str, value: Value| {
            let mut key = key.clone();
            key[member] = value;
            key
        };
        let mut p384 = ec_sig();
        p384["crv"] = json!("P-384");
        let set = json!({"keys": [
            with(&rsa, "use", json!("enc")),
            with(&rsa, "key_ops", json!(["encrypt"])),
            with(&rsa, "alg", json!("PS256")),
            with(&ec_sig(), "alg", json!("ES384")),
            p384,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            // 1024 bits: a real key, too small for RS256 here.
            with(&rsa, "n", json!(URL_SAFE_NO_PAD.encode([0xc5; 128]))),
            with(&rsa, "key_ops", json!(["verify"])),
        ]});
        let jwks = parsed(set).unwrap();
        let (keys, skipped) = summary(&jwks);
        assert_eq!(
            keys,
            vec![(Algorithm::RS256, Some("2011-04-29".to_owned()))]
        );
        assert_eq!(
            skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        for s in &jwks.skipped {
            assert!(!s.reason.is_empty());
        }
    }

    #[test]
    fn nothing_usable_is_an_error() {
        assert!(matches!(
            parsed(json!({"keys": []})),
            Err(ConfigError::NoUsableJwk { skipped }) if skipped.is_empty()
        ));
        let err = parse(RFC7517_A1.replace("RS256", "RS512").as_bytes());
        assert!(
            matches!(&err, Err(ConfigError::NoUsableJwk { skipped }) if skipped.len() == 2),
            "{err:?}"
        );
    }

    #[test]
    fn broken_sets_and_keys_are_errors() {
        for bad in [&b"not json"[..], b"[]", b"{}", br#"{"keys": {}}"#] {
            assert!(
                matches!(parse(bad), Err(ConfigError::InvalidJwks { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut off_curve = ec_sig();
        off_curve["y"] = json!("4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyA");
        let mut short_x = ec_sig();
        short_x["x"] = json!("AQAB");
        let mut private = ec_sig();
        private["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
        let mut not_base64 = ec_sig();
        not_base64["x"] = json!("M+BCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4");
        for (what, key) in [
            ("not an object", json!("key")),
            ("no kty", json!({"n": "AQAB", "e": "AQAB"})),
            ("kty not a string", json!({"kty": 1})),
            ("kid not a string", json!({"kty": "RSA", "kid": 7})),
            ("RSA without n", json!({"kty": "RSA", "e": "AQAB"})),
            (
                "EC without crv",
                json!({"kty": "EC", "x": "AQAB", "y": "AQAB"}),
            ),
            ("point off the curve", off_curve),
            ("coordinate too short", short_x),
            ("private key", private),
            ("x not base64url", not_base64),
            (
                "even exponent",
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5; 256]), "e": "AQAC"}),
            ),
        ] {
            let err = parsed(json!({"keys": [ec_sig(), key]}));
            assert!(
                matches!(&err, Err(ConfigError::InvalidJwk { index: 1, .. })),
                "{what}: {err:?}"
            );
        }
    }

    #[test]
    fn padding_and_leading_zeros_are_forgiven() {
        let mut rsa: Value = serde_json::from_str::<Value>(RFC7517_A1).unwrap()["keys"][1].clone();
        let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
        let mut padded = vec![0];
        padded.extend(&n);
        rsa["n"] = json!(base64::engine::general_purpose::URL_SAFE.encode(&padded));
        assert!(rsa["n"].as_str().unwrap().ends_with('='));
        assert_eq!(parsed(json!({"keys": [rsa]})).unwrap().keys.len(), 1);
    }
}
