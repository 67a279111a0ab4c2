//! The doctor's page: what is set up wrong on this director, worst first,
//! each with how it was seen, what it breaks and the command that fixes it.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use tandem_doctor::Finding;

use crate::chrome::Chrome;
use crate::extract::Viewer;
use crate::format::ago;
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "doctor.html")]
struct DoctorPage {
    chrome: Chrome,
    findings: Vec<Finding>,
    /// When it was examined, and what it could see.
    ago: String,
    examined: String,
    error: Option<String>,
}

pub async fn doctor(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let chrome = Chrome::new(&app, &caller, "doctor");
    match app.doctor().await {
        Ok(r) => DoctorPage {
            chrome,
            findings: r.findings.clone(),
            ago: ago(app.now(), r.at),
            examined: tandem_doctor::finding::examined(&r),
            error: None,
        },
        Err(e) => DoctorPage {
            chrome,
            findings: Vec::new(),
            ago: String::new(),
            examined: String::new(),
            error: Some(e),
        },
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_doctor::Severity;

    #[test]
    fn a_finding_is_shown_with_its_evidence_and_every_fix_line() {
        let page = DoctorPage {
            chrome: Chrome {
                node: "lb1".into(),
                user: None,
                role: "",
                admin: false,
                open_mode: true,
                logged_in: false,
                csrf: String::new(),
                nav: "doctor",
                cluster_banner: None,
                cluster: false,
            },
            findings: vec![Finding {
                id: "nat-forwarding".into(),
                severity: Severity::Error,
                what: "forwarding is off, and virtual server web forwards by NAT".into(),
                seen: "net.ipv4.ip_forward = 0".into(),
                breaks: "every connection to web stops".into(),
                fix: vec![
                    "sysctl -w net.ipv4.ip_forward=1".into(),
                    "echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/60-tandem-nat.conf".into(),
                ],
            }],
            ago: "3 s ago".into(),
            examined: "nftables not read".into(),
            error: None,
        };
        let html = page.render().unwrap();
        assert!(html.contains("data-id=\"nat-forwarding\""), "{html}");
        assert!(html.contains("ERROR"), "{html}");
        assert!(html.contains("net.ipv4.ip_forward = 0"), "{html}");
        // Escaped, as every value on a page is.
        assert!(
            html.contains(
                "echo &#39;net.ipv4.ip_forward = 1&#39; &#62; /etc/sysctl.d/60-tandem-nat.conf"
            ),
            "{html}"
        );
        assert!(!html.contains("no-findings"));
    }
}
