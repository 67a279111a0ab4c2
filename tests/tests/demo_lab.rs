//! The README's main command works: `scripts/lab up` brings up two
//! directors and a client, `kill` moves the VIP, `status` says so, `down`
//! leaves nothing behind.

use std::process::{Command, Output};

use tandem_tests::{binary, netns, workspace_root};

struct Lab {
    name: String,
    bin: String,
}

impl Lab {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(workspace_root().join("scripts/lab"))
            .args(args)
            .env("TANDEM_LAB", &self.name)
            .env("TANDEM_BIN", &self.bin)
            .current_dir(workspace_root())
            .output()
            .unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "scripts/lab {args:?} failed:\n{text}");
        text
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

#[test]
fn the_demo_lab_comes_up_fails_over_and_goes_away() {
    // The lab needs what the netns harness needs.
    if netns::lab("demo_lab_probe").is_none() {
        return;
    }
    let lab = Lab {
        name: format!("tdmlab{}", std::process::id()),
        bin: binary("tandem-vrrpd").display().to_string(),
    };
    let up = lab.ok(&["up"]);
    assert!(up.contains("lb1 holds 10.99.0.100 fd00:99::100"), "{up}");
    assert!(up.contains("the client reaches 10.99.0.100"), "{up}");
    assert!(up.contains("sudo scripts/lab kill lb1"), "{up}");
    lab.ok(&["kill", "lb1"]);
    let moved = netns::wait_until(std::time::Duration::from_secs(15), || {
        lab.ok(&["status"])
            .contains("lb2 holds 10.99.0.100 fd00:99::100")
    });
    assert!(moved.is_some(), "{}", lab.ok(&["status"]));
    let st = lab.ok(&["status"]);
    assert!(st.contains("the client reaches 10.99.0.100"), "{st}");
    assert!(
        st.contains("== lb1\nvrrpd is not running"),
        "kill left vrrpd running:\n{st}"
    );
    lab.ok(&["start", "lb1"]);
    let back = netns::wait_until(std::time::Duration::from_secs(15), || {
        lab.ok(&["status"])
            .contains("lb1 holds 10.99.0.100 fd00:99::100")
    });
    assert!(back.is_some(), "{}", lab.ok(&["status"]));
    lab.ok(&["down"]);
    let left: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&lab.name))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
