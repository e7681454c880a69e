//! The admin page on the control listener: its routes (`/admin`, its script and style sheet,
//! `/admin/login`, `/admin/logout`, `/admin/config`), the page itself (HTML, JS and CSS
//! compiled in, no external resource), and the session cookie that lets a browser that typed
//! the API key once use the control API.
//!
//! The page holds no data: it polls `GET /metrics`, looks users up with `GET /v1/users/{id}`
//! and pushes through the push routes, as any caller of the control API does. With `--api-key`
//! set, a browser logs in by typing a key (`POST /admin/login`, checked as any request's key
//! is: in constant time, counted in the lockout of [`super::access`]); the answer sets
//! `herald_admin=<expiry>.<HMAC-SHA256 of it>`, keyed with 32 bytes drawn at start (so a
//! restart logs everyone out). That cookie counts as a credential only on requests that also
//! carry `X-Herald-Admin: 1`: a custom header makes a cross-origin request need a CORS
//! preflight, which the control API never grants, so another site's page cannot use it. The
//! cookie is `HttpOnly; SameSite=Strict` on top.
//!
//! No sockets here: [`route`] takes a parsed request and answers it, or leaves it to
//! [`super::api`].

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde_json::{json, Value};

use super::access::Access;
use super::api::ApiError;
use super::http::{Method, Request, Response};
use super::stats::Stats;
use crate::config::Setting;
use crate::http::{percent_decode, Plus};

/// The request header that makes the session cookie count (its value must be `1`).
pub const HEADER: &str = "x-herald-admin";

/// The session cookie's name.
pub const COOKIE: &str = "herald_admin";

/// How long a session lasts: a working day.
pub const SESSION: Duration = Duration::from_secs(12 * 60 * 60);

const PAGE: &str = include_str!("page.html");
const LOGIN: &str = include_str!("login.html");
const SCRIPT: &str = include_str!("admin.js");
const STYLE: &str = include_str!("admin.css");

const HTML: &str = "text/html; charset=utf-8";

/// The page's own resources only, no inline script or style, and no framing (clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Most sessions remembered as logged out before they expire.
const MAX_REVOKED: usize = 1024;

/// How a request passes the control API's door, decided from its method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The page, its script and style sheet, and logging out: they show or change nothing
    /// without a session.
    Open,
    /// Logging in: its key is in its body, checked once the body is here; an address locked
    /// out is refused at the door all the same.
    Lockout,
    /// Everything else: a key, or a session with [`HEADER`].
    Credentials,
}

/// Which door `req` goes through.
pub fn door(req: &Request) -> Door {
    let get = matches!(req.method, Method::Get | Method::Head);
    let post = req.method == Method::Post;
    match req.path.as_str() {
        "/admin" | "/admin/admin.js" | "/admin/admin.css" if get => Door::Open,
        "/admin/logout" if post => Door::Open,
        "/admin/login" if post => Door::Lockout,
        _ => Door::Credentials,
    }
}

/// A session's MAC.
type Tag = [u8; 32];

/// Minted and checked session cookies, with the key they are signed with and those logged out
/// before their time. The key never leaves this struct.
pub struct Sessions {
    key: hmac::Key,
    /// Sessions logged out, by expiry and tag, until they expire.
    revoked: Mutex<Vec<(u64, Tag)>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions([key redacted])")
    }
}

impl Sessions {
    /// A new key from the system's random source.
    pub fn new() -> Result<Sessions, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        Ok(Sessions {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng)?,
            revoked: Mutex::new(Vec::new()),
        })
    }

    /// A cookie value for a session opened at `now_unix` (seconds since the Unix epoch).
    pub fn mint(&self, now_unix: u64) -> String {
        let expiry = (now_unix + SESSION.as_secs()).to_string();
        let tag = hmac::sign(&self.key, expiry.as_bytes());
        format!("{expiry}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The expiry and tag of a cookie value this key signed, whatever its time.
    fn signed(&self, value: &str) -> Option<(u64, Tag)> {
        let (expiry, tag) = value.split_once('.')?;
        if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let tag: Tag = URL_SAFE_NO_PAD.decode(tag).ok()?.try_into().ok()?;
        // Compared in constant time.
        hmac::verify(&self.key, expiry.as_bytes(), &tag).ok()?;
        Some((expiry.parse().ok()?, tag))
    }

    /// Whether `value` is a session this key signed, not expired at `now_unix` nor logged out.
    pub fn valid(&self, value: &str, now_unix: u64) -> bool {
        match self.signed(value) {
            Some((expiry, tag)) => expiry > now_unix && !self.lock().contains(&(expiry, tag)),
            None => false,
        }
    }

    /// Logs the session `value` out, if it is one; forgets those that expired by `now_unix`.
    /// When [`MAX_REVOKED`] are remembered, the one expiring first is forgotten.
    pub fn revoke(&self, value: &str, now_unix: u64) {
        let Some(session) = self.signed(value).filter(|(e, _)| *e > now_unix) else {
            return;
        };
        let mut revoked = self.lock();
        revoked.retain(|(expiry, _)| *expiry > now_unix);
        if revoked.len() >= MAX_REVOKED {
            if let Some(first) = (0..revoked.len()).min_by_key(|&i| revoked[i].0) {
                revoked.swap_remove(first);
            }
        }
        if !revoked.contains(&session) {
            revoked.push(session);
        }
    }

    /// Whether any `herald_admin` cookie in the `Cookie` header `cookies` is a valid session.
    pub fn any_valid(&self, cookies: Option<&[u8]>, now_unix: u64) -> bool {
        session_cookies(cookies).any(|v| self.valid(v, now_unix))
    }

    /// The list is plain data that no operation leaves half-changed.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Tag)>> {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The values of the `herald_admin` cookies in a `Cookie` header (RFC 6265 §4.2.1:
/// `name=value` pairs separated by `; `).
fn session_cookies(header: Option<&[u8]>) -> impl Iterator<Item = &str> {
    let text = header
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("");
    text.split(';').filter_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then_some(value.trim_matches('"'))
    })
}

/// The `Set-Cookie` value that opens (`value`, for `max_age`) or ends a session.
fn set_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// What the admin routes need besides the request.
pub struct Ctx<'a> {
    pub access: &'a Access,
    pub peer: IpAddr,
    pub now: Instant,
    /// Seconds since the Unix epoch: sessions expire by the wall clock.
    pub now_unix: u64,
    pub stats: &'a Stats,
    /// Every flag herald was started with, secrets masked.
    pub settings: &'a [Setting],
    /// The control listener speaks TLS: the cookie is `Secure`.
    pub secure: bool,
}

/// Answers a request for one of the admin routes, which [`door`] let in; `None` for any other
/// path, left to [`super::api`].
pub fn route(req: &Request, ctx: &Ctx<'_>) -> Option<Result<Response, ApiError>> {
    let get = matches!(req.method, Method::Get | Method::Head);
    let post = req.method == Method::Post;
    let answer = match req.path.as_str() {
        "/admin" if get => {
            let cookie = req.cookie.as_ref().map(|c| c.as_bytes());
            let page = match ctx.access.session_valid(cookie, ctx.now_unix) {
                true => PAGE,
                false => LOGIN,
            };
            Ok(asset(HTML, page))
        }
        "/admin/admin.js" if get => Ok(asset("text/javascript; charset=utf-8", SCRIPT)),
        "/admin/admin.css" if get => Ok(asset("text/css; charset=utf-8", STYLE)),
        "/admin/login" if post => log_in(req, ctx),
        "/admin/logout" if post => {
            let cookies = req.cookie.as_ref().map(|c| c.as_bytes());
            for value in session_cookies(cookies) {
                ctx.access.revoke_session(value, ctx.now_unix);
            }
            Ok(see_other().with_header("Set-Cookie", set_cookie("", 0, ctx.secure)))
        }
        "/admin/config" if get => Ok(config(ctx)),
        "/admin" | "/admin/admin.js" | "/admin/admin.css" | "/admin/config" => {
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        }
        "/admin/login" | "/admin/logout" => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        _ => return None,
    };
    Some(answer)
}

/// `POST /admin/login` with the form field `key`: a session cookie for the right key, 401 for
/// a wrong one (counted against the address), 429 for an address locked out. Without
/// `--api-key` there is nothing to log into: back to the page.
fn log_in(req: &Request, ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    if !ctx.access.has_keys() {
        return Ok(see_other());
    }
    let key = form_field(&req.body, "key").unwrap_or_default();
    ctx.access
        .log_in(key.as_bytes(), ctx.peer, ctx.now, ctx.stats)?;
    let Some(value) = ctx.access.mint_session(ctx.now_unix) else {
        return Err(ApiError::Unauthorized);
    };
    Ok(see_other().with_header(
        "Set-Cookie",
        set_cookie(&value, SESSION.as_secs(), ctx.secure),
    ))
}

/// `GET /admin/config`: every flag, its value (secrets masked), where it came from, and its
/// variable.
fn config(ctx: &Ctx<'_>) -> Response {
    let flags: Vec<Value> = ctx
        .settings
        .iter()
        .map(|s| {
            json!({
                "flag": s.flag,
                "env": s.env,
                "value": s.value,
                "source": s.source.map_or("unset", |s| s.label()),
                "secret": s.secret,
            })
        })
        .collect();
    let body = json!({ "apiKey": ctx.access.has_keys(), "flags": flags });
    Response::json(200, &body).with_header("Cache-Control", "no-store".into())
}

/// One of the page's files, never cached (a new herald may serve a new page) and never framed.
fn asset(content_type: &'static str, text: &'static str) -> Response {
    Response::text(200, content_type, text.to_owned())
        .with_header("Cache-Control", "no-store".into())
        .with_header("Content-Security-Policy", CSP.into())
        .with_header("X-Content-Type-Options", "nosniff".into())
        .with_header("X-Frame-Options", "DENY".into())
        .with_header("Referrer-Policy", "no-referrer".into())
}

/// 303 to the page: where a form post lands (RFC 9110 §15.4.4: the browser follows it with a
/// GET).
fn see_other() -> Response {
    Response::json(303, &json!({ "location": "/admin" }))
        .with_header("Location", "/admin".into())
        .with_header("Cache-Control", "no-store".into())
}

/// The value of `name` in an `application/x-www-form-urlencoded` body, decoded; `None` when
/// absent or badly encoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v, Plus::Space).ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_minted_session_is_valid_until_it_expires() {
        let s = Sessions::new().unwrap();
        let v = s.mint(NOW);
        assert!(v.starts_with(&format!("{}.", NOW + SESSION.as_secs())));
        assert!(s.valid(&v, NOW));
        assert!(s.valid(&v, NOW + SESSION.as_secs() - 1));
        assert!(!s.valid(&v, NOW + SESSION.as_secs()));
    }

    #[test]
    fn forged_and_foreign_sessions_are_refused() {
        let s = Sessions::new().unwrap();
        let other = Sessions::new().unwrap();
        let v = s.mint(NOW);
        let (expiry, tag) = v.split_once('.').unwrap();
        // Another key's session, a later expiry under the same tag, a tag cut short, junk.
        let later = format!("{}.{tag}", expiry.parse::<u64>().unwrap() + 1);
        for forged in [
            other.mint(NOW),
            later,
            format!("{expiry}.{}", &tag[1..]),
            format!("{expiry}."),
            format!(".{tag}"),
            "x".repeat(60),
            format!("+{}.{tag}", &expiry[1..]),
        ] {
            assert!(!s.valid(&forged, NOW), "{forged}");
        }
    }

    #[test]
    fn a_logged_out_session_stays_out() {
        let s = Sessions::new().unwrap();
        let (a, b) = (s.mint(NOW), s.mint(NOW + 1));
        s.revoke(&a, NOW + 2);
        assert!(!s.valid(&a, NOW + 2));
        assert!(s.valid(&b, NOW + 2));
        // Junk is not remembered.
        s.revoke("junk", NOW);
        assert_eq!(s.lock().len(), 1);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let header = b"a=1; herald_admin=one;b=2;  herald_admin=\"two\"";
        let found: Vec<&str> = session_cookies(Some(header)).collect();
        assert_eq!(found, ["one", "two"]);
        assert_eq!(session_cookies(None).count(), 0);
        let s = Sessions::new().unwrap();
        let cookie = format!("x=y; {COOKIE}=junk; {COOKIE}={}", s.mint(NOW));
        assert!(s.any_valid(Some(cookie.as_bytes()), NOW));
        assert!(!s.any_valid(Some(b"herald_admin=junk"), NOW));
    }

    #[test]
    fn the_cookie_attributes() {
        assert_eq!(
            set_cookie("v", 43200, false),
            "herald_admin=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
        );
        assert!(set_cookie("", 0, true).ends_with("Max-Age=0; Secure"));
    }

    #[test]
    fn form_fields() {
        assert_eq!(
            form_field(b"key=a%2Bb+c&x=1", "key").as_deref(),
            Some("a+b c")
        );
        assert_eq!(form_field(b"x=1&key", "key").as_deref(), Some(""));
        assert_eq!(form_field(b"x=1", "key"), None);
        assert_eq!(form_field(b"key=%zz", "key"), None);
    }

    #[test]
    fn the_page_names_no_other_site() {
        for text in [PAGE, LOGIN, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("@import"));
        }
    }
}
