//! End-to-end benchmarks of the real binary (`cargo bench`). Each measures a
//! whole process or a whole loop, the way a user meets aloop:
//!
//! - cold start of `--version`, `status` and `iterate watch --status`,
//!   against a hello-world Rust binary built on the spot;
//! - loop overhead per iteration with an instant agent (generator and
//!   evaluator), over 200 stories and over 10,000 stories;
//! - streaming 100 MB of stream-json through the bundled claude adapter
//!   (small events, and a session with lines like real ones), with the peak
//!   memory of the aloop process;
//! - `iterate run --dry-run` end to end.
//!
//! The results are printed as a Markdown table (see BENCHMARKS.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ALOOP: &str = env!("CARGO_BIN_EXE_aloop");

struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("aloop-bench-").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        // The fake `claude` of the streaming benchmark, first on PATH.
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
        std::fs::copy(fixtures.join("claude"), dir.path().join("bin/claude")).unwrap();
        Bench { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A git project with a config and `stories` stories.
    fn project(&self, name: &str, stories: usize) -> PathBuf {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(root.join(".loop/scripts/agents")).unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
        std::fs::copy(fixtures.join("instant.rhai"), root.join(".loop/scripts/agents/instant.rhai")).unwrap();
        std::fs::copy(fixtures.join("stream.rhai"), root.join("stream.rhai")).unwrap();
        let list: Vec<String> = (1..=stories)
            .map(|i| {
                format!(
                    "{{\"id\": \"US-{i:05}\", \"title\": \"Story {i}\", \"description\": \"Do thing {i}\", \
                     \"acceptanceCriteria\": [\"it works\"], \"priority\": {i}, \"passes\": false, \"notes\": \"\", \"rejections\": 0}}"
                )
            })
            .collect();
        let prd = format!("{{\"project\": \"bench\", \"branchName\": \"main\", \"description\": \"\", \"userStories\": [{}]}}", list.join(",\n"));
        std::fs::write(root.join(".loop/prd.json"), prd).unwrap();
        self.run(&root, &["git", "init", "-q", "-b", "main"]);
        self.aloop(&root, &["trust"]);
        self.aloop(&root, &["init", "--agent", "instant"]);
        self.run(&root, &["git", "add", "-A"]);
        self.run(&root, &["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init"]);
        root
    }

    fn command(&self, dir: &Path, argv: &[&str]) -> Command {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir)
            .env("ALOOP_HOME", self.home())
            .env("NO_COLOR", "1")
            .env(
                "PATH",
                format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap()),
            )
            .env("GIT_AUTHOR_NAME", "b")
            .env("GIT_AUTHOR_EMAIL", "b@b")
            .env("GIT_COMMITTER_NAME", "b")
            .env("GIT_COMMITTER_EMAIL", "b@b")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, dir: &Path, argv: &[&str]) -> String {
        let out = self.command(dir, argv).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn aloop(&self, dir: &Path, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec![ALOOP];
        argv.extend_from_slice(args);
        let out = self.command(dir, &argv).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// The median wall time of `runs` runs of a command.
    fn median(&self, dir: &Path, argv: &[&str], runs: usize) -> Duration {
        for _ in 0..5 {
            self.command(dir, argv).output().unwrap();
        }
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let out = self.command(dir, argv).output().unwrap();
                assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
                start.elapsed()
            })
            .collect();
        times.sort();
        times[runs / 2]
    }
}

fn hello_world(dir: &Path) -> PathBuf {
    let src = dir.join("hello.rs");
    std::fs::write(&src, "fn main() { println!(\"hello\"); }\n").unwrap();
    let exe = dir.join("hello");
    let status = Command::new("rustc").args(["-O", "-o"]).arg(&exe).arg(&src).status().unwrap();
    assert!(status.success(), "rustc builds hello world");
    exe
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs a command to its end and returns its exit code, stdout and its own
/// peak resident memory in MB (from wait4, so its children do not count).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, for its rusage
fn run_with_peak_rss(mut cmd: Command) -> (i32, String, f64) {
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; fills the structs we own.
    unsafe { libc::wait4(child.id().cast_signed(), &raw mut status, 0, &raw mut usage) };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    // Peak sizes in kB are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let peak_mb = usage.ru_maxrss as f64 / 1024.0;
    (code, reader.join().unwrap(), peak_mb)
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let wanted = |name: &str| filter.is_empty() || name.contains(&filter);
    let bench = Bench::new();
    let mut rows: Vec<(String, String, String)> = Vec::new();

    if wanted("start") {
        let small = bench.project("small", 3);
        let hello = hello_world(bench.dir.path());
        let hello_time = bench.median(&small, &[hello.to_str().unwrap()], 200);
        rows.push(("hello-world Rust binary".into(), ms(hello_time), "baseline".into()));
        bench.aloop(&small, &["iterate", "watch", "--interval", "1h"]);
        for args in [&["--version"][..], &["status"], &["iterate", "watch", "--status"]] {
            let mut argv = vec![ALOOP];
            argv.extend_from_slice(args);
            let t = bench.median(&small, &argv, 200);
            let ratio = t.as_secs_f64() / hello_time.as_secs_f64();
            rows.push((
                format!("cold start: aloop {}", args.join(" ")),
                ms(t),
                format!("{ratio:.2}× hello world (target ≤ 2×, < 5 ms)"),
            ));
        }
        let dry = bench.median(&small, &[ALOOP, "iterate", "run", "--dry-run", "--agent", "instant"], 50);
        rows.push(("iterate run --dry-run, end to end".into(), ms(dry), "target < 10 ms".into()));
    }

    // The agent's own cost: the same process spawned and read, outside aloop.
    let agent_time = {
        let start = Instant::now();
        for _ in 0..200 {
            Command::new("printf").args(["%s\n", "{\"type\":\"result\"}"]).output().unwrap();
        }
        start.elapsed() / 200
    };

    for (name, stories, iterations) in [("loop200", 200usize, 200usize), ("loop10k", 10_000, 20)] {
        if !wanted(name) {
            continue;
        }
        let root = bench.project(name, stories);
        let start = Instant::now();
        let (code, _, stderr) = bench.aloop(&root, &["run", &iterations.to_string(), "--quiet"]);
        let total = start.elapsed();
        assert!(code == 0 || code == 2, "aloop run failed ({code}): {stderr}");
        let passed = stderr.matches("PASSED").count();
        assert_eq!(passed, iterations, "every iteration should pass one story:\n{stderr}");
        let per_iteration = total / u32::try_from(iterations).unwrap();
        let overhead = per_iteration.saturating_sub(agent_time * 2);
        let target = if stories > 1000 { "target < 50 ms" } else { "target < 3 ms" };
        rows.push((
            format!("loop overhead per iteration, {stories} stories ({iterations} iterations, generator + evaluator)"),
            ms(overhead),
            format!("{} per iteration in all, minus 2 × {} of agent process; {target}", ms(per_iteration), ms(agent_time)),
        ));
    }

    if wanted("stream") {
        let root = bench.project("stream", 1);
        for (workload, events) in [
            ("≈ 220-byte events", small_events as fn(&mut dyn Write, usize) -> usize),
            ("recorded-like session, 2.5 KB lines", recorded_session),
        ] {
            let path = root.join("events.ndjson");
            // Written piece by piece: a 100 MB buffer in this process would be
            // counted in the peak memory of the child forked from it.
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            let written = events(&mut file, 100 * 1024 * 1024);
            drop(file);
            let cat_start = Instant::now();
            Command::new("cat").arg(&path).stdout(Stdio::null()).status().unwrap();
            let cat_time = cat_start.elapsed();
            let start = Instant::now();
            let (code, stdout, peak) =
                run_with_peak_rss(bench.command(&root, &[ALOOP, "exec", "stream.rhai"]));
            let elapsed = start.elapsed();
            assert_eq!(code, 0, "streaming failed: {stdout}");
            assert!(stdout.contains("\"status\":\"ok\""), "{stdout}");
            // Byte counts are far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let mb = written as f64 / (1024.0 * 1024.0);
            let rate = mb / elapsed.saturating_sub(cat_time).as_secs_f64();
            rows.push((
                format!("stream {mb:.0} MB of stream-json through the claude adapter ({workload})"),
                format!("{rate:.0} MB/s"),
                format!("{} in all; peak RSS of aloop {peak:.1} MB; targets ≥ 50 MB/s, < 30 MB", ms(elapsed)),
            ));
        }
    }

    println!("| benchmark | result | notes |\n| --- | --- | --- |");
    for (name, result, notes) in rows {
        println!("| {name} | {result} | {notes} |");
    }
}

/// Writes at least `size` bytes of small stream-json events (a line of text,
/// a tool call) and a result; returns the bytes written.
fn small_events(out: &mut dyn Write, size: usize) -> usize {
    let text = r#"{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Reading the module and its tests to see how errors are reported before I change anything."}],"usage":{"input_tokens":1200,"output_tokens":60}},"session_id":"bench"}"#;
    let tool = r#"{"type":"assistant","message":{"id":"msg_2","type":"message","role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"cargo test --quiet","description":"Run the tests"}}]},"session_id":"bench"}"#;
    let mut written = 0;
    while written < size {
        writeln!(out, "{text}\n{tool}").unwrap();
        written += text.len() + tool.len() + 2;
    }
    written + write_result(out)
}

/// Writes at least `size` bytes of a Claude Code session with lines like real
/// ones (text, tool calls, tool results of a few KB; 2.5 KB on average).
fn recorded_session(out: &mut dyn Write, size: usize) -> usize {
    let words =
        ["the", "quick", "cargo", "test", "build", "error", "fn", "impl", "struct", "let", "mut", "warning"];
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut text = |n: u64| {
        (0..n)
            .map(|_| words[usize::try_from(next(words.len() as u64)).unwrap()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let usage = r#""usage":{"input_tokens":4,"cache_creation_input_tokens":1200,"cache_read_input_tokens":30000,"output_tokens":150}"#;
    let init = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s","model":"m"}"#;
    writeln!(out, "{init}").unwrap();
    let mut written = init.len() + 1;
    while written < size {
        let line = match text(3).len() % 3 {
            0 => format!(
                r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"text","text":"{}"}}]}},{usage},"session_id":"s"}}"#,
                text(50)
            ),
            1 => format!(
                r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"Bash","input":{{"command":"cargo test {}"}}}}]}},{usage},"session_id":"s"}}"#,
                text(3)
            ),
            _ => format!(
                r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":"{}","is_error":false}}]}},{usage},"session_id":"s"}}"#,
                text(700)
            ),
        };
        writeln!(out, "{line}").unwrap();
        written += line.len() + 1;
    }
    written + write_result(out)
}

fn write_result(out: &mut dyn Write) -> usize {
    let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":10}}"#;
    writeln!(out, "{result}").unwrap();
    result.len() + 1
}
