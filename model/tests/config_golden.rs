//! The error text is part of the product: every bad configuration under
//! `tests/bad/` must be refused with exactly the findings in its
//! `.expected` file. `TANDEM_BLESS=1 cargo test -p tandem-model --test
//! config_golden` rewrites them after a deliberate change (review the diff).

use std::path::{Path, PathBuf};

use tandem_model::config;

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad")
}

#[test]
fn every_bad_config_is_refused_with_its_golden_message() {
    let bless = std::env::var_os("TANDEM_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(bad_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "only {} bad configs", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(case).unwrap();
        let got = match config::parse(&text, name) {
            Ok(_) => "ACCEPTED (this config must be refused)\n".to_string(),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}:\n--- expected\n{want}--- got\n{got}")),
            Err(_) => failures.push(format!(
                "{name}: no {} (run with TANDEM_BLESS=1 and review it)\n--- got\n{got}",
                expected_path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_shipped_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    for name in ["tandem.toml", "tandem.example.toml"] {
        let path = dir.join(name);
        if let Err(e) = config::load(&path) {
            panic!("{name} is refused:\n{e}");
        }
    }
}

#[test]
fn the_example_shows_every_key() {
    // Serializing the parsed example writes every key it set (defaults
    // included); each must appear in the example's text, so a key added to
    // the model without documentation fails here.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/tandem.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = config::load(&path).unwrap();
    let value = toml::Value::try_from(&cfg).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    collect_keys(&value, &mut keys);
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !text.contains(&format!("{k} =")) && !text.contains(&format!("[[{k}]]")))
        .filter(|k| !text.contains(&format!(".{k}]")) && !text.contains(&format!("[{k}]")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys not shown in the example: {missing:?}"
    );
}

fn collect_keys(v: &toml::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                out.insert(k.clone());
                collect_keys(v, out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

#[test]
fn check_notes_a_slow_start_under_a_scheduler_that_reads_no_weights() {
    let text = |scheduler: &str| {
        format!(
            "[[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10:80\"\nscheduler = \"{scheduler}\"\nslow_start = \"30s\"\n\n[[virtual_server.real_server]]\naddress = \"10.0.0.11\"\n"
        )
    };
    let notes = config::parse(&text("rr"), "t.toml").unwrap().notes();
    assert_eq!(
        notes,
        [
            "virtual server web: slow_start has no effect with scheduler rr, which ignores weights (use wrr, wlc, sed, ...)"
        ]
    );
    assert!(
        config::parse(&text("wlc"), "t.toml")
            .unwrap()
            .notes()
            .is_empty()
    );
}
