//! Authentication, codec side: who a connection or a control API caller is, decided from strings.
//!
//! [`Verifier`] checks a JWT (HS256 with a shared secret, or RS256/ES256 with public keys, chosen
//! by the token's `kid`) against a clock value the caller passes in, and yields the herald user
//! id in its `sub`. Its keys are a [`KeySet`] of [`Key`]s, built from PEM bytes
//! ([`Key::from_pem`]) or from a JWK Set ([`jwks::parse`]), and replaceable while clones of the
//! verifier are in use ([`Verifier::replace_keys`]).
//! [`bearer`], [`query_token`] and [`auth_payload_token`] find the token where clients put it: an
//! `Authorization: Bearer` header, a `?token=` query parameter, or Socket.IO's CONNECT auth object.
//! [`ApiKeys`] compares a control API caller's Bearer value with the configured keys in constant
//! time.
//!
//! This module does no I/O and reads no clock: it does not read key files (the caller hands it
//! the PEM or JWKS bytes, see [`crate::jwt_keys`]), does not decide when a connection that has
//! not authenticated is closed, and does not answer on the wire; the event loop and the control
//! API do that, choosing their answer from [`AuthError`].

mod api_key;
mod extract;
pub mod jwks;
mod jwt;
mod keys;
mod pem;

pub use api_key::ApiKeys;
pub use extract::{auth_payload_token, bearer, query_token};
pub use jwks::{Jwks, Skipped};
pub use jwt::{Algorithm, AuthError, Claims, ConfigError, Verifier, MAX_TOKEN_LEN, MIN_SECRET_LEN};
pub use keys::{Key, KeySet, MAX_KEYS_WITHOUT_KID};
