//! Any HTTP request to vrrpd's or healthd's control socket: method, path,
//! query and JSON body from the input. The routes extract what they need
//! (instance and server names, `{"on": ...}`, `?since=`) and hand the loop
//! a command; here the loop drops every command unanswered, which the
//! routes must turn into an error answer. None panics. An event stream
//! answers with its head; its body is not waited for.
//!
//! Input: byte 0 picks the daemon (bit 0) and the method (bits 1-2); then
//! the path up to the first newline; the rest is the body, sent as JSON.
#![no_main]

#[path = "request.rs"]
mod request;

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tandem_model::control::EventLog;
use tokio::sync::mpsc;
use tower::ServiceExt;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, path, body)) = request::split(data) else {
        return;
    };
    let method = [Method::GET, Method::POST, Method::PUT, Method::DELETE]
        [usize::from((flags >> 1) & 3)]
    .clone();
    let Ok(req) = Request::builder()
        .method(method)
        .uri(path.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    rt().block_on(async {
        let events = EventLog::new("fuzz", "lb1", 16);
        let router = if flags & 1 == 0 {
            let (tx, mut rx) = mpsc::channel::<vrrpd::input::Input>(4);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            vrrpd::control::router(tx, &events)
        } else {
            let (tx, mut rx) = mpsc::channel::<healthd::daemon::Input>(4);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            healthd::control::router(tx, &events)
        };
        let resp = router
            .oneshot(req)
            .await
            .expect("the router always answers");
        if !request::streaming(&resp) {
            let _ = resp.into_body().collect().await;
        }
    });
});
