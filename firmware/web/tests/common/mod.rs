//! The web admin over real HTTPS: a store on disk, the admin layer, the server on a loopback
//! port with a self-signed certificate, and reqwest (rustls, ring) as the client.
#![allow(dead_code)]

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use sb_admin::{Admin, Command, Secret};
use sb_web::{WebHandle, WebTuning};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const PASSWORD: &str = "correct horse battery";

pub struct Web {
    pub _dir: tempfile::TempDir,
    pub admin: Arc<Admin>,
    pub handle: WebHandle,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

impl Web {
    pub async fn start() -> Web {
        Web::start_with(WebTuning::default()).await
    }

    pub async fn start_with(tuning: WebTuning) -> Web {
        let dir = tempfile::tempdir().unwrap();
        let store = sb_store::Store::open(dir.path()).unwrap();
        let admin = Arc::new(Admin::new(store.clone(), dir.path().to_path_buf(), None));
        let certs = admin.certs_dir();
        sb_admin::pki::selfsigned(&certs, "web", "localhost", &["localhost".to_owned()]).unwrap();
        // The admin password as `admin passwd` sets it on a host run: in the data folder.
        let passwd = sb_admin::parse("admin passwd")
            .unwrap()
            .with_secret(Secret::new(PASSWORD));
        assert!(admin.execute(passwd).ok);
        assert!(dir.path().join("admin-password").is_file());
        for line in [
            "xmpp domain example.com",
            "webadmin certs web.key web.crt",
            "webadmin listen 127.0.0.1 0",
            "webadmin enable",
        ] {
            let reply = admin.execute(sb_admin::parse(line).unwrap());
            assert!(reply.ok, "{line}: {}", reply.text);
        }
        let handle = WebHandle::new();
        let state = sb_web::AppState::new(Arc::clone(&admin), tuning);
        let interfaces = sb_listener::InterfaceWatch::new(Vec::new()).subscribe();
        let task = sb_web::start(handle.clone(), state, store, interfaces);
        assert!(handle.wait_for(0, Duration::from_secs(30)).await);
        let addr = handle.bound()[0];
        let pem = std::fs::read(certs.join("web.crt")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Web {
            _dir: dir,
            admin,
            handle,
            addr,
            client,
            _task: task,
        }
    }

    /// GET `path` with the session `cookie` (a `Cookie:` header value).
    pub async fn get_as(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }

    /// POST `form` to `path` with the session `cookie`.
    pub async fn post_form_as<T: serde::Serialize + ?Sized>(
        &self,
        cookie: &str,
        path: &str,
        form: &T,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header(reqwest::header::COOKIE, cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).basic_auth("admin", Some(PASSWORD))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .basic_auth("admin", Some(PASSWORD))
            .json(body)
    }

    pub async fn command(&self, line: &str) -> (StatusCode, Value) {
        let response = self
            .post_json("/api/v1/command", &json!({ "line": line }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Run a console command on the admin layer, as mmp would.
    pub async fn console(&self, line: &str) {
        let admin = Arc::clone(&self.admin);
        let command: Command = sb_admin::parse(line).unwrap();
        let reply = tokio::task::spawn_blocking(move || admin.execute(command))
            .await
            .unwrap();
        assert!(reply.ok, "{line}: {}", reply.text);
    }
}

pub fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next().map(|pair| pair[name.len() + 1..].to_owned()))
}

pub fn hidden_csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..start + 64].to_owned()
}

/// Log in through the form; returns the session cookie and the page's CSRF token.
pub async fn log_in(web: &Web) -> (String, String) {
    let form = web.client.get(web.url("/login")).send().await.unwrap();
    let login_cookie = cookie_value(form.headers(), "sb_login").expect("login cookie");
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
    let session = cookie_value(response.headers(), "sb_session").expect("session cookie");
    let page = web
        .client
        .get(web.url("/status"))
        .header(header::COOKIE, format!("sb_session={session}"))
        .send()
        .await
        .unwrap();
    let csrf = hidden_csrf(&page.text().await.unwrap());
    (session, csrf)
}
