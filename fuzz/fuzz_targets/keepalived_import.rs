//! Whatever a keepalived.conf holds (and the files it includes) through
//! `tandem import keepalived`: preprocessed, mapped and validated, never a
//! panic and never unbounded (macros that grow are capped). Bytes 0
//! separate files: the first is keepalived.conf, the others are
//! `conf.d/N.conf` for its `include` lines to find.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut files = tandem_import::Memory::default();
    let mut parts = data.split(|b| *b == 0);
    let main = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    files = files.with("/etc/keepalived/keepalived.conf", &main);
    for (n, part) in parts.take(8).enumerate() {
        let text = String::from_utf8_lossy(part).into_owned();
        files = files.with(&format!("/etc/keepalived/conf.d/{n}.conf"), &text);
    }
    let opts = tandem_import::Options {
        config_id: "lb1".into(),
        instance: String::new(),
    };
    match tandem_import::keepalived(&files, Path::new("/etc/keepalived/keepalived.conf"), &opts) {
        Ok(i) => {
            let _ = i.complete();
            // What `tandem import` then checks before it writes anything.
            let _ =
                tandem_model::config::parse(&i.toml, "imported.toml").map_err(|e| e.to_string());
            for n in &i.notes {
                let _ = n.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
