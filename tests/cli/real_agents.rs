//! The real agent CLIs (Claude Code, Codex, Qwen Code, Gemini CLI) driven
//! through the bundled adapters against the scripted model server of
//! `tests/model_server/server.py`: every autonomy level, a story-loop
//! iteration that passes, an iterate run that applies, Ctrl-C in the middle
//! of a tool, an idle timeout on a stalled stream, an overloaded server, a
//! 401 and a rate limit. Nothing is installed here: the CLIs come from
//! `target/agents` (`.ci/run` installs the versions pinned in
//! `tests/real_agents/package.json`) or PATH. A missing CLI skips its tests
//! with a message, and fails them under `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{assert_no_survivors, marker, wait_until, KillOnDrop, Output, Project, Run};

/// The longest any one real-CLI call may take before the test gives up.
const CALL_SECS: u64 = 120;

#[derive(Clone, Copy, PartialEq)]
enum Cli {
    Claude,
    Codex,
    Qwen,
    Gemini,
}

impl Cli {
    fn name(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
            Cli::Qwen => "qwen",
            Cli::Gemini => "gemini",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Cli::Claude => "@anthropic-ai/claude-code",
            Cli::Codex => "@openai/codex",
            Cli::Qwen => "@qwen-code/qwen-code",
            Cli::Gemini => "@google/gemini-cli",
        }
    }

    /// A call of the CLI's own file-writing tool that creates `rel` (in
    /// the project `root`) with `content`.
    fn write_call(self, root: &Path, rel: &str, content: &str) -> Value {
        let path = root.join(rel).display().to_string();
        match self {
            Cli::Claude => json!({"name": "Write", "arguments": {"file_path": path, "content": content}}),
            Cli::Qwen | Cli::Gemini => {
                json!({"name": "write_file", "arguments": {"file_path": path, "content": content}})
            }
            // Codex offers no apply_patch tool for a model it has no
            // metadata for; it runs `apply_patch` given to exec_command
            // itself, as a file change.
            Cli::Codex => {
                let added: String = content.lines().flat_map(|line| ["+", line, "\n"]).collect();
                let patch = format!("*** Begin Patch\n*** Add File: {rel}\n{added}*** End Patch\n");
                json!({"name": "exec_command", "arguments": {"cmd": format!("apply_patch <<'EOF'\n{patch}EOF\n")}})
            }
        }
    }

    /// A call of the CLI's own shell tool.
    fn shell_call(self, command: &str) -> Value {
        match self {
            Cli::Claude => {
                json!({"name": "Bash", "arguments": {"command": command, "description": "run it"}})
            }
            Cli::Qwen | Cli::Gemini => {
                json!({"name": "run_shell_command", "arguments": {"command": command, "description": "run it"}})
            }
            Cli::Codex => json!({"name": "exec_command", "arguments": {"cmd": command}}),
        }
    }

    /// The status a busy server answers with in this CLI's API.
    fn overloaded_status(self) -> u16 {
        if self == Cli::Claude {
            529
        } else {
            503
        }
    }
}

/// The folder where `.ci/run` installs the pinned CLIs.
fn agents_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/agents/node_modules/.bin")
}

/// The folder holding this CLI's program: `target/agents` first, then PATH.
fn cli_dir(cli: Cli) -> Option<PathBuf> {
    let name = cli.name();
    if agents_bin().join(name).is_file() {
        return Some(agents_bin());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir != &crate::support::fakes_dir())
        .find(|dir| dir.join(name).is_file())
}

/// Whether the CLI is here; says why a test is skipped when it is not, and
/// fails the test under CI, where .ci/run installs every CLI.
fn present(cli: Cli) -> Option<PathBuf> {
    let dir = cli_dir(cli);
    if dir.is_none() {
        let missing = format!(
            "{} ({}) not installed: run .ci/run, or copy tests/real_agents/package*.json into target/agents \
             and npm install --prefix target/agents",
            cli.name(),
            cli.package()
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{missing} (CI=true: .ci/run installs every CLI)"
        );
        eprintln!("skipping: {missing}");
    }
    dir
}

/// Whether the tests run as root (Claude Code's full autonomy needs
/// `IS_SANDBOX=1` then).
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A running model server with its scenario; stopped when dropped (its
/// stdin closes, and it is killed).
struct Server {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(project: &Project, scenario: &Value) -> Self {
        let tmp = project.root().parent().unwrap().to_path_buf();
        let scenario_path = tmp.join("scenario.json");
        std::fs::write(&scenario_path, serde_json::to_vec_pretty(scenario).unwrap()).unwrap();
        let log = tmp.join("model-requests.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model_server/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&scenario_path)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the model server");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port =
            line.trim().parse().unwrap_or_else(|_| panic!("the server printed {line:?}, not its port"));
        Self { child, _stdin: stdin, port, log }
    }

    /// Every request the server received, as logged.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One conversation of a scenario: the model's turns, and the text a
/// request must contain to belong to it (none: every other request).
fn conversation(matching: Option<&str>, turns: &[Value]) -> Value {
    match matching {
        Some(text) => json!({"match": text, "turns": turns}),
        None => json!({"turns": turns}),
    }
}

fn scenario(conversations: &[Value]) -> Value {
    json!({ "conversations": conversations })
}

fn text(words: &str) -> Value {
    json!({ "text": words })
}

fn call(tool_call: &Value) -> Value {
    json!({ "call": tool_call })
}

/// The environment that points the CLI at the server, with its HOME's
/// settings written: no login, no telemetry, no update check, few retries.
fn cli_env(project: &Project, cli: Cli, dir: &Path, server: &Server) -> Vec<(&'static str, String)> {
    let home = project.root().parent().unwrap().join("home");
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut env = vec![("PATH", path)];
    match cli {
        Cli::Claude => {
            env.extend([
                ("ANTHROPIC_BASE_URL", server.url()),
                ("ANTHROPIC_API_KEY", "sk-ant-test".into()),
                ("DISABLE_AUTOUPDATER", "1".into()),
                ("DISABLE_TELEMETRY", "1".into()),
                ("DISABLE_ERROR_REPORTING", "1".into()),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
                ("CLAUDE_CODE_MAX_RETRIES", "2".into()),
            ]);
            if is_root() {
                env.push(("IS_SANDBOX", "1".into()));
            }
        }
        Cli::Codex => {
            let config = format!(
                "model = \"gpt-5.1-codex\"\nmodel_provider = \"local\"\ncheck_for_update_on_startup = false\n\n\
                 [model_providers.local]\nname = \"local\"\nbase_url = \"{}/v1\"\nenv_key = \"OPENAI_API_KEY\"\n\
                 wire_api = \"responses\"\nrequest_max_retries = 1\nstream_max_retries = 1\n",
                server.url()
            );
            write(&home.join(".codex/config.toml"), &config);
            env.extend([
                ("CODEX_HOME", home.join(".codex").display().to_string()),
                ("OPENAI_API_KEY", "sk-test".into()),
            ]);
        }
        Cli::Qwen => {
            let settings = json!({
                "privacy": {"usageStatisticsEnabled": false},
                "telemetry": {"enabled": false},
                "model": {"generationConfig": {"maxRetries": 1, "retryInitialDelayMs": 500, "retryMaxDelayMs": 1000}},
            });
            write(&home.join(".qwen/settings.json"), &settings.to_string());
            env.extend([
                ("OPENAI_BASE_URL", format!("{}/v1", server.url())),
                ("OPENAI_API_KEY", "sk-test".into()),
                ("OPENAI_MODEL", "test-model".into()),
            ]);
        }
        Cli::Gemini => {
            // GOOGLE_GEMINI_BASE_URL alone selects the "gateway" auth type,
            // which 0.61's headless check refuses; the API key type still
            // honours the base URL.
            let settings = json!({
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "privacy": {"usageStatisticsEnabled": false},
                "telemetry": {"enabled": false},
                "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
                "model": {"name": "gemini-2.5-flash"},
            });
            write(&home.join(".gemini/settings.json"), &settings.to_string());
            env.extend([("GEMINI_API_KEY", "test-key".into()), ("GOOGLE_GEMINI_BASE_URL", server.url())]);
        }
    }
    env
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A real CLI, its project and its model server, ready to run aloop.
struct Setup {
    cli: Cli,
    project: Project,
    server: Server,
    env: Vec<(&'static str, String)>,
}

impl Setup {
    /// None (the test is skipped) when the CLI is not installed.
    fn new(cli: Cli, scenario: impl FnOnce(&Path) -> Value) -> Option<Self> {
        let dir = present(cli)?;
        let project = Project::git();
        let server = Server::start(&project, &scenario(&project.root()));
        let env = cli_env(&project, cli, &dir, &server);
        Some(Self { cli, project, server, env })
    }

    fn aloop(&self, args: &[&str]) -> Run {
        self.env
            .iter()
            .fold(self.project.aloop(args), |run, (key, value)| run.env(key, value))
            .timeout(Duration::from_secs(3 * CALL_SECS))
    }

    /// `agent::run` of this CLI's bundled adapter; `extra` adds request keys.
    fn agent_run(&self, autonomy: &str, extra: &str) -> Run {
        let script = format!(
            "let r = agent::run(\"{}\", #{{prompt: \"Do the task.\", autonomy: \"{autonomy}\", view: \"plain\", \
             timeout: {CALL_SECS}{extra}}});\nprint(json::stringify(r));\n",
            self.cli.name()
        );
        std::fs::write(self.project.root().parent().unwrap().join("t.rhai"), script).unwrap();
        let script = self.project.root().parent().unwrap().join("t.rhai").display().to_string();
        self.aloop(&["exec", &script])
    }
}

/// The result map printed last on stdout.
#[track_caller]
fn result(out: &Output) -> Value {
    let line = out.stdout.lines().last().unwrap_or_else(|| panic!("no output\n{}", out.stderr));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n--- stderr\n{}", out.stderr))
}

// ------------------------------------------------------------------ autonomy

/// At each autonomy level the CLI takes aloop's argv and completes a turn
/// that calls its write tool and its shell tool: read-only changes nothing,
/// edit writes the file, full writes it and runs the command.
fn every_autonomy_level(cli: Cli) {
    for autonomy in ["read-only", "edit", "full"] {
        let Some(setup) = Setup::new(cli, |root| {
            scenario(&[conversation(
                None,
                &[
                    call(&cli.write_call(root, "note.txt", "written by the agent\n")),
                    call(&cli.shell_call("echo ran > shell-ran.txt")),
                    text("Finished the task."),
                ],
            )])
        }) else {
            return;
        };
        let out = setup.agent_run(autonomy, ", idle_timeout: 60").run().ok();
        let r = result(&out);
        assert_eq!(r["status"], "ok", "{autonomy}: {r}\n--- stderr\n{}", out.stderr);
        assert_eq!(r["text"], "Finished the task.", "{autonomy}: {r}");
        assert_eq!(r["agent"], cli.name());
        // (Codex shows a call its read-only sandbox rejected on stderr only.)
        if autonomy != "read-only" {
            assert!(r["tool_calls"].as_i64().unwrap() >= 1, "{autonomy}: the tool calls were seen: {r}");
            // The plain view showed the tool and the text.
            let prefix = format!("[{}]", cli.name());
            assert!(out.stderr.contains(&format!("{prefix} → ")), "{autonomy}: {}", out.stderr);
            assert!(
                out.stderr.contains(&format!("{prefix} Finished the task.")),
                "{autonomy}: {}",
                out.stderr
            );
        }
        let wrote = setup.project.exists("note.txt");
        let ran = setup.project.exists("shell-ran.txt");
        match autonomy {
            "read-only" => assert!(!wrote && !ran, "read-only changed files: note {wrote}, shell {ran}"),
            "edit" => setup.project.file_is("note.txt", "written by the agent\n"),
            _ => {
                setup.project.file_is("note.txt", "written by the agent\n");
                setup.project.file_is("shell-ran.txt", "ran\n");
            }
        }
        assert!(
            setup.server.requests().iter().filter(|r| r["method"] == "POST").count() >= 3,
            "one request a turn"
        );
    }
}

#[test]
fn claude_at_every_autonomy_level() {
    every_autonomy_level(Cli::Claude);
}

#[test]
fn codex_at_every_autonomy_level() {
    every_autonomy_level(Cli::Codex);
}

#[test]
fn qwen_at_every_autonomy_level() {
    every_autonomy_level(Cli::Qwen);
}

#[test]
fn gemini_at_every_autonomy_level() {
    every_autonomy_level(Cli::Gemini);
}

// ------------------------------------------------------------ the story loop

const ONE_STORY: &str = r#"{
  "project": "greeter",
  "userStories": [
    {
      "id": "US-001",
      "title": "Greet",
      "description": "As a user I want hello.txt to greet me.",
      "acceptanceCriteria": ["hello.txt says hello"],
      "priority": 1,
      "passes": false,
      "notes": "",
      "rejections": 0
    }
  ]
}
"#;

/// `aloop init --agent X` and `aloop run 1` on one story: the generator
/// writes and commits a file with the CLI's own tools, the evaluator's
/// verdict PASS is parsed and prd.json updated.
fn one_story_passes(cli: Cli) {
    let Some(setup) = Setup::new(cli, |root| {
        scenario(&[
            conversation(
                Some("You are the evaluator"),
                &[text("hello.txt greets.\n<verdict>PASS</verdict>")],
            ),
            conversation(
                None,
                &[
                    call(&cli.write_call(root, "hello.txt", "hello\n")),
                    call(&cli.shell_call("git add hello.txt && git commit -q -m 'US-001: greet'")),
                    text("US-001 is implemented and committed."),
                ],
            ),
        ])
    }) else {
        return;
    };
    setup.aloop(&["init", "--agent", cli.name()]).run().ok();
    write(&setup.project.path(".loop/prd.json"), ONE_STORY);
    setup.project.git_cmd(&["add", "-A"]);
    setup.project.git_cmd(&["commit", "-q", "-m", "set up the loop"]);
    let out = setup.aloop(&["run", "1"]).run().ok();
    assert!(out.stderr.contains("US-001 PASSED"), "{}", out.stderr);
    setup.project.file_is("hello.txt", "hello\n");
    assert_eq!(setup.project.git_cmd(&["log", "-1", "--format=%s", "--", "hello.txt"]), "US-001: greet\n");
    let prd: Value = serde_json::from_str(&setup.project.read(".loop/prd.json")).unwrap();
    assert_eq!(prd["userStories"][0]["passes"], true, "{prd}");
    let runs: Vec<Value> =
        setup.project.read(".loop/runs.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let roles: Vec<(&str, &str)> =
        runs.iter().map(|r| (r["role"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(roles, [("generator", "ok"), ("evaluator", "ok")], "{runs:?}");
}

#[test]
fn claude_story_loop_iteration_passes() {
    one_story_passes(Cli::Claude);
}

#[test]
fn codex_story_loop_iteration_passes() {
    one_story_passes(Cli::Codex);
}

#[test]
fn qwen_story_loop_iteration_passes() {
    one_story_passes(Cli::Qwen);
}

#[test]
fn gemini_story_loop_iteration_passes() {
    one_story_passes(Cli::Gemini);
}

// ------------------------------------------------------------------- iterate

/// `aloop iterate run --auto-apply`: the agent (autonomy edit) changes a
/// file, and the run is recorded as applied with that file.
fn iterate_applies(cli: Cli) {
    let Some(setup) = Setup::new(cli, |root| {
        scenario(&[conversation(
            None,
            &[
                call(&cli.write_call(root, "NOTES.md", "A clearer first line.\n")),
                text("One change: NOTES.md."),
            ],
        )])
    }) else {
        return;
    };
    let out = setup.aloop(&["iterate", "run", "--auto-apply", "--json", "--agent", cli.name()]).run().ok();
    let record = out.json();
    assert_eq!(record["status"], "applied", "{record}\n--- stderr\n{}", out.stderr);
    assert_eq!(record["files"], json!(["NOTES.md"]));
    setup.project.file_is("NOTES.md", "A clearer first line.\n");
}

#[test]
fn claude_iterate_run_applies() {
    iterate_applies(Cli::Claude);
}

#[test]
fn codex_iterate_run_applies() {
    iterate_applies(Cli::Codex);
}

#[test]
fn qwen_iterate_run_applies() {
    iterate_applies(Cli::Qwen);
}

#[test]
fn gemini_iterate_run_applies() {
    iterate_applies(Cli::Gemini);
}

// ----------------------------------------------------- stopping and timeouts

/// Ctrl-C while the CLI's shell tool runs: aloop exits 130 with the run
/// interrupted, and no process of the CLI or its tool is left.
fn ctrl_c_mid_tool(cli: Cli) {
    let Some(setup) = Setup::new(cli, |root| {
        let started = root.parent().unwrap().join("tool-started");
        let command = format!("touch {} && sleep 300", started.display());
        scenario(&[conversation(None, &[call(&cli.shell_call(&command)), text("Slept.")])])
    }) else {
        return;
    };
    let mark = marker(&format!("real-{}", cli.name()));
    let _guard = KillOnDrop(mark.clone());
    let started = setup.project.root().parent().unwrap().join("tool-started");
    let child = setup.agent_run("full", ", idle_timeout: 0").env("ALOOP_TEST_MARKER", &mark).spawn();
    wait_until("the shell tool to start", Duration::from_secs(CALL_SECS), || started.exists());
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let (status, stdout, _) = crate::support::finish(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "stdout: {stdout}");
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["status"], "interrupted", "{r}");
    assert_no_survivors(&mark);
}

#[test]
fn claude_ctrl_c_mid_tool_leaves_no_process() {
    ctrl_c_mid_tool(Cli::Claude);
}

#[test]
fn codex_ctrl_c_mid_tool_leaves_no_process() {
    ctrl_c_mid_tool(Cli::Codex);
}

#[test]
fn qwen_ctrl_c_mid_tool_leaves_no_process() {
    ctrl_c_mid_tool(Cli::Qwen);
}

#[test]
fn gemini_ctrl_c_mid_tool_leaves_no_process() {
    ctrl_c_mid_tool(Cli::Gemini);
}

/// A stream that starts and then stalls: the idle timeout stops the CLI.
fn stalled_stream_times_out(cli: Cli) {
    let Some(setup) = Setup::new(cli, |_| scenario(&[conversation(None, &[json!({"stall": true})])])) else {
        return;
    };
    let mark = marker(&format!("stall-{}", cli.name()));
    let _guard = KillOnDrop(mark.clone());
    let out = setup.agent_run("edit", ", idle_timeout: 15").env("ALOOP_TEST_MARKER", &mark).run().ok();
    let r = result(&out);
    assert_eq!(r["status"], "timeout", "{r}\n--- stderr\n{}", out.stderr);
    let posts = setup.server.requests().iter().filter(|r| r["method"] == "POST").count();
    assert!(posts >= 1, "the CLI reached the stalled stream");
    assert_no_survivors(&mark);
}

#[test]
fn claude_idle_timeout_on_a_stalled_stream() {
    stalled_stream_times_out(Cli::Claude);
}

#[test]
fn codex_idle_timeout_on_a_stalled_stream() {
    stalled_stream_times_out(Cli::Codex);
}

#[test]
fn qwen_idle_timeout_on_a_stalled_stream() {
    stalled_stream_times_out(Cli::Qwen);
}

#[test]
fn gemini_idle_timeout_on_a_stalled_stream() {
    stalled_stream_times_out(Cli::Gemini);
}

// ---------------------------------------------------------- server failures

/// An overloaded server once, then an answer: the CLI retries by itself
/// and the run is ok.
fn overloaded_then_ok(cli: Cli) {
    let busy = json!({"error": cli.overloaded_status(), "message": "Overloaded (test)"});
    let Some(setup) = Setup::new(cli, |_| {
        scenario(&[conversation(None, &[json!({"text": "Answered after a retry.", "fail_first": [busy]})])])
    }) else {
        return;
    };
    let out = setup.agent_run("edit", ", idle_timeout: 60").run().ok();
    let r = result(&out);
    assert_eq!(r["status"], "ok", "{r}\n--- stderr\n{}", out.stderr);
    assert_eq!(r["text"], "Answered after a retry.");
}

#[test]
fn claude_retries_an_overloaded_server() {
    overloaded_then_ok(Cli::Claude);
}

#[test]
fn codex_retries_an_overloaded_server() {
    overloaded_then_ok(Cli::Codex);
}

#[test]
fn qwen_retries_an_overloaded_server() {
    overloaded_then_ok(Cli::Qwen);
}

#[test]
fn gemini_retries_an_overloaded_server() {
    overloaded_then_ok(Cli::Gemini);
}

/// A 401: the run is failed, with the CLI's own message.
fn unauthorized_fails(cli: Cli) {
    let Some(setup) = Setup::new(cli, |_| {
        scenario(&[conversation(None, &[json!({"error": 401, "message": "invalid api key (test 401)"})])])
    }) else {
        return;
    };
    let out = setup.agent_run("edit", ", idle_timeout: 60").run().ok();
    let r = result(&out);
    assert_eq!(r["status"], "failed", "{r}\n--- stderr\n{}", out.stderr);
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("invalid api key (test 401)"), "the CLI's message is the error: {r}");
}

#[test]
fn claude_401_fails_with_its_message() {
    unauthorized_fails(Cli::Claude);
}

#[test]
fn codex_401_fails_with_its_message() {
    unauthorized_fails(Cli::Codex);
}

#[test]
fn qwen_401_fails_with_its_message() {
    unauthorized_fails(Cli::Qwen);
}

#[test]
fn gemini_401_fails_with_its_message() {
    unauthorized_fails(Cli::Gemini);
}

/// A rate limit that lifts in an hour, asked not to be retried: the run
/// ends at once. Returns the result, the reset time the server gave, and
/// the CLI's exact output (`output_tail`).
fn rate_limited(cli: Cli) -> Option<(Value, i64, usize)> {
    let setup = Setup::new(cli, |_| {
        scenario(&[conversation(
            None,
            &[
                json!({"error": 429, "message": "rate limit reached (test 429)", "reset_in": 3600, "retry": false}),
            ],
        )])
    })?;
    let before = unix_now();
    let out = setup.agent_run("edit", ", idle_timeout: 30").run().ok();
    let posts = setup.server.requests().iter().filter(|r| r["method"] == "POST").count();
    Some((result(&out), before + 3600, posts))
}

fn unix_now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

/// A rate limit ends the run, with the CLI's own message in its output
/// (`rate_limit_is_limited` checks the status and reset time).
fn rate_limit_ends_the_run(cli: Cli) {
    let Some((r, _, posts)) = rate_limited(cli) else { return };
    let status = r["status"].as_str().unwrap();
    if cli == Cli::Qwen {
        // Qwen Code 0.24 retries a 429 for minutes (ten times, from 60 s
        // on, its retry settings and x-should-retry notwithstanding) and
        // prints nothing meanwhile: only the idle timeout ends the run.
        assert_eq!(status, "timeout", "{r}");
        assert!(posts >= 1, "qwen asked the model");
        return;
    }
    assert!(status == "failed" || status == "limited", "{r}");
    assert!(r["output_tail"].as_str().unwrap().contains("limit"), "{r}");
}

/// The rate limit is reported as `limited`, with its reset time.
fn rate_limit_is_limited(cli: Cli) {
    let Some((r, reset, _)) = rate_limited(cli) else { return };
    assert_eq!(r["status"], "limited", "{r}");
    if let Some(at) = r["resets_at"].as_i64() {
        assert!((at - reset).abs() <= 120, "resets_at {at} is the server's {reset}");
    }
}

#[test]
fn claude_429_ends_the_run() {
    rate_limit_ends_the_run(Cli::Claude);
}

#[test]
fn codex_429_ends_the_run() {
    rate_limit_ends_the_run(Cli::Codex);
}

#[test]
fn qwen_429_ends_the_run() {
    rate_limit_ends_the_run(Cli::Qwen);
}

#[test]
fn gemini_429_ends_the_run() {
    rate_limit_ends_the_run(Cli::Gemini);
}

#[test]
fn claude_429_is_limited() {
    rate_limit_is_limited(Cli::Claude);
}

#[test]
fn codex_429_is_limited() {
    rate_limit_is_limited(Cli::Codex);
}

#[test]
#[ignore = "Qwen Code 0.24 retries a 429 silently for minutes: nothing reaches aloop to recognise (qwen_429_ends_the_run)"]
fn qwen_429_is_limited() {
    rate_limit_is_limited(Cli::Qwen);
}

#[test]
fn gemini_429_is_limited() {
    rate_limit_is_limited(Cli::Gemini);
}

// ------------------------------------------------------------------- as root

/// As root without `IS_SANDBOX=1`, Claude Code refuses full autonomy, and
/// the adapter says why and what to do.
#[test]
fn claude_full_autonomy_as_root_without_is_sandbox_is_refused_and_explained() {
    if !is_root() {
        eprintln!("skipping: not running as root");
        return;
    }
    let Some(setup) = Setup::new(Cli::Claude, |_| scenario(&[conversation(None, &[text("never asked")])]))
    else {
        return;
    };
    let out = setup.agent_run("full", ", idle_timeout: 60").env("IS_SANDBOX", "0").run().ok();
    let r = result(&out);
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("set IS_SANDBOX=1 if this is a disposable sandbox"), "{error}");
    assert!(error.contains("cannot be used with root/sudo privileges"), "claude's own words follow: {error}");
    assert!(setup.server.requests().is_empty(), "the model was never asked");
}
