//! The `tandem` .deb as built by scripts/deb, looked at from outside: what
//! it carries, how its maintainer scripts treat the units, and what
//! lintian says. (tests/tests/package_vm.rs installs it.)

use std::process::Command;

use tandem_tests::package::{self, PROGRAMS, dpkg_deb};
use tandem_tests::workspace_root;

#[test]
fn the_package_carries_every_program_unit_page_completion_and_the_default_config() {
    let Some(deb) = package::build("package_contents", "0.1.0-1") else {
        return;
    };
    let listing = dpkg_deb(&["--contents"], &deb.path);
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .collect();
    let has = |path: &str| files.contains(&path);
    let mut missing = Vec::new();
    for p in PROGRAMS {
        for path in [
            format!("/usr/bin/{p}"),
            format!("/usr/share/man/man8/{p}.8.gz"),
            format!("/usr/share/bash-completion/completions/{p}"),
            format!("/usr/share/zsh/vendor-completions/_{p}"),
            format!("/usr/share/fish/vendor_completions.d/{p}.fish"),
        ] {
            if !has(&path) {
                missing.push(path);
            }
        }
    }
    for path in [
        "/usr/lib/systemd/system/tandem-vrrpd.service",
        "/usr/lib/systemd/system/tandem-healthd.service",
        "/usr/lib/systemd/system/tandem-webui.service",
        "/usr/lib/systemd/system/tandem-clusterd.service",
        "/etc/tandem/tandem.toml",
        "/usr/share/doc/tandem/examples/tandem.example.toml",
        "/usr/share/doc/tandem/examples/run-as-user.conf",
        "/usr/share/doc/tandem/copyright",
        "/usr/share/doc/tandem/changelog.Debian.gz",
        "/usr/share/doc/tandem/crates.txt",
        "/usr/share/lintian/overrides/tandem",
        // A subcommand's page, as the main page refers to it.
        "/usr/share/man/man8/tandem-vrrpd-release.8.gz",
    ] {
        if !has(path) {
            missing.push(path.to_string());
        }
    }
    assert!(missing.is_empty(), "missing {missing:?} in\n{listing}");
    // The conffile is readable by all (lintian) and is the shipped default.
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r--r-- 0/0") && l.ends_with("./etc/tandem/tandem.toml")),
        "{listing}"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg-deb")
        .arg("--extract")
        .arg(&deb.path)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let shipped = std::fs::read_to_string(dir.path().join("etc/tandem/tandem.toml")).unwrap();
    assert_eq!(shipped, tandem::DEFAULT_CONFIG);
    // Every dependency computed from the binaries (libc), plus procps for
    // the units' /bin/kill.
    let depends = dpkg_deb(&["--field"], &deb.path);
    let depends = depends
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in\n{depends}"));
    assert!(depends.contains("libc6 (>= "), "{depends}");
    assert!(depends.contains("procps"), "{depends}");
    let crates =
        std::fs::read_to_string(dir.path().join("usr/share/doc/tandem/crates.txt")).unwrap();
    assert!(crates.contains("tokio v"), "{crates}");
}

#[test]
fn the_default_config_floats_nothing_and_programs_nothing() {
    let config = tandem_model::config::parse(tandem::DEFAULT_CONFIG, "tandem.toml")
        .expect("the default configuration is valid");
    assert!(config.vrrp_instances.is_empty());
    assert!(config.virtual_servers.is_empty());
    assert!(config.webui.listen.ip().is_loopback());
}

#[test]
fn the_maintainer_scripts_start_the_daemons_but_leave_the_web_ui_off() {
    let Some(deb) = package::build("package_scripts", "0.1.0-1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb.path)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("conffiles").trim(), "/etc/tandem/tandem.toml");
    let postinst = read("postinst");
    for unit in ["tandem-vrrpd", "tandem-healthd"] {
        // Enabled on first install, started (restarted on upgrade: after
        // the new files are in place, not stopped before).
        assert!(
            postinst.contains(&format!("deb-systemd-helper enable {unit}.service")),
            "{postinst}"
        );
        assert!(
            postinst.contains(&format!("deb-systemd-invoke $_dh_action {unit}.service")),
            "{postinst}"
        );
    }
    assert!(
        !postinst.contains("deb-systemd-invoke $_dh_action tandem-webui.service"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke try-restart tandem-webui.service"),
        "an enabled web UI is restarted on upgrade\n{postinst}"
    );
    // Neither is the cluster daemon: it needs an identity first.
    assert!(
        !postinst.contains("deb-systemd-invoke $_dh_action tandem-clusterd.service"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke try-restart tandem-clusterd.service"),
        "{postinst}"
    );
    let prerm = read("prerm");
    assert!(
        prerm.contains("[ \"$1\" = remove ]"),
        "prerm stops the daemons on remove only\n{prerm}"
    );
    let postrm = read("postrm");
    assert!(
        postrm.contains("rm -rf /etc/tandem /var/lib/tandem /run/tandem"),
        "{postrm}"
    );
    assert!(postrm.contains("deb-systemd-helper purge"), "{postrm}");
}

#[test]
fn lintian_passes_with_only_the_justified_overrides() {
    let Some(deb) = package::build("package_lintian", "0.1.0-1") else {
        return;
    };
    if tandem_tests::netns::which("lintian").is_none() {
        if tandem_tests::netns::under_ci() {
            panic!("lintian is not installed (scripts/deps installs it)");
        }
        eprintln!("\n*** SKIPPED lintian: not installed (scripts/deps installs it)\n");
        return;
    }
    let out = Command::new("lintian")
        .args([
            "--pedantic",
            "--display-info",
            "--fail-on",
            "error,warning,info,pedantic",
        ])
        .arg(&deb.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "lintian ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Every override says why.
    let overrides =
        std::fs::read_to_string(workspace_root().join("packaging/debian/lintian-overrides"))
            .unwrap();
    let mut comment = false;
    for line in overrides.lines() {
        if line.starts_with('#') {
            comment = true;
        } else if line.starts_with("tandem:") {
            assert!(comment, "override without a reason: {line}");
        } else if line.trim().is_empty() {
            comment = false;
        }
    }
}
