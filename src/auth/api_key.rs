//! The control API's shared keys, compared without leaking how much of a guess was right.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::extract::bearer;

/// The keys a control API caller may present as `Authorization: Bearer <key>`: one, or several
/// while callers move from an old key to a new one.
///
/// Only the SHA-256 digest of each key is kept, and a presented key is compared by digest:
/// digests have one length whatever the key's, so neither the comparison's time nor an early
/// length check tells a caller how long a key is or which prefix of it they guessed. Every key
/// is compared, whichever matches, so the time does not tell which one did either.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// The keys as configured. An empty key matches nothing: [`bearer`] never yields an empty
    /// credential.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> ApiKeys {
        ApiKeys {
            digests: keys
                .iter()
                .map(|key| Sha256::digest(key.as_ref().as_bytes()).into())
                .collect(),
        }
    }

    /// Whether the request's `Authorization` header value carries one of these keys as a Bearer
    /// credential (scheme case-insensitive). A missing header or another scheme is no match.
    pub fn matches(&self, authorization_header: Option<&[u8]>) -> bool {
        authorization_header
            .and_then(bearer)
            .is_some_and(|presented| self.matches_key(presented))
    }

    /// Whether `presented`, a key as typed (the admin page's login), is one of these: compared
    /// as a Bearer credential is, surrounding whitespace aside. An empty key is no match.
    pub fn matches_key(&self, presented: &str) -> bool {
        let presented = presented.trim();
        if presented.is_empty() {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // subtle's comparison runs over every byte and hides the result from the optimizer; the
        // results are combined without branching, so no key is skipped.
        self.digests
            .iter()
            .fold(Choice::from(0), |found, key| found | digest.ct_eq(key))
            .into()
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} redacted)", self.digests.len())
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
                    assert_eq!(ApiKeys::new(&[KEY]).matches(header), $expected);
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
    fn any_of_several_keys_matches() {
        let keys = ApiKeys::new(&["old-key-0001", "new-key-0002"]);
        assert!(keys.matches(Some(b"Bearer old-key-0001")));
        assert!(keys.matches(Some(b"Bearer new-key-0002")));
        assert!(!keys.matches(Some(b"Bearer old-key-0001,new-key-0002")));
        assert!(!keys.matches(Some(b"Bearer other")));
        assert!(!keys.matches(None));
    }

    #[test]
    fn no_keys_match_nothing() {
        assert!(!ApiKeys::new::<&str>(&[]).matches(Some(b"Bearer x")));
    }

    #[test]
    fn empty_key_matches_nothing() {
        let key = ApiKeys::new(&[""]);
        assert!(!key.matches(Some(b"Bearer ")));
        assert!(!key.matches(Some(b"Bearer")));
        assert!(!key.matches(None));
        assert!(!key.matches_key(""));
        assert!(!key.matches_key("  "));
    }

    #[test]
    fn a_typed_key_matches_as_its_bearer_header_does() {
        let keys = ApiKeys::new(&[KEY]);
        assert!(keys.matches_key(KEY));
        assert!(keys.matches_key(&format!(" {KEY}\t")));
        assert!(!keys.matches_key(&format!("Bearer {KEY}")));
        assert!(!keys.matches_key("s3cr3"));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        assert!(!format!("{:?}", ApiKeys::new(&[KEY])).contains("s3cr3t"));
    }
}
