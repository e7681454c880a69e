//! The commands a client sends, once for both protocols: `subscribe`, `unsubscribe`, `auth` (the
//! raw protocol's token message) and `refresh` (Socket.IO's).
//!
//! Each protocol decodes its own wire form into a [`ClientCommand`] (or into the [`Refusal`] a
//! message it cannot read earns), [`handle`] carries it out against the rooms and the client's
//! [`Identity`], and the protocol encodes the [`Outcome`] or the [`Refusal`] in its own wire form:
//! `{"event":"subscribed",...}`, `{"event":"error",...}` and close codes on `/ws`; events and
//! acks on Socket.IO. What a refusal says is its `Display`, the same on both protocols; whether
//! it also closes a raw client is [`Refusal::raw_close`]. Socket.IO never closes a session for
//! a refusal: a session sends commands only once its CONNECT was accepted, and so is never
//! waiting for its first token then.
//!
//! No I/O, no clock (the time is passed in), no metrics: the event loop counts what it is
//! handed back.

use std::fmt;

use crate::auth::{AuthError, Verifier};
use crate::core::identity::Identity;
use crate::protocol::raw;
use crate::rooms::{ConnId, Rooms, SubscribeError, Subscription, UserIdError};
use crate::ws::CloseCode;

/// What a client asked for, decoded from either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// Join users' rooms (the user ids are valid: [`crate::rooms::validate_user_id`]), perhaps
    /// with the last offset the client saw.
    Subscribe(Subscription),
    /// Leave a user's room; the user id is valid.
    Unsubscribe(String),
    /// The raw protocol's `auth`: a token, not yet verified, that authenticates a client waiting
    /// for its first one, or refreshes an authenticated client's.
    Auth(String),
    /// Socket.IO's `refresh`: a fresh token for an authenticated session, `None` when the event
    /// carried none.
    Refresh(Option<String>),
}

impl From<raw::ClientEvent> for ClientCommand {
    fn from(event: raw::ClientEvent) -> Self {
        match event {
            raw::ClientEvent::Subscribe(user) => ClientCommand::Subscribe(user),
            raw::ClientEvent::Unsubscribe(user) => ClientCommand::Unsubscribe(user),
            raw::ClientEvent::Auth(token) => ClientCommand::Auth(token),
        }
    }
}

/// What a command did, for the protocol to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The member is in the rooms of `users` (`list`: asked for with `userIds`); `newly` is
    /// false when it already was in all of them (subscribing twice is answered the same, and
    /// changes nothing).
    Subscribed {
        users: Vec<String>,
        list: bool,
        newly: bool,
    },
    /// Recovery is on: the subscription is allowed, and is to be placed in the log's order
    /// before the member joins the rooms (see [`crate::router::Router::join`]).
    Joining(Subscription),
    /// The member is not in `user_id`'s room; `was_member` says whether it was.
    Unsubscribed { user_id: String, was_member: bool },
    /// A token was accepted: the member's identity is now `user_id`'s, and its token expires at
    /// `exp` (the JWT's own `exp`, in Unix seconds; the identity adds `--jwt-leeway`, and
    /// [`Identity::deadline`] is when its socket is next due to be closed).
    Authenticated { user_id: String, exp: u64 },
}

/// Why a command was refused. `Display` is what the client is told; nothing here carries a
/// token, so neither an answer nor a log line can echo a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Anything but a token from a client that has not authenticated yet: it is closed (4001).
    NotAuthenticated,
    /// The first token of a client that has not authenticated does not verify: it is closed
    /// (4001), told only "token expired" or "unauthorized" ([`AuthError::message`]).
    AuthFailed(AuthError),
    /// A fresh token from an authenticated client does not verify: refused, and the client
    /// keeps the identity and expiry it had.
    RefreshFailed(AuthError),
    /// A subscription to a user other than the client's own `sub`, or a fresh token naming
    /// another user: one socket, one user.
    Forbidden,
    /// The client is at `--max-subscriptions`.
    TooManySubscriptions { max: usize },
    /// The user id of a `subscribe` or `unsubscribe` (`event`) is unusable.
    BadUserId {
        event: &'static str,
        fault: UserIdError,
    },
    /// A token (`event` is `auth` or `refresh`) on a server that checks none.
    AuthNotEnabled { event: &'static str },
    /// A raw protocol message that names no command (bad JSON or MessagePack, an unknown event,
    /// a frame of the wrong kind, an unusable token).
    Malformed(raw::Error),
}

impl Refusal {
    /// How the raw protocol answers this refusal besides its error event: the close code it
    /// closes the client with, if any.
    pub fn raw_close(&self) -> Option<CloseCode> {
        match self {
            Refusal::NotAuthenticated | Refusal::AuthFailed(_) => Some(CloseCode::UNAUTHORIZED),
            _ => None,
        }
    }

    /// Whether this is a token that was not accepted, or a client that had none: counted as an
    /// authentication failure.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Refusal::NotAuthenticated | Refusal::AuthFailed(_) | Refusal::RefreshFailed(_)
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAuthenticated => f.write_str("unauthorized"),
            Refusal::AuthFailed(e) | Refusal::RefreshFailed(e) => f.write_str(e.message()),
            Refusal::Forbidden => f.write_str("forbidden"),
            Refusal::TooManySubscriptions { max } => {
                write!(f, "subscribe: {}", SubscribeError::TooMany { max: *max })
            }
            Refusal::BadUserId { event, fault } => write!(f, "{event}: {fault}"),
            Refusal::AuthNotEnabled { event } => {
                write!(f, "{event}: authentication is not enabled on this server")
            }
            Refusal::Malformed(e) => e.fmt(f),
        }
    }
}

impl From<raw::Error> for Refusal {
    fn from(e: raw::Error) -> Self {
        match e {
            raw::Error::BadUserId { event, fault } => Refusal::BadUserId { event, fault },
            e => Refusal::Malformed(e),
        }
    }
}

impl From<SubscribeError> for Refusal {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::TooMany { max } => Refusal::TooManySubscriptions { max },
        }
    }
}

/// How client tokens are checked: the verifier (`None` when JWT auth is off) and the leeway
/// added to a token's `exp`.
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    pub verifier: Option<&'a Verifier>,
    pub leeway_secs: u64,
}

/// Carries out `command` from room member `member`, whose standing is `identity`, at
/// `now_unix` (seconds since the Unix epoch, the clock tokens are read against).
///
/// A message its protocol could not read comes as the refusal it earned (`Err`), so that the
/// rule every command follows applies to it too: before its first token, a client may only
/// authenticate, and anything else it sends is [`Refusal::NotAuthenticated`].
///
/// Changes `rooms` (subscribe, unsubscribe) or `identity` (a token accepted) and nothing else,
/// and changes nothing when it refuses. With `join_later` (recovery on), an allowed subscribe
/// changes nothing either: it is answered [`Outcome::Joining`].
pub fn handle(
    rooms: &mut Rooms,
    tokens: Tokens<'_>,
    member: ConnId,
    identity: &mut Identity,
    command: Result<ClientCommand, Refusal>,
    now_unix: u64,
    join_later: bool,
) -> Result<Outcome, Refusal> {
    let pending = matches!(identity, Identity::Pending { .. });
    match command {
        Ok(ClientCommand::Auth(token)) => {
            authenticate(tokens, identity, "auth", Some(&token), now_unix)
        }
        Ok(ClientCommand::Refresh(token)) => {
            authenticate(tokens, identity, "refresh", token.as_deref(), now_unix)
        }
        _ if pending => Err(Refusal::NotAuthenticated),
        Err(refusal) => Err(refusal),
        Ok(ClientCommand::Subscribe(sub)) => {
            for user in &sub.users {
                identity.may_subscribe(user)?;
            }
            let held: Vec<&str> = rooms.rooms_of(member).collect();
            let new = sub
                .users
                .iter()
                .filter(|u| !held.contains(&u.as_str()))
                .count();
            let max = rooms.max_per_conn();
            if new > 0 && held.len() + new > max {
                return Err(Refusal::TooManySubscriptions { max });
            }
            if join_later {
                return Ok(Outcome::Joining(sub));
            }
            let mut newly = false;
            for user in &sub.users {
                newly |= rooms.subscribe_at(member, user, now_unix)?;
            }
            Ok(Outcome::Subscribed {
                users: sub.users,
                list: sub.list,
                newly,
            })
        }
        Ok(ClientCommand::Unsubscribe(user_id)) => {
            let was_member = rooms.unsubscribe(member, &user_id);
            Ok(Outcome::Unsubscribed {
                user_id,
                was_member,
            })
        }
    }
}

/// A token from `event` (`auth` or `refresh`): the first one authenticates a client waiting for
/// it; a later one must name the same user, and moves the expiry.
fn authenticate(
    tokens: Tokens<'_>,
    identity: &mut Identity,
    event: &'static str,
    token: Option<&str>,
    now_unix: u64,
) -> Result<Outcome, Refusal> {
    let Some(verifier) = tokens.verifier else {
        return Err(Refusal::AuthNotEnabled { event });
    };
    let verified = match token {
        Some(token) => verifier.verify(token, now_unix),
        None => Err(AuthError::Missing),
    };
    let claims = verified.map_err(|e| match identity.is_authenticated() {
        true => Refusal::RefreshFailed(e),
        false => Refusal::AuthFailed(e),
    })?;
    let (user_id, exp) = (claims.sub.clone(), claims.exp);
    identity.accept(claims, tokens.leeway_secs)?;
    Ok(Outcome::Authenticated { user_id, exp })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"a secret of thirty-two bytes ...";
    /// The Unix time the tests run at.
    const NOW: u64 = 1_700_000_000;

    fn token(sub: &str, exp: u64) -> String {
        let claims = json!({"sub": sub, "exp": exp});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    /// One member's view of the core: its id and identity, the rooms, and the verifier.
    struct Client {
        rooms: Rooms,
        verifier: Option<Verifier>,
        identity: Identity,
    }

    impl Client {
        /// A client of a server with JWT auth on (`jwt`) or off, at most `max` subscriptions.
        fn new(jwt: bool, max: usize) -> Self {
            Client {
                rooms: Rooms::new(max),
                verifier: jwt.then(|| Verifier::from_secret(SECRET)),
                identity: Identity::new(jwt, Instant::now() + Duration::from_secs(10)),
            }
        }

        fn send(&mut self, command: ClientCommand) -> Result<Outcome, Refusal> {
            self.send_at(Ok(command), NOW)
        }

        fn send_at(
            &mut self,
            command: Result<ClientCommand, Refusal>,
            now_unix: u64,
        ) -> Result<Outcome, Refusal> {
            let tokens = Tokens {
                verifier: self.verifier.as_ref(),
                leeway_secs: 0,
            };
            let outcome = handle(
                &mut self.rooms,
                tokens,
                7,
                &mut self.identity,
                command,
                now_unix,
                false,
            );
            self.rooms.check_invariants();
            outcome
        }
    }

    fn subscribe(user: &str) -> ClientCommand {
        ClientCommand::Subscribe(user.into())
    }

    fn unsubscribe(user: &str) -> ClientCommand {
        ClientCommand::Unsubscribe(user.into())
    }

    fn subscribed(user: &str, newly: bool) -> Result<Outcome, Refusal> {
        Ok(Outcome::Subscribed {
            users: vec![user.into()],
            list: false,
            newly,
        })
    }

    fn authenticated(user: &str, exp: u64) -> Result<Outcome, Refusal> {
        Ok(Outcome::Authenticated {
            user_id: user.into(),
            exp,
        })
    }

    #[test]
    fn subscribe_and_unsubscribe_are_idempotent() {
        let mut c = Client::new(false, 16);
        assert_eq!(c.send(subscribe("u1")), subscribed("u1", true));
        assert_eq!(c.send(subscribe("u1")), subscribed("u1", false));
        assert_eq!(c.rooms.members("u1"), &[7]);
        let unsubscribed = |was_member| {
            Ok(Outcome::Unsubscribed {
                user_id: "u1".into(),
                was_member,
            })
        };
        assert_eq!(c.send(unsubscribe("u1")), unsubscribed(true));
        assert_eq!(c.send(unsubscribe("u1")), unsubscribed(false));
        assert!(c.rooms.is_empty());
    }

    #[test]
    fn with_jwt_on_a_client_subscribes_to_its_own_user_only() {
        let mut c = Client::new(true, 16);
        let exp = NOW + 60;
        assert_eq!(
            c.send(ClientCommand::Auth(token("alice", exp))),
            authenticated("alice", exp)
        );
        assert_eq!(c.send(subscribe("bob")), Err(Refusal::Forbidden));
        assert!(c.rooms.is_empty(), "a refusal changes nothing");
        assert_eq!(c.send(subscribe("alice")), subscribed("alice", true));
        assert_eq!(Refusal::Forbidden.to_string(), "forbidden");
        assert_eq!(Refusal::Forbidden.raw_close(), None, "the client stays");
    }

    #[test]
    fn before_its_token_a_client_may_only_authenticate() {
        let mut c = Client::new(true, 16);
        for command in [
            Ok(subscribe("alice")),
            Ok(unsubscribe("alice")),
            Err(Refusal::Malformed(raw::Error::UnknownEvent("hello".into()))),
            Err(Refusal::BadUserId {
                event: "subscribe",
                fault: UserIdError::Empty,
            }),
        ] {
            let refused = c.send_at(command, NOW);
            assert_eq!(refused, Err(Refusal::NotAuthenticated));
        }
        let refusal = Refusal::NotAuthenticated;
        assert_eq!(refusal.raw_close(), Some(CloseCode::UNAUTHORIZED));
        assert_eq!(refusal.to_string(), "unauthorized");
        assert!(c.rooms.is_empty());
        // Then auth, then subscribe.
        let exp = NOW + 60;
        let auth = ClientCommand::Auth(token("alice", exp));
        assert_eq!(c.send(auth), authenticated("alice", exp));
        assert_eq!(
            c.identity,
            Identity::User {
                sub: "alice".into(),
                expires: exp
            }
        );
        assert_eq!(c.send(subscribe("alice")), subscribed("alice", true));
    }

    #[test]
    fn a_first_token_that_does_not_verify_closes_a_later_one_does_not() {
        let mut c = Client::new(true, 16);
        let refused = c.send(ClientCommand::Auth("not.a.token".into()));
        assert_eq!(refused, Err(Refusal::AuthFailed(AuthError::Malformed)));
        let refusal = refused.unwrap_err();
        assert_eq!(refusal.raw_close(), Some(CloseCode::UNAUTHORIZED));
        assert_eq!(refusal.to_string(), "unauthorized");
        assert!(refusal.is_auth_failure());
        assert!(matches!(c.identity, Identity::Pending { .. }));

        c.send(ClientCommand::Auth(token("alice", NOW + 60)))
            .unwrap();
        let refused = c.send(ClientCommand::Refresh(None));
        assert_eq!(refused, Err(Refusal::RefreshFailed(AuthError::Missing)));
        assert_eq!(refused.unwrap_err().raw_close(), None);
    }

    #[test]
    fn an_expired_token_is_refused_and_a_fresh_one_moves_the_expiry() {
        let mut c = Client::new(true, 16);
        let stale = ClientCommand::Auth(token("alice", NOW - 1));
        let refused = c.send(stale.clone());
        assert_eq!(refused, Err(Refusal::AuthFailed(AuthError::Expired)));
        assert_eq!(refused.unwrap_err().to_string(), "token expired");

        c.send(ClientCommand::Auth(token("alice", NOW + 60)))
            .unwrap();
        assert!(!c.identity.expired(NOW + 59));
        assert!(c.identity.expired(NOW + 60));
        let refused = c.send(stale);
        assert_eq!(refused, Err(Refusal::RefreshFailed(AuthError::Expired)));
        assert!(
            !c.identity.expired(NOW + 59),
            "the refused token changed nothing"
        );

        let fresh = ClientCommand::Refresh(Some(token("alice", NOW + 600)));
        assert_eq!(c.send(fresh), authenticated("alice", NOW + 600));
        assert!(!c.identity.expired(NOW + 599));
        // Read at a later time, the token that was fresh has expired.
        let again = ClientCommand::Refresh(Some(token("alice", NOW + 600)));
        assert_eq!(
            c.send_at(Ok(again), NOW + 600),
            Err(Refusal::RefreshFailed(AuthError::Expired))
        );
    }

    #[test]
    fn a_refresh_for_another_user_is_refused() {
        let mut c = Client::new(true, 16);
        c.send(ClientCommand::Auth(token("alice", NOW + 60)))
            .unwrap();
        c.send(subscribe("alice")).unwrap();
        let other = ClientCommand::Refresh(Some(token("bob", NOW + 600)));
        assert_eq!(c.send(other), Err(Refusal::Forbidden));
        let auth = ClientCommand::Auth(token("bob", NOW + 600));
        assert_eq!(c.send(auth), Err(Refusal::Forbidden));
        assert!(c.identity.expired(NOW + 60), "still alice's token");
        assert_eq!(c.send(subscribe("bob")), Err(Refusal::Forbidden));
        assert_eq!(c.rooms.rooms_of(7).collect::<Vec<_>>(), ["alice"]);
    }

    #[test]
    fn the_subscription_cap_is_refused_with_its_limit() {
        let mut c = Client::new(false, 2);
        c.send(subscribe("a")).unwrap();
        c.send(subscribe("b")).unwrap();
        let refused = c.send(subscribe("c"));
        assert_eq!(refused, Err(Refusal::TooManySubscriptions { max: 2 }));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "subscribe: a connection may subscribe to at most 2 user ids"
        );
        assert_eq!(c.send(subscribe("a")), subscribed("a", false), "not over");
    }

    #[test]
    fn a_bad_user_id_is_refused_naming_the_event() {
        let mut c = Client::new(false, 16);
        let fault = raw::parse(r#"{"event":"unsubscribe","data":""}"#).unwrap_err();
        let refusal = Refusal::from(fault);
        assert_eq!(
            refusal,
            Refusal::BadUserId {
                event: "unsubscribe",
                fault: UserIdError::Empty
            }
        );
        assert_eq!(c.send_at(Err(refusal.clone()), NOW), Err(refusal.clone()));
        assert_eq!(refusal.to_string(), "unsubscribe: userId must not be empty");
        assert_eq!(refusal.raw_close(), None);
        let malformed = Refusal::from(raw::parse("{").unwrap_err());
        assert!(matches!(malformed, Refusal::Malformed(_)));
        assert!(malformed.to_string().starts_with("invalid message"));
    }

    #[test]
    fn tokens_on_a_server_without_auth_are_refused_naming_the_event() {
        let mut c = Client::new(false, 16);
        let auth = c.send(ClientCommand::Auth(token("alice", NOW + 60)));
        assert_eq!(
            auth.unwrap_err().to_string(),
            "auth: authentication is not enabled on this server"
        );
        let refresh = c.send(ClientCommand::Refresh(None));
        assert_eq!(
            refresh.unwrap_err().to_string(),
            "refresh: authentication is not enabled on this server"
        );
        assert_eq!(c.identity, Identity::Anyone);
    }
}
