//! `/federation`: on/off, TLS mode, client certificates, privacy mode and lists, static
//! routes, the dialback secret (write-only); each the console's `federation ...` command.

use crate::AppState;
use crate::auth::LoggedIn;
use crate::html::{button_form, csrf_field, escape, page as frame, result_box};
use crate::pages::{html, run_words};
use axum::Form;
use axum::extract::State;
use axum::response::Response;
use sb_admin::{Command, FederationCommand, Reply};
use serde::Deserialize;
use std::sync::Arc;

pub async fn page(session: LoggedIn, State(state): State<Arc<AppState>>) -> Response {
    render(&state, &session, None).await
}

#[derive(Deserialize)]
pub struct FederationForm {
    csrf: String,
    action: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    list: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    secret: String,
}

pub async fn change(
    session: LoggedIn,
    State(state): State<Arc<AppState>>,
    Form(form): Form<FederationForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused;
    }
    let f = &form;
    let reply = match f.action.as_str() {
        "enable" | "disable" => run_words(&state, &["federation", &f.action], None).await,
        "security" | "client-certs" | "privacy" | "verify" | "allow-internal" => {
            run_words(&state, &["federation", &f.action, &f.value], None).await
        }
        "list" => run_words(&state, &["federation", &f.list, &f.op, &f.domain], None).await,
        "route" => run_words(&state, &["federation", "route", &f.op, &f.domain, &f.target], None).await,
        "dialback-secret" if f.secret.is_empty() => {
            run_words(&state, &["federation", "dialback-secret", "generate"], None).await
        }
        "dialback-secret" => run_words(&state, &["federation", "dialback-secret"], Some(&f.secret)).await,
        other => Reply::failure(format!("unknown action '{other}'")),
    };
    render(&state, &session, Some(reply)).await
}

/// A choice with `current` selected.
fn select(name: &str, id: &str, options: &[&str], current: &str) -> String {
    let options: String = options
        .iter()
        .map(|o| {
            let selected = if *o == current { " selected" } else { "" };
            format!("<option value=\"{o}\"{selected}>{o}</option>")
        })
        .collect();
    format!("<select name=\"{name}\" id=\"{id}\">{options}</select>")
}

/// The first word of a `Name   : value` line of `federation status`: the setting in force.
fn current<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|line| line.split(':').next().is_some_and(|key| key.trim() == name))
        .and_then(|line| line.split_once(':'))
        .and_then(|(_, value)| value.split_whitespace().next())
        .unwrap_or("")
}

async fn render(state: &Arc<AppState>, session: &LoggedIn, reply: Option<Reply>) -> Response {
    let csrf = &session.csrf;
    let mut body = reply.as_ref().map(result_box).unwrap_or_default();
    let status = state.execute(Command::Federation(FederationCommand::Status)).await;
    body.push_str(&format!(
        "<h2>Settings and links</h2><pre id=\"federation-status\">{}</pre>",
        escape(&status.text)
    ));
    let c = csrf_field(csrf);
    body.push_str(&format!(
        "<h2>Change</h2><div class=\"card\">{} {}</div>",
        button_form("/federation", csrf, &[("action", "enable")], "Enable federation", ""),
        button_form(
            "/federation",
            csrf,
            &[("action", "disable")],
            "Disable federation",
            "danger"
        ),
    ));
    let setting = |action: &str, title: &str, options: &[&str], now: &str| {
        format!(
            "<form method=\"post\" action=\"/federation\" class=\"card\" id=\"form-{action}\">{c}\
             <h3>{title}</h3><input type=\"hidden\" name=\"action\" value=\"{action}\">\
             <label>Value {}</label><button type=\"submit\" id=\"set-{action}\">Set</button></form>",
            select("value", &format!("{action}-value"), options, now)
        )
    };
    let text = status.text.as_str();
    let settings: [(&str, &str, &[&str], &str); 4] = [
        (
            "security",
            "TLS",
            &["tls-required", "tls-optional", "no-tls"],
            "Security",
        ),
        (
            "client-certs",
            "Client certificates (SASL EXTERNAL)",
            &["on", "off"],
            "Client certs",
        ),
        (
            "verify",
            "Verify peers' certificate chains",
            &["on", "off"],
            "Verify outgoing",
        ),
        ("privacy", "Privacy mode", &["off", "allow", "deny"], "Privacy"),
    ];
    for (action, title, options, shown_as) in settings {
        body.push_str(&setting(action, title, options, current(text, shown_as)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/federation\" class=\"card\" id=\"form-list\">{c}\
         <h3>Allow and deny lists</h3><input type=\"hidden\" name=\"action\" value=\"list\">\
         <label>List {}</label><label>Change {}</label>\
         <label>Domain <input name=\"domain\" required></label><button type=\"submit\">Apply</button></form>",
        select("list", "list-name", &["allow", "deny"], ""),
        select("op", "list-op", &["add", "del"], ""),
    ));
    body.push_str(&format!(
        "<form method=\"post\" action=\"/federation\" class=\"card\" id=\"form-route\">{c}\
         <h3>Static routes</h3><input type=\"hidden\" name=\"action\" value=\"route\">\
         <label>Change {}</label><label>Domain <input name=\"domain\" required></label>\
         <label>Host[:port] <input name=\"target\" required></label><button type=\"submit\">Apply</button></form>",
        select("op", "route-op", &["add", "del"], ""),
    ));
    body.push_str(&format!(
        "<form method=\"post\" action=\"/federation\" class=\"card\" id=\"form-dialback\">{c}\
         <h3>Dialback secret (write-only)</h3><input type=\"hidden\" name=\"action\" value=\"dialback-secret\">\
         <label>Secret (empty: generate one) <input type=\"password\" name=\"secret\" autocomplete=\"off\"></label>\
         <button type=\"submit\">Set</button></form>"
    ));
    html(frame("Federation", "/federation", csrf, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_in_force_is_read_from_the_status_text() {
        let status =
            "Federation        : disabled\nSecurity          : tls-optional\nVerify outgoing   : on (system roots)";
        assert_eq!(current(status, "Security"), "tls-optional");
        assert_eq!(current(status, "Verify outgoing"), "on");
        assert_eq!(current(status, "Privacy"), "");
        assert!(select("v", "i", &["a", "b"], "b").contains("<option value=\"b\" selected>"));
    }
}
