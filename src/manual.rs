//! Shell completions and man pages, made from the same command tree clap
//! parses with (the host's commands and the manifest's workflow commands).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Command;
use clap_complete::Shell;

use crate::error::UsageError;

/// Writes `shell`'s completion script for `root` to stdout.
pub(crate) fn completions(mut root: Command, shell: Shell) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut root, "aloop", &mut script);
    write_stdout(&script)
}

/// Writes the man page of the command named by `words` (aloop itself when
/// there are none) to stdout.
pub(crate) fn man_page(root: Command, words: &[String]) -> Result<i32> {
    let mut command = built(root);
    for word in words {
        command = command
            .find_subcommand(word)
            .cloned()
            .ok_or_else(|| UsageError(format!("no command `{}` (see `aloop --help`)", words.join(" "))))?;
    }
    let mut page = Vec::new();
    man(command).render(&mut page)?;
    write_stdout(&page)
}

/// The tree with every subcommand's full name set (`aloop iterate watch`).
fn built(root: Command) -> Command {
    let mut root = root.disable_help_subcommand(true);
    root.build();
    root
}

fn man(command: Command) -> clap_mangen::Man {
    clap_mangen::Man::new(command).source(format!("aloop {}", env!("CARGO_PKG_VERSION")))
}

/// Writes a page for every command into `dir` (aloop.1, aloop-run.1, ...).
pub(crate) fn man_pages(root: Command, dir: &Path) -> Result<i32> {
    fn write_tree(command: &Command, dir: &Path, written: &mut usize) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            write_tree(sub, dir, written)?;
        }
        man(command.clone()).generate_to(dir)?;
        *written += 1;
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    write_tree(&built(root), dir, &mut written)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    crate::host::ui::message("✓", "32", &format!("{written} man pages written to {}", dir.display()));
    Ok(0)
}

/// A closed pipe (`aloop man | head`) is a normal end, as for other tools.
fn write_stdout(bytes: &[u8]) -> Result<i32> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(0),
    }
}
