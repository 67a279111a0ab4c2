//! The `tandem` Debian package, built from the binaries the tests run
//! (`scripts/deb --profile dev --no-build`): the suite builds them anyway,
//! and a release build would add minutes on a 2-core machine. The
//! package's contents are the same but for the binaries' optimisation.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::under_ci;
use crate::{binary, workspace_root};

/// The programs the package carries.
pub const PROGRAMS: &[&str] = &[
    "tandem-vrrpd",
    "tandem-healthd",
    "tandem-webui",
    "ipvsctl",
    "tandem-clusterd",
    "tandem",
];

/// A built package, deleted with this value.
pub struct Deb {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl AsRef<Path> for Deb {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Builds the package with Debian version `version` (e.g. `0.1.0-1`).
/// `None`, with a loud SKIPPED, when cargo-deb is missing; under CI that
/// panics instead (scripts/deps installs it).
pub fn build(test: &str, version: &str) -> Option<Deb> {
    if !Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        if under_ci() {
            panic!("{test}: cargo-deb is not installed (scripts/deps installs it)");
        }
        eprintln!("\n*** SKIPPED {test}: cargo-deb is not installed (scripts/deps installs it)\n");
        return None;
    }
    // Built (when the suite has not done it), in the test's own profile.
    let bins: Vec<PathBuf> = PROGRAMS.iter().map(|p| binary(p)).collect();
    let profile_dir = bins[0].parent().expect("a profile directory").to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => "release",
        _ => "dev",
    };
    let out = tempfile::Builder::new()
        .prefix("tandem-deb-")
        .tempdir()
        .expect("a directory for the package");
    // scripts/deb writes its generated assets to one place in the target
    // directory: one build at a time.
    let lock = File::create(profile_dir.join(".deb.lock")).expect("the package lock file");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let result = Command::new(workspace_root().join("scripts/deb"))
        .args(["--profile", profile, "--no-build", "--deb-version", version])
        .arg("--output")
        .arg(out.path())
        .output()
        .expect("scripts/deb runs");
    assert!(
        result.status.success(),
        "scripts/deb failed ({}):\n{}{}",
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let path = fs::read_dir(out.path())
        .expect("the output directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("scripts/deb wrote a .deb");
    Some(Deb { path, _dir: out })
}

/// `dpkg-deb ARGS DEB`, which must succeed; its stdout.
#[track_caller]
pub fn dpkg_deb(args: &[&str], deb: &std::path::Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
