use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// tandem's health checker: the real servers that are up, in kernel IPVS
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
            eprintln!("tandem-healthd: only --check is available in this build");
            ExitCode::FAILURE
        }
    }
}
