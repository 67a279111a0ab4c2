//! Running the programs a configuration names: vrrpd's tracked and notify
//! scripts, healthd's script checks. Never through a shell: the argv is the
//! configuration's, word for word; a timeout kills the program's whole
//! process group.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// What a script run ended with, for logs and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptResult {
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    CannotRun(String),
}

impl ScriptResult {
    pub fn success(&self) -> bool {
        matches!(self, ScriptResult::Exited(0))
    }
}

impl std::fmt::Display for ScriptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptResult::Exited(c) => write!(f, "exit status {c}"),
            ScriptResult::Signalled(s) => write!(f, "killed by signal {s}"),
            ScriptResult::TimedOut(d) => {
                write!(f, "timed out after {}", crate::config::format_duration(*d))
            }
            ScriptResult::CannotRun(e) => write!(f, "cannot run: {e}"),
        }
    }
}

/// A user to run as, resolved once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    pub fn lookup(name: &str) -> Result<RunAs, String> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(RunAs {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }),
            Ok(None) => Err(format!("no user named {name}")),
            Err(e) => Err(format!("cannot look up user {name}: {e}")),
        }
    }
}

fn command(argv: &[String], run_as: Option<RunAs>, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd
}

/// Runs a script to completion or until `timeout`, with `env` added to a
/// minimal environment.
pub async fn run_script(
    argv: &[String],
    run_as: Option<RunAs>,
    env: &[(&str, String)],
    timeout: Duration,
) -> ScriptResult {
    let mut child = match command(argv, run_as, env).spawn() {
        Ok(c) => c,
        Err(e) => return ScriptResult::CannotRun(format!("{}: {e}", argv[0])),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(c), _) => ScriptResult::Exited(c),
                (None, Some(s)) => ScriptResult::Signalled(s),
                (None, None) => ScriptResult::CannotRun("no exit status".into()),
            }
        }
        Ok(Err(e)) => ScriptResult::CannotRun(e.to_string()),
        Err(_) => {
            if let Some(pid) = child.id() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::killpg(pid as i32, libc::SIGKILL);
                }
            }
            let _ = child.wait().await;
            ScriptResult::TimedOut(timeout)
        }
    }
}

/// Starts a notify program with keepalived's arguments and reaps it in the
/// background; its failure is logged, never waited on.
pub fn notify(program: &Path, args: [String; 4]) {
    let argv: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args)
        .collect();
    let mut cmd = command(&argv, None, &[]);
    cmd.kill_on_drop(false);
    match cmd.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(s) if s.success() => {}
                    Ok(s) => {
                        tracing::warn!(program = %argv[0], args = ?&argv[1..], "notify exited with {s}")
                    }
                    Err(e) => tracing::warn!(program = %argv[0], "notify: {e}"),
                }
            });
        }
        Err(e) => tracing::warn!(program = %argv[0], "cannot run notify: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_script_reports_its_exit_status() {
        let r = run_script(
            &argv(&["/bin/sh", "-c", "exit 3"]),
            None,
            &[],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r, ScriptResult::Exited(3));
        let r = run_script(&argv(&["/bin/true"]), None, &[], Duration::from_secs(5)).await;
        assert!(r.success());
    }

    #[tokio::test]
    async fn a_hung_script_is_killed_at_its_timeout() {
        let start = std::time::Instant::now();
        let r = run_script(
            &argv(&["/bin/sleep", "30"]),
            None,
            &[],
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(r, ScriptResult::TimedOut(Duration::from_millis(200)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_environment_holds_only_path_and_what_is_given() {
        let r = run_script(
            &argv(&["/bin/sh", "-c", "[ \"$X\" = 1 ] && [ -z \"$HOME\" ]"]),
            None,
            &[("X", "1".to_string())],
            Duration::from_secs(5),
        )
        .await;
        assert!(r.success(), "{r}");
    }

    #[tokio::test]
    async fn a_missing_program_cannot_run() {
        let r = run_script(
            &argv(&["/nonexistent/x"]),
            None,
            &[],
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(r, ScriptResult::CannotRun(_)), "{r:?}");
    }
}
