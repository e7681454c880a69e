//! The control API's shared key, compared without leaking how much of a guess was right.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::extract::bearer;

/// The key a control API caller must present as `Authorization: Bearer <key>`.
///
/// Only the SHA-256 digest of the key is kept, and a presented key is compared by digest:
/// digests have one length whatever the key's, so neither the comparison's time nor an early
/// length check tells a caller how long the key is or which prefix of it they guessed.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl ApiKey {
    /// The key as configured. An empty key matches nothing: [`bearer`] never yields an empty
    /// credential.
    pub fn new(key: &str) -> ApiKey {
        ApiKey {
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// Whether the request's `Authorization` header value carries this key as a Bearer
    /// credential (scheme case-insensitive). A missing header or another scheme is no match.
    pub fn matches(&self, authorization_header: Option<&[u8]>) -> bool {
        let Some(presented) = authorization_header.and_then(bearer) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // subtle's comparison runs over every byte and hides the result from the optimizer.
        digest.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "s3cr3t-control-key";

    macro_rules! matches_cases {
        ($($name:ident: $header:expr => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let header: Option<&[u8]> = $header;
                    assert_eq!(ApiKey::new(KEY).matches(header), $expected);
                }
            )*
        };
    }

    matches_cases! {
        key_matches: Some(b"Bearer s3cr3t-control-key") => true;
        key_scheme_lowercase: Some(b"bearer s3cr3t-control-key") => true;
        key_scheme_uppercase_padded: Some(b"  BEARER  s3cr3t-control-key ") => true;
        key_last_byte_differs: Some(b"Bearer s3cr3t-control-kez") => false;
        key_prefix_only: Some(b"Bearer s3cr3t") => false;
        key_longer: Some(b"Bearer s3cr3t-control-key2") => false;
        key_value_case_differs: Some(b"Bearer S3CR3T-CONTROL-KEY") => false;
        key_basic_scheme: Some(b"Basic s3cr3t-control-key") => false;
        key_no_scheme: Some(b"s3cr3t-control-key") => false;
        key_empty_header: Some(b"") => false;
        key_missing_header: None => false;
    }

    #[test]
    fn empty_key_matches_nothing() {
        let key = ApiKey::new("");
        assert!(!key.matches(Some(b"Bearer ")));
        assert!(!key.matches(Some(b"Bearer")));
        assert!(!key.matches(None));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        assert!(!format!("{:?}", ApiKey::new(KEY)).contains("s3cr3t"));
    }
}
