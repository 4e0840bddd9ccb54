//! `completion` and `man`: shell completions (bash, zsh, fish) and man pages, generated from
//! the same command definitions that parse the command line, so they never drift from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, CliError};

/// `completion`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell: bash, zsh or fish
    pub shell: String,
}

/// `man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages to (refeng.1, refeng-run.1, ...)
    pub dir: PathBuf,
}

/// Prints the completion script for a shell.
///
/// # Errors
/// A shell other than bash, zsh or fish.
pub fn completion(a: CompletionArgs) -> Result<(), CliError> {
    use clap_complete::Shell;
    let shell = match a.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(CliError::Usage(format!(
                "unsupported shell {other:?}: use bash, zsh or fish"
            )))
        }
    };
    let mut cmd = Cli::command();
    // Into memory first: the generator panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "refeng", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(CliError::io("stdout"))
}

/// Writes a man page for refeng and one for each command (`refeng-container-ls.1`).
///
/// # Errors
/// When the directory cannot be written.
pub fn man(a: ManArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&a.dir).map_err(CliError::io(format!("mkdir {}", a.dir.display())))?;
    let cmd = Cli::command();
    write_pages(&cmd, "refeng", &a.dir)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<(), CliError> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .render(&mut buf)
        .map_err(CliError::io(format!("render {}", path.display())))?;
    std::fs::write(&path, buf).map_err(CliError::io(format!("write {}", path.display())))?;
    for sub in cmd.get_subcommands() {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_the_commands_and_flags() {
        let mut cmd = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "refeng", &mut script);
        let text = String::from_utf8(script).unwrap();
        for word in [
            "refeng__subcmd__run",
            "--env-file",
            "--no-trunc",
            "container",
            "--detach-keys",
        ] {
            assert!(
                text.contains(word),
                "{word} missing from the bash completion"
            );
        }
        assert!(completion(CompletionArgs {
            shell: "tcsh".into()
        })
        .is_err());
    }

    #[test]
    fn man_pages_cover_every_command() {
        let dir = tempfile::tempdir().unwrap();
        man(ManArgs {
            dir: dir.path().to_path_buf(),
        })
        .unwrap();
        for page in [
            "refeng.1",
            "refeng-run.1",
            "refeng-container-ls.1",
            "refeng-image-inspect.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.contains(".TH"), "{page}: {text}");
        }
        let run = std::fs::read_to_string(dir.path().join("refeng-run.1")).unwrap();
        assert!(
            run.contains("env\\-file"),
            "run's flags are documented: {run}"
        );
    }
}
