//! `/callbridges`: the Call Bridges allowed to connect. Adding one shows its secret once, in
//! the CMS format the console prints; the list never shows a secret.

use crate::AppState;
use crate::auth::LoggedIn;
use crate::html::{button_form, csrf_field, escape, page as frame, result_box, table};
use crate::pages::{html, run_words};
use axum::Form;
use axum::extract::State;
use axum::response::Response;
use sb_admin::Reply;
use serde::Deserialize;
use std::sync::Arc;

pub async fn page(session: LoggedIn, State(state): State<Arc<AppState>>) -> Response {
    render(&state, &session, None)
}

#[derive(Deserialize)]
pub struct CallbridgeForm {
    csrf: String,
    action: String,
    name: String,
    #[serde(default)]
    secret: String,
}

pub async fn change(
    session: LoggedIn,
    State(state): State<Arc<AppState>>,
    Form(form): Form<CallbridgeForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused;
    }
    let reply = match form.action.as_str() {
        "add" => run_words(&state, &["xmpp", "callbridge", "add", &form.name], None).await,
        "add-secret" => {
            run_words(
                &state,
                &["xmpp", "callbridge", "add-secret", &form.name],
                Some(&form.secret),
            )
            .await
        }
        "del" => run_words(&state, &["xmpp", "callbridge", "del", &form.name], None).await,
        other => Reply::failure(format!("unknown action '{other}'")),
    };
    render(&state, &session, Some(reply))
}

fn render(state: &AppState, session: &LoggedIn, reply: Option<Reply>) -> Response {
    let csrf = &session.csrf;
    let mut body = String::new();
    if let Some(reply) = &reply {
        if reply.ok && reply.text.contains("Secret     :") {
            body.push_str(
                "<p class=\"notice\">The secret is shown this once: configure the Call Bridge with it now.</p>",
            );
        }
        body.push_str(&result_box(reply));
    }
    let config = state.admin.store().xmpp_config().unwrap_or_default();
    let bridges = state.admin.store().list_callbridges().unwrap_or_default();
    let connected: Vec<String> = state
        .admin
        .live_status()
        .map(|live| live.callbridges.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = bridges
        .iter()
        .map(|bridge| {
            vec![
                escape(&bridge.name),
                escape(&format!("{}.{}", bridge.name, config.domain)),
                if connected.contains(&bridge.name) {
                    "<span class=\"good\">connected</span>".to_owned()
                } else {
                    "not connected".to_owned()
                },
                button_form(
                    "/callbridges",
                    csrf,
                    &[("action", "del"), ("name", &bridge.name)],
                    "Delete",
                    "danger",
                ),
            ]
        })
        .collect();
    let port = if config.component_port == 0 {
        "off".to_owned()
    } else {
        config.component_port.to_string()
    };
    body.push_str(&format!(
        "<p class=\"hint\">Call Bridges connect to port {port} (TLS) as <em>name.{}</em>.</p>",
        escape(&config.domain)
    ));
    body.push_str(&table(
        "callbridges",
        &["Name", "Component address", "State", ""],
        &rows,
    ));
    body.push_str(&format!(
        "<form method=\"post\" action=\"/callbridges\" class=\"card\" id=\"add-callbridge\">{csrf_input}\
         <h3>Add a Call Bridge (secret generated)</h3><input type=\"hidden\" name=\"action\" value=\"add\">\
         <label>Name <input name=\"name\" id=\"cb-name\" required></label>\
         <button type=\"submit\" id=\"cb-add\">Add</button></form>\
         <form method=\"post\" action=\"/callbridges\" class=\"card\" id=\"add-callbridge-secret\">{csrf_input}\
         <h3>Add a Call Bridge with a typed secret</h3><input type=\"hidden\" name=\"action\" value=\"add-secret\">\
         <label>Name <input name=\"name\" id=\"cb-typed-name\" required></label>\
         <label>Secret <input type=\"password\" name=\"secret\" id=\"cb-typed-secret\" autocomplete=\"off\" required></label>\
         <button type=\"submit\" id=\"cb-add-secret\">Add</button></form>",
        csrf_input = csrf_field(csrf)
    ));
    html(frame("Call Bridges", "/callbridges", csrf, &body))
}
