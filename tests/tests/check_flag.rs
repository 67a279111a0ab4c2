//! `--check CONFIG` on every daemon: 0 and a summary for a clean file, 1
//! and the located findings for a refused one.

use std::process::Command;

use tandem_tests::{binary, workspace_root};

const DAEMONS: &[&str] = &["tandem-vrrpd", "tandem-healthd", "tandem-webui"];

#[test]
fn check_accepts_the_shipped_example_in_every_daemon() {
    let example = workspace_root().join("packaging/tandem.example.toml");
    for daemon in DAEMONS {
        let out = Command::new(binary(daemon))
            .arg("--check")
            .arg(&example)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{daemon}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("OK (3 VRRP instances, 3 virtual servers)"),
            "{daemon}: {stdout}"
        );
    }
}

#[test]
fn check_refuses_a_bad_file_with_its_location_in_every_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tandem.toml");
    std::fs::write(
        &bad,
        "[[vrrp_instance]]\nname = \"web\"\ninterface = \"eth0\"\nvrid = 51\npriority = 300\nvirtual_ips = [\"192.0.2.10/24\"]\n",
    )
    .unwrap();
    for daemon in DAEMONS {
        let out = Command::new(binary(daemon))
            .arg("--check")
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{daemon}: {stderr}");
        let located = format!("{}:5:12: priority 300 is out of range", bad.display());
        assert!(stderr.contains(&located), "{daemon}: {stderr}");
    }
}

#[test]
fn check_names_a_missing_file() {
    let out = Command::new(binary("tandem-vrrpd"))
        .args(["--check", "/nonexistent/tandem.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/tandem.toml"));
}

#[test]
fn a_missing_file_or_daemon_is_reported_with_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let once = |what: &str, out: std::process::Output, cause: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_ne!(out.status.code(), Some(0), "{what}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default().to_string();
        assert_eq!(last.matches(cause).count(), 1, "{what}: {last}");
        assert_eq!(last.matches("os error 2").count(), 1, "{what}: {last}");
    };
    for daemon in ["tandem-vrrpd", "tandem-healthd"] {
        let out = Command::new(binary(daemon))
            .arg("--config")
            .arg(&missing)
            .output()
            .unwrap();
        once(daemon, out, "cannot read");
        let out = Command::new(binary(daemon))
            .arg("--socket-dir")
            .arg(dir.path())
            .arg("status")
            .output()
            .unwrap();
        once(&format!("{daemon} status"), out, "cannot reach");
    }
}
