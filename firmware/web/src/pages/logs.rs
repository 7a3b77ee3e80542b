//! `/logs`: the daemon's recent log lines, refreshed every two seconds by a small script
//! (`/static/log.js`, no inline script), filtered by level.

use crate::AppState;
use crate::auth::LoggedIn;
use crate::html::page as frame;
use crate::pages::html;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Lines the page shows at most.
const LINES: usize = 500;
const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

pub async fn page(session: LoggedIn, State(state): State<Arc<AppState>>) -> Response {
    let options: String = LEVELS
        .iter()
        .map(|level| {
            let selected = if *level == "INFO" { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{selected}>{level} and above</option>",
                level.to_ascii_lowercase()
            )
        })
        .collect();
    let note = if state.admin.log_handle().is_some() {
        ""
    } else {
        "<p class=\"notice\">This daemon keeps no log buffer.</p>"
    };
    let body = format!(
        "{note}<div class=\"card\"><label>Level <select id=\"log-level\">{options}</select></label>\
         <span id=\"log-state\" class=\"hint\"></span></div>\
         <pre class=\"log\" id=\"log-lines\"></pre><script src=\"/static/log.js\"></script>"
    );
    html(frame("Logs", "/logs", &session.csrf, &body))
}

#[derive(Deserialize)]
pub struct LinesQuery {
    #[serde(default)]
    level: Option<String>,
}

/// The level word of a line (`2025-02-08 07:33:20.123Z INFO  target: message`).
fn level_of(line: &str) -> Option<usize> {
    let word = line.split_whitespace().nth(2)?;
    LEVELS.iter().position(|level| *level == word)
}

/// `{"lines": [...]}`: the last lines at `level` or more severe, oldest first.
pub async fn lines(
    _session: LoggedIn,
    State(state): State<Arc<AppState>>,
    Query(query): Query<LinesQuery>,
) -> Response {
    let wanted = query
        .level
        .as_deref()
        .and_then(|level| LEVELS.iter().position(|l| l.eq_ignore_ascii_case(level)))
        .unwrap_or(2);
    let lines: Vec<String> = match state.admin.log_handle() {
        Some(log) => log
            .recent(LINES * 4)
            .into_iter()
            .filter(|line| level_of(line).is_none_or(|level| level <= wanted))
            .collect(),
        None => Vec::new(),
    };
    let start = lines.len().saturating_sub(LINES);
    axum::Json(json!({ "lines": &lines[start..] })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_the_third_word() {
        assert_eq!(level_of("2025-02-08 07:33:20.123Z WARN  sb_server: x"), Some(1));
        assert_eq!(level_of("2025-02-08 07:33:20.123Z TRACE sb: x"), Some(4));
        assert_eq!(level_of("continuation"), None);
    }
}
