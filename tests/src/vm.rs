//! A small QEMU VM with a real Linux kernel, for what needs kernel IPVS
//! (or any module) that this machine's kernel does not have.
//!
//! The VM boots Debian's standard kernel (downloaded once with
//! `apt-get download` and cached, see [`cache_dir`]) under TCG, from a tiny
//! initramfs holding a static busybox and the modules to mount 9p. Its
//! `/init` mounts the host's root read-only over 9p, lays a tmpfs overlay
//! on it and `chroot`s there: inside, every host program (ipvsadm,
//! iproute2, the test binary itself) runs with the host's own libraries,
//! and writes land in the overlay (thrown away at power-off). `/tmp` and
//! `/run` are fresh tmpfs mounts.
//!
//! Each run gets a directory (a tempdir on the host), shared read-write
//! and mounted at the same path inside the VM: inputs put there with
//! [`Scenario::file`] are visible to the guest, and what the guest writes
//! there (`$TANDEM_VM_DIR`, or [`dir`] inside) is readable afterwards
//! through [`Outcome`]. The guest prints `TANDEM-RESULT rc=N` on its serial
//! console and powers off; the host kills a VM that outlives its timeout.
//!
//! ```no_run
//! use std::time::Duration;
//! use tandem_tests::vm;
//!
//! let Some(vm) = vm::require("ipvs_basic") else { return };
//! let out = vm
//!     .scenario("ipvs_basic")
//!     .modules(&["ip_vs_wlc"])
//!     .script("ipvsadm -A -t 10.0.0.1:80 -s wlc && ipvsadm -Ln > table")
//!     .timeout(Duration::from_secs(60))
//!     .run();
//! out.assert_success();
//! assert!(out.read("table").contains("10.0.0.1:80"));
//! ```
//!
//! A Rust test can run its own body in the VM: [`inside`] tells which
//! side it is on, and [`Vm::run_test_fn`] boots a VM that runs the current
//! test binary with `--exact <name>` (works for `cargo test` and
//! `cargo nextest run` binaries alike):
//!
//! ```no_run
//! use tandem_tests::vm;
//!
//! #[test]
//! fn sees_ipvs() {
//!     if vm::inside() {
//!         assert!(std::path::Path::new("/proc/net/ip_vs").exists());
//!         std::fs::write(vm::dir().join("seen"), "yes").unwrap();
//!         return;
//!     }
//!     let Some(vm) = vm::require("sees_ipvs") else { return };
//!     let out = vm.run_test_fn("sees_ipvs");
//!     out.assert_success();
//!     assert_eq!(out.read("seen"), "yes");
//! }
//! ```
//!
//! Inside, the workspace's binaries are where [`crate::binary`] put
//! them: call it before booting, pass the path (an env var, the script).
//!
//! A VM can also boot a Debian system instead: [`Vm::debian`] makes (and
//! caches) a minimal tree with debootstrap, [`Scenario::system`] boots it
//! as the root file system with systemd as init, and an
//! [agent](Scenario::agent) runs the commands the test hands it one at a
//! time ([`Running::sh`]), so a test can drive two such "boxes" step by
//! step ([`spawn_together`]):
//!
//! ```no_run
//! use tandem_tests::vm;
//!
//! let Some(vm) = vm::require("boots") else { return };
//! let Some(system) = vm.debian("bookworm", &["iproute2"]) else { return };
//! let mut running = vm.scenario("box").system(&system).agent().spawn();
//! let state = running.sh_ok("systemctl is-system-running --wait");
//! assert_eq!(state.trim(), "running");
//! running.finish().assert_success();
//! ```
//!
//! Machine-wide, at most `$TANDEM_VM_SLOTS` (default: the number of CPUs)
//! VMs started by this harness run at once; others wait for a slot (the
//! wait does not count against their timeout).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::netns::{under_ci, which};

/// The metapackage whose dependency names the kernel package to boot.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// Set (to `1`) in the environment of everything a scenario runs.
pub const IN_VM_ENV: &str = "TANDEM_IN_VM";
/// The run directory's path, in the guest's environment.
pub const DIR_ENV: &str = "TANDEM_VM_DIR";

/// Modules every VM loads before its scenario: IPVS with every
/// scheduler, conntrack, and what namespace labs use (veth, bridge,
/// IP-in-IP for IPVS tunnel mode). Dependencies come from `modinfo`.
pub const DEFAULT_MODULES: &[&str] = &[
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_sh",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_dh",
    "ip_vs_lblc",
    "ip_vs_lblcr",
    "ip_vs_fo",
    "ip_vs_ovf",
    "ip_vs_mh",
    "nf_conntrack",
    "veth",
    "bridge",
    "ipip",
];

/// Modules the initramfs carries to reach the host's root.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Module trees kept from the kernel package (the rest, graphics, sound,
/// wireless, storage controllers..., is deleted from the cache).
const KEPT_MODULE_DIRS: &[&str] = &["arch", "block", "crypto", "fs", "lib", "mm", "net", "virt"];
const KEPT_DRIVER_DIRS: &[&str] = &["block", "char", "md", "net", "virtio"];
const DROPPED_NET_DRIVER_DIRS: &[&str] = &[
    "ethernet",
    "wireless",
    "usb",
    "can",
    "wwan",
    "ieee802154",
    "fddi",
    "hamradio",
    "wan",
    "arcnet",
    "appletalk",
    "plip",
    "slip",
];

const KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1 cryptomgr.notests mitigations=off";
/// Kernel arguments of a booted system ([`Scenario::system`]): the
/// kernel's interface names (there is no udev to rename them), no boot
/// status and no login prompts on the console the harness reads.
const SYSTEM_ARGS: &str = "net.ifnames=0 systemd.show_status=false \
     systemd.mask=serial-getty@ttyS0.service systemd.mask=getty@tty1.service";
/// Where a booted system ([`Scenario::system`]) mounts the run directory.
pub const SYSTEM_RUN_DIR: &str = "/tandem-run";
/// Packages every [`System`] has besides the caller's: systemd as init,
/// and kmod for the kernel to load modules on demand.
const SYSTEM_BASE_PACKAGES: &[&str] = &["systemd", "systemd-sysv", "kmod"];
/// A cached [`System`] tree older than this is made again (security
/// updates, a new point release).
const SYSTEM_MAX_AGE: Duration = Duration::from_secs(7 * 86400);
const RESULT_MARKER: &str = "TANDEM-RESULT rc=";
const SETUP_ERROR_MARKER: &str = "TANDEM-SETUP-ERROR:";
/// The rc `/init` reports when it could not start the scenario.
pub const SETUP_FAILED_RC: i32 = 254;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether this process runs inside a harness VM.
pub fn inside() -> bool {
    std::env::var(IN_VM_ENV).is_ok_and(|v| v == "1")
}

/// Inside a VM: the run directory, shared with the host (the same path
/// there). Files written here are readable through [`Outcome::read`].
pub fn dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if inside() => PathBuf::from(d),
        _ => panic!("vm::dir() is only meaningful inside a VM (check vm::inside() first)"),
    }
}

/// The running test's name, as `--exact` wants it: libtest names each
/// test's thread after the test (`module::name`), under both `cargo test`
/// and `cargo nextest run`.
pub fn current_test_name() -> Option<String> {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string)
}

/// Where kernels and initramfs images are cached: `$TANDEM_VM_CACHE`, else
/// `/var/cache/tandem-vm` for root, else `$XDG_CACHE_HOME/tandem-vm` (or
/// `~/.cache/tandem-vm`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TANDEM_VM_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if is_root() {
        return PathBuf::from("/var/cache/tandem-vm");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    base.join("tandem-vm")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The glue of a test that runs its own body in the VM. Outside: builds
/// `binaries`, boots a VM (the scenario as `configure` makes it, from a
/// 240 s timeout) that runs the calling test, asserts it passed, and
/// returns true (also when the VM cannot boot and the test skips, per
/// [`require`]). Inside: false, and the test body runs.
#[track_caller]
pub fn booted_outside(binaries: &[&str], configure: impl FnOnce(Scenario) -> Scenario) -> bool {
    if inside() {
        return false;
    }
    let name = current_test_name().expect("called from the test's thread");
    for b in binaries {
        crate::binary(b);
    }
    let Some(machine) = require(&name) else {
        return true;
    };
    let out =
        configure(machine.scenario(&name).timeout(Duration::from_secs(240))).run_test_fn(&name);
    out.assert_success();
    // What the test said in the VM, when asked: a passing run's figures.
    if std::env::var("TANDEM_VM_LOG").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("{}", out.log);
    }
    eprintln!("{name}: {:.1} s in the VM", out.elapsed.as_secs_f64());
    true
}

/// Gives a [`Vm`] when this machine can boot one; otherwise skips loudly
/// (returns `None`) unless `CI` is set, where it panics: the netns
/// harness's policy.
pub fn require(test: &str) -> Option<Vm> {
    assert!(
        !inside(),
        "{test}: vm::require called inside a VM; guard the test body with vm::inside()"
    );
    match kernel() {
        Ok(kernel) => Some(Vm {
            kernel,
            test: test.to_string(),
        }),
        Err(why) => {
            if under_ci() {
                panic!("{test}: cannot boot a test VM under CI: {why}");
            }
            eprintln!(
                "\n*** SKIPPED {test}: {why}\n*** VM tests need qemu-system-x86, busybox-static, kmod, xz-utils \
                 and apt access to Debian's {KERNEL_METAPACKAGE} (scripts/deps installs the tools).\n"
            );
            None
        }
    }
}

/// A Debian tree made with debootstrap, to boot as a VM's root file system
/// with systemd as init ([`Scenario::system`]). Made once with
/// [`Vm::debian`] and cached.
#[derive(Clone, Debug)]
pub struct System {
    root: PathBuf,
}

impl System {
    /// The tree on this host (read-only for the VMs that boot it).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A bootable kernel with its modules: the handle VM tests start from.
#[derive(Clone)]
pub struct Vm {
    kernel: Arc<Kernel>,
    test: String,
}

impl Vm {
    /// A new scenario (`name` labels its run directory and log).
    pub fn scenario(&self, name: &str) -> Scenario {
        Scenario::new(self.kernel.clone(), name)
    }

    /// Boots a VM that runs test `name` (its path as libtest prints it,
    /// `module::test` for a test in a module) of the current test binary,
    /// with [`DEFAULT_MODULES`] and the default timeout.
    #[track_caller]
    pub fn run_test_fn(&self, name: &str) -> Outcome {
        self.scenario(name).run_test_fn(name)
    }

    /// Boots a VM that runs the calling test (see
    /// [`current_test_name`]) inside: call it from the test's own thread.
    #[track_caller]
    pub fn run_current_test(&self) -> Outcome {
        let name = current_test_name()
            .expect("run_current_test must be called from the test's own thread");
        self.run_test_fn(&name)
    }

    /// The kernel's release (`uname -r` inside).
    pub fn kernel_release(&self) -> &str {
        &self.kernel.release
    }

    /// The Debian package the kernel came from, `name_version`.
    pub fn kernel_package(&self) -> &str {
        &self.kernel.package
    }

    /// The name given to [`require`].
    pub fn test_name(&self) -> &str {
        &self.test
    }

    /// A minimal Debian `suite` (`debootstrap --variant=minbase`) with
    /// systemd, systemd-sysv, kmod and `packages`, to boot with
    /// [`Scenario::system`]. Made once (a few minutes: it downloads from
    /// `$TANDEM_DEBIAN_MIRROR`, default deb.debian.org) and cached under
    /// [`cache_dir`], keyed by suite, packages and the day it was made;
    /// made again once a week old. When it cannot be made: `None` with a
    /// loud SKIPPED, or a panic under CI ([`require`]'s policy).
    pub fn debian(&self, suite: &str, packages: &[&str]) -> Option<System> {
        match debian_system(suite, packages) {
            Ok(root) => Some(System { root }),
            Err(why) => {
                if under_ci() {
                    panic!("{}: cannot make a Debian system: {why}", self.test);
                }
                eprintln!(
                    "\n*** SKIPPED {}: {why}\n*** A booted Debian system needs debootstrap \
                     and access to a Debian mirror (scripts/deps installs debootstrap).\n",
                    self.test
                );
                None
            }
        }
    }
}

/// The cached tree for `suite` and `packages`, made when missing or old.
fn debian_system(suite: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let debootstrap = tool("debootstrap")?;
    let mut all: Vec<String> = SYSTEM_BASE_PACKAGES
        .iter()
        .chain(packages)
        .map(|p| p.to_string())
        .collect();
    all.sort();
    all.dedup();
    let prefix = format!(
        "debian-{suite}-{:08x}-",
        fnv1a(all.join(",").as_bytes()) as u32
    );
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let fresh = |cache: &Path| {
        fs::read_dir(cache)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    && p.join(".complete").exists()
            })
            .filter(|p| {
                p.join(".complete")
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < SYSTEM_MAX_AGE)
            })
            .max()
    };
    if let Some(root) = fresh(&cache) {
        return Ok(root);
    }
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(".debian.lock"))
        .map_err(|e| format!("cannot open the cache lock: {e}"))?;
    flock(&lock, libc::LOCK_EX);
    if let Some(root) = fresh(&cache) {
        return Ok(root);
    }
    let t0 = Instant::now();
    let entry = cache.join(format!("{prefix}{}", today()));
    // Under the lock, any other scratch tree is a killed process's.
    for e in fs::read_dir(&cache).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".debootstrap-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let scratch = cache.join(format!(".debootstrap-{}", std::process::id()));
    let mirror = std::env::var("TANDEM_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    eprintln!(
        "[vm] making a Debian {suite} system ({}) in {} (once a week)",
        all.join(" "),
        entry.display()
    );
    let result = command_stdout(
        Command::new(debootstrap)
            .arg("--variant=minbase")
            .arg(format!("--include={}", all.join(",")))
            .arg(suite)
            .arg(&scratch)
            .arg(&mirror),
    )
    .and_then(|_| {
        // Downloaded packages are dead weight in every VM's lower layer.
        let archives = scratch.join("var/cache/apt/archives");
        for e in fs::read_dir(&archives).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                let _ = fs::remove_file(e.path());
            }
        }
        fs::write(scratch.join(".complete"), "").map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&scratch);
        return Err(format!("debootstrap {suite} from {mirror}: {e}"));
    }
    let _ = fs::remove_dir_all(&entry);
    fs::rename(&scratch, &entry).map_err(|e| e.to_string())?;
    // Older trees of the same key are dead weight now.
    for e in fs::read_dir(&cache).into_iter().flatten().flatten() {
        let p = e.path();
        if p != entry
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        {
            let _ = fs::remove_dir_all(&p);
        }
    }
    eprintln!(
        "[vm] Debian {suite} system ready in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(entry)
}

/// Today's date (UTC) as YYYYMMDD.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A network card of the VM (virtio-net, `eth0`, `eth1`... inside, in the
/// order they were added).
#[derive(Clone, Debug)]
pub enum Nic {
    /// One end of a point-to-point Ethernet link to another VM, carried by
    /// a loopback TCP socket ([`Link`]).
    Link { port: u16, listen: bool },
    /// QEMU user-mode networking, restricted (the guest cannot reach out)
    /// but with host-to-guest TCP port forwards (`127.0.0.1:host` ->
    /// `guest`). The guest is 10.0.2.15/24, the gateway 10.0.2.2:
    /// configure them in the scenario.
    User { forwards: Vec<(u16, u16)> },
}

impl Nic {
    /// User-mode networking forwarding `127.0.0.1:host_port` to the
    /// guest's `guest_port`.
    pub fn forward(host_port: u16, guest_port: u16) -> Nic {
        Nic::User {
            forwards: vec![(host_port, guest_port)],
        }
    }
}

/// An Ethernet link between two VMs over a loopback TCP socket: give
/// [`Link::listen`] to one scenario and [`Link::connect`] to the other,
/// and start them with [`run_together`] (which starts the listener first).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub port: u16,
}

impl Link {
    /// A link on a free loopback port.
    pub fn new() -> Link {
        Link { port: free_port() }
    }

    pub fn listen(&self) -> Nic {
        Nic::Link {
            port: self.port,
            listen: true,
        }
    }

    pub fn connect(&self) -> Nic {
        Nic::Link {
            port: self.port,
            listen: false,
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

enum Payload {
    Script(String),
    TestFn(String),
    /// The guest runs what the host hands it ([`Running::sh`]) until
    /// [`Running::finish`].
    Agent,
}

/// What to run in one VM, and how.
pub struct Scenario {
    kernel: Arc<Kernel>,
    name: String,
    modules: Vec<String>,
    default_modules: bool,
    payload: Payload,
    env: BTreeMap<String, String>,
    files: Vec<(PathBuf, Vec<u8>)>,
    timeout: Duration,
    memory_mib: u32,
    nics: Vec<Nic>,
    qemu_args: Vec<String>,
    cwd: Option<PathBuf>,
    system: Option<System>,
}

impl Scenario {
    fn new(kernel: Arc<Kernel>, name: &str) -> Scenario {
        Scenario {
            kernel,
            name: name.to_string(),
            modules: Vec::new(),
            default_modules: true,
            payload: Payload::Script("true".into()),
            env: BTreeMap::new(),
            files: Vec::new(),
            timeout: Duration::from_secs(120),
            memory_mib: 256,
            nics: Vec::new(),
            qemu_args: Vec::new(),
            cwd: None,
            system: None,
        }
    }

    /// Loads these modules (and what they depend on) besides
    /// [`DEFAULT_MODULES`].
    pub fn modules(mut self, names: &[&str]) -> Self {
        self.modules.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// Loads only the modules named with [`modules`](Self::modules), not
    /// [`DEFAULT_MODULES`] (the kernel can still load others on demand).
    pub fn no_default_modules(mut self) -> Self {
        self.default_modules = false;
        self
    }

    /// The shell script to run (host's `/bin/sh`, in the chroot, from the
    /// run directory). Its exit status is the scenario's rc.
    pub fn script(mut self, script: impl Into<String>) -> Self {
        self.payload = Payload::Script(script.into());
        self
    }

    /// An environment variable for the scenario.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad environment variable name {key:?}"
        );
        self.env.insert(key.to_string(), value.into());
        self
    }

    /// A file put in the run directory before boot (`name` is relative).
    pub fn file(mut self, name: impl AsRef<Path>, contents: impl Into<Vec<u8>>) -> Self {
        let name = name.as_ref();
        assert!(
            name.is_relative()
                && name
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
            "file names are relative to the run directory: {}",
            name.display()
        );
        self.files.push((name.to_path_buf(), contents.into()));
        self
    }

    /// The hard limit from boot to power-off (default 120 s): a VM still
    /// running then is killed and reported with its console log.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Guest memory (default 256 MiB; 64 hangs the boot).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Adds a network card (see [`Nic`]; `virtio_net` is loaded).
    pub fn nic(mut self, nic: Nic) -> Self {
        self.nics.push(nic);
        self
    }

    /// Extra arguments for qemu-system-x86_64.
    pub fn qemu_args(mut self, args: &[&str]) -> Self {
        self.qemu_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// The working directory inside (default: the run directory for a
    /// script, the test process's own for a test function).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Boots `system` (see [`Vm::debian`]) as the root file system with
    /// systemd as init, instead of chrooting into this host's root.
    ///
    /// Writes land in a RAM overlay (the cached tree stays as it was);
    /// the kernel's modules are at `/lib/modules/<release>` and load on
    /// demand (kmod is in the tree), so [`DEFAULT_MODULES`] are not
    /// preloaded: the NIC drivers and [`modules`](Self::modules) are. The
    /// run directory is mounted at [`SYSTEM_RUN_DIR`] (Debian empties
    /// /tmp at boot) and `$TANDEM_VM_DIR` says so. The scenario runs as a
    /// systemd service once `multi-user.target` is reached; its output
    /// goes to the journal and the console. A test function cannot run
    /// there (the host's files are not), a script or an
    /// [`agent`](Self::agent) can.
    pub fn system(mut self, system: &System) -> Self {
        self.system = Some(system.clone());
        self
    }

    /// The guest runs the commands the host hands it one at a time, with
    /// [`Running::sh`], until [`Running::finish`]: for a test that drives
    /// one or several VMs step by step.
    pub fn agent(mut self) -> Self {
        self.payload = Payload::Agent;
        self
    }

    /// Boots, runs the script, powers off; blocks until then.
    pub fn run(self) -> Outcome {
        self.spawn().wait()
    }

    /// Runs test `name` of the current test binary inside the VM (see
    /// [`Vm::run_test_fn`]). The outcome fails unless exactly that test ran
    /// and passed.
    pub fn run_test_fn(mut self, name: &str) -> Outcome {
        self.payload = Payload::TestFn(name.to_string());
        self.run()
    }

    /// Starts the VM and returns at once.
    pub fn spawn(self) -> Running {
        self.spawn_in_slot(None)
    }

    fn spawn_in_slot(self, slot: Option<Arc<Slot>>) -> Running {
        let slot = slot.unwrap_or_else(|| Arc::new(Slot::acquire()));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let label: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("tandem-vm-{label}-"))
            .tempdir()
            .expect("a run directory");
        let dir = tmp.path().to_path_buf();
        assert!(
            !dir.to_string_lossy().contains(char::is_whitespace),
            "the run directory's path has whitespace: {}",
            dir.display()
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let control = dir.join(".tandem");
        fs::create_dir(&control).unwrap();
        fs::create_dir(control.join("agent")).unwrap();
        // Where the guest sees the run directory.
        let guest_dir = if self.system.is_some() {
            assert!(
                !matches!(self.payload, Payload::TestFn(_)),
                "scenario {}: a booted system cannot run the host's test binary",
                self.name
            );
            PathBuf::from(SYSTEM_RUN_DIR)
        } else {
            dir.clone()
        };
        for (name, contents) in &self.files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&path, contents).unwrap();
        }

        // Modules, dependencies first.
        let mut wanted: Vec<String> = Vec::new();
        if self.default_modules && self.system.is_none() {
            wanted.extend(DEFAULT_MODULES.iter().map(|s| s.to_string()));
        }
        if !self.nics.is_empty() {
            wanted.push("virtio_net".into());
        }
        wanted.extend(self.modules.iter().cloned());
        let mods = self
            .kernel
            .resolve(&wanted)
            .unwrap_or_else(|e| panic!("scenario {}: {e}", self.name));
        let mut list = String::new();
        for m in &mods {
            list.push_str(&format!(
                "{} {} {}\n",
                m.name,
                m.path.display(),
                if m.optional { "optional" } else { "required" }
            ));
        }
        fs::write(control.join("modules"), list).unwrap();

        // Host paths under the chroot's fresh /tmp and /run that must
        // stay visible (the test binary, when it lives there).
        let mut binds: Vec<PathBuf> = Vec::new();
        let exe = std::env::current_exe().expect("the test's own path");
        let cwd = match (&self.cwd, &self.payload) {
            (Some(d), _) => d.clone(),
            (None, Payload::Script(_) | Payload::Agent) => guest_dir.clone(),
            (None, Payload::TestFn(_)) => std::env::current_dir().unwrap_or_else(|_| dir.clone()),
        };
        if let Payload::TestFn(_) = self.payload {
            for p in [exe.parent().map(Path::to_path_buf), Some(cwd.clone())]
                .into_iter()
                .flatten()
            {
                if (p.starts_with("/tmp") || p.starts_with("/run")) && !p.starts_with(&dir) {
                    binds.push(p);
                }
            }
        }
        let binds: String = binds.iter().map(|p| format!("{}\n", p.display())).collect();
        fs::write(control.join("binds"), binds).unwrap();

        // The script the chroot's /bin/sh runs.
        let mut sh = String::from(
            "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        );
        sh.push_str("export HOME=/root LANG=C.UTF-8\n");
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if let Payload::TestFn(_) = self.payload {
            for (k, v) in std::env::vars() {
                if k == "CI"
                    || k.starts_with("RUST_")
                    || k.starts_with("CARGO")
                    || k.starts_with("NEXTEST")
                    || k.starts_with("TANDEM_")
                {
                    env.insert(k, v);
                }
            }
        }
        env.extend(self.env.clone());
        env.insert(IN_VM_ENV.into(), "1".into());
        env.insert(DIR_ENV.into(), guest_dir.display().to_string());
        // A shell variable name is letters, digits and '_': cargo's
        // CARGO_BIN_EXE_<bin-name> may hold a '-' and cannot be exported
        // (the test reaches its binaries through `binary()` anyway).
        let valid =
            |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        for (k, v) in env.iter().filter(|(k, _)| valid(k)) {
            sh.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        sh.push_str(&format!(
            "cd {} 2>/dev/null || cd {}\n",
            shell_quote(&cwd.display().to_string()),
            shell_quote(&guest_dir.display().to_string())
        ));
        let guest_control = guest_dir.join(".tandem");
        match &self.payload {
            Payload::Script(script) => {
                fs::write(control.join("script.sh"), script).unwrap();
                sh.push_str(&format!(
                    "exec /bin/sh {}\n",
                    shell_quote(&guest_control.join("script.sh").display().to_string())
                ));
            }
            Payload::Agent => {
                fs::write(control.join("agent.sh"), AGENT).unwrap();
                sh.push_str(&format!(
                    "exec /bin/sh {} {}\n",
                    shell_quote(&guest_control.join("agent.sh").display().to_string()),
                    shell_quote(&guest_control.join("agent").display().to_string())
                ));
            }
            Payload::TestFn(name) => {
                sh.push_str(&format!(
                    "exec {} --exact {} --nocapture --include-ignored --test-threads=1\n",
                    shell_quote(&exe.display().to_string()),
                    shell_quote(name)
                ));
            }
        }
        fs::write(control.join("run.sh"), sh).unwrap();
        if self.system.is_some() {
            fs::write(control.join("system.sh"), SYSTEM_RUNNER).unwrap();
            fs::write(control.join("vm-scenario.service"), SYSTEM_UNIT).unwrap();
        }

        // QEMU.
        let k = &self.kernel;
        let mut append = format!(
            "{KERNEL_ARGS} tandem.run={} tandem.kroot={} tandem.krel={}",
            dir.display(),
            k.root.display(),
            k.release
        );
        if let Some(system) = &self.system {
            append.push_str(&format!(
                " tandem.root={} {SYSTEM_ARGS}",
                system.root.display()
            ));
        }
        let mut cmd = Command::new(&k.qemu);
        cmd.args(["-accel", "tcg", "-m"])
            .arg(self.memory_mib.to_string())
            .args([
                "-display",
                "none",
                "-nodefaults",
                "-no-user-config",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-no-reboot",
                "-kernel",
            ])
            .arg(&k.vmlinux)
            .arg("-initrd")
            .arg(&k.initramfs)
            .arg("-append")
            .arg(append)
            .args([
                "-virtfs",
                "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
                "-virtfs",
            ])
            .arg(format!(
                "local,path={},mount_tag=tandemrun,security_model=none,multidevs=remap",
                dir.display()
            ));
        let id = (std::process::id() as u16) ^ ((n as u16) << 8);
        for (i, nic) in self.nics.iter().enumerate() {
            let netdev = match nic {
                Nic::Link { port, listen } => format!(
                    "socket,id=n{i},{}=127.0.0.1:{port}",
                    if *listen { "listen" } else { "connect" }
                ),
                Nic::User { forwards } => {
                    let mut s = format!("user,id=n{i},restrict=on");
                    for (h, g) in forwards {
                        s.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
                    }
                    s
                }
            };
            cmd.arg("-netdev").arg(netdev).arg("-device").arg(format!(
                "virtio-net-pci,netdev=n{i},mac=52:54:00:{:02x}:{:02x}:{:02x}",
                id >> 8,
                id & 0xff,
                i
            ));
        }
        cmd.args(&self.qemu_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; the closure touches nothing
        // else. The VM dies with the thread that started it (a killed test
        // process leaves no VM behind).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let verbose = std::env::var("TANDEM_VM_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0");
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", k.qemu.display()));
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let console = console.clone();
            let tag = self.name.clone();
            readers.push(std::thread::spawn(move || {
                pump(stream, &console, verbose.then_some(tag))
            }));
        }
        Running {
            name: self.name,
            child: Some(child),
            console,
            readers,
            started,
            timeout: self.timeout,
            dir: Some(tmp),
            test_fn: match self.payload {
                Payload::TestFn(n) => Some(n),
                Payload::Script(_) | Payload::Agent => None,
            },
            next_command: 0,
            _slot: slot,
        }
    }
}

fn pump(mut stream: Box<dyn Read + Send>, console: &Mutex<Vec<u8>>, echo: Option<String>) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                console.lock().unwrap().extend_from_slice(&buf[..k]);
                if let Some(tag) = &echo {
                    for &b in &buf[..k] {
                        if b == b'\n' {
                            let text = String::from_utf8_lossy(&line);
                            eprintln!("[vm {tag}] {}", text.trim_end_matches('\r'));
                            line.clear();
                        } else {
                            line.push(b);
                        }
                    }
                }
            }
        }
    }
}

/// Single-quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A VM that is running. It is killed when this is dropped, and when the
/// thread that started it ends (so a killed test leaves no VM behind).
pub struct Running {
    name: String,
    child: Option<Child>,
    console: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
    timeout: Duration,
    dir: Option<tempfile::TempDir>,
    test_fn: Option<String>,
    /// The agent's next command number.
    next_command: u32,
    _slot: Arc<Slot>,
}

/// What a command run by the agent gave.
#[derive(Clone, Debug)]
pub struct Exec {
    pub command: String,
    pub rc: i32,
    /// stdout and stderr, interleaved.
    pub output: String,
}

impl Exec {
    pub fn success(&self) -> bool {
        self.rc == 0
    }
}

impl Running {
    /// Runs `command` (a shell script) in the guest through its
    /// [agent](Scenario::agent) and waits for it, at most `timeout`.
    /// Panics, with the console, when the VM stops or the time passes.
    #[track_caller]
    pub fn sh_timeout(&mut self, command: &str, timeout: Duration) -> Exec {
        let agent = self.dir().join(".tandem").join("agent");
        let n = self.next_command;
        self.next_command += 1;
        let tmp = agent.join(format!("{n}.tmp"));
        fs::write(&tmp, command).expect("writing an agent command");
        // The agent picks a command up by its final name: whole or not at all.
        fs::rename(&tmp, agent.join(format!("{n}.sh"))).expect("handing a command over");
        let rc_path = agent.join(format!("{n}.rc"));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(rc) = fs::read_to_string(&rc_path) {
                let output = fs::read_to_string(agent.join(format!("{n}.out"))).unwrap_or_default();
                return Exec {
                    command: command.to_string(),
                    rc: rc.trim().parse().unwrap_or(-1),
                    output,
                };
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited || Instant::now() >= deadline {
                let partial =
                    fs::read_to_string(agent.join(format!("{n}.out"))).unwrap_or_default();
                panic!(
                    "VM {}: {} while running:\n{command}\n----- output so far -----\n{partial}\n----- console -----\n{}",
                    self.name,
                    if exited { "stopped" } else { "timed out" },
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`sh_timeout`](Self::sh_timeout) with 120 s.
    #[track_caller]
    pub fn sh(&mut self, command: &str) -> Exec {
        self.sh_timeout(command, Duration::from_secs(120))
    }

    /// Runs `command`, which must succeed; returns its output.
    #[track_caller]
    pub fn sh_ok(&mut self, command: &str) -> String {
        let e = self.sh(command);
        assert!(
            e.success(),
            "VM {}: exit status {} from:\n{command}\n----- output -----\n{}",
            self.name,
            e.rc,
            e.output
        );
        e.output
    }

    /// Tells the agent to stop (the guest reports rc 0 and powers off)
    /// and waits for that.
    pub fn finish(self) -> Outcome {
        let _ = fs::write(self.dir().join(".tandem").join("agent").join("exit"), "");
        self.wait()
    }

    /// Whether the VM still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The run directory (the same path inside).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// The console so far.
    pub fn console(&self) -> String {
        clean_console(&self.console.lock().unwrap())
    }

    /// Waits until the console shows `needle`; false if the VM stopped
    /// or `timeout` passed first.
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.console().contains(needle) {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited || Instant::now() >= deadline {
                return self.console().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for power-off (or kills the VM at its timeout).
    pub fn wait(mut self) -> Outcome {
        let deadline = self.started + self.timeout;
        let mut child = self.child.take().unwrap();
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for the VM: {e}"),
            }
        };
        let elapsed = self.started.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let log = self.console();
        let _ = fs::write(self.dir().join(".tandem").join("console.log"), &log);
        let (rc, guest_uptime) = parse_result(&log);
        let mut error = None;
        if timed_out {
            error = Some(format!("timed out after {:?}: VM killed", self.timeout));
        } else if let Some(line) = log.lines().find(|l| l.contains(SETUP_ERROR_MARKER)) {
            error = Some(format!(
                "the VM could not start the scenario: {}",
                line.trim()
            ));
        } else if rc.is_none() {
            error = Some(format!(
                "the VM stopped ({}) without a result line (kernel panic? see the log)",
                status.map_or("?".to_string(), |s| s.to_string())
            ));
        } else if let (Some(0), Some(name)) = (rc, &self.test_fn) {
            if !log.contains("test result: ok. 1 passed;") {
                error = Some(format!(
                    "the test binary did not run exactly one test named {name:?} (wrong name?)"
                ));
            }
        }
        let mut dir = self.dir.take().unwrap();
        if std::env::var("TANDEM_VM_KEEP").is_ok_and(|v| !v.is_empty() && v != "0") {
            dir.disable_cleanup(true);
            eprintln!(
                "[vm {}] run directory kept: {}",
                self.name,
                dir.path().display()
            );
        }
        Outcome {
            name: self.name.clone(),
            rc: rc.unwrap_or(-1),
            timed_out,
            error,
            log,
            elapsed,
            guest_uptime,
            dir,
        }
    }

    /// Kills the VM now.
    pub fn kill(mut self) -> Outcome {
        self.timeout = Duration::ZERO;
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clean_console(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\r', "")
}

fn parse_result(log: &str) -> (Option<i32>, Option<f64>) {
    let Some(line) = log.lines().rev().find(|l| l.starts_with(RESULT_MARKER)) else {
        return (None, None);
    };
    let mut words = line[RESULT_MARKER.len()..].split_whitespace();
    let rc = words.next().and_then(|w| w.parse().ok());
    let uptime = words
        .find_map(|w| w.strip_prefix("uptime="))
        .and_then(|w| w.parse().ok());
    (rc, uptime)
}

/// Starts scenarios together (a listening [`Link`] end before its
/// connecting end) and waits for all of them. They share one VM slot.
pub fn run_together(scenarios: Vec<Scenario>) -> Vec<Outcome> {
    spawn_together(scenarios)
        .into_iter()
        .map(Running::wait)
        .collect()
}

/// Starts scenarios together, as [`run_together`] does, and returns them
/// running (in the order given).
pub fn spawn_together(scenarios: Vec<Scenario>) -> Vec<Running> {
    let slot = Arc::new(Slot::acquire());
    let mut order: Vec<(usize, Scenario)> = scenarios.into_iter().enumerate().collect();
    // Listeners first.
    order.sort_by_key(|(_, s)| {
        !s.nics
            .iter()
            .any(|n| matches!(n, Nic::Link { listen: true, .. }))
    });
    let mut running: Vec<(usize, Running)> = Vec::new();
    for (i, s) in order {
        for nic in &s.nics {
            if let Nic::Link {
                port,
                listen: false,
            } = nic
            {
                let up = crate::netns::wait_until(Duration::from_secs(20), || tcp_listening(*port));
                assert!(
                    up.is_some(),
                    "nothing listens on 127.0.0.1:{port} for {}",
                    s.name
                );
            }
        }
        running.push((i, s.spawn_in_slot(Some(slot.clone()))));
    }
    running.sort_by_key(|(i, _)| *i);
    running.into_iter().map(|(_, r)| r).collect()
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp,
/// without connecting to it).
fn tcp_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
    })
}

/// How a VM run ended.
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// The scenario's exit status; -1 when there was none (timeout, crash).
    pub rc: i32,
    /// The VM was killed at its timeout.
    pub timed_out: bool,
    /// What went wrong besides a non-zero rc (timeout, no result line,
    /// setup failure, the test function not found).
    pub error: Option<String>,
    /// The serial console: kernel messages, the scenario's stdout and
    /// stderr, the result line.
    pub log: String,
    /// From starting QEMU to its exit.
    pub elapsed: Duration,
    /// The guest's uptime at the result line.
    pub guest_uptime: Option<f64>,
    dir: tempfile::TempDir,
}

impl Outcome {
    /// Exited 0 and nothing else went wrong.
    pub fn success(&self) -> bool {
        self.rc == 0 && self.error.is_none()
    }

    /// Panics, with the console log, unless [`success`](Self::success).
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(self.success(), "VM scenario failed: {self}");
    }

    /// The run directory (kept until the outcome is dropped; set
    /// `TANDEM_VM_KEEP=1` to keep it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of a file in the run directory.
    pub fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Reads a file the scenario wrote into the run directory.
    #[track_caller]
    pub fn read(&self, name: impl AsRef<Path>) -> String {
        let path = self.path(name);
        fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: cannot read {}: {e}\n{self}", self.name, path.display())
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scenario {}: rc={}", self.name, self.rc)?;
        if let Some(e) = &self.error {
            write!(f, ", {e}")?;
        }
        write!(
            f,
            " ({:.1} s)\n----- console -----\n{}\n-------------------",
            self.elapsed.as_secs_f64(),
            self.log.trim_end()
        )
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// ---------------------------------------------------------------------
// Machine-wide VM slots.

struct Slot {
    _file: fs::File,
}

impl Slot {
    fn acquire() -> Slot {
        let slots: usize = std::env::var("TANDEM_VM_SLOTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let dir = cache_dir().join("slots");
        fs::create_dir_all(&dir).expect("the VM cache directory is writable");
        loop {
            for i in 0..slots {
                let file = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(dir.join(format!("{i}.lock")))
                    .expect("a slot lock file");
                if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                    return Slot { _file: file };
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn flock(file: &fs::File, how: i32) -> bool {
    // SAFETY: flock on an open descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), how) == 0 }
}

// ---------------------------------------------------------------------
// The kernel, its modules, the initramfs: prepared once per process,
// cached across processes.

struct Kernel {
    /// `name_version` of the Debian package.
    package: String,
    /// The unpacked package's root (modinfo -b, and the guest's modules).
    root: PathBuf,
    release: String,
    vmlinux: PathBuf,
    initramfs: PathBuf,
    qemu: PathBuf,
    resolved: Mutex<HashMap<String, Vec<Module>>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Module {
    name: String,
    path: PathBuf,
    /// A soft dependency or one of several modules behind an alias: a
    /// failure to load it is not fatal.
    optional: bool,
}

fn kernel() -> Result<Arc<Kernel>, String> {
    static KERNEL: OnceLock<Result<Arc<Kernel>, String>> = OnceLock::new();
    KERNEL.get_or_init(|| prepare().map(Arc::new)).clone()
}

fn tool(name: &str) -> Result<PathBuf, String> {
    which(name).ok_or_else(|| format!("`{name}` is not installed"))
}

fn prepare() -> Result<Kernel, String> {
    let qemu = tool("qemu-system-x86_64")?;
    for t in [
        "apt-get",
        "apt-cache",
        "dpkg-deb",
        "xz",
        "depmod",
        "modinfo",
    ] {
        tool(t)?;
    }
    let busybox = static_busybox()?;
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let entry = match kernel_package(&cache) {
        Ok((pkg, version)) => {
            let entry = cache.join(format!("kernel-{pkg}_{}", version.replace(':', "_")));
            if !entry.join(".complete").exists() {
                let lock = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(cache.join(".lock"))
                    .map_err(|e| format!("cannot open the cache lock: {e}"))?;
                flock(&lock, libc::LOCK_EX);
                if !entry.join(".complete").exists() {
                    populate(&cache, &entry, &pkg, &version)?;
                }
            }
            entry
        }
        Err(why) => newest_cached(&cache).ok_or_else(|| {
            format!(
                "no kernel package ({why}) and none cached in {}",
                cache.display()
            )
        })?,
    };
    let release = fs::read_to_string(entry.join("release"))
        .map_err(|e| format!("{}: {e}", entry.display()))?
        .trim()
        .to_string();
    let mut kernel = Kernel {
        package: entry
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("kernel-")
            .to_string(),
        root: entry.join("root"),
        release,
        vmlinux: entry.join("vmlinux"),
        initramfs: PathBuf::new(),
        qemu,
        resolved: Mutex::new(HashMap::new()),
    };
    kernel.initramfs = kernel.initramfs(&entry, &busybox)?;
    Ok(kernel)
}

/// The kernel package `linux-image-amd64` depends on, and its version;
/// remembered in the cache until apt's package lists change (apt-cache
/// takes over a second to answer).
fn kernel_package(cache: &Path) -> Result<(String, String), String> {
    let lists = apt_lists_signature();
    let memo = cache.join("resolved");
    if let Ok(text) = fs::read_to_string(&memo) {
        let mut lines = text.lines();
        if lines.next() == Some(lists.as_str()) {
            if let (Some(pkg), Some(version)) = (lines.next(), lines.next()) {
                return Ok((pkg.to_string(), version.to_string()));
            }
        }
    }
    let (pkg, version) = ask_apt()?;
    let tmp = cache.join(format!(".resolved-{}", std::process::id()));
    if fs::write(&tmp, format!("{lists}\n{pkg}\n{version}\n")).is_ok() {
        let _ = fs::rename(&tmp, &memo);
    }
    Ok((pkg, version))
}

/// Names, sizes and times of apt's package lists: changes with every
/// `apt-get update` that brings something new.
fn apt_lists_signature() -> String {
    let mut entries: Vec<String> = fs::read_dir("/var/lib/apt/lists")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            let t = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some(format!(
                "{}:{}:{}",
                e.file_name().to_string_lossy(),
                m.len(),
                t.as_nanos()
            ))
        })
        .collect();
    entries.sort();
    format!("lists {:016x}", fnv1a(entries.join("/").as_bytes()))
}

fn ask_apt() -> Result<(String, String), String> {
    let out = command_stdout(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    let pkg = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| {
            format!("apt-cache names no kernel for {KERNEL_METAPACKAGE} (apt-get update?)")
        })?
        .to_string();
    let show = command_stdout(Command::new("apt-cache").args(["show", "--no-all-versions", &pkg]))?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("apt-cache shows no version of {pkg}"))?;
    Ok((pkg, version))
}

fn newest_cached(cache: &Path) -> Option<PathBuf> {
    fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kernel-"))
                && p.join(".complete").exists()
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn command_stdout(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads and unpacks the kernel package into `entry` (called with
/// the cache lock held; builds in a scratch directory, then renames).
fn populate(cache: &Path, entry: &Path, pkg: &str, version: &str) -> Result<(), String> {
    let t0 = Instant::now();
    eprintln!(
        "[vm] preparing {pkg} {version} in {} (once)",
        cache.display()
    );
    // Under the lock, any other scratch directory is a killed process's.
    for e in fs::read_dir(cache).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let scratch = cache.join(format!(".tmp-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let result = (|| {
        let mut dl = Command::new("apt-get");
        dl.current_dir(&scratch).arg("download").arg("-q");
        if is_root() {
            // Download as root into our own directory rather than as _apt.
            dl.args(["-o", "APT::Sandbox::User=root"]);
        }
        dl.arg(format!("{pkg}={version}"));
        command_stdout(&mut dl)?;
        let deb = fs::read_dir(&scratch)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or("apt-get download left no .deb")?;
        let root = scratch.join("root");
        command_stdout(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        fs::remove_file(&deb).map_err(|e| e.to_string())?;

        let boot = root.join("boot");
        let vmlinuz = fs::read_dir(&boot)
            .map_err(|e| format!("{}: {e}", boot.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .ok_or("the package has no boot/vmlinuz-*")?;
        let release =
            vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
        // modinfo -b and the guest look under <root>/lib/modules.
        if !root.join("lib/modules").exists() && root.join("usr/lib/modules").exists() {
            std::os::unix::fs::symlink("usr/lib", root.join("lib")).map_err(|e| e.to_string())?;
        }
        let kdir = root.join("lib/modules").join(&release).join("kernel");
        prune_modules(&kdir)?;
        command_stdout(
            Command::new(tool("depmod")?)
                .arg("-b")
                .arg(&root)
                .arg(&release),
        )?;
        extract_vmlinux(&vmlinuz, &scratch.join("vmlinux"))?;
        fs::remove_file(&vmlinuz).map_err(|e| e.to_string())?;
        fs::write(scratch.join("release"), format!("{release}\n")).map_err(|e| e.to_string())?;
        fs::write(scratch.join(".complete"), "").map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&scratch);
        return Err(format!("preparing the VM kernel {pkg} {version}: {e}"));
    }
    let _ = fs::remove_dir_all(entry);
    fs::rename(&scratch, entry).map_err(|e| e.to_string())?;
    // Older kernels are dead weight now.
    for old in fs::read_dir(cache).into_iter().flatten().flatten() {
        let p = old.path();
        if p != entry
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kernel-"))
        {
            let _ = fs::remove_dir_all(&p);
        }
    }
    eprintln!("[vm] {pkg} ready in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn prune_modules(kdir: &Path) -> Result<(), String> {
    let rm = |p: PathBuf| fs::remove_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()));
    for e in fs::read_dir(kdir)
        .map_err(|e| format!("{}: {e}", kdir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "drivers" && !KEPT_MODULE_DIRS.contains(&name.as_str()) {
            rm(e.path())?;
        }
    }
    let drivers = kdir.join("drivers");
    for e in fs::read_dir(&drivers).map_err(|e| e.to_string())?.flatten() {
        if !KEPT_DRIVER_DIRS.contains(&e.file_name().to_string_lossy().as_ref()) {
            rm(e.path())?;
        }
    }
    for d in DROPPED_NET_DRIVER_DIRS {
        let p = drivers.join("net").join(d);
        if p.exists() {
            rm(p)?;
        }
    }
    Ok(())
}

/// Decompresses the xz payload of a bzImage into an ELF `vmlinux`, which
/// QEMU boots directly through the PVH entry point (no BIOS, no
/// decompression in the guest).
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<(), String> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let image = fs::read(vmlinuz).map_err(|e| format!("{}: {e}", vmlinuz.display()))?;
    let starts = image
        .windows(XZ_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == XZ_MAGIC)
        .map(|(i, _)| i);
    for start in starts {
        let mut xz = Command::new("xz")
            .args(["-dc", "--single-stream"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run xz: {e}"))?;
        let mut stdin = xz.stdin.take().unwrap();
        let payload = image[start..].to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&payload);
        });
        let mut elf = Vec::new();
        xz.stdout
            .take()
            .unwrap()
            .read_to_end(&mut elf)
            .map_err(|e| e.to_string())?;
        let _ = feeder.join();
        let ok = xz.wait().is_ok_and(|s| s.success());
        if ok && elf.starts_with(b"\x7fELF") {
            return fs::write(out, elf).map_err(|e| format!("{}: {e}", out.display()));
        }
    }
    Err(format!(
        "no xz-compressed ELF kernel found in {}",
        vmlinuz.display()
    ))
}

/// The host's static busybox (package busybox-static).
fn static_busybox() -> Result<PathBuf, String> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("busybox is not installed (Debian package busybox-static)")?;
    let elf = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !elf_is_static(&elf) {
        return Err(format!(
            "{} is dynamically linked: install busybox-static instead of busybox",
            path.display()
        ));
    }
    Ok(path)
}

/// An ELF64 little-endian executable without a PT_INTERP header.
fn elf_is_static(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| u32_at(phoff + i * phentsize) != Some(3))
}

impl Kernel {
    fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// `names` and their dependencies (hard ones first, then soft `pre:`
    /// ones as optional), in load order, each once.
    fn resolve(&self, names: &[String]) -> Result<Vec<Module>, String> {
        let mut out: Vec<Module> = Vec::new();
        for name in names {
            for m in self.resolve_one(name, &mut Vec::new())? {
                match out.iter_mut().find(|o| o.path == m.path) {
                    Some(o) => o.optional &= m.optional,
                    None => out.push(m),
                }
            }
        }
        Ok(out)
    }

    fn resolve_one(&self, name: &str, stack: &mut Vec<String>) -> Result<Vec<Module>, String> {
        if let Some(r) = self.resolved.lock().unwrap().get(name) {
            return Ok(r.clone());
        }
        if stack.iter().any(|s| s == name) {
            return Ok(Vec::new());
        }
        stack.push(name.to_string());
        let infos = self.modinfo(name)?;
        let several = infos.len() > 1;
        let mut out: Vec<Module> = Vec::new();
        let mut add = |list: Vec<Module>, optional: bool| {
            for mut m in list {
                m.optional |= optional;
                match out.iter_mut().find(|o| o.path == m.path) {
                    Some(o) => o.optional &= m.optional,
                    None => out.push(m),
                }
            }
        };
        for info in infos {
            for pre in &info.soft_pre {
                // A missing soft dependency is not an error.
                if let Ok(list) = self.resolve_one(pre, stack) {
                    add(list, true);
                }
            }
            for dep in &info.depends {
                add(self.resolve_one(dep, stack)?, several);
            }
            if let Some(path) = info.path {
                add(
                    vec![Module {
                        name: module_name(&path),
                        path,
                        optional: several,
                    }],
                    several,
                );
            }
        }
        stack.pop();
        self.resolved
            .lock()
            .unwrap()
            .insert(name.to_string(), out.clone());
        Ok(out)
    }

    /// `modinfo` of a module name or alias against the unpacked kernel:
    /// one entry per module it names (`path` is None for a built-in one).
    fn modinfo(&self, name: &str) -> Result<Vec<ModInfo>, String> {
        let out = Command::new(tool("modinfo")?)
            .arg("-b")
            .arg(&self.root)
            .arg("-k")
            .arg(&self.release)
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run modinfo: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut infos: Vec<ModInfo> = Vec::new();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "filename" => infos.push(ModInfo {
                    path: (value != "(builtin)").then(|| PathBuf::from(value)),
                    depends: Vec::new(),
                    soft_pre: Vec::new(),
                }),
                "depends" => {
                    if let Some(i) = infos.last_mut() {
                        i.depends = value
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect();
                    }
                }
                "softdep" => {
                    if let Some(i) = infos.last_mut() {
                        let mut pre = false;
                        for word in value.split_whitespace() {
                            match word {
                                "pre:" => pre = true,
                                "post:" => pre = false,
                                w if pre => i.soft_pre.push(w.to_string()),
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if infos.is_empty() {
            return Err(format!(
                "no module {name:?} in {} (modinfo: {})",
                self.modules_dir().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(infos)
    }

    /// Builds (or finds) the initramfs for this kernel: busybox, the
    /// modules to mount 9p and overlayfs, and `/init`.
    fn initramfs(&self, entry: &Path, busybox: &Path) -> Result<PathBuf, String> {
        let boot: Vec<String> = BOOT_MODULES.iter().map(|s| s.to_string()).collect();
        let mods = self.resolve(&boot)?;
        let mut cpio = Cpio::default();
        for d in [
            "bin",
            "sbin",
            "dev",
            "proc",
            "sys",
            "run",
            "tmp",
            "host",
            "newroot",
            "upper",
            "mods",
            "lib",
            "lib/modules",
        ] {
            cpio.dir(d);
        }
        cpio.char_dev("dev/console", 5, 1);
        let bb = fs::read(busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
        cpio.file("bin/busybox", 0o755, &bb);
        cpio.symlink("bin/sh", "busybox");
        let mut order = String::new();
        for m in &mods {
            let ko = fs::read(&m.path).map_err(|e| format!("{}: {e}", m.path.display()))?;
            cpio.file(&format!("mods/{}.ko", m.name), 0o644, &ko);
            order.push_str(&m.name);
            order.push('\n');
        }
        cpio.file("mods/order", 0o644, order.as_bytes());
        cpio.file("init", 0o755, INIT.as_bytes());
        let image = cpio.finish();
        let path = entry.join(format!("initramfs-{:016x}.cpio", fnv1a(&image)));
        if !path.exists() {
            let tmp = entry.join(format!(".initramfs-{}.tmp", std::process::id()));
            fs::write(&tmp, &image).map_err(|e| format!("{}: {e}", tmp.display()))?;
            fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            for e in fs::read_dir(entry).into_iter().flatten().flatten() {
                let p = e.path();
                let n = e.file_name().to_string_lossy().into_owned();
                // Images for other inputs, older than a day (not in use).
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(86400));
                if n.starts_with("initramfs-") && p != path && old {
                    let _ = fs::remove_file(p);
                }
            }
        }
        Ok(path)
    }
}

struct ModInfo {
    path: Option<PathBuf>,
    depends: Vec<String>,
    soft_pre: Vec<String>,
}

fn module_name(path: &Path) -> String {
    let file = path.file_name().unwrap().to_string_lossy();
    let base = file.split(".ko").next().unwrap_or(&file);
    base.replace('-', "_")
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A newc ("070701") cpio archive, the initramfs format; the kernel
/// loads it uncompressed faster than gzip'd under TCG.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, (0, 0), target.as_bytes());
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// The agent ([`Scenario::agent`]): runs `$1/N.sh` for N = 0, 1, ... as
/// the host puts them there (`N.out`: the output, `N.rc`: the exit status,
/// written last) until the host creates `$1/exit`.
const AGENT: &str = r#"#!/bin/sh
d="$1"
n=0
while :; do
  if [ -e "$d/$n.sh" ]; then
    sh "$d/$n.sh" >"$d/$n.out" 2>&1 </dev/null
    echo $? >"$d/$n.rc.tmp"
    mv "$d/$n.rc.tmp" "$d/$n.rc"
    n=$((n + 1))
  elif [ -e "$d/exit" ]; then
    exit 0
  else
    sleep 0.05
  fi
done
"#;

/// A booted system's scenario service: what `run.sh` does in the chroot
/// mode, then the result line and power-off.
const SYSTEM_UNIT: &str = "[Unit]
Description=tandem test VM scenario
After=multi-user.target

[Service]
Type=simple
ExecStart=/bin/sh /tandem-run/.tandem/system.sh
StandardOutput=journal+console
StandardError=journal+console
";

const SYSTEM_RUNNER: &str = r#"#!/bin/sh
/bin/sh /tandem-run/.tandem/run.sh
rc=$?
sync
{
  echo
  echo "TANDEM-RESULT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
} >/dev/console
systemctl poweroff --force --force
"#;

/// The initramfs's `/init` (busybox sh). Parameters come on the kernel
/// command line: `tandem.run` (the run directory), `tandem.kroot` (the
/// unpacked kernel package), `tandem.krel` (its release), and for a
/// booted system `tandem.root` (the tree to boot).
const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null
echo /bin/modprobe >/proc/sys/kernel/modprobe

die() {
  echo "TANDEM-SETUP-ERROR: $*"
  echo "TANDEM-RESULT rc=254"
  poweroff -f
  sleep 10
}

for a in $(cat /proc/cmdline); do
  case "$a" in
    tandem.run=*) RUN="${a#tandem.run=}" ;;
    tandem.kroot=*) KROOT="${a#tandem.kroot=}" ;;
    tandem.krel=*) KREL="${a#tandem.krel=}" ;;
    tandem.root=*) SYSROOT="${a#tandem.root=}" ;;
  esac
done
[ -n "$RUN" ] && [ -n "$KROOT" ] && [ -n "$KREL" ] || die "tandem.run, tandem.kroot, tandem.krel missing from the kernel command line"

while read -r m; do
  insmod "/mods/$m.ko" || die "cannot load $m from the initramfs"
done </mods/order

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host \
  || die "cannot mount the host's root (9p tag hostroot)"
mkdir -p /lib/modules
ln -s "/host$KROOT/lib/modules/$KREL" "/lib/modules/$KREL"

if [ -n "$SYSROOT" ]; then
  # A booted system: the Debian tree under a RAM overlay, the kernel's
  # modules where kmod looks, the run directory at /tandem-run, the
  # scenario as a service, and systemd as PID 1.
  mount -t tmpfs -o mode=0755 tmpfs /upper
  mkdir /upper/data /upper/work
  mount -t overlay -o "lowerdir=/host$SYSROOT,upperdir=/upper/data,workdir=/upper/work" overlay /newroot \
    || die "cannot lay an overlay on $SYSROOT"
  N=/newroot
  mkdir -p "$N/lib/modules/$KREL" "$N/tandem-run"
  mount --bind "/host$KROOT/lib/modules/$KREL" "$N/lib/modules/$KREL"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 tandemrun "$N/tandem-run" \
    || die "cannot mount the run directory (9p tag tandemrun)"
  while read -r name path need; do
    grep -q "^$name " /proc/modules && continue
    if ! insmod "/host$path" 2>/tmp/insmod.err; then
      [ "$need" = optional ] || die "cannot load module $name: $(cat /tmp/insmod.err)"
    fi
  done <"$N/tandem-run/.tandem/modules"
  cp "$N/tandem-run/.tandem/vm-scenario.service" "$N/etc/systemd/system/" \
    || die "cannot install the scenario service"
  mkdir -p "$N/etc/systemd/system/multi-user.target.wants"
  ln -sf ../vm-scenario.service "$N/etc/systemd/system/multi-user.target.wants/"
  echo /sbin/modprobe >/proc/sys/kernel/modprobe
  mount --move /dev "$N/dev"
  mount --move /sys "$N/sys"
  mount --move /proc "$N/proc"
  exec switch_root "$N" /lib/systemd/systemd
fi

mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir /upper/data /upper/work
mount -t overlay -o lowerdir=/host,upperdir=/upper/data,workdir=/upper/work overlay /newroot \
  || die "cannot lay an overlay on the host's root"
N=/newroot
mount --bind /proc $N/proc
mount --bind /sys $N/sys
mount --bind /dev $N/dev
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $N/dev/pts
mount -t tmpfs tmpfs $N/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $N/tmp
mount -t tmpfs -o mode=0755 tmpfs $N/run
mkdir -p "$N/lib/modules/$KREL"
mount --bind "/host$KROOT/lib/modules/$KREL" "$N/lib/modules/$KREL"
while read -r p; do
  [ -n "$p" ] || continue
  mkdir -p "$N$p" && mount --bind "/host$p" "$N$p" || die "cannot show $p inside"
done <"/host$RUN/.tandem/binds"
mkdir -p "$N$RUN"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 tandemrun "$N$RUN" \
  || die "cannot mount the run directory (9p tag tandemrun)"

while read -r name path need; do
  grep -q "^$name " /proc/modules && continue
  if ! insmod "/host$path" 2>/tmp/insmod.err; then
    [ "$need" = optional ] || die "cannot load module $name: $(cat /tmp/insmod.err)"
  fi
done <"$N$RUN/.tandem/modules"

hostname tandem-vm
ip link set lo up
chroot $N /bin/sh "$RUN/.tandem/run.sh"
rc=$?
sync
echo
echo "TANDEM-RESULT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
sleep 10
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_line_gives_rc_and_uptime() {
        let log = "boot\nTANDEM-RESULT rc=3 uptime=4.25\n[    4.3] reboot: Power down\n";
        assert_eq!(parse_result(log), (Some(3), Some(4.25)));
        assert_eq!(parse_result("no marker"), (None, None));
        assert_eq!(parse_result("TANDEM-RESULT rc=0\n"), (Some(0), None));
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn module_names_come_from_file_names() {
        assert_eq!(module_name(Path::new("/x/crc32c-intel.ko")), "crc32c_intel");
        assert_eq!(module_name(Path::new("/x/ip_vs.ko.xz")), "ip_vs");
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.dir("dev");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("#!/bin/sh"));
    }

    #[test]
    fn cached_systems_are_dated_by_the_civil_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn the_static_check_reads_program_headers() {
        assert!(!elf_is_static(b"not an elf"));
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are dynamically linked against glibc.
        assert!(!elf_is_static(&me));
    }
}
