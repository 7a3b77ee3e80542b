//! `/login` and `/logout`. The login form carries a token that must match a cookie set with
//! it (there is no session yet to hold a CSRF token); a successful login replaces both with
//! the session cookie.

use crate::auth::{self, LOGIN_COOKIE, LoggedIn, LoginOutcome, SESSION_COOKIE};
use crate::html::{bare_page, csrf_field, escape};
use crate::{AppState, pages::html};
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    expired: Option<String>,
}

pub async fn form(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(query): Query<LoginQuery>) -> Response {
    if auth::cookie(&headers, SESSION_COOKIE).is_some_and(|token| state.sessions.touch(&token).is_some()) {
        return Redirect::to("/status").into_response();
    }
    let notice = if query.expired.is_some() {
        "Your session ended. Log in again."
    } else {
        ""
    };
    login_page(StatusCode::OK, notice)
}

/// The form with a fresh login token (and its cookie).
fn login_page(status: StatusCode, notice: &str) -> Response {
    let token = auth::random_token();
    let class = if status.is_success() { "notice" } else { "notice error" };
    let notice = if notice.is_empty() {
        String::new()
    } else {
        format!("<p class=\"{class}\" id=\"notice\">{}</p>", escape(notice))
    };
    let body = format!(
        "<h1>Switchboard</h1>{notice}\
         <form method=\"post\" action=\"/login\" id=\"login\">{csrf}\
         <label>User name <input name=\"username\" id=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"login-submit\">Log in</button></form>",
        csrf = csrf_field(&token),
    );
    let mut response = (status, html(bare_page("Log in", &body))).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth::set_cookie(LOGIN_COOKIE, Some(&token)));
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

pub async fn submit(
    State(state): State<Arc<AppState>>,
    request_parts: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !auth::same_token(&expected, &form.csrf) {
        return login_page(
            StatusCode::FORBIDDEN,
            "The login form expired or did not come from this site. Try again.",
        );
    }
    let ip = auth::client_ip(&request_parts);
    match state.logins.check(&state, ip, &form.username, &form.password).await {
        LoginOutcome::Accepted => {
            let (token, _csrf) = state.sessions.create();
            log::info!("web: admin logged in from {ip}");
            let mut response = Redirect::to("/status").into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, auth::set_cookie(SESSION_COOKIE, Some(&token)));
            headers.append(header::SET_COOKIE, auth::set_cookie(LOGIN_COOKIE, None));
            response
        }
        LoginOutcome::Refused => login_page(StatusCode::UNAUTHORIZED, "Login incorrect."),
        LoginOutcome::Limited => login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins from your address. Try again later.",
        ),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

pub async fn logout(session: LoggedIn, State(state): State<Arc<AppState>>, Form(form): Form<LogoutForm>) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused;
    }
    state.sessions.remove(&session.token);
    log::info!("web: admin logged out");
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth::set_cookie(SESSION_COOKIE, None));
    response
}
