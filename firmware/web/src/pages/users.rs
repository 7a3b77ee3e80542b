//! `/users`: list, add, delete, reset password; each the console's `user ...` command.

use crate::AppState;
use crate::auth::LoggedIn;
use crate::html::{button_form, csrf_field, escape, page as frame, result_box, table};
use crate::pages::{confirmed, html, run_words};
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
pub struct UserForm {
    csrf: String,
    action: String,
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn change(session: LoggedIn, State(state): State<Arc<AppState>>, Form(form): Form<UserForm>) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused;
    }
    let reply = match form.action.as_str() {
        "add" | "passwd" => match confirmed(&form.password, &form.confirm) {
            Ok(password) => run_words(&state, &["user", &form.action, &form.name], Some(password)).await,
            Err(reply) => reply,
        },
        "del" => run_words(&state, &["user", "del", &form.name], None).await,
        other => Reply::failure(format!("unknown action '{other}'")),
    };
    render(&state, &session, Some(reply))
}

fn render(state: &AppState, session: &LoggedIn, reply: Option<Reply>) -> Response {
    let csrf = &session.csrf;
    let mut body = reply.as_ref().map(result_box).unwrap_or_default();
    let users = match state.admin.store().list_users() {
        Ok(users) => users,
        Err(err) => {
            body.push_str(&result_box(&Reply::failure(format!("cannot read the users: {err}"))));
            Vec::new()
        }
    };
    let domain = state.admin.store().xmpp_config().map(|c| c.domain).unwrap_or_default();
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|name| {
            vec![
                escape(name),
                escape(&format!("{name}@{domain}")),
                format!(
                    "<form method=\"post\" action=\"/users\" class=\"inline\">{}\
                     <input type=\"hidden\" name=\"action\" value=\"passwd\">\
                     <input type=\"hidden\" name=\"name\" value=\"{n}\">\
                     <input type=\"password\" name=\"password\" placeholder=\"new password\" autocomplete=\"new-password\" required>\
                     <input type=\"password\" name=\"confirm\" placeholder=\"again\" autocomplete=\"new-password\" required>\
                     <button type=\"submit\" class=\"secondary\">Reset password</button></form> {}",
                    csrf_field(csrf),
                    button_form("/users", csrf, &[("action", "del"), ("name", name)], "Delete", "danger"),
                    n = escape(name),
                ),
            ]
        })
        .collect();
    body.push_str(&table("users", &["User", "JID", ""], &rows));
    body.push_str(&format!(
        "<form method=\"post\" action=\"/users\" class=\"card\" id=\"add-user\">{}\
         <h3>Add a user</h3><input type=\"hidden\" name=\"action\" value=\"add\">\
         <label>Name <input name=\"name\" id=\"user-name\" required></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"user-password\" autocomplete=\"new-password\" required></label>\
         <label>Password again <input type=\"password\" name=\"confirm\" id=\"user-confirm\" autocomplete=\"new-password\" required></label>\
         <button type=\"submit\" id=\"user-add\">Add user</button></form>",
        csrf_field(csrf)
    ));
    html(frame("Users", "/users", csrf, &body))
}
