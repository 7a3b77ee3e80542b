//! The server-rendered pages. Each page is one file; every change it makes is a console
//! [`Command`](sb_admin::Command) and the page shows the console's result text.

pub mod callbridges;
pub mod certificates;
pub mod federation;
pub mod login;
pub mod logs;
pub mod status;
pub mod users;

use crate::AppState;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sb_admin::{Reply, Secret};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/status", get(status::page))
        .route("/users", get(users::page).post(users::change))
        .route("/callbridges", get(callbridges::page).post(callbridges::change))
        .route("/federation", get(federation::page).post(federation::change))
        .route("/certificates", get(certificates::page).post(certificates::change))
        .route("/certificates/download/{name}", get(certificates::download))
        .route("/logs", get(logs::page))
        .route("/logs/lines", get(logs::lines))
        .route("/static/style.css", get(style))
        .route("/static/log.js", get(log_script))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

async fn style() -> Response {
    asset(include_str!("../../static/style.css"), "text/css; charset=utf-8")
}

async fn log_script() -> Response {
    asset(include_str!("../../static/log.js"), "text/javascript; charset=utf-8")
}

/// An HTML answer.
pub(crate) fn html(body: String) -> Response {
    axum::response::Html(body).into_response()
}

/// Run the console command made of `words` (each one word, whatever it holds), with the secret
/// it asks for when it asks for one.
pub(crate) async fn run_words(state: &Arc<AppState>, words: &[&str], secret: Option<&str>) -> Reply {
    let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    let command = match sb_admin::parse_words(&words) {
        Ok(command) => command,
        Err(err) => return Reply::from(err),
    };
    let command = match (command.secret_request(), secret) {
        (Some(_), Some(secret)) => command.with_secret(Secret::new(secret)),
        (Some(request), None) => return Reply::failure(format!("{}: none given", request.prompt)),
        (None, _) => command,
    };
    state.execute(command).await
}

/// A password typed twice in a form.
pub(crate) fn confirmed<'a>(password: &'a str, confirm: &str) -> Result<&'a str, Reply> {
    if password != confirm {
        return Err(Reply::failure("the passwords differ"));
    }
    Ok(password)
}
