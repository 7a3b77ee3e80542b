//! `/api/v1/`: JSON over HTTP Basic as `admin`. Reads come from the store and the running
//! daemon; every change is the console's [`Command`], and answers with its result text.
//!
//! Errors are JSON `{"error": "<why>"}` with a status that fits: 400 for input that cannot be
//! used (malformed JSON, unknown fields, a refused command), 401 without the admin's
//! credentials, 404 for a name that does not exist, 413 for a body over the limit, 503 when a
//! cluster cannot reach a quorum.

use crate::AppState;
use crate::auth::BasicAuth;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use sb_admin::{CallbridgeCommand, Command, Reply, Secret, UserCommand};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/callbridges", get(list_callbridges).post(add_callbridge))
        .route("/api/v1/callbridges/{name}", delete(delete_callbridge))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", delete(delete_user))
        .route("/api/v1/command", post(command))
}

/// A refusal, as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Switchboard\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// A JSON body, strictly: `application/json`, within the size limit (413), well formed and
/// with no unknown field (400, saying what was wrong).
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let body = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
                )
            } else {
                ApiError::new(status, rejection.body_text())
            }
        })?;
        serde_json::from_slice(&body)
            .map(StrictJson)
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))
    }
}

/// A command's result as the API answers it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandResult {
    pub ok: bool,
    pub output: String,
}

/// A change's reply: 200 when it succeeded, else 400 (503 without quorum) with the same text.
fn change_result(reply: Reply) -> Response {
    let status = if reply.ok {
        StatusCode::OK
    } else if reply.text.contains("no quorum") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        axum::Json(CommandResult {
            ok: reply.ok,
            output: reply.text,
        }),
    )
        .into_response()
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::new(StatusCode::NOT_FOUND, format!("no such API path: {}", uri.path())).into_response()
    } else {
        (StatusCode::NOT_FOUND, "Not found").into_response()
    }
}

async fn status(_auth: BasicAuth, State(state): State<Arc<AppState>>) -> Response {
    axum::Json(crate::pages::status::snapshot(&state).await).into_response()
}

fn store_error(err: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read the store: {err}"),
    )
}

async fn list_callbridges(_auth: BasicAuth, State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let domain = state.admin.store().xmpp_config().map_err(store_error)?.domain;
    let bridges = state.admin.store().list_callbridges().map_err(store_error)?;
    let listed: Vec<_> = bridges
        .iter()
        .map(|b| json!({ "name": b.name, "address": format!("{}.{domain}", b.name), "created_unix": b.created_unix }))
        .collect();
    Ok(axum::Json(json!({ "callbridges": listed })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCallbridge {
    name: String,
    /// Typed by the caller; generated (and shown once in the output) when absent.
    #[serde(default)]
    secret: Option<String>,
}

async fn add_callbridge(
    _auth: BasicAuth,
    State(state): State<Arc<AppState>>,
    StrictJson(body): StrictJson<NewCallbridge>,
) -> Response {
    let command = match body.secret {
        None => CallbridgeCommand::Add { name: body.name },
        Some(secret) => CallbridgeCommand::AddSecret {
            name: body.name,
            secret: Some(Secret::new(secret)),
        },
    };
    change_result(state.execute(Command::Callbridge(command)).await)
}

async fn delete_callbridge(
    _auth: BasicAuth,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if state.admin.store().callbridge(&name).map_err(store_error)?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no Call Bridge named '{name}'"),
        ));
    }
    Ok(change_result(
        state
            .execute(Command::Callbridge(CallbridgeCommand::Del { name }))
            .await,
    ))
}

async fn list_users(_auth: BasicAuth, State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let users = state.admin.store().list_users().map_err(store_error)?;
    Ok(axum::Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
}

async fn add_user(
    _auth: BasicAuth,
    State(state): State<Arc<AppState>>,
    StrictJson(body): StrictJson<NewUser>,
) -> Response {
    let command = UserCommand::Add {
        name: body.name,
        password: Some(Secret::new(body.password)),
    };
    change_result(state.execute(Command::User(command)).await)
}

async fn delete_user(
    _auth: BasicAuth,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if !state.admin.store().user_exists(&name).map_err(store_error)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no user named '{name}'")));
    }
    Ok(change_result(
        state.execute(Command::User(UserCommand::Del { name })).await,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandLine {
    line: String,
    /// The secret a command asks for (`user add`, `admin passwd`...), where the console prompts.
    #[serde(default)]
    secret: Option<String>,
}

/// `POST command {"line": "..."}`: any console command, answered with the console's text. A
/// command that ran answers 200 whether it printed SUCCESS or FAILURE (`ok` says which); a line
/// that is not a command answers 400.
async fn command(
    _auth: BasicAuth,
    State(state): State<Arc<AppState>>,
    StrictJson(body): StrictJson<CommandLine>,
) -> Response {
    let command = match sb_admin::parse(&body.line) {
        Ok(command) => command,
        Err(err) => {
            let reply = Reply::from(err);
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(CommandResult {
                    ok: false,
                    output: reply.text,
                }),
            )
                .into_response();
        }
    };
    if command.is_streaming() {
        return ApiError::bad_request("this command streams its output: use mmp or the Logs page").into_response();
    }
    let command = match (command.secret_request(), body.secret) {
        (Some(_), Some(secret)) => command.with_secret(Secret::new(secret)),
        (Some(request), None) => {
            return ApiError::bad_request(format!("this command needs \"secret\" ({})", request.prompt))
                .into_response();
        }
        (None, _) => command,
    };
    let reply = state.execute(command).await;
    axum::Json(CommandResult {
        ok: reply.ok,
        output: reply.text,
    })
    .into_response()
}
