//! The HTTPS web admin, the JSON API under `/api/v1/` and Prometheus metrics at `/metrics`: one
//! more front end of sb-admin's [`Command`](sb_admin::Command). Every change made here is the
//! command the console would run, and shows the console's result text.
//!
//! - [`server`]: the listener (through sb-listener, like every service), the TLS handshake and
//!   one hyper connection per task; follows the store's change feed (`webadmin ...`).
//! - [`auth`]: the login form and its session cookie, CSRF tokens, HTTP Basic for the API, the
//!   per-address login failure limiter the XMPP logins use.
//! - [`api`], [`metrics`], [`pages`]: what is served; [`headers`]: the security headers on
//!   every answer.

pub mod api;
pub mod auth;
mod headers;
mod html;
pub mod metrics;
pub mod pages;
pub mod server;

pub use server::{WebHandle, start};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sb_admin::{Admin, Command, Reply};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request bodies above this get 413 (API calls, forms); certificate uploads have their own.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A key, a certificate or a bundle pasted into the upload form.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024;

/// Limits and timeouts; tests shorten them.
#[derive(Clone, Debug)]
pub struct WebTuning {
    /// A login session ends after this long without a request.
    pub idle_timeout: Duration,
    /// Failed logins (form or API) per address within `failure_window` before it is refused.
    pub max_login_failures: u32,
    pub failure_window: Duration,
    /// Login sessions kept at once; the least recently used goes first.
    pub max_sessions: usize,
    /// TLS connections served at once.
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

impl Default for WebTuning {
    fn default() -> Self {
        WebTuning {
            idle_timeout: Duration::from_secs(15 * 60),
            max_login_failures: 5,
            failure_window: Duration::from_secs(5 * 60),
            max_sessions: 32,
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What every request handler reads.
pub struct AppState {
    pub admin: Arc<Admin>,
    pub tuning: WebTuning,
    pub sessions: auth::Sessions,
    pub logins: auth::LoginGuard,
    pub counters: metrics::WebCounters,
    pub started: Instant,
}

impl AppState {
    pub fn new(admin: Arc<Admin>, tuning: WebTuning) -> Arc<AppState> {
        AppState::with_limiter(admin, tuning, Arc::default())
    }

    /// The state with the failed-login limiter shared with another front end (the SSH server).
    pub fn with_limiter(
        admin: Arc<Admin>,
        tuning: WebTuning,
        limiter: Arc<sb_server::limits::AuthFailureLimiter>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            sessions: auth::Sessions::new(tuning.idle_timeout, tuning.max_sessions),
            logins: auth::LoginGuard::with_limiter(limiter),
            counters: metrics::WebCounters::default(),
            started: Instant::now(),
            admin,
            tuning,
        })
    }

    /// Run a command as the console does, on a blocking thread (`execute` waits for the daemon
    /// to have applied the change). Appliance commands run here as they would in `mmp`.
    pub async fn execute(self: &Arc<Self>, command: Command) -> Reply {
        let state = Arc::clone(self);
        let ran = tokio::task::spawn_blocking(move || {
            if command.runs_in_front_end() {
                sb_admin::appliance::execute_in_front_end_in(state.admin.dir(), command)
            } else {
                state.admin.execute(command)
            }
        })
        .await;
        ran.unwrap_or_else(|err| Reply::failure(format!("the command did not finish: {err}")))
    }
}

/// Every route: pages, the API, metrics, with the security headers and body limits.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .merge(metrics::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(pages::certificates::upload_routes().layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(headers::security_headers))
        .with_state(state)
}
