//! `tandem-webui` as a program: `hash-password` makes a hash that logs
//! in, it refuses to listen beyond loopback without users, and over TLS
//! its session cookie is `Secure` and `__Host-` prefixed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use tandem_tests::binary;
use tandem_tests::webui::WebUi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn hash_password_reads_stdin_and_prints_a_hash_that_verifies() {
    let mut child = Command::new(binary("tandem-webui"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(webui::auth::verify_password(hash, "s3cret pass"));
    assert!(!webui::auth::verify_password(hash, "s3cret pass\n"));
    // And the configuration takes it.
    let cfg =
        format!("[[webui.user]]\nname = \"ada\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n");
    tandem_model::config::parse(&cfg, "t.toml").expect("a valid user");
}

/// Starts the web UI with `config` on 0.0.0.0 and returns what it said
/// when it refused.
fn refused_beyond_loopback(config: &std::path::Path) -> String {
    let out = Command::new(binary("tandem-webui"))
        .args(["--config", config.to_str().unwrap()])
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn it_refuses_to_listen_beyond_loopback_without_users() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, "[node]\nname = \"lb1\"\n").unwrap();
    let err = refused_beyond_loopback(&config);
    assert!(
        err.contains("no [[webui.user]] is defined") && err.contains("hash-password"),
        "{err}"
    );
}

#[test]
fn it_refuses_plain_http_beyond_loopback_once_users_log_in() {
    let hash = webui::auth::hash_password("s3cret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tandem.toml");
    let users =
        format!("[[webui.user]]\nname = \"ada\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n");
    std::fs::write(&config, format!("[node]\nname = \"lb1\"\n\n{users}")).unwrap();
    let err = refused_beyond_loopback(&config);
    assert!(
        err.contains("over plain HTTP") && err.contains("plain_http = true"),
        "{err}"
    );
    // In the file, the same; said on purpose, it is accepted.
    let beyond = format!("[webui]\nlisten = \"0.0.0.0:8080\"\n{users}");
    let e = tandem_model::config::parse(&beyond, "t.toml").unwrap_err();
    assert!(e.to_string().contains("over plain HTTP"), "{e}");
    let said = beyond.replace("[webui]\n", "[webui]\nplain_http = true\n");
    tandem_model::config::parse(&said, "t.toml").unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn over_tls_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[webui]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .unwrap();
    let ui = WebUi::start(&config, dir.path());
    let addr = ui
        .url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not HTTPS: {}", ui.url))
        .to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    s.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap_or_default();
    let resp = String::from_utf8_lossy(&resp);
    let cookie = resp
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie:\n{resp}\n{}", ui.log()));
    assert!(cookie.contains("__Host-tandem_session="), "{cookie}");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(
        resp.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "no HSTS:\n{resp}"
    );
}
