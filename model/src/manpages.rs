//! The programs' manual pages, rendered from their command-line
//! definitions so they cannot drift from `--help`: one page per program
//! and one per visible subcommand (`tandem-vrrpd-status.8`), in section 8
//! (every program runs as root on a director). The package build writes
//! them with each binary's hidden `man DIR` subcommand.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `PROGRAM man DIR`, the same for every program: writes the pages, or
/// says on standard error why it could not.
pub fn run(cmd: clap::Command, dir: &Path) -> std::process::ExitCode {
    let name = cmd.get_name().to_string();
    match write(cmd, dir) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {}: {e}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `cmd`'s pages into `dir`, which must exist; returns their paths.
pub fn write(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let source = format!(
        "tandem {}",
        cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"))
    );
    let mut written = Vec::new();
    write_one(cmd, dir, &source, &mut written)?;
    Ok(written)
}

fn write_one(
    cmd: clap::Command,
    dir: &Path,
    source: &str,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_one(sub.clone(), dir, source, written)?;
    }
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .source(source)
        .manual("tandem");
    let path = dir.join(man.get_filename());
    let mut file = std::fs::File::create(&path)?;
    man.render(&mut file)?;
    file.flush()?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_gets_its_own_page_in_section_8() {
        let cmd = clap::Command::new("tandem-x")
            .version("1.2.3")
            .about("does x")
            .subcommand(clap::Command::new("status").about("shows x"))
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = write(cmd, dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tandem-x-status.8", "tandem-x.8"]);
        let main = std::fs::read_to_string(dir.path().join("tandem-x.8")).unwrap();
        assert!(main.contains(".TH tandem-x 8"), "{main}");
        assert!(main.contains("tandem 1.2.3"), "{main}");
        assert!(main.contains("tandem\\-x\\-status(8)"), "{main}");
        assert!(!main.contains("secret"), "{main}");
    }
}
