//! keepalived.conf files written for these tests, each imported and
//! compared with its expected TOML and report; the TOML must also pass
//! tandem's own validation. `TANDEM_BLESS=1` rewrites the expectations.

use std::path::{Path, PathBuf};

use tandem_import::{Disk, Options};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A network namespace with the interfaces the files name (eth0 and eth1,
/// a veth pair), removed on drop: keepalived's config test refuses an
/// interface that does not exist.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("tdm-imp-{}-{n}-{tag}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns(name);
        let args = [
            "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ];
        ip(&args).then_some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// What keepalived says of a file it reads differently from what was
/// meant: an unknown keyword, a value it skips, a brace too many.
const COMPLAINTS: &[&str] = &[
    "Unknown keyword",
    "invalid",
    "not valid",
    "skipping",
    "Extra '}'",
    "Missing",
    "outside range",
];

/// keepalived itself reads the files without a complaint (`-t`, its
/// config test). Its test prints the checker's findings and, when the
/// file also has virtual servers, loses the VRRP process's: so the VRRP
/// part is tested again alone, in a copy without the virtual servers.
fn keepalived_accepts(files: &[PathBuf], node: &str) {
    let Some(ns) = Netns::new(node) else {
        assert!(!in_ci(), "a network namespace is needed under CI (root)");
        eprintln!("SKIPPED keepalived's own check: no network namespace (not root?)");
        return;
    };
    let main = &files[0];
    let dir = main.parent().unwrap();
    struct Removed(PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let copy = std::env::temp_dir().join(format!("{}-vrrp", ns.0));
    let _removed = Removed(copy.clone());
    for f in files {
        let rel = f.strip_prefix(dir).unwrap();
        let to = copy.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(
            &to,
            without_virtual_servers(&std::fs::read_to_string(f).unwrap()),
        )
        .unwrap();
    }
    let vrrp_only = copy.join(main.strip_prefix(dir).unwrap());
    for conf in [main.as_path(), vrrp_only.as_path()] {
        let out = match std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "keepalived",
                "-t",
                "-l",
                "-D",
                "-i",
                node,
                "-f",
            ])
            .arg(conf)
            .output()
        {
            // `ip netns exec` could not run it.
            Ok(o) if o.status.code() == Some(255) => {
                let why = String::from_utf8_lossy(&o.stderr).into_owned();
                assert!(
                    !in_ci(),
                    "keepalived (the Debian package) is needed under CI: {why}"
                );
                eprintln!("SKIPPED keepalived's own check: {why}");
                return;
            }
            Ok(o) => o,
            Err(e) => panic!("ip netns exec: {e}"),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        for bad in COMPLAINTS {
            assert!(
                !text.contains(bad),
                "keepalived complains of {} ({bad}):\n{text}",
                conf.display()
            );
        }
    }
}

/// The file without its top-level `virtual_server` and
/// `virtual_server_group` blocks (lines kept as blanks: places stay).
fn without_virtual_servers(text: &str) -> String {
    let mut out = String::new();
    let (mut depth, mut skipping) = (0i32, false);
    for line in text.lines() {
        let tokens = tandem_import::lex::tokens(tandem_import::lex::strip_comment(line));
        if depth == 0
            && tokens
                .first()
                .is_some_and(|t| t.text == "virtual_server" || t.text == "virtual_server_group")
        {
            skipping = true;
        }
        for t in &tokens {
            if t.is_open() {
                depth += 1;
            } else if t.is_close() {
                depth -= 1;
            }
        }
        if skipping {
            out.push('\n');
            if depth == 0 && tokens.iter().any(|t| t.is_close()) {
                skipping = false;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn golden(name: &str, node: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let conf = dir.join(format!("{name}.conf"));
    let opts = Options {
        config_id: node.into(),
        instance: String::new(),
    };
    let read = tandem_import::preprocess(&Disk, &conf, &opts).unwrap_or_else(|e| panic!("{e}"));
    keepalived_accepts(&read.files, node);
    let imported = tandem_import::keepalived(&Disk, &conf, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report: String = imported
        .notes
        .iter()
        .map(|n| {
            let mut s = n.to_string();
            // Places relative to the test's directory, as stable text.
            s = s.replace(&format!("{}/", dir.display()), "");
            s + "\n"
        })
        .collect();
    if let Err(e) = tandem_model::config::parse(&imported.toml, &format!("{name}.toml")) {
        panic!(
            "the imported configuration is refused:\n{e}\n{}",
            imported.toml
        );
    }
    let expected = |ext: &str| dir.join(format!("{name}.{node}.{ext}"));
    if std::env::var_os("TANDEM_BLESS").is_some() {
        std::fs::write(expected("toml"), &imported.toml).unwrap();
        std::fs::write(expected("report"), &report).unwrap();
        return;
    }
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        imported.toml,
        read(&expected("toml")),
        "{name} for {node}: TOML"
    );
    assert_eq!(
        report,
        read(&expected("report")),
        "{name} for {node}: report"
    );
}

#[test]
fn a_dr_pair_with_passwords_checks_and_sync_imports_for_each_director() {
    golden("pair", "lb1");
    golden("pair", "lb2");
}

#[test]
fn ipv6_vrrpv3_includes_and_what_tandem_cannot_carry_are_reported() {
    golden("v6", "lb1");
}
