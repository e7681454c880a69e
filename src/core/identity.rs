//! Who a client is, when JWT auth is on, and what that lets it do: one value per raw connection
//! and per Socket.IO session.
//!
//! The token is verified elsewhere ([`crate::auth::Verifier`]); this is the state it leaves
//! behind and the rules applied to it: a socket subscribes only to its own `sub`, a fresh token
//! must name the same `sub`, and the socket is closed when its token expires. No I/O, and the
//! clocks are passed in.

use std::time::{Duration, Instant};

use crate::auth::Claims;
use crate::core::commands::Refusal;

/// A client's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Auth is off: any client may subscribe to any user id.
    Anyone,
    /// Auth is on and no token has been accepted yet; the client is closed at `deadline`.
    Pending { deadline: Instant },
    /// Authenticated as `sub`, until `expires` (Unix seconds, `--jwt-leeway` included).
    User { sub: Box<str>, expires: u64 },
}

impl Identity {
    /// A new client's standing: `Anyone` when auth is off, else pending until `deadline`.
    pub fn new(auth_on: bool, deadline: Instant) -> Self {
        if auth_on {
            Identity::Pending { deadline }
        } else {
            Identity::Anyone
        }
    }

    /// Authenticated from the start, by a token presented with the handshake.
    pub fn user(claims: Claims, leeway_secs: u64) -> Self {
        Identity::User {
            sub: claims.sub.into(),
            expires: claims.exp.saturating_add(leeway_secs),
        }
    }

    /// Whether this client may join `user_id`'s room.
    pub fn may_subscribe(&self, user_id: &str) -> Result<(), Refusal> {
        match self {
            Identity::Anyone => Ok(()),
            Identity::Pending { .. } => Err(Refusal::NotAuthenticated),
            Identity::User { sub, .. } if **sub == *user_id => Ok(()),
            Identity::User { .. } => Err(Refusal::Forbidden),
        }
    }

    /// Takes a verified token: the first one authenticates; a later one must name the same
    /// `sub`, and then moves the expiry (to the new token's, even if earlier: the client chose
    /// it). A token for another user is refused and changes nothing: one socket, one user.
    pub fn accept(&mut self, claims: Claims, leeway_secs: u64) -> Result<(), Refusal> {
        if let Identity::User { sub, .. } = self {
            if **sub != *claims.sub {
                return Err(Refusal::Forbidden);
            }
        }
        *self = Identity::user(claims, leeway_secs);
        Ok(())
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self, Identity::User { .. })
    }

    /// Whether the client should have authenticated by `now` and has not.
    pub fn timed_out(&self, now: Instant) -> bool {
        matches!(self, Identity::Pending { deadline } if now >= *deadline)
    }

    /// When this client's standing next changes on its own: the auth deadline of a pending
    /// client, the expiry of a user's token (`now_unix` is the time since the Unix epoch at
    /// `now`); `None` for anyone.
    pub fn deadline(&self, now: Instant, now_unix: Duration) -> Option<Instant> {
        match self {
            Identity::Anyone => None,
            Identity::Pending { deadline } => Some(*deadline),
            Identity::User { expires, .. } => {
                Some(now + Duration::from_secs(*expires).saturating_sub(now_unix))
            }
        }
    }

    /// Whether the token's expiry has passed at `now_unix` (seconds since the Unix epoch).
    pub fn expired(&self, now_unix: u64) -> bool {
        matches!(self, Identity::User { expires, .. } if now_unix >= *expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
        }
    }

    #[test]
    fn deadline_is_the_auth_deadline_or_the_token_expiry() {
        let now = Instant::now();
        assert_eq!(Identity::Anyone.deadline(now, Duration::ZERO), None);
        let pending = Identity::new(true, now + Duration::from_secs(10));
        let unix = Duration::from_secs(1_000);
        assert_eq!(
            pending.deadline(now, unix),
            Some(now + Duration::from_secs(10))
        );
        // Expiry at 1,002 s (exp 1,000 + 2 s of leeway), seen at 1,000.25 s: 1.75 s from now.
        let user = Identity::user(claims("u", 1_000), 2);
        let unix = Duration::from_millis(1_000_250);
        assert_eq!(
            user.deadline(now, unix),
            Some(now + Duration::from_millis(1_750))
        );
        // Already expired: due now.
        let unix = Duration::from_secs(5_000);
        assert_eq!(user.deadline(now, unix), Some(now));
    }

    #[test]
    fn anyone_may_subscribe_to_anything() {
        let id = Identity::new(false, Instant::now());
        assert_eq!(id.may_subscribe("42"), Ok(()));
        assert!(!id.timed_out(Instant::now() + Duration::from_secs(3600)));
        assert!(!id.expired(u64::MAX));
    }

    #[test]
    fn pending_may_not_subscribe_and_times_out() {
        let t = Instant::now();
        let id = Identity::new(true, t + Duration::from_secs(10));
        assert_eq!(id.may_subscribe("42"), Err(Refusal::NotAuthenticated));
        assert!(!id.timed_out(t));
        assert!(id.timed_out(t + Duration::from_secs(10)));
    }

    #[test]
    fn a_user_subscribes_to_itself_only() {
        let id = Identity::user(claims("42", 1_000), 0);
        assert_eq!(id.may_subscribe("42"), Ok(()));
        assert_eq!(id.may_subscribe("43"), Err(Refusal::Forbidden));
        assert_eq!(id.may_subscribe("4"), Err(Refusal::Forbidden));
        assert_eq!(id.may_subscribe("420"), Err(Refusal::Forbidden));
    }

    #[test]
    fn expiry_counts_the_leeway() {
        let id = Identity::user(claims("42", 1_000), 30);
        assert!(!id.expired(1_029));
        assert!(id.expired(1_030));
        // An `exp` near the end of time does not wrap into the past.
        assert!(!Identity::user(claims("42", u64::MAX), 30).expired(u64::MAX - 1));
    }

    #[test]
    fn a_fresh_token_for_the_same_user_moves_the_expiry() {
        let mut id = Identity::new(true, Instant::now());
        assert_eq!(id.accept(claims("42", 1_000), 0), Ok(()));
        assert_eq!(id.accept(claims("42", 2_000), 0), Ok(()));
        assert!(!id.expired(1_500));
        assert_eq!(id.accept(claims("43", 9_000), 0), Err(Refusal::Forbidden));
        assert!(id.expired(2_000), "the refused token changed nothing");
        assert_eq!(id.may_subscribe("42"), Ok(()));
    }
}
