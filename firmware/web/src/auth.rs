//! Who may use the web admin: the `admin` account (`admin passwd`), through the login form and
//! its session cookie for pages, through HTTP Basic for the API and metrics.
//!
//! - The session cookie is `Secure; HttpOnly; SameSite=Strict`, a random 256-bit token kept
//!   in memory only; a session ends after the idle timeout or at logout.
//! - Every form carries the session's CSRF token; the login form, before there is a session,
//!   a token that must match a cookie set with the form (double submit).
//! - Failed logins (form and API) count per address in the limiter the XMPP logins use.
//! - The password hash is PBKDF2 at 600,000 rounds: a successful API login is remembered as an
//!   HMAC (per-process random key) over the user, password and stored hash, so each API call
//!   does not cost a PBKDF2 run; a new password changes the stored hash and so the HMAC.

use crate::AppState;
use crate::server::ClientAddr;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use ring::rand::SecureRandom;
use sb_server::limits::AuthFailureLimiter;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "sb_session";
pub const LOGIN_COOKIE: &str = "sb_login";

/// A random token: 32 bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No randomness means no safe token: nothing can log in, which is the safe failure.
        log::error!("web: no randomness for a session token");
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    // Token lengths are public (always 64); the bytes are compared without an early exit.
    !a.is_empty() && a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A `Set-Cookie` value with every protection; `None` clears the cookie.
pub fn set_cookie(name: &str, value: Option<&str>) -> HeaderValue {
    let text = match value {
        Some(value) => format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict"),
        None => format!("{name}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The client's IP address (unspecified when the request did not come through the server).
pub fn client_ip(parts_extensions: &axum::http::Extensions) -> IpAddr {
    parts_extensions
        .get::<ClientAddr>()
        .map(|addr| addr.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

struct SessionEntry {
    csrf: String,
    last_seen: Instant,
}

/// The logged-in sessions, in memory: a restart logs everybody out.
pub struct Sessions {
    table: Mutex<HashMap<String, SessionEntry>>,
    idle_timeout: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle_timeout: Duration, max: usize) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            idle_timeout,
            max: max.max(1),
        }
    }

    /// A new session: (token, CSRF token).
    pub fn create(&self) -> (String, String) {
        let (token, csrf) = (random_token(), random_token());
        let mut table = lock(&self.table);
        let now = Instant::now();
        table.retain(|_, s| now.duration_since(s.last_seen) < self.idle_timeout);
        while table.len() >= self.max {
            let oldest = table.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
            match oldest {
                Some(key) => table.remove(&key),
                None => break,
            };
        }
        table.insert(
            token.clone(),
            SessionEntry {
                csrf: csrf.clone(),
                last_seen: now,
            },
        );
        (token, csrf)
    }

    /// The session's CSRF token when `token` is a live session, which this request keeps alive.
    pub fn touch(&self, token: &str) -> Option<String> {
        let mut table = lock(&self.table);
        let now = Instant::now();
        let expired = table
            .get(token)
            .is_some_and(|s| now.duration_since(s.last_seen) >= self.idle_timeout);
        if expired {
            table.remove(token);
            return None;
        }
        let entry = table.get_mut(token)?;
        entry.last_seen = now;
        Some(entry.csrf.clone())
    }

    pub fn remove(&self, token: &str) {
        lock(&self.table).remove(token);
    }

    pub fn count(&self) -> usize {
        lock(&self.table).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A page request from a logged-in administrator; anyone else is sent to the login form.
pub struct LoggedIn {
    pub token: String,
    pub csrf: String,
}

impl LoggedIn {
    /// A form's CSRF token must be this session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), Response> {
        if same_token(&self.csrf, sent) {
            Ok(())
        } else {
            log::warn!("web: a form without this session's CSRF token was refused");
            Err((
                StatusCode::FORBIDDEN,
                "Refused: the form did not carry this session's token (CSRF). Reload the page and try again.",
            )
                .into_response())
        }
    }
}

impl FromRequestParts<Arc<AppState>> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = cookie(&parts.headers, SESSION_COOKIE);
        match token.as_deref().and_then(|token| state.sessions.touch(token)) {
            Some(csrf) => Ok(LoggedIn {
                token: token.unwrap_or_default(),
                csrf,
            }),
            None => {
                let target = if token.is_some() { "/login?expired=1" } else { "/login" };
                let mut response = Redirect::to(target).into_response();
                if token.is_some() {
                    response
                        .headers_mut()
                        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, None));
                }
                Err(response)
            }
        }
    }
}

/// What a login attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Accepted,
    Refused,
    /// Too many failures from this address lately: not even checked.
    Limited,
}

/// The failure limiter and the cache of the last API login.
pub struct LoginGuard {
    /// Shared with the SSH server when the daemon runs both: one count per address.
    limiter: Arc<AuthFailureLimiter>,
    cache_key: ring::hmac::Key,
    /// HMAC of the last accepted (user, password, stored hash).
    accepted: Mutex<Option<Vec<u8>>>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard::new()
    }
}

impl LoginGuard {
    pub fn new() -> LoginGuard {
        LoginGuard::with_limiter(Arc::new(AuthFailureLimiter::default()))
    }

    /// A guard counting failures in `limiter`, which another front end (SSH) may share.
    pub fn with_limiter(limiter: Arc<AuthFailureLimiter>) -> LoginGuard {
        let rng = ring::rand::SystemRandom::new();
        let cache_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            // Without randomness the key is predictable: then never trust the cache.
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[])
        });
        LoginGuard {
            limiter,
            cache_key,
            accepted: Mutex::new(None),
        }
    }

    /// Check a login from `ip`, counting a failure against it.
    pub async fn check(&self, state: &Arc<AppState>, ip: IpAddr, user: &str, password: &str) -> LoginOutcome {
        let (max, window) = (state.tuning.max_login_failures, state.tuning.failure_window);
        if !self.limiter.allowed(ip, max, window, Instant::now()) {
            state.counters.login(LoginOutcome::Limited);
            return LoginOutcome::Limited;
        }
        let stored = std::fs::read_to_string(state.admin.admin_password_file()).unwrap_or_default();
        let fingerprint = format!("{user}\0{password}\0{stored}");
        let cached = lock(&self.accepted).clone();
        let accepted = match cached {
            Some(tag) if ring::hmac::verify(&self.cache_key, fingerprint.as_bytes(), &tag).is_ok() => true,
            _ => {
                let (admin, user, password) = (Arc::clone(&state.admin), user.to_owned(), password.to_owned());
                let ok = tokio::task::spawn_blocking(move || admin.check_admin_login(&user, &password))
                    .await
                    .unwrap_or(false);
                if ok {
                    let tag = ring::hmac::sign(&self.cache_key, fingerprint.as_bytes());
                    *lock(&self.accepted) = Some(tag.as_ref().to_vec());
                }
                ok
            }
        };
        let outcome = if accepted {
            LoginOutcome::Accepted
        } else {
            self.limiter.record_failure(ip, window, Instant::now());
            // What was typed as a user name may be a password typed one field too early.
            if user == "admin" {
                log::warn!("web: failed login for admin from {ip}");
            } else {
                log::warn!("web: failed login from {ip} (unknown user name)");
            }
            LoginOutcome::Refused
        };
        state.counters.login(outcome);
        outcome
    }
}

/// An API or metrics request that carried the admin's HTTP Basic credentials.
pub struct BasicAuth;

impl FromRequestParts<Arc<AppState>> for BasicAuth {
    type Rejection = crate::api::ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Some((user, password)) = basic_credentials(&parts.headers) else {
            return Err(crate::api::ApiError::unauthorized(
                "HTTP Basic authentication as admin required",
            ));
        };
        let ip = client_ip(&parts.extensions);
        match state.logins.check(state, ip, &user, &password).await {
            LoginOutcome::Accepted => Ok(BasicAuth),
            LoginOutcome::Refused => Err(crate::api::ApiError::unauthorized("wrong user name or password")),
            LoginOutcome::Limited => Err(crate::api::ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins from your address; try again later",
            )),
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_and_at_logout() {
        let sessions = Sessions::new(Duration::from_millis(0), 4);
        let (token, _) = sessions.create();
        assert_eq!(sessions.touch(&token), None, "a zero idle timeout ends it at once");
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let (token, csrf) = sessions.create();
        assert_eq!(sessions.touch(&token), Some(csrf));
        sessions.remove(&token);
        assert_eq!(sessions.touch(&token), None);
        assert_eq!(sessions.touch(""), None);
    }

    #[test]
    fn the_oldest_session_goes_when_the_table_is_full() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let (first, _) = sessions.create();
        let (second, _) = sessions.create();
        let (third, _) = sessions.create();
        assert_eq!(sessions.count(), 2);
        assert!(sessions.touch(&first).is_none());
        assert!(sessions.touch(&second).is_some() && sessions.touch(&third).is_some());
    }

    #[test]
    fn cookies_and_basic_credentials_are_read_strictly() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; sb_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "sb"), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWRtaW46cGE6c3M="),
        );
        assert_eq!(basic_credentials(&headers), Some(("admin".into(), "pa:ss".into())));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&headers), None);
        assert!(!same_token("", ""));
        assert!(same_token("ab", "ab") && !same_token("ab", "ac"));
        let set = set_cookie(SESSION_COOKIE, Some("t")).to_str().unwrap().to_owned();
        for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(set.contains(attribute), "{set}");
        }
    }
}
