//! Worktrees and merges, for work done side by side: a new branch checked
//! out in a directory of its own inside the project (`worktree_add`), taken
//! away again (`worktree_remove`, `delete_branch`), and merged into the
//! project's current branch (`merge`).

use std::io::Write;
use std::path::Path;

use rhai::{Array, Dynamic, Map, Module};

use super::{git, raise, trimmed_or_unit, Fallible};
use crate::context::SharedHost;
use crate::host::{fail, opt};
use crate::paths::Access;

/// Refuses what git would take for an option, and what is no branch name.
fn check_branch(root: &Path, branch: &str) -> Fallible<()> {
    if branch.starts_with('-') || git(root, &["check-ref-format", "--branch", branch], None).is_err() {
        return fail(format!("'{branch}' is not a valid branch name"));
    }
    Ok(())
}

/// `git::worktree_add(path, branch, base)`: creates `branch` at the commit
/// `base` (or, when `base` is (), takes the existing `branch`) and checks it
/// out in the new directory `path` (inside the project; its missing parents
/// are made, no link is followed). Returns the worktree's absolute path.
fn worktree_add(host: &SharedHost, path: &str, branch: &str, base: &Dynamic) -> Fallible<String> {
    let root = &host.roots.project;
    check_branch(root, branch)?;
    let base = if base.is_unit() { None } else { Some(base.to_string()) };
    if let Some(base) = &base {
        let commit = format!("{base}^{{commit}}");
        if base.starts_with('-') || git(root, &["rev-parse", "--verify", "-q", &commit], None).is_err() {
            return fail(format!("'{base}' is not a commit"));
        }
    }
    let target = host.roots.open(path, Access::Write, "making a worktree at").map_err(raise)?;
    let name = target.name.as_deref().ok_or_else(|| raise(format!("'{path}' is the project itself")))?;
    if rustix::fs::statat(&target.dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        return fail(format!("cannot make a worktree at '{path}': something is there already"));
    }
    let at = target.path.display().to_string();
    // Forgets worktrees whose directory is gone, which would hold their branch.
    git(root, &["worktree", "prune"], None).map_err(raise)?;
    let args: Vec<&str> = match &base {
        Some(base) => vec!["worktree", "add", "--quiet", "-b", branch, &at, base],
        None => vec!["worktree", "add", "--quiet", &at, branch],
    };
    git(root, &args, None).map_err(raise)?;
    Ok(at)
}

/// `git::worktree_remove(path, force)`: removes the worktree at `path` (and
/// its directory); without `force` git refuses one with uncommitted changes.
fn worktree_remove(host: &SharedHost, path: &str, force: bool) -> Fallible<()> {
    let at = host.roots.resolve(path).map_err(raise)?.display().to_string();
    let mut args = vec!["worktree", "remove"];
    if force {
        args.push("--force");
    }
    args.push(&at);
    git(&host.roots.project, &args, None).map(drop).map_err(raise)
}

/// `git::delete_branch(branch, force)`: deletes the branch; without `force`
/// git refuses one that is not merged.
fn delete_branch(host: &SharedHost, branch: &str, force: bool) -> Fallible<()> {
    let root = &host.roots.project;
    check_branch(root, branch)?;
    git(root, &["branch", if force { "-D" } else { "-d" }, "--quiet", branch], None).map(drop).map_err(raise)
}

/// `git::merge(branch, opts)` -> `#{merged, commit, conflicts, error}`:
/// merges `branch` into the project's current branch in a merge commit of
/// its own (never a fast-forward), with `opts.message` as its message. The
/// files named in `opts.union` (paths or patterns, e.g. a log both sides
/// append to) are merged by keeping the lines of both sides. A merge that
/// conflicts is aborted, leaving the branch and the work tree as they were:
/// `merged` is false and `conflicts` lists the conflicting paths; a merge
/// that fails otherwise says why in `error`.
fn merge(host: &SharedHost, branch: &str, opts: &Map) -> Fallible<Map> {
    let root = &host.roots.project;
    check_branch(root, branch)?;
    let message = opt::<rhai::ImmutableString>(opts, "message", "a string")?
        .map_or_else(|| format!("Merge branch '{branch}'"), |m| m.to_string());
    let union =
        super::super::proc::argv(&opt::<Array>(opts, "union", "an array of paths")?.unwrap_or_default())?;
    let mut attributes = tempfile::NamedTempFile::new().map_err(raise)?;
    for path in &union {
        if path.chars().any(char::is_whitespace) {
            return fail(format!(
                "merge: union path '{path}' has white space, which git attributes cannot name"
            ));
        }
        writeln!(attributes, "{path} merge=union").map_err(raise)?;
    }
    let attributes_file = format!("core.attributesFile={}", attributes.path().display());
    let merged = git(
        root,
        &["-c", &attributes_file, "merge", "--quiet", "--no-ff", "--no-edit", "-m", &message, branch],
        None,
    );
    let mut result = Map::new();
    let conflicts: Array = match &merged {
        Ok(_) => Array::new(),
        Err(_) => git(root, &["diff", "--name-only", "--diff-filter=U", "-z"], None)
            .unwrap_or_default()
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|p| Dynamic::from(p.to_string()))
            .collect(),
    };
    if merged.is_err() && git(root, &["rev-parse", "--verify", "-q", "MERGE_HEAD"], None).is_ok() {
        git(root, &["merge", "--abort"], None).map_err(raise)?;
    }
    result.insert("merged".into(), merged.is_ok().into());
    let head =
        if merged.is_ok() { trimmed_or_unit(git(root, &["rev-parse", "HEAD"], None)) } else { Dynamic::UNIT };
    result.insert("commit".into(), head);
    let error = match merged {
        Err(e) if conflicts.is_empty() => Dynamic::from(e),
        _ => Dynamic::UNIT,
    };
    result.insert("conflicts".into(), conflicts.into());
    result.insert("error".into(), error);
    Ok(result)
}

/// `git::branch_exists(branch)` -> whether the branch exists.
fn branch_exists(host: &SharedHost, branch: &str) -> Fallible<bool> {
    let root = &host.roots.project;
    check_branch(root, branch)?;
    Ok(git(root, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")], None).is_ok())
}

pub(super) fn register(m: &mut Module, host: &SharedHost) {
    let h = host.clone();
    primitive!(m, "branch_exists", |branch: &str| branch_exists(&h, branch));
    let h = host.clone();
    primitive!(m, "worktree_add", |path: &str, branch: &str, base: Dynamic| worktree_add(
        &h, path, branch, &base
    ));
    let h = host.clone();
    primitive!(m, "worktree_remove", |path: &str, force: bool| worktree_remove(&h, path, force));
    let h = host.clone();
    primitive!(m, "delete_branch", |branch: &str, force: bool| delete_branch(&h, branch, force));
    let h = host.clone();
    primitive!(m, "merge", |branch: &str, opts: Map| merge(&h, branch, &opts));
}
