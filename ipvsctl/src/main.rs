use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Kernel IPVS over generic netlink: list, apply, diff, save and restore
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Validate this configuration file, print the findings, and exit
    /// (0: clean, 1: refused).
    #[arg(long, value_name = "CONFIG")]
    check: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.check {
        Some(path) => tandem_model::config::run_check(&path),
        None => {
            eprintln!("ipvsctl: only --check is available in this build");
            ExitCode::FAILURE
        }
    }
}
