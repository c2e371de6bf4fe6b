//! The host's own commands. The workflow commands, and the examples shown
//! under `aloop --help`, come from `scripts/commands.toml`; see `manifest`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The host's own command words (and clap's `help`), which no command
/// manifest may take. A constant rather than asked of clap: building the
/// command tree costs more than the rest of `aloop --version`.
pub const HOST_WORDS: [&str; 7] = ["script", "prompt", "exec", "trust", "completions", "man", "help"];

#[derive(Debug, Parser)]
#[command(
    name = "aloop",
    version,
    about = "Run coding agents in disciplined, scriptable loops",
    long_about = "aloop runs coding agents (Claude Code, Codex, Qwen Code, Gemini CLI, or any program \
through an adapter script) in disciplined loops. Every workflow is a Rhai script you can fork.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    /// Run as if aloop was started in DIR (like `git -C`)
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: HostCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HostCommand {
    /// List, show, fork or check workflow scripts
    #[command(subcommand)]
    Script(FileAction),
    /// List, show, fork or check prompt templates
    #[command(subcommand)]
    Prompt(FileAction),
    /// Run a script file or a script by name, with KEY=VALUE pairs in ARGS
    #[command(
        long_about = "Run a script file or a script by name, with KEY=VALUE pairs in ARGS.\n\n\
FILE_OR_NAME is a file when it starts with ./, ../ or /, or names an existing file ending in \
.rhai; the file runs as you chose it, without a trust check. Anything else is a script name \
(such as loop/status), found in .loop/scripts/, then $ALOOP_HOME/scripts/, then the bundled \
scripts; a repository copy runs only once `aloop trust` has pinned it. A file in the working \
directory never stands in for a script name.",
        after_help = "Examples:\n  aloop exec ./tools/report.rhai since=2026-01-01\n  aloop exec loop/status"
    )]
    Exec {
        /// A path to a .rhai file, or a script name such as `loop/status`
        #[arg(value_name = "FILE_OR_NAME")]
        target: String,
        /// Values for the script's ARGS map
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Allow this repository's own scripts (.loop/scripts) to run
    #[command(
        after_help = "Examples:\n  aloop trust            trust the repository's scripts as they are now\n  \
aloop trust --list     show what is trusted\n  aloop trust --revoke .loop/scripts/loop/run.rhai"
    )]
    Trust {
        /// Show the trust status of each repository script and every pinned file
        #[arg(long, conflicts_with = "revoke")]
        list: bool,
        /// Forget the trust given to this file
        #[arg(long, value_name = "PATH")]
        revoke: Option<PathBuf>,
        /// Print the table as a JSON array of {path, status}
        #[arg(long, conflicts_with = "revoke")]
        json: bool,
    },
    /// Print a shell's completion script for every command, the workflow ones included
    #[command(
        after_help = "Examples:\n  source <(aloop completions bash)                 for this shell\n  \
aloop completions zsh > ~/.zfunc/_aloop           zsh (with ~/.zfunc on fpath)\n  \
aloop completions fish > ~/.config/fish/completions/aloop.fish"
    )]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page of aloop or of one command, or write them all
    #[command(after_help = "Examples:\n  aloop man | man -l -         aloop(1)\n  \
aloop man iterate watch       aloop-iterate-watch(1)\n  \
aloop man --out-dir ~/.local/share/man/man1")]
    Man {
        /// The command words (none for aloop itself)
        #[arg(value_name = "COMMAND")]
        words: Vec<String>,
        /// Write a page for every command into DIR instead (aloop.1, aloop-run.1, ...)
        #[arg(long, value_name = "DIR", conflicts_with = "words")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum FileAction {
    /// Every visible file, where it comes from, and whether it may run
    #[command(after_help = "Examples:\n  aloop script list\n  aloop prompt list --json")]
    List {
        /// Print a JSON array of {name, kind, source, overrides, trust} instead
        #[arg(long)]
        json: bool,
    },
    /// Print a file's text (the copy that lookup picks)
    #[command(
        after_help = "Examples:\n  aloop script show loop/run\n  aloop prompt show loop/generator/implement"
    )]
    Show {
        /// The name without its extension, such as loop/run or loop/generator/implement
        name: String,
    },
    /// Copy a bundled file into .loop/ to fork it
    #[command(
        after_help = "Examples:\n  aloop script eject loop/run               to .loop/scripts/loop/run.rhai\n  \
aloop prompt eject loop/evaluator/_base   to .loop/prompts/loop/evaluator/_base.md"
    )]
    Eject {
        /// The name without its extension, such as loop/run or loop/generator/implement
        name: String,
        /// Replace an existing copy
        #[arg(long)]
        force: bool,
    },
    /// Compile every visible file and report errors with their positions
    #[command(after_help = "Examples:\n  aloop script check\n  aloop prompt check")]
    Check,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn host_words_name_every_host_command() {
        let mut words: Vec<String> =
            super::Cli::command().get_subcommands().map(|c| c.get_name().into()).collect();
        words.push("help".into());
        words.sort();
        let mut expected = super::HOST_WORDS.map(String::from).to_vec();
        expected.sort();
        assert_eq!(words, expected);
    }
}
