//! The web admin wired into the real daemon: `/metrics` over HTTPS counts the XMPP logins
//! the daemon served, and answers only to the admin password kept in the data folder.

mod common;

use common::{Client, DOMAIN, Daemon, PASSWORD};

const ADMIN_PASSWORD: &str = "web admin password";

/// The address the daemon's log says the web admin listens on.
fn web_url(daemon: &Daemon) -> String {
    for _ in 0..200 {
        let log = daemon.log();
        if let Some(start) = log.find("web admin: https://") {
            let rest = &log[start + "web admin: ".len()..];
            let url = rest.split_whitespace().next().unwrap_or_default();
            return url.trim_end_matches('/').to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the web admin never listened:\n{}", daemon.log());
}

async fn metrics(url: &str, password: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        // The daemon's own self-signed certificate, made at its first start.
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let response = client
        .get(format!("{url}/metrics"))
        .basic_auth("admin", Some(password))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_the_daemons_logins_behind_the_admin_password() {
    let daemon = Daemon::start(&["alice"], &[], |config| {
        let ip = config.listen[0].rsplit_once(':').unwrap().0.to_owned();
        config.web = sb_store::WebAdminConfig {
            enabled: true,
            listen: ip,
            port: 0,
            tls: None,
        };
    });
    sb_appliance::password::file::set(&daemon.dir.path().join("admin-password"), ADMIN_PASSWORD).unwrap();
    let url = web_url(&daemon);

    let mut client = Client::connect(daemon.addr).await;
    client.open_stream(DOMAIN).await;
    client.starttls(daemon.certificate()).await;
    client.open_stream(DOMAIN).await;
    assert!(client.authenticate("alice", "wrong").await.is_err());
    client.authenticate("alice", PASSWORD).await.expect("login");

    let (status, _) = metrics(&url, "not the admin password").await;
    assert_eq!(status, 401);
    let (status, text) = metrics(&url, ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("switchboard_logins_total{result=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_logins_total{result=\"failure\"} 1"),
        "{text}"
    );
    assert!(text.contains("switchboard_xmpp_up 1"), "{text}");
}
