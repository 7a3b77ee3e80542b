//! The web admin over real HTTPS: a store on disk, the admin layer, the server on a loopback
//! port with a self-signed certificate, and reqwest (rustls, ring) as the client.

mod common;

use common::{PASSWORD, Web, cookie_value, hidden_csrf, log_in, set_cookies};
use reqwest::StatusCode;
use reqwest::header;
use sb_web::WebTuning;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_api_wants_the_admin_password_and_says_so() {
    let web = Web::start().await;
    let response = web.client.get(web.url("/api/v1/status")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("HTTP Basic"), "{body}");

    let wrong = web
        .client
        .get(web.url("/api/v1/status"))
        .basic_auth("admin", Some("not the password"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().contains_key(header::WWW_AUTHENTICATE));
    let other_user = web
        .client
        .get(web.url("/api/v1/status"))
        .basic_auth("root", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(other_user.status(), StatusCode::UNAUTHORIZED);

    let ok = web.get("/api/v1/status").send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let headers = ok.headers().clone();
    let status: Value = ok.json().await.unwrap();
    assert_eq!(status["xmpp"]["domain"], "example.com");
    assert!(status["firmware_version"].is_string());
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    let _ = &web.handle;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text_behind_the_same_login() {
    let web = Web::start().await;
    let refused = web.client.get(web.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let response = web.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    for family in [
        "# TYPE switchboard_sessions gauge",
        "# TYPE switchboard_callbridges_connected gauge",
        "# TYPE switchboard_federation_links gauge",
        "# TYPE switchboard_web_logins_total counter",
        "# TYPE switchboard_logins_total counter",
        "# TYPE switchboard_stanzas_routed_total counter",
        "# TYPE switchboard_queue_drops_total counter",
        "# TYPE switchboard_store_size_bytes gauge",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_cpu_seconds_total counter",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(
        text.contains("switchboard_web_logins_total{result=\"accepted\"} 1"),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(
            name.chars().next().unwrap().is_ascii_lowercase()
                && name
                    .split('{')
                    .next()
                    .unwrap()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let web = Web::start().await;
    let huge = "x".repeat(sb_web::MAX_BODY_BYTES + 1);
    let response = web
        .post_json("/api/v1/command", &json!({ "line": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("larger than"), "{body}");

    let malformed = web
        .client
        .post(web.url("/api/v1/users"))
        .basic_auth("admin", Some(PASSWORD))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"name\": \"alice\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("invalid JSON body"),
        "{body}"
    );

    let unknown = web
        .post_json(
            "/api/v1/users",
            &json!({ "name": "alice", "password": "long enough pw", "admin": true }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("unknown field `admin`"),
        "{body}"
    );

    let not_json = web
        .client
        .post(web.url("/api/v1/command"))
        .basic_auth("admin", Some(PASSWORD))
        .body("line=xmpp")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let missing = web.get("/api/v1/nothing").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(web.admin.store().list_users().unwrap().is_empty());
    assert_eq!(web.admin.store().xmpp_config().unwrap().domain, "example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_line_answers_with_the_console_text() {
    let web = Web::start().await;
    let (status, body) = web.command("xmpp domain example.org").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "ok": true, "output": "SUCCESS" }));
    assert_eq!(web.admin.store().xmpp_config().unwrap().domain, "example.org");

    let (status, body) = web.command("user del nobody").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], false);
    assert!(body["output"].as_str().unwrap().starts_with("FAILURE: "), "{body}");

    let (status, body) = web.command("xmpp frobnicate").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["output"], "FAILURE: unknown command 'xmpp frobnicate'");

    // A command that asks for a secret takes it from "secret".
    let (status, body) = web.command("user add bob").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let response = web
        .post_json(
            "/api/v1/command",
            &json!({ "line": "user add bob", "secret": "bobs password" }),
        )
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"], "SUCCESS");
    assert_eq!(web.admin.store().list_users().unwrap(), vec!["bob".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_and_call_bridges_are_added_listed_and_deleted() {
    let web = Web::start().await;
    let added = web
        .post_json(
            "/api/v1/users",
            &json!({ "name": "alice", "password": "alices password" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let short = web
        .post_json("/api/v1/users", &json!({ "name": "carol", "password": "short" }))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let body: Value = short.json().await.unwrap();
    assert!(body["output"].as_str().unwrap().starts_with("FAILURE"), "{body}");
    let users: Value = web.get("/api/v1/users").send().await.unwrap().json().await.unwrap();
    assert_eq!(users, json!({ "users": ["alice"] }));
    let deleted = web
        .client
        .delete(web.url("/api/v1/users/alice"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let again = web
        .client
        .delete(web.url("/api/v1/users/alice"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    let added = web
        .post_json("/api/v1/callbridges", &json!({ "name": "cb1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let body: Value = added.json().await.unwrap();
    let output = body["output"].as_str().unwrap();
    let secret = web.admin.store().callbridge_secret("cb1").unwrap().unwrap();
    assert!(
        output.contains(&format!("Secret     : {}", secret.expose())),
        "{output}"
    );
    assert!(output.contains("Callbridge : cb1"), "{output}");
    let typed = web
        .post_json(
            "/api/v1/callbridges",
            &json!({ "name": "cb2", "secret": "Typed0Secret0Long" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), StatusCode::OK, "{:?}", typed.text().await);
    let listed: Value = web
        .get("/api/v1/callbridges")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["callbridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cb1", "cb2"]);
    assert_eq!(listed["callbridges"][0]["address"], "cb1.example.com");
    assert!(
        !listed.to_string().contains(secret.expose()),
        "a listing never shows a secret"
    );
    let deleted = web
        .client
        .delete(web.url("/api/v1/callbridges/cb1"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(web.admin.store().callbridge("cb1").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_form_gives_a_strict_session_cookie_and_forms_need_its_token() {
    let web = Web::start().await;
    // Not logged in: every page sends to the login form.
    let page = web.client.get(web.url("/status")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()[header::LOCATION], "/login");

    // A login post without the form's token (a cross-site post) is refused.
    let forged = web
        .client
        .post(web.url("/login"))
        .form(&[("username", "admin"), ("password", PASSWORD), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(forged.headers(), "sb_session").is_none());

    let form = web.client.get(web.url("/login")).send().await.unwrap();
    let login_cookie = cookie_value(form.headers(), "sb_login").unwrap();
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let wrong = web
        .client
        .post(web.url("/login"))
        .header(header::COOKIE, format!("sb_login={login_cookie}"))
        .form(&[
            ("username", "admin"),
            ("password", "wrong password"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("Login incorrect"));

    let form = web.client.get(web.url("/login")).send().await.unwrap();
    let login_cookie = cookie_value(form.headers(), "sb_login").unwrap();
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let response = web
        .client
        .post(web.url("/login"))
        .header(header::COOKIE, format!("sb_login={login_cookie}"))
        .form(&[("username", "admin"), ("password", PASSWORD), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = set_cookies(response.headers());
    let session_cookie = set.iter().find(|c| c.starts_with("sb_session=")).unwrap();
    for attribute in ["; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let session = cookie_value(response.headers(), "sb_session").unwrap();
    let cookie = format!("sb_session={session}");
    let page = web.get_as(&cookie, "/status").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Status</h1>"), "{html}");
    assert!(!html.contains("<script>"), "no inline script");
    let csrf = hidden_csrf(&html);

    // Logout with another token is refused and the session lives on.
    let forged = web
        .post_form_as(&cookie, "/logout", &[("csrf", "0".repeat(64).as_str())])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let still = web.get_as(&cookie, "/status").await;
    assert_eq!(still.status(), StatusCode::OK);

    let out = web.post_form_as(&cookie, "/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = web.get_as(&cookie, "/status").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[header::LOCATION], "/login?expired=1");
    let (_session, _csrf) = log_in(&web).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_ends() {
    let web = Web::start_with(WebTuning {
        idle_timeout: Duration::ZERO,
        ..WebTuning::default()
    })
    .await;
    let form = web.client.get(web.url("/login")).send().await.unwrap();
    let login_cookie = cookie_value(form.headers(), "sb_login").unwrap();
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let response = web
        .client
        .post(web.url("/login"))
        .header(header::COOKIE, format!("sb_login={login_cookie}"))
        .form(&[("username", "admin"), ("password", PASSWORD), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let session = cookie_value(response.headers(), "sb_session").unwrap();
    let page = web
        .client
        .get(web.url("/status"))
        .header(header::COOKIE, format!("sb_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()[header::LOCATION], "/login?expired=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_from_one_address_are_refused_even_with_the_right_password() {
    let web = Web::start_with(WebTuning {
        max_login_failures: 3,
        failure_window: Duration::from_secs(3600),
        ..WebTuning::default()
    })
    .await;
    for _ in 0..3 {
        let wrong = web
            .client
            .get(web.url("/api/v1/status"))
            .basic_auth("admin", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let right = web.get("/api/v1/status").send().await.unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = right.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("too many failed logins"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webadmin_commands_apply_live() {
    let web = Web::start().await;
    let first = web.addr;
    web.console("webadmin disable").await;
    let mut closed = false;
    for _ in 0..300 {
        if web.handle.bound().is_empty() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "still listening after webadmin disable");
    assert!(tokio::net::TcpStream::connect(first).await.is_err());
    web.console("webadmin enable").await;
    let mut open = None;
    for _ in 0..300 {
        if let Some(addr) = web.handle.bound().first() {
            open = Some(*addr);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = open.expect("listening again after webadmin enable");
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
}
