//! Server-rendered HTML: escaping and the page frame. Pages are plain strings built with
//! [`escape`] around everything that did not come from this file.

use std::fmt::Write;

/// Text safe inside an element or a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const NAV: &[(&str, &str)] = &[
    ("/status", "Status"),
    ("/users", "Users"),
    ("/callbridges", "Call Bridges"),
    ("/federation", "Federation"),
    ("/certificates", "Certificates"),
    ("/logs", "Logs"),
];

/// A whole page for a logged-in administrator: navigation, logout (a form, with the CSRF
/// token), then `body`.
pub fn page(title: &str, current: &str, csrf: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in NAV {
        let class = if *href == current { " class=\"current\"" } else { "" };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{name}</a>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - Switchboard</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><header><span class=\"brand\">Switchboard</span><nav>{nav}</nav>\
         <form method=\"post\" action=\"/logout\" class=\"logout\">{hidden}\
         <button type=\"submit\">Log out</button></form></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
        hidden = csrf_field(csrf),
    )
}

/// A page without the navigation (the login form).
pub fn bare_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - Switchboard</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body class=\"bare\"><main>{body}</main></body></html>",
        title = escape(title),
    )
}

pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(csrf))
}

/// The console's result text, as the console printed it.
pub fn result_box(reply: &sb_admin::Reply) -> String {
    let class = if reply.ok { "result ok" } else { "result failure" };
    format!("<pre class=\"{class}\" id=\"result\">{}</pre>", escape(&reply.text))
}

/// A table: header cells, then rows of already-escaped cells.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{id}\"><thead><tr>");
    for header in headers {
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\" class=\"none\">(none)</td></tr>",
            headers.len()
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A small form posting one action: hidden fields, then a button.
pub fn button_form(action: &str, csrf: &str, hidden: &[(&str, &str)], label: &str, class: &str) -> String {
    let mut fields = csrf_field(csrf);
    for (name, value) in hidden {
        let _ = write!(
            fields,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{fields}<button type=\"submit\" class=\"{class}\">{}</button></form>",
        escape(action),
        escape(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }
}
