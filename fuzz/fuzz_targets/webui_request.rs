//! Any HTTP request to the web UI and its JSON API: method, path and
//! query, content type, credentials and body from the input. Whatever it
//! is, a handler answers; none panics. Each input meets a fresh web UI
//! (its configuration written again, no sessions), so a run replays. A
//! live-update stream answers with its head; its body is not waited for.
//!
//! Input: byte 0 picks the method (bits 0-1), admin or viewer basic auth
//! (bits 2-3) and the content type (bits 4-5); then the path up to the
//! first newline; the rest is the body.
#![no_main]

#[path = "request.rs"]
mod request;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use webui::ratelimit::Limits;
use webui::server::router;
use webui::state::{App, Options};

struct Setup {
    rt: tokio::runtime::Runtime,
    dir: PathBuf,
    text: String,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tandem-fuzz-webui-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        // argon2 reads its cost from the hash: the cheapest it allows
        // keeps a request with credentials from costing 19 MiB of hashing.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        );
        let hash = |p: &str| cheap.hash_password(p.as_bytes()).unwrap().to_string();
        let (admin, viewer) = (hash("admin-pw"), hash("viewer-pw"));
        let text = format!(
            "[node]\nname = \"lb1\"\n\n[webui]\nsession_timeout = \"10m\"\n\n\
             [[webui.user]]\nname = \"ada\"\npassword_hash = \"{admin}\"\nrole = \"admin\"\n\n\
             [[webui.user]]\nname = \"vic\"\npassword_hash = \"{viewer}\"\nrole = \"viewer\"\n\n\
             [[vrrp_instance]]\nname = \"web\"\ninterface = \"eth0\"\nvrid = 51\n\
             virtual_ips = [\"192.0.2.10/24\"]\n"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Setup { rt, dir, text }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, path, body)) = request::split(data) else {
        return;
    };
    let s = setup();
    let method =
        [Method::GET, Method::POST, Method::PUT, Method::DELETE][usize::from(flags & 3)].clone();
    let mut req = Request::builder().method(method).uri(path.as_str());
    match (flags >> 2) & 3 {
        1 => req = req.header(header::AUTHORIZATION, "Basic YWRhOmFkbWluLXB3"), // ada:admin-pw
        2 => req = req.header(header::AUTHORIZATION, "Basic dmljOnZpZXdlci1wdw=="), // vic:viewer-pw
        _ => {}
    }
    let ct = [
        "",
        "application/x-www-form-urlencoded",
        "application/json",
        "text/plain",
    ][usize::from((flags >> 4) & 3)];
    if !ct.is_empty() {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };

    let config = s.dir.join("tandem.toml");
    std::fs::write(&config, &s.text).unwrap();
    let parsed = tandem_model::config::parse(&s.text, "tandem.toml").unwrap();
    let app = App::new(
        Options {
            config_path: config,
            socket_dir: s.dir.join("run"),
            backups: 2,
            tls: false,
            clock: Arc::new(tandem_model::api::now_millis),
            limits: Limits::default(),
        },
        &parsed,
    );
    let addr: SocketAddr = "192.0.2.7:50000".parse().unwrap();
    let r = router(app).layer(MockConnectInfo(addr));
    s.rt.block_on(async {
        let resp = r.oneshot(req).await.expect("the router always answers");
        // Live updates are a stream that never ends: its head is the answer.
        if !request::streaming(&resp) {
            let _ = resp.into_body().collect().await;
        }
    });
});
