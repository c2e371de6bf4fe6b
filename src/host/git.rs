//! `git::` — HEAD and what changed since a commit, for recording what an
//! agent did. Everything is asked of git itself, so worktrees, packed refs,
//! reftable and `GIT_DIR` work as git has them. Diffs include untracked files (respecting .gitignore) without
//! touching the user's index: changes are staged into a throwaway copy of it.

use std::path::Path;
use std::process::Command;

use rhai::{Array, Dynamic, Module};

use super::{raise, Fallible};
use crate::context::SharedHost;

/// Runs git in the project; returns stdout, or the error with git's stderr.
fn git(root: &Path, args: &[&str], index: Option<&Path>) -> Result<String, String> {
    let git = crate::program::find("git", root).ok_or("cannot run git: it is not on PATH")?;
    let mut cmd = Command::new(git);
    cmd.current_dir(root).args(args).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(index) = index {
        cmd.env("GIT_INDEX_FILE", index);
    }
    let out = cmd.output().map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn trimmed_or_unit(result: Result<String, String>) -> Dynamic {
    match result {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string().into(),
        _ => Dynamic::UNIT,
    }
}

/// `git diff --cached <since> <extra>` against a private index holding
/// every change of the work tree, tracked or not.
fn diff(host: &SharedHost, since: &Dynamic, extra: &[&str]) -> Fallible<String> {
    let root = &host.roots.project;
    let base = match since.clone().into_string() {
        Ok(s) if !s.is_empty() => s,
        _ => git(root, &["hash-object", "-t", "tree", "/dev/null"], None).map_err(raise)?.trim().to_string(),
    };
    let real_index = git(root, &["rev-parse", "--git-path", "index"], None).map_err(raise)?;
    let temp = tempfile::tempdir().map_err(raise)?;
    let index = temp.path().join("index");
    let real_index = root.join(real_index.trim());
    if real_index.exists() {
        std::fs::copy(&real_index, &index).map_err(|e| raise(format!("copying the git index: {e}")))?;
    }
    git(root, &["add", "-A", "--", "."], Some(&index)).map_err(raise)?;
    let mut args = vec!["diff", "--cached", "--no-color", "--no-ext-diff", "--no-renames"];
    args.extend_from_slice(extra);
    args.push(&base);
    args.push("--");
    git(root, &args, Some(&index)).map_err(raise)
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    // git::is_repo() -> whether the project is inside a git work tree.
    primitive!(m, "is_repo", || {
        Ok(git(&h.roots.project, &["rev-parse", "--is-inside-work-tree"], None)
            .is_ok_and(|s| s.trim() == "true"))
    });
    let h = host.clone();
    // git::head() -> the commit SHA of HEAD, or () before the first commit.
    primitive!(m, "head", || {
        Ok(trimmed_or_unit(git(&h.roots.project, &["rev-parse", "--verify", "-q", "HEAD"], None)))
    });
    let h = host.clone();
    // git::branch() -> the current branch name, or () when detached.
    primitive!(m, "branch", || {
        Ok(trimmed_or_unit(git(&h.roots.project, &["symbolic-ref", "--short", "-q", "HEAD"], None)))
    });
    let h = host.clone();
    // git::diff(since) -> the patch from `since` (a commit, or () for the
    // empty tree) to the work tree, untracked files included.
    primitive!(m, "diff", |since: Dynamic| diff(&h, &since, &[]));
    let h = host.clone();
    // git::diff_stat(since) -> the same as `git diff --stat`.
    primitive!(m, "diff_stat", |since: Dynamic| diff(&h, &since, &["--stat"]));
    let h = host.clone();
    // git::changed_files(since) -> paths changed, added or deleted.
    primitive!(m, "changed_files", |since: Dynamic| {
        let names = diff(&h, &since, &["--name-only"])?;
        Ok(names.lines().filter(|l| !l.is_empty()).map(|l| Dynamic::from(l.to_string())).collect::<Array>())
    });
    m
}
