//! The CLI on this machine, whatever its kernel: what it says without
//! IPVS, and what it refuses before talking to the kernel at all.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ipvsctl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipvsctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Without the ip_vs module there is no "IPVS" generic netlink family:
/// the message says so and what to load. (With IPVS, list must work or
/// at most lack the capability.)
#[test]
fn list_without_ipvs_in_the_kernel_says_to_load_ip_vs() {
    let out = ipvsctl(&["list"], "");
    if !Path::new("/proc/net/ip_vs").exists() {
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            "ipvsctl: this kernel has no IPVS: load the ip_vs module (modprobe ip_vs)\n"
        );
    } else {
        let err = stderr(&out);
        assert!(
            out.status.success() || err.contains("CAP_NET_ADMIN"),
            "{err}"
        );
    }
}

#[test]
fn a_refused_configuration_is_reported_with_its_location_before_the_kernel_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.toml");
    std::fs::write(
        &path,
        "[[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10:80\"\nscheduler = \"nosuch\"\n",
    )
    .unwrap();
    for cmd in ["apply", "diff"] {
        let out = ipvsctl(&[cmd, path.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = stderr(&out);
        assert!(err.contains("tandem.toml:4:"), "{cmd}: {err}");
        assert!(err.contains("unknown scheduler \"nosuch\""), "{cmd}: {err}");
        assert!(!err.contains("no IPVS"), "{cmd}: {err}");
    }
}

#[test]
fn restore_refuses_a_bad_rule_with_its_line_and_column() {
    let out = ipvsctl(
        &["restore"],
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r x -m\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "ipvsctl: stdin: line 2, column 22: \"x\" is not an address: write 10.0.0.1:80 or \
         [2001:db8::1]:80 (numeric, as ipvsadm -S -n prints)\n"
    );
}

#[test]
fn help_shows_examples_and_completions_are_generated() {
    let out = ipvsctl(&["--help"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Examples:"), "{text}");
    assert!(
        text.contains("ipvsctl apply /etc/tandem/tandem.toml --dry-run"),
        "{text}"
    );
    let out = ipvsctl(&["completions", "bash"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync-daemon"));
}

/// healthd owns the table at run time: apply says so when healthd answers
/// on its control socket. (The file names no virtual server, so on a
/// kernel with IPVS nothing changes.)
#[test]
fn apply_warns_when_healthd_owns_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.toml");
    std::fs::write(
        &path,
        format!("[node]\nsocket_dir = \"{}\"\n", dir.path().display()),
    )
    .unwrap();
    let quiet = ipvsctl(&["apply", path.to_str().unwrap()], "");
    assert!(!stderr(&quiet).contains("healthd"), "{}", stderr(&quiet));
    let _healthd = std::os::unix::net::UnixListener::bind(dir.path().join("healthd.sock")).unwrap();
    let warned = ipvsctl(&["apply", path.to_str().unwrap()], "");
    assert!(
        stderr(&warned).starts_with(&format!(
            "ipvsctl: warning: tandem-healthd is running ({}/healthd.sock) and owns the IPVS table",
            dir.path().display()
        )),
        "{}",
        stderr(&warned)
    );
    // A dry run changes nothing: no warning.
    let dry = ipvsctl(&["apply", "--dry-run", path.to_str().unwrap()], "");
    assert!(!stderr(&dry).contains("healthd"), "{}", stderr(&dry));
}
