//! `git::` — HEAD and what changed since a commit, for recording what an
//! agent did. Diffs include untracked files (respecting .gitignore) without
//! touching the user's index: changes are staged into a throwaway copy of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use rhai::{Array, Dynamic, Module};

use super::{raise, Fallible};
use crate::engine::SharedHost;

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

/// The repository files of a project whose root holds `.git`: the git
/// directory (a worktree's own, from a `gitdir:` file) and the common one,
/// with the text of HEAD. `None` means "ask git": no `.git` in the root (the
/// project may sit deeper in a repository), GIT_DIR and friends set, reftable
/// storage, or anything that does not look as expected.
struct Files {
    git_dir: PathBuf,
    common: PathBuf,
    head: String,
}

impl Files {
    fn open(root: &Path) -> Option<Files> {
        if ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"].iter().any(|v| std::env::var_os(v).is_some()) {
            return None;
        }
        let dot_git = root.join(".git");
        let git_dir = if dot_git.is_file() {
            let text = std::fs::read_to_string(&dot_git).ok()?;
            root.join(text.strip_prefix("gitdir:")?.trim())
        } else {
            dot_git
        };
        let common = match std::fs::read_to_string(git_dir.join("commondir")) {
            Ok(rel) => git_dir.join(rel.trim()),
            Err(_) => git_dir.clone(),
        };
        if common.join("reftable").exists() {
            return None;
        }
        let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?.trim().to_string();
        Some(Files { git_dir, common, head })
    }

    /// The ref HEAD points to (`refs/heads/main`), or `None` when detached.
    fn head_ref(&self) -> Option<&str> {
        self.head.strip_prefix("ref:").map(str::trim)
    }
}

/// HEAD's commit read straight from the repository files, which costs
/// microseconds where spawning git costs milliseconds (the story loop asks
/// once per iteration). `None` means "ask git" (see `Files`, and a symbolic
/// ref to another symbolic ref).
fn read_head(root: &Path) -> Option<Option<String>> {
    let files = Files::open(root)?;
    let Some(name) = files.head_ref() else {
        return is_object_id(&files.head).then(|| Some(files.head.clone()));
    };
    if !name.starts_with("refs/") || name.contains("..") {
        return None;
    }
    for dir in [&files.git_dir, &files.common] {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            let id = text.trim();
            return is_object_id(id).then(|| Some(id.to_string()));
        }
    }
    let packed = std::fs::read_to_string(files.common.join("packed-refs")).unwrap_or_default();
    for line in packed.lines() {
        if let Some((id, refname)) = line.split_once(' ') {
            if refname == name && is_object_id(id) {
                return Some(Some(id.to_string()));
            }
        }
    }
    Some(None) // a branch with no commits yet
}

/// The current branch from the repository files, as `git symbolic-ref
/// --short -q HEAD` gives it; `None` means "ask git".
fn read_branch(root: &Path) -> Option<Option<String>> {
    let files = Files::open(root)?;
    match files.head_ref() {
        None => is_object_id(&files.head).then_some(None), // detached
        Some(name) => Some(Some(name.strip_prefix("refs/heads/")?.to_string())),
    }
}

/// A SHA-1 or SHA-256 object id in hex.
fn is_object_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
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

pub fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    let h = host.clone();
    // git::is_repo() -> whether the project is inside a git work tree.
    primitive!(m, "is_repo", || {
        Ok(Files::open(&h.roots.project).is_some()
            || git(&h.roots.project, &["rev-parse", "--is-inside-work-tree"], None)
                .is_ok_and(|s| s.trim() == "true"))
    });
    let h = host.clone();
    // git::head() -> the commit SHA of HEAD, or () before the first commit.
    primitive!(m, "head", || {
        Ok(match read_head(&h.roots.project) {
            Some(id) => id.map_or(Dynamic::UNIT, Dynamic::from),
            None => trimmed_or_unit(git(&h.roots.project, &["rev-parse", "--verify", "-q", "HEAD"], None)),
        })
    });
    let h = host.clone();
    // git::branch() -> the current branch name, or () when detached.
    primitive!(m, "branch", || {
        Ok(match read_branch(&h.roots.project) {
            Some(branch) => branch.map_or(Dynamic::UNIT, Dynamic::from),
            None => trimmed_or_unit(git(&h.roots.project, &["symbolic-ref", "--short", "-q", "HEAD"], None)),
        })
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
