//! Whatever a person, an editor or a paste buffer puts in tandem.toml:
//! parsed, validated (for every node of a cluster file) and its findings
//! rendered, never a panic (a panic in a reload would kill the daemon).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_model::config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match config::parse(&text, "fuzz.toml") {
        Ok(c) => {
            let _ = c.notes();
            let _ = c.node_name();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = config::parse_as(&text, "fuzz.toml", Some("lb2")).map_err(|e| e.to_string());
});
