//! The demo lab's VM, for machines whose kernel has no IPVS: boots
//! Debian's kernel (the test harness's VM, [`tandem_tests::vm`]) with this
//! machine's files read-only inside, forwards the web UIs' ports from
//! 127.0.0.1, and keeps it running until `STATE_DIR/vm-stop` appears.
//!
//! `scripts/lab` starts it and hands it commands: a file `ID.sh` in
//! `STATE_DIR/vm-dir`'s `lab/` directory runs in the guest, alongside the
//! others (a load in one terminal, a kill in another); its output goes to
//! `ID.out`, its exit status to `ID.rc`; `ID.stop` interrupts it.
//!
//! Usage: tandem-labvm STATE_DIR WEBUI_PORT

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tandem_tests::vm::{self, Nic};
use tandem_tests::workspace_root;

/// The guest's side: network for the port forwards (QEMU user mode:
/// 10.0.2.15, gateway 10.0.2.2), then the command loop. Each command runs
/// in its own session so `ID.stop` reaches everything it started.
const AGENT: &str = r#"
set -u
d="$TANDEM_VM_DIR/lab"
mkdir -p "$d"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
touch "$d/ready"
while [ ! -e "$d/exit" ]; do
  for f in "$d"/*.sh; do
    [ -e "$f" ] || continue
    b=${f%.sh}
    mv "$f" "$b.run"
    (
      setsid sh "$b.run" >"$b.out" 2>&1 </dev/null &
      echo $! >"$b.pid"
      wait $!
      echo $? >"$b.rc.tmp"
      mv "$b.rc.tmp" "$b.rc"
    ) &
  done
  for s in "$d"/*.stop; do
    [ -e "$s" ] || continue
    b=${s%.stop}
    [ -e "$b.pid" ] && kill -INT -- "-$(cat "$b.pid")" 2>/dev/null
    rm -f "$s"
  done
  sleep 0.1
done
"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(state), Some(port)) = (args.get(1), args.get(2).and_then(|p| p.parse::<u16>().ok()))
    else {
        eprintln!("usage: tandem-labvm STATE_DIR WEBUI_PORT");
        return ExitCode::from(2);
    };
    let state = PathBuf::from(state);
    let Some(machine) = vm::require("demo-lab") else {
        return ExitCode::FAILURE;
    };
    let mut running = machine
        .scenario("demo-lab")
        .memory_mib(1024)
        // A lab stays up as long as someone plays with it.
        .timeout(Duration::from_secs(7 * 86400))
        .nic(Nic::User {
            forwards: vec![(port, 8080), (port + 1, 8081)],
        })
        .cwd(workspace_root())
        .script(AGENT)
        .spawn();
    let lab = running.dir().join("lab");
    let ready = lab.join("ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !ready.exists() {
        if !running.is_running() || std::time::Instant::now() > deadline {
            eprintln!(
                "tandem-labvm: the VM did not come up; its console:\n{}",
                running.console()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Err(e) = std::fs::write(state.join("vm-dir"), lab.display().to_string()) {
        eprintln!("tandem-labvm: {}: {e}", state.display());
        return ExitCode::FAILURE;
    }
    let stop = state.join("vm-stop");
    while !stop.exists() {
        if !running.is_running() {
            eprintln!(
                "tandem-labvm: the VM stopped; its console:\n{}",
                running.console()
            );
            let _ = std::fs::remove_file(state.join("vm-dir"));
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::write(lab.join("exit"), "");
    let _ = std::fs::remove_file(state.join("vm-dir"));
    // The guest's loop ends and it powers off; past 20 s it is killed
    // (dropping `running`).
    for _ in 0..200 {
        if !running.is_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ExitCode::SUCCESS
}
