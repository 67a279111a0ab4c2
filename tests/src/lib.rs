//! Test harnesses for tandem.
//!
//! - [`netns`]: hosts in network namespaces on a bridge, for daemons
//!   talking over a real (virtual) wire on this machine.
//! - [`cluster`]: directors running vrrpd (or keepalived) and a client in
//!   such a lab.
//! - [`e2e`]: the whole appliance (client, directors, real servers) with
//!   a load and long-lived connections.
//! - [`fake`]: fake vrrpd and healthd control sockets with canned status,
//!   for the web UI's tests and benchmark.
//! - [`webui`]: the web UI's binary on a loopback port, and headless
//!   Chromium driving it through WebDriver.
//! - [`vm`]: a QEMU VM booting Debian's kernel, for what needs kernel
//!   modules this machine lacks (IPVS); tests can run their own body
//!   inside it, or boot a Debian system with systemd.
//! - [`package`]: the `tandem` Debian package, built for the tests.

pub mod chaos;
pub mod cluster;
pub mod e2e;
pub mod fake;
pub mod netns;
pub mod package;

pub mod sync;
pub mod vm;
pub mod webui;

use std::path::PathBuf;
use std::sync::OnceLock;

/// Path of one of the workspace's binaries (`tandem-vrrpd`, ...), built
/// once per test process with the same profile as the test itself, so a
/// test never runs a stale daemon. `scripts/test` builds them once before
/// the run and sets `TANDEM_BINS_BUILT=1`, which skips the per-process
/// build (nextest runs every test in its own process). Inside a test VM
/// ([`vm::inside`]) it only finds them: the test calls it outside before
/// booting.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("a target directory")
        .to_path_buf();
    BUILT.get_or_init(|| {
        if vm::inside() {
            // The VM shares the host's files: the test built them outside
            // before booting (and there is no cargo toolchain to spare).
            return;
        }
        if std::env::var_os("TANDEM_BINS_BUILT").is_some() {
            return;
        }
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--workspace", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the workspace's binaries failed");
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Wall-clock seconds since the epoch: the time base the load generators
/// in the labs write, so their lines and the test's marks compare.
pub fn epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// A pseudo-random fraction in [0, 1) from the clock: enough to spread a
/// fault over an advert interval in a benchmark.
pub fn jitter() -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    f64::from(n % 1_000_000) / 1_000_000.0
}
