//! A fluent builder for temporary projects and a runner for the real `aloop`
//! binary. Every run gets its own `ALOOP_HOME` and `HOME`, no colors, and the
//! fake agents of `tests/fakes` first on PATH. Exact expectations name the
//! temp paths as `{root}` (the project), `{home}` (`ALOOP_HOME`) and `{tmp}`
//! (the folder that holds both).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The folder of fake agent programs.
pub fn fakes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes")
}

/// Waits up to `timeout` for a spawned aloop to exit (failing the test
/// after it) and returns its status, stdout and stderr.
pub fn finish(
    mut child: std::process::Child,
    timeout: Duration,
) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "aloop did not exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

/// A fixture file's path under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub struct Project {
    dir: TempDir,
}

impl Project {
    /// An empty project directory (not a git repository).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("aloop-test-").tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        std::fs::create_dir_all(dir.path().join("home/.aloop")).unwrap();
        Self { dir }
    }

    /// A project that is a git repository with one commit.
    pub fn git() -> Self {
        let project = Self::new().file("README.md", "# test project\n");
        project.git_cmd(&["init", "-q", "-b", "main"]);
        project.commit("initial")
    }

    /// Runs git in the project and returns its stdout.
    pub fn git_cmd(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.root())
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stages everything and commits.
    pub fn commit(self, message: &str) -> Self {
        self.git_cmd(&["add", "-A"]);
        self.git_cmd(&["commit", "-q", "--allow-empty", "-m", message]);
        self
    }

    /// Writes a file in the project, creating folders.
    pub fn file(self, rel: &str, contents: &str) -> Self {
        write(&self.path(rel), contents.as_bytes());
        self
    }

    /// Copies a fixture file into the project.
    pub fn fixture(self, fixture_rel: &str, rel: &str) -> Self {
        let bytes = std::fs::read(fixture(fixture_rel)).expect("fixture exists");
        write(&self.path(rel), &bytes);
        self
    }

    /// Writes a file under `ALOOP_HOME`.
    pub fn home_file(self, rel: &str, contents: &str) -> Self {
        write(&self.home().join(rel), contents.as_bytes());
        self
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// `ALOOP_HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home/.aloop")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn read_home(&self, rel: &str) -> String {
        std::fs::read_to_string(self.home().join(rel))
            .unwrap_or_else(|e| panic!("reading $ALOOP_HOME/{rel}: {e}"))
    }

    /// Asserts that a project file holds exactly these bytes.
    #[track_caller]
    pub fn file_is(&self, rel: &str, expected: impl AsRef<[u8]>) {
        let actual = std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        assert_same(rel, &String::from_utf8_lossy(&actual), &String::from_utf8_lossy(expected.as_ref()));
        assert_eq!(actual, expected.as_ref(), "{rel}: the same text, other bytes");
    }

    /// The text with this project's temp paths as `{root}`, `{home}` and `{tmp}`.
    pub fn masked(&self, text: &str) -> String {
        mask(&self.placeholders(), text)
    }

    /// Each temp path (as given and as resolved) with its placeholder,
    /// longest first so that no path is replaced inside a longer one.
    fn placeholders(&self) -> Vec<(String, &'static str)> {
        let mut pairs = Vec::new();
        for (path, name) in
            [(self.root(), "{root}"), (self.home(), "{home}"), (self.dir.path().to_path_buf(), "{tmp}")]
        {
            let resolved = path.canonicalize().unwrap_or_else(|_| path.clone());
            for p in [path, resolved] {
                pairs.push((p.display().to_string(), name));
            }
        }
        pairs.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        pairs.dedup();
        pairs
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Every file under the project (outside `.git`) and `ALOOP_HOME` with
    /// its bytes, to prove that a failed command changed nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        collect(self.dir.path(), &mut files);
        files
    }

    /// A bash command line in the project root, for what a plain run cannot
    /// set up (ulimits, pipes); `"$ALOOP"` is the binary under test.
    pub fn shell(&self, script: &str) -> std::process::Output {
        Command::new("bash")
            .args(["-c", script])
            .current_dir(self.root())
            .env("ALOOP", env!("CARGO_BIN_EXE_aloop"))
            .env("ALOOP_HOME", self.home())
            .output()
            .unwrap()
    }

    /// A run of `aloop` in the project root.
    pub fn aloop(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aloop"));
        let path = format!("{}:{}", fakes_dir().display(), std::env::var("PATH").unwrap_or_default());
        cmd.args(args)
            .current_dir(self.root())
            .env("ALOOP_HOME", self.home())
            .env("HOME", self.dir.path().join("home"))
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env_remove("ALOOP_NOW")
            .env_remove("ALOOP_MAX_OPERATIONS");
        Run { cmd, stdin: None, timeout: Duration::from_secs(60), placeholders: self.placeholders() }
    }
}

fn mask(placeholders: &[(String, &'static str)], text: &str) -> String {
    placeholders.iter().fold(text.to_string(), |text, (path, name)| text.replace(path.as_str(), name))
}

/// The start of a long text, for context in a failure message.
fn brief(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Asserts that two texts are equal; on failure shows a line diff.
#[track_caller]
pub fn assert_same(what: &str, actual: &str, expected: &str) {
    if actual != expected {
        let diff = similar::TextDiff::from_lines(expected, actual);
        panic!(
            "{what} is not as expected (- expected, + actual):\n{}",
            diff.unified_diff().context_radius(3).header("expected", "actual")
        );
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn collect(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() && entry.file_name() != ".git" {
            collect(&path, out);
        } else if kind.is_file() {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
}

pub struct Run {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    placeholders: Vec<(String, &'static str)>,
}

impl Run {
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.as_bytes().to_vec());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the process without waiting (for signal tests).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.spawn().expect("aloop starts")
    }

    /// Runs to the end (killing it after the timeout) and returns its output.
    pub fn run(mut self) -> Output {
        self.cmd
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("aloop starts");
        if let Some(bytes) = self.stdin.take() {
            let mut pipe = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let deadline = Instant::now() + self.timeout;
        let pid = child.id();
        let watchdog = std::thread::spawn(move || {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return false;
                }
            }
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            true
        });
        let out = child.wait_with_output().expect("aloop runs");
        let _ = watchdog;
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            placeholders: self.placeholders,
        }
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    placeholders: Vec<(String, &'static str)>,
}

impl Output {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        self.code(0)
    }

    /// Asserts this exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts that stderr contains `text`.
    #[track_caller]
    pub fn stderr_has(self, text: &str) -> Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n--- stderr\n{}", self.stderr);
        self
    }

    /// Asserts that stdout contains `text`.
    #[track_caller]
    pub fn stdout_has(self, text: &str) -> Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that stdout is exactly `expected` (temp paths as `{root}`,
    /// `{home}` and `{tmp}`).
    #[track_caller]
    pub fn stdout_is(self, expected: &str) -> Self {
        let what = format!("stdout (stderr: {:?})", brief(&self.stderr));
        assert_same(&what, &mask(&self.placeholders, &self.stdout), expected);
        self
    }

    /// Asserts that stderr is exactly `expected` (temp paths as `{root}`,
    /// `{home}` and `{tmp}`).
    #[track_caller]
    pub fn stderr_is(self, expected: &str) -> Self {
        let what = format!("stderr (exit {}, stdout: {:?})", self.code, brief(&self.stdout));
        assert_same(&what, &mask(&self.placeholders, &self.stderr), expected);
        self
    }

    /// Asserts that nothing was written to stderr.
    #[track_caller]
    pub fn stderr_empty(self) -> Self {
        self.stderr_is("")
    }

    /// Parses stdout as exactly one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{}", self.stdout))
    }
}

/// Every live process whose environment carries this marker (in
/// `ALOOP_TEST_MARKER`, which aloop and its agents inherit).
pub fn marked(marker: &str) -> Vec<u32> {
    let needle = format!("ALOOP_TEST_MARKER={marker}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if !is_running(pid) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|var| var == needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether the process exists and is not a zombie (a zombie is already dead).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `done` every 50 ms; fails the test after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A marker value unique to this test run and call.
pub fn marker(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

/// Asserts that no process of this marker is left (after a short grace for
/// reaping); kills the survivors so that they do not outlive the test.
#[track_caller]
pub fn assert_no_survivors(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !marked(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = marked(marker);
    for pid in &left {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "processes survived: {left:?}");
}

/// Kills every process of a marker when dropped, so that a failing test
/// does not leave its agents running on the machine.
pub struct KillOnDrop(pub String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in marked(&self.0) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}
