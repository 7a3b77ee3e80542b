//! The HTML pages over real HTTPS: forms carry the session's CSRF token, every change shows
//! the console's text, certificate names cannot leave the certificate folder.

mod common;

use common::{Web, log_in};
use reqwest::StatusCode;
use reqwest::header;

struct Session<'a> {
    web: &'a Web,
    cookie: String,
    csrf: String,
}

impl Session<'_> {
    async fn open(web: &Web) -> Session<'_> {
        let (session, csrf) = log_in(web).await;
        Session {
            web,
            cookie: format!("sb_session={session}"),
            csrf,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .web
            .client
            .get(self.web.url(path))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut form: Vec<(&str, &str)> = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let response = self
            .web
            .client
            .post(self.web.url(path))
            .header(header::COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_for_a_logged_in_admin() {
    let web = Web::start().await;
    let session = Session::open(&web).await;
    for (path, title) in [
        ("/status", "<h1>Status</h1>"),
        ("/users", "<h1>Users</h1>"),
        ("/callbridges", "<h1>Call Bridges</h1>"),
        ("/federation", "<h1>Federation</h1>"),
        ("/certificates", "<h1>Certificates</h1>"),
        ("/logs", "<h1>Logs</h1>"),
    ] {
        let (status, html) = session.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(html.contains(title), "{path}: {html}");
        assert!(!html.contains("<script>"), "{path}: inline script");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_without_the_session_token_changes_nothing() {
    let web = Web::start().await;
    let session = Session::open(&web).await;
    let forged = [
        ("csrf", "f".repeat(64)),
        ("action", "add".to_owned()),
        ("name", "mallory".to_owned()),
        ("password", "mallorys password".to_owned()),
        ("confirm", "mallorys password".to_owned()),
    ];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = session.post_raw("/users", &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(web.admin.store().list_users().unwrap().is_empty());

    let (status, html) = session
        .post(
            "/users",
            &[
                ("action", "add"),
                ("name", "alice"),
                ("password", "alices password"),
                ("confirm", "alices password"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<pre class=\"result ok\" id=\"result\">SUCCESS</pre>"),
        "{html}"
    );
    assert_eq!(web.admin.store().list_users().unwrap(), ["alice"]);
    let (_, html) = session
        .post(
            "/users",
            &[
                ("action", "add"),
                ("name", "bob"),
                ("password", "one password"),
                ("confirm", "another one"),
            ],
        )
        .await;
    assert!(html.contains("FAILURE: the passwords differ"), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_bridge_added_on_the_page_shows_its_secret_once() {
    let web = Web::start().await;
    let session = Session::open(&web).await;
    let (status, html) = session
        .post("/callbridges", &[("action", "add"), ("name", "cb1")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let secret = web.admin.store().callbridge_secret("cb1").unwrap().unwrap();
    assert!(html.contains(&format!("Secret     : {}", secret.expose())), "{html}");
    let (_, html) = session.get("/callbridges").await;
    assert!(html.contains("cb1.example.com"), "{html}");
    assert!(!html.contains(secret.expose()), "the list never shows the secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_names_cannot_leave_the_folder_and_keys_are_never_downloaded() {
    let web = Web::start().await;
    let session = Session::open(&web).await;
    let pem = std::fs::read_to_string(web.admin.certs_dir().join("web.crt")).unwrap();
    for name in ["../escape.crt", "..", "/etc/x.crt", "sub/x.crt"] {
        let (status, html) = session
            .post("/certificates/upload", &[("name", name), ("pem", &pem)])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert!(html.contains("FAILURE"), "{html}");
    }
    assert!(!web.admin.dir().join("escape.crt").exists());
    let (status, html) = session
        .post("/certificates/upload", &[("name", "copy.crt"), ("pem", "junk")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    let (status, _) = session
        .post("/certificates/upload", &[("name", "copy.crt"), ("pem", &pem)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::fs::read_to_string(web.admin.certs_dir().join("copy.crt")).unwrap(),
        pem
    );

    let (status, html) = session
        .post("/certificates", &[("basename", "req"), ("cn", "xmpp.example.com")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"csr-download\""), "{html}");
    let (status, csr) = session.get("/certificates/download/req.csr").await;
    assert_eq!(status, StatusCode::OK);
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{csr}");
    let (status, _) = session.get("/certificates/download/req.key").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = session.get("/certificates/download/..%2Fadmin-password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, html) = session.get("/certificates?inspect=copy.crt").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("localhost"), "{html}");
}
