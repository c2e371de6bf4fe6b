//! `git::` — HEAD and what changed since a commit, for recording what an
//! agent did; the work tree's status, switching branches and committing
//! chosen paths, for a loop that keeps its own record in the repository;
//! worktrees and merges (`worktree`), for work done side by side. Everything
//! is asked of git itself, so worktrees, packed refs, reftable and `GIT_DIR`
//! work as git has them. Diffs include untracked files (respecting
//! .gitignore) without touching the user's index: changes are staged into a
//! throwaway copy of it.
//!
//! The project's work tree is the default; `head`, `branch`, `diff`,
//! `diff_stat`, `changed_files`, `status` and `commit` also take a directory
//! inside the project (a worktree).

mod worktree;

use std::path::{Path, PathBuf};
use std::process::Command;

use rhai::{Array, Dynamic, Map, Module};

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

/// The work tree at `dir`, a directory inside the project.
fn work_tree(host: &SharedHost, dir: &str) -> Fallible<PathBuf> {
    let path = host.roots.resolve(dir).map_err(raise)?;
    if !path.is_dir() {
        return super::fail(format!("'{dir}' is not a directory"));
    }
    Ok(path)
}

/// `git diff --cached <since> <extra>` against a private index holding
/// every change of the work tree at `root`, tracked or not.
fn diff(root: &Path, since: &Dynamic, extra: &[&str]) -> Fallible<String> {
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

/// `git status --porcelain`: one `#{path, state}` per changed or untracked
/// path (state is git's two-letter code, "??" for untracked).
fn status(root: &Path) -> Fallible<Array> {
    let out = git(root, &["status", "--porcelain=v1", "-z", "--untracked-files=all"], None).map_err(raise)?;
    let mut entries = Array::new();
    let mut fields = out.split('\0').filter(|f| !f.is_empty());
    while let Some(field) = fields.next() {
        let (state, path) = field.split_at(field.len().min(3));
        let state = state.trim_end().to_string();
        if state.starts_with('R') || state.starts_with('C') {
            // A rename or copy is followed by the path it came from.
            fields.next();
        }
        let mut entry = Map::new();
        entry.insert("path".into(), path.to_string().into());
        entry.insert("state".into(), state.into());
        entries.push(entry.into());
    }
    Ok(entries)
}

/// Switches to `branch`, creating it at HEAD when it does not exist; returns
/// whether it was created.
fn switch(host: &SharedHost, branch: &str) -> Fallible<bool> {
    let root = &host.roots.project;
    if branch.starts_with('-') || git(root, &["check-ref-format", "--branch", branch], None).is_err() {
        return super::fail(format!("'{branch}' is not a valid branch name"));
    }
    let exists = git(root, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")], None).is_ok();
    let args: &[&str] = if exists { &["switch", "-q", branch] } else { &["switch", "-q", "-c", branch] };
    git(root, args, None).map_err(raise)?;
    Ok(!exists)
}

/// Commits the current content of `paths` (and only them) with `message`
/// in the work tree at `root`; returns the new commit's SHA, or () when
/// they hold no change.
fn commit(root: &Path, paths: &Array, message: &str) -> Fallible<Dynamic> {
    let paths = super::proc::argv(paths)?;
    let mut add = vec!["add", "-A", "--"];
    add.extend(paths.iter().map(String::as_str));
    git(root, &add, None).map_err(raise)?;
    let has_head = git(root, &["rev-parse", "--verify", "-q", "HEAD"], None).is_ok();
    let mut staged = vec!["diff", "--cached", "--quiet"];
    if has_head {
        staged.push("HEAD");
    }
    staged.push("--");
    staged.extend(paths.iter().map(String::as_str));
    if git(root, &staged, None).is_ok() {
        return Ok(Dynamic::UNIT);
    }
    let mut args = vec!["commit", "-q", "--no-verify", "-m", message, "--only", "--"];
    args.extend(paths.iter().map(String::as_str));
    git(root, &args, None).map_err(raise)?;
    Ok(trimmed_or_unit(git(root, &["rev-parse", "--verify", "-q", "HEAD"], None)))
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    // git::is_repo() -> whether the project is inside a git work tree.
    primitive!(m, "is_repo", || {
        Ok(git(&h.roots.project, &["rev-parse", "--is-inside-work-tree"], None)
            .is_ok_and(|s| s.trim() == "true"))
    });
    let head = |root: &Path| Ok(trimmed_or_unit(git(root, &["rev-parse", "--verify", "-q", "HEAD"], None)));
    let h = host.clone();
    // git::head() -> the commit SHA of HEAD, or () before the first commit.
    primitive!(m, "head", || head(&h.roots.project));
    let h = host.clone();
    // git::head(dir) -> the same in the work tree at `dir`.
    primitive!(m, "head", |dir: &str| head(&work_tree(&h, dir)?));
    let branch =
        |root: &Path| Ok(trimmed_or_unit(git(root, &["symbolic-ref", "--short", "-q", "HEAD"], None)));
    let h = host.clone();
    // git::branch() -> the current branch name, or () when detached.
    primitive!(m, "branch", || branch(&h.roots.project));
    let h = host.clone();
    // git::branch(dir) -> the same in the work tree at `dir`.
    primitive!(m, "branch", |dir: &str| branch(&work_tree(&h, dir)?));
    let h = host.clone();
    // git::diff(since) -> the patch from `since` (a commit, or () for the
    // empty tree) to the work tree, untracked files included.
    primitive!(m, "diff", |since: Dynamic| diff(&h.roots.project, &since, &[]));
    let h = host.clone();
    // git::diff(since, dir) -> the same in the work tree at `dir`.
    primitive!(m, "diff", |since: Dynamic, dir: &str| diff(&work_tree(&h, dir)?, &since, &[]));
    let h = host.clone();
    // git::diff_stat(since) -> the same as `git diff --stat`.
    primitive!(m, "diff_stat", |since: Dynamic| diff(&h.roots.project, &since, &["--stat"]));
    let h = host.clone();
    // git::diff_stat(since, dir) -> the same in the work tree at `dir`.
    primitive!(m, "diff_stat", |since: Dynamic, dir: &str| diff(&work_tree(&h, dir)?, &since, &["--stat"]));
    let changed = |root: &Path, since: &Dynamic| {
        let names = diff(root, since, &["--name-only"])?;
        Ok(names.lines().filter(|l| !l.is_empty()).map(|l| Dynamic::from(l.to_string())).collect::<Array>())
    };
    let h = host.clone();
    // git::changed_files(since) -> paths changed, added or deleted.
    primitive!(m, "changed_files", |since: Dynamic| changed(&h.roots.project, &since));
    let h = host.clone();
    // git::changed_files(since, dir) -> the same in the work tree at `dir`.
    primitive!(m, "changed_files", |since: Dynamic, dir: &str| changed(&work_tree(&h, dir)?, &since));
    let h = host.clone();
    // git::status() -> [#{path, state}] for every uncommitted change,
    // untracked files included (state "??"), as `git status --porcelain`.
    primitive!(m, "status", || status(&h.roots.project));
    let h = host.clone();
    // git::status(dir) -> the same in the work tree at `dir`.
    primitive!(m, "status", |dir: &str| status(&work_tree(&h, dir)?));
    let h = host.clone();
    // git::switch_branch(branch) -> switches to the branch, creating it at HEAD
    // when it does not exist; true when it was created.
    primitive!(m, "switch_branch", |branch: &str| switch(&h, branch));
    let h = host.clone();
    // git::commit(paths, message) -> commits those paths only (whatever
    // else is staged stays staged); the new SHA, or () when they hold no change.
    primitive!(m, "commit", |paths: Array, message: &str| commit(&h.roots.project, &paths, message));
    let h = host.clone();
    // git::commit(paths, message, dir) -> the same in the work tree at `dir`.
    primitive!(m, "commit", |paths: Array, message: &str, dir: &str| commit(
        &work_tree(&h, dir)?,
        &paths,
        message
    ));
    worktree::register(&mut m, host);
    m
}
