//! `/certificates`: the certificate folder. List and inspect (`pki list`, `pki inspect`), make
//! a key and CSR (`pki csr`) and download the request, upload a key, certificate or bundle.
//! File names are plain names inside the folder (the console's own check), so no upload or
//! download reaches outside it; private keys are never offered for download.

use crate::AppState;
use crate::auth::LoggedIn;
use crate::html::{csrf_field, escape, page as frame, result_box};
use crate::pages::{html, run_words};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use sb_admin::{Reply, pki};
use serde::Deserialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

/// The upload, with a larger body limit than the other forms.
pub fn upload_routes() -> Router<Arc<AppState>> {
    Router::new().route("/certificates/upload", post(upload))
}

#[derive(Deserialize)]
pub struct CertificatesQuery {
    #[serde(default)]
    inspect: Option<String>,
}

pub async fn page(
    session: LoggedIn,
    State(state): State<Arc<AppState>>,
    Query(query): Query<CertificatesQuery>,
) -> Response {
    let reply = match query.inspect {
        Some(name) => Some(run_words(&state, &["pki", "inspect", &name], None).await),
        None => None,
    };
    html(render(&state, &session, reply, None).await)
}

#[derive(Deserialize)]
pub struct CsrForm {
    csrf: String,
    basename: String,
    cn: String,
    #[serde(default)]
    o: String,
    #[serde(default)]
    sans: String,
}

/// `pki csr <basename> CN:<cn> [O:<o>] [subjectAltName:<sans>]`.
pub async fn change(session: LoggedIn, State(state): State<Arc<AppState>>, Form(form): Form<CsrForm>) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused;
    }
    let cn = format!("CN:{}", form.cn.trim());
    let o = format!("O:{}", form.o.trim());
    let sans = format!("subjectAltName:{}", form.sans.trim());
    let mut words = vec!["pki", "csr", form.basename.trim(), cn.as_str()];
    if !form.o.trim().is_empty() {
        words.push(&o);
    }
    if !form.sans.trim().is_empty() {
        words.push(&sans);
    }
    let reply = run_words(&state, &words, None).await;
    let download = reply.ok.then(|| format!("{}.csr", form.basename.trim()));
    html(render(&state, &session, Some(reply), download).await)
}

#[derive(Deserialize)]
pub struct UploadForm {
    csrf: String,
    name: String,
    pem: String,
}

/// Store a pasted PEM file in the folder: a private key (kept owner-only), or certificates (a
/// certificate or a bundle). Anything else, or a name that is not a plain file name, is
/// refused with a 400 and nothing is written.
pub async fn upload(session: LoggedIn, State(state): State<Arc<AppState>>, Form(form): Form<UploadForm>) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf) {
        return refused;
    }
    let reply = store_upload(&state.admin.certs_dir(), form.name.trim(), form.pem.as_bytes());
    let status = if reply.ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    if reply.ok {
        log::info!("web: uploaded {} to the certificate folder", form.name.trim());
    }
    (status, html(render(&state, &session, Some(reply), None).await)).into_response()
}

fn store_upload(dir: &std::path::Path, name: &str, pem: &[u8]) -> Reply {
    let path = match pki::cert_file(dir, name) {
        Ok(path) => path,
        Err(err) => return Reply::failure(err),
    };
    let mut reader = pem;
    let mut keys = 0;
    let mut certificates = 0;
    loop {
        match rustls_pki_types::pem::from_buf(&mut reader) {
            Ok(Some((rustls_pki_types::pem::SectionKind::Certificate, _))) => certificates += 1,
            Ok(Some((
                rustls_pki_types::pem::SectionKind::PrivateKey
                | rustls_pki_types::pem::SectionKind::RsaPrivateKey
                | rustls_pki_types::pem::SectionKind::EcPrivateKey,
                _,
            ))) => keys += 1,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(err) => return Reply::failure(format!("not a PEM file: {err}")),
        }
    }
    let secret = match (keys, certificates) {
        (1, 0) => true,
        (0, n) if n > 0 => false,
        (0, 0) => return Reply::failure("no certificate or private key in the upload"),
        _ => return Reply::failure("upload a key, a certificate or a bundle, one per file"),
    };
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let tmp = dir.join(format!(".{name}.upload"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&tmp)?;
        file.write_all(pem)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    });
    match written {
        Ok(()) => Reply::success(),
        Err(err) => Reply::failure(format!("cannot write {name}: {err}")),
    }
}

/// A certificate request or certificate, as a file download; keys are refused.
pub async fn download(_session: LoggedIn, State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let refused = |status: StatusCode, why: String| (status, why).into_response();
    let path = match pki::cert_file(&state.admin.certs_dir(), &name) {
        Ok(path) => path,
        Err(err) => return refused(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(_) => return refused(StatusCode::NOT_FOUND, format!("no file {name}")),
    };
    if String::from_utf8_lossy(&bytes).contains("PRIVATE KEY") {
        return refused(StatusCode::FORBIDDEN, "private keys are never downloaded".to_owned());
    }
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn render(state: &Arc<AppState>, session: &LoggedIn, reply: Option<Reply>, download: Option<String>) -> String {
    let csrf = &session.csrf;
    let mut body = reply.as_ref().map(result_box).unwrap_or_default();
    if let Some(name) = download {
        body.push_str(&format!(
            "<p><a href=\"/certificates/download/{n}\" id=\"csr-download\">Download {n}</a></p>",
            n = escape(&name)
        ));
    }
    let listing = run_words(state, &["pki", "list"], None).await;
    body.push_str(&format!(
        "<h2>Files</h2><pre id=\"pki-list\">{}</pre>",
        escape(&listing.text)
    ));
    let names: Vec<String> = pki::list(&state.admin.certs_dir(), time::OffsetDateTime::now_utc())
        .map(|files| files.into_iter().map(|f| f.name).collect())
        .unwrap_or_default();
    let options: String = names
        .iter()
        .map(|n| format!("<option value=\"{n}\">{n}</option>", n = escape(n)))
        .collect();
    let c = csrf_field(csrf);
    body.push_str(&format!(
        "<form method=\"get\" action=\"/certificates\" class=\"card\" id=\"form-inspect\"><h3>Inspect</h3>\
         <label>File <select name=\"inspect\" id=\"inspect-name\">{options}</select></label>\
         <button type=\"submit\" id=\"inspect\">Inspect</button></form>\
         <form method=\"post\" action=\"/certificates/upload\" class=\"card\" id=\"form-upload\">{c}\
         <h3>Upload a key, certificate or bundle (PEM)</h3>\
         <label>File name <input name=\"name\" id=\"upload-name\" placeholder=\"server.crt\" required></label>\
         <label class=\"wide\">Contents <textarea name=\"pem\" id=\"upload-pem\" placeholder=\"-----BEGIN CERTIFICATE-----\" required></textarea></label>\
         <button type=\"submit\" id=\"upload\">Upload</button></form>\
         <form method=\"post\" action=\"/certificates\" class=\"card\" id=\"form-csr\">{c}\
         <h3>Make a key and a certificate request</h3>\
         <label>Base name <input name=\"basename\" id=\"csr-basename\" required></label>\
         <label>Common name <input name=\"cn\" id=\"csr-cn\" required></label>\
         <label>Organisation <input name=\"o\"></label>\
         <label>Subject alternative names <input name=\"sans\" placeholder=\"a.example.com,b.example.com\"></label>\
         <button type=\"submit\" id=\"csr\">Make CSR</button></form>"
    ));
    frame("Certificates", "/certificates", csrf, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_stay_in_the_folder_and_must_be_pem() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../x.crt", "/etc/passwd", ".hidden", "a/b.crt", ""] {
            let reply = store_upload(dir.path(), name, b"-----BEGIN CERTIFICATE-----\n");
            assert!(!reply.ok, "{name}");
        }
        assert!(!store_upload(dir.path(), "x.crt", b"hello").ok);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing written"
        );
    }
}
