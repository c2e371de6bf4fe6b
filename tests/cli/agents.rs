//! Agent adapters: `agent::run` against the fake CLIs (every status, both
//! timeouts, Ctrl-C, `not_found`, bounded memory), the argv of each bundled
//! adapter, the fakes' own contract, replay, the views, and `aloop agents`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{assert_no_survivors, fakes_dir, marker, wait_until, Output, Project, Run};

/// Writes `script` into the project and returns a run of `aloop exec` on it.
fn exec(project: &Project, script: &str) -> Run {
    std::fs::write(project.path("t.rhai"), script).unwrap();
    project.aloop(&["exec", "t.rhai"])
}

/// A run of `agent::run(agent, request)` that prints the result as JSON.
fn agent_run(project: &Project, agent: &str, request: &str) -> Run {
    exec(project, &format!("let r = agent::run(\"{agent}\", {request});\nprint(json::stringify(r));\n"))
}

/// The result map printed last on stdout.
#[track_caller]
fn result(out: &Output) -> Value {
    let line = out.stdout.lines().last().unwrap_or_else(|| panic!("no output\n{}", out.stderr));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n--- stderr\n{}", out.stderr))
}

/// Runs the agent with `FAKE_AGENT_MODE` and returns the result map.
fn with_mode(agent: &str, mode: &str, request: &str) -> Value {
    let project = Project::git();
    let out = agent_run(&project, agent, request).env("FAKE_AGENT_MODE", mode).run().ok();
    result(&out)
}

/// The bundled adapters, each with the argv it builds at each autonomy level
/// (words split at spaces, for model "M" and extra args "--max-turns 3";
/// `{root}` is the project), its install hint and its fake's version; in
/// the order `aloop agents` lists them.
struct Adapter {
    name: &'static str,
    read_only: &'static str,
    edit: &'static str,
    full: &'static str,
    install_hint: &'static str,
    version: &'static str,
}

const ADAPTERS: [Adapter; 4] = [
    Adapter {
        name: "claude",
        read_only: "-p --output-format stream-json --verbose --model M --permission-mode plan --max-turns 3",
        edit:
            "-p --output-format stream-json --verbose --model M --permission-mode acceptEdits --max-turns 3",
        full:
            "-p --output-format stream-json --verbose --model M --dangerously-skip-permissions --max-turns 3",
        install_hint: "npm install -g @anthropic-ai/claude-code",
        version: "2.1.197 (Claude Code)",
    },
    Adapter {
        name: "codex",
        read_only: "exec --json -C {root} -m M -s read-only --max-turns 3 -",
        edit: "exec --json -C {root} -m M -s workspace-write --max-turns 3 -",
        full: "exec --json -C {root} -m M -s danger-full-access --max-turns 3 -",
        install_hint: "npm install -g @openai/codex",
        version: "codex-cli 0.169.0",
    },
    Adapter {
        name: "gemini",
        read_only: "-o stream-json --skip-trust -m M --approval-mode default --max-turns 3",
        edit: "-o stream-json --skip-trust -m M --approval-mode auto_edit --max-turns 3",
        full: "-o stream-json --skip-trust -m M --approval-mode yolo --max-turns 3",
        install_hint: "npm install -g @google/gemini-cli",
        version: "0.61.0",
    },
    Adapter {
        name: "qwen",
        read_only: "-o stream-json -m M --approval-mode plan --max-turns 3",
        edit: "-o stream-json -m M --approval-mode auto-edit --max-turns 3",
        full: "-o stream-json -m M --approval-mode yolo --max-turns 3",
        install_hint: "npm install -g @qwen-code/qwen-code",
        version: "0.15.10",
    },
];

#[test]
fn exec_of_a_three_line_script_streams_the_text_and_returns_the_cost() {
    let project = Project::git();
    exec(
        &project,
        "let r = agent::run(\"claude\", #{prompt: \"hi\"});\nprint(`cost: ${r.cost_usd}`);\nprint(r.text);\n",
    )
    .run()
    .ok()
    .stderr_is("[claude] Done.\n")
    .stdout_is("cost: 0.0123\nDone.\n");
}

#[test]
fn ok_result_carries_text_cost_tokens_and_duration() {
    let r = with_mode("claude", "ok", "#{prompt: \"hi\", view: \"none\"}");
    assert_eq!(r["status"], "ok");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["text"], "Done.");
    assert_eq!(r["cost_usd"], 0.0123);
    assert_eq!(r["input_tokens"], 123, "input, cache creation and cache read tokens");
    assert_eq!(r["output_tokens"], 50);
    assert_eq!(r["error"], Value::Null);
    assert!(r["duration_ms"].as_i64().unwrap() > 0);
    assert!(r["output_tail"].as_str().unwrap().contains("\"type\": \"result\""));
}

#[test]
fn a_failing_agent_is_failed_with_its_stderr_as_the_error() {
    for Adapter { name: agent, .. } in ADAPTERS {
        let r = with_mode(agent, "fail", "#{prompt: \"hi\"}");
        assert_eq!(r["status"], "failed", "{agent}");
        assert_eq!(r["exit_code"], 1, "{agent}");
        assert!(r["error"].as_str().unwrap().contains("simulated failure"), "{agent}: {r}");
    }
}

#[test]
fn an_error_result_with_exit_code_zero_is_failed() {
    for Adapter { name: agent, .. } in ADAPTERS {
        let r = with_mode(agent, "error_result", "#{prompt: \"hi\"}");
        assert_eq!(r["status"], "failed", "{agent}: {r}");
        assert_eq!(r["exit_code"], 0, "{agent}");
        assert!(r["error"].as_str().unwrap().contains("simulated error result"), "{agent}: {r}");
    }
}

#[test]
fn every_adapter_gets_the_final_text_from_its_fake() {
    for Adapter { name: agent, .. } in ADAPTERS {
        let r = with_mode(agent, "ok", "#{prompt: \"hi\"}");
        assert_eq!(r["status"], "ok", "{agent}: {r}");
        assert_eq!(r["text"], "Done.", "{agent}");
        assert_eq!(r["output_tokens"], 50, "{agent}");
    }
}

#[test]
fn garbage_lines_are_tolerated() {
    let r = with_mode("claude", "garbage", "#{prompt: \"hi\"}");
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["text"], "Done.");
    assert!(r["output_tail"].as_str().unwrap().contains("this is not json"));
}

#[test]
fn the_idle_timeout_stops_a_silent_agent() {
    let start = Instant::now();
    let r = with_mode("claude", "silent_hang", "#{prompt: \"hi\", idle_timeout: 1, timeout: 60}");
    assert_eq!(r["status"], "timeout");
    assert_eq!(r["exit_code"], Value::Null);
    assert!(r["error"].as_str().unwrap().contains("without output"), "{r}");
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn the_total_timeout_stops_an_agent_that_keeps_the_group_alive() {
    let project = Project::git();
    let mark = marker("total");
    let out = agent_run(&project, "claude", "#{prompt: \"hi\", timeout: 1.5, idle_timeout: 60}")
        .env("FAKE_AGENT_MODE", "hang")
        .env("ALOOP_TEST_MARKER", &mark)
        .run()
        .ok();
    let r = result(&out);
    assert_eq!(r["status"], "timeout");
    assert!(r["error"].as_str().unwrap().contains("total timeout"), "{r}");
    assert_eq!(r["text"], "Working on it...", "what the agent said before it hung");
    assert_no_survivors(&mark);
}

#[test]
fn an_agent_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let project = Project::git();
    let mark = marker("ignore-term");
    let start = Instant::now();
    let out = agent_run(&project, "claude", "#{prompt: \"hi\", timeout: 1, idle_timeout: 60}")
        .env("FAKE_AGENT_MODE", "ignore_term")
        .env("ALOOP_TEST_MARKER", &mark)
        .run()
        .ok();
    assert_eq!(result(&out)["status"], "timeout");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    assert_no_survivors(&mark);
}

#[test]
fn ctrl_c_stops_the_agent_group_records_interrupted_and_exits_130() {
    let project = Project::git();
    let mark = marker("ctrl-c");
    let log = project.path("calls.jsonl");
    std::fs::write(
        project.path("t.rhai"),
        "let r = agent::run(\"claude\", #{prompt: \"hi\"});\nprint(json::stringify(r));\n\
         let after = agent::run(\"claude\", #{prompt: \"again\"});\nprint(json::stringify(after));\n",
    )
    .unwrap();
    let ready = project.root().parent().unwrap().join("ready");
    let child = project
        .aloop(&["exec", "t.rhai"])
        .env("FAKE_AGENT_MODE", "hang")
        .env("FAKE_AGENT_LOG", &log)
        .env("FAKE_AGENT_READY", &ready)
        .env("ALOOP_TEST_MARKER", &mark)
        .spawn();
    // The fake says so once it has started its helper and hangs (counting
    // processes would count a pyenv shim's, and guess under load).
    wait_until("the fake to be ready", Duration::from_secs(60), || ready.exists());
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let (status, stdout, _) = crate::support::finish(child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(130), "stdout: {stdout}");
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 2, "the script went on to record what happened: {stdout}");
    assert_eq!(results[0]["status"], "interrupted");
    assert_eq!(results[1]["status"], "interrupted", "no new agent starts after Ctrl-C");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1, "only one fake ran");
    assert_no_survivors(&mark);
}

#[test]
fn a_missing_program_is_not_found_with_its_install_hint() {
    let project = Project::git();
    for Adapter { name: agent, install_hint, .. } in ADAPTERS {
        let out = agent_run(&project, agent, "#{prompt: \"hi\"}").env("PATH", "/usr/bin:/bin").run().ok();
        let r = result(&out);
        assert_eq!(r["status"], "not_found", "{agent}");
        assert_eq!(r["exit_code"], Value::Null);
        let error =
            format!("{agent} is not installed ('{agent}' is not on PATH); to install it: {install_hint}");
        assert_eq!(r["error"], error.as_str());
    }
}

/// Peak resident memory (`VmHWM`, in kB) of a process, read until it exits.
fn peak_memory_kb(child: &mut std::process::Child) -> u64 {
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "aloop did not finish");
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

#[test]
fn memory_stays_bounded_on_a_50_mb_line_and_a_100_mb_flood() {
    for mode in ["huge", "flood"] {
        let project = Project::git();
        std::fs::write(
            project.path("t.rhai"),
            "let r = agent::run(\"claude\", #{prompt: \"hi\", view: \"none\"});\nprint(json::stringify(r));\n",
        )
        .unwrap();
        let mut child = project.aloop(&["exec", "t.rhai"]).env("FAKE_AGENT_MODE", mode).spawn();
        let peak = peak_memory_kb(&mut child);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let r: Value = serde_json::from_str(stdout.lines().last().expect("a result")).unwrap();
        assert_eq!(r["status"], "ok", "{mode}: {r}");
        assert_eq!(r["text"], "Done.", "{mode}");
        assert!(r["output_tail"].as_str().unwrap().len() <= 20 * 1024, "{mode}: the tail is bounded");
        assert!(peak < 120 * 1024, "{mode}: aloop peaked at {peak} kB");
    }
}

/// The argv the adapter builds, through `agent::command`.
fn argv(project: &Project, agent: &str, request: &str) -> Value {
    let out =
        exec(project, &format!("print(json::stringify(agent::command(\"{agent}\", {request})));")).run().ok();
    result(&out)
}

#[test]
fn each_bundled_adapter_builds_the_real_cli_argv_at_each_autonomy_level() {
    let project = Project::git();
    for adapter in ADAPTERS {
        for (autonomy, expected) in
            [("read-only", adapter.read_only), ("edit", adapter.edit), ("full", adapter.full)]
        {
            let request = format!(
                "#{{prompt: \"the prompt\", model: \"M\", autonomy: \"{autonomy}\", extra_args: [\"--max-turns\", \"3\"]}}"
            );
            let cmd = argv(&project, adapter.name, &request);
            assert_eq!(cmd["program"], adapter.name);
            let args: Vec<String> =
                cmd["args"].as_array().unwrap().iter().map(|a| project.masked(a.as_str().unwrap())).collect();
            assert_eq!(args.join(" "), expected, "{} {autonomy}", adapter.name);
            assert_eq!(cmd["stdin"], "the prompt", "{}: the prompt goes on stdin", adapter.name);
        }
    }
    // Outside a git repository codex needs --skip-git-repo-check.
    let plain = Project::new();
    let args = argv(&plain, "codex", "#{prompt: \"p\"}")["args"].clone();
    let expected = ["exec", "--json", "-C", "{root}", "-s", "workspace-write", "--skip-git-repo-check", "-"];
    let args: Vec<String> =
        args.as_array().unwrap().iter().map(|a| plain.masked(a.as_str().unwrap())).collect();
    assert_eq!(args, expected);
}

#[test]
fn the_agent_reads_the_prompt_not_aloops_own_stdin() {
    let project = Project::git();
    let log = project.path("calls.jsonl");
    agent_run(&project, "codex", "#{prompt: \"only this\"}")
        .stdin("typed into aloop\n")
        .env("FAKE_AGENT_LOG", &log)
        .timeout(Duration::from_secs(30))
        .run()
        .ok();
    let call: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(call["prompt"], "only this");
}

#[test]
fn the_fakes_receive_the_argv_and_the_prompt_on_stdin() {
    let project = Project::git();
    let log = project.path("calls.jsonl");
    for Adapter { name: agent, .. } in ADAPTERS {
        agent_run(&project, agent, "#{prompt: \"Fix the bug\\nin main.rs\", autonomy: \"read-only\"}")
            .env("FAKE_AGENT_LOG", &log)
            .run()
            .ok();
    }
    let calls: Vec<Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(calls.len(), 4);
    let root = project.root().canonicalize().unwrap();
    for (call, Adapter { name: agent, .. }) in calls.iter().zip(ADAPTERS) {
        assert_eq!(call["agent"], agent);
        assert_eq!(call["prompt"], "Fix the bug\nin main.rs", "{agent}");
        assert_eq!(Path::new(call["cwd"].as_str().unwrap()), root, "{agent}");
        assert!(!call["argv"].as_array().unwrap().contains(&json!("Fix the bug\nin main.rs")), "{agent}");
    }
}

#[test]
fn full_autonomy_as_root_needs_is_sandbox_for_claude() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let project = Project::git();
    let out = agent_run(&project, "claude", "#{prompt: \"hi\", autonomy: \"full\"}").run().ok();
    let r = result(&out);
    if root {
        assert_eq!(r["status"], "failed");
        assert_eq!(
            r["error"],
            "claude refuses --dangerously-skip-permissions (autonomy \"full\") when run as root; \
             set IS_SANDBOX=1 if this is a disposable sandbox, or use autonomy \"edit\": \
             --dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
        );
    } else {
        assert_eq!(r["status"], "ok", "the refusal only happens as root: {r}");
    }
    let out =
        agent_run(&project, "claude", "#{prompt: \"hi\", autonomy: \"full\", env: #{IS_SANDBOX: \"1\"}}")
            .run()
            .ok();
    assert_eq!(result(&out)["status"], "ok");
}

#[test]
fn gemini_exit_codes_become_plain_messages() {
    let project = Project::git();
    std::fs::write(project.path("plan.json"), r#"[{"exit": 41, "text": "no"}]"#).unwrap();
    let out = agent_run(&project, "gemini", "#{prompt: \"hi\"}")
        .env("FAKE_AGENT_PLAN", project.path("plan.json"))
        .run()
        .ok();
    let r = result(&out);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["exit_code"], 41);
    assert!(r["error"].as_str().unwrap().contains("not signed in"), "{r}");
}

#[test]
fn the_plan_drives_each_call_and_repeats_its_last_entry() {
    let project = Project::git();
    let plan = project.path("plan.json");
    std::fs::write(
        &plan,
        r#"[{"write": {"src/a.txt": "one\n"}, "append": {"notes.md": "first\n"}, "commit": "Add a", "text": "made a", "cost": 0.5},
            {"text": "second", "exit": 3},
            {"error": "quota exceeded"}]"#,
    )
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let out = agent_run(&project, "claude", "#{prompt: \"go\"}").env("FAKE_AGENT_PLAN", &plan).run().ok();
        statuses.push(result(&out));
    }
    assert_eq!(statuses[0]["status"], "ok");
    assert_eq!(statuses[0]["text"], "made a");
    assert_eq!(statuses[0]["cost_usd"], 0.5);
    assert_eq!(statuses[0]["tool_calls"], 3, "two writes and a commit");
    assert_eq!(project.read("src/a.txt"), "one\n");
    assert_eq!(project.read("notes.md"), "first\n");
    assert!(project.git_cmd(&["log", "--format=%s"]).starts_with("Add a\n"));
    assert_eq!(statuses[1]["status"], "failed");
    assert_eq!(statuses[1]["exit_code"], 3);
    for r in &statuses[2..] {
        assert_eq!(r["status"], "failed", "the last entry repeats");
        assert_eq!(r["error"], "quota exceeded");
    }
    assert_eq!(std::fs::read_to_string(project.path("plan.json.calls")).unwrap().trim(), "4");
}

/// Runs a fake directly with some argv and stdin.
fn fake(name: &str, args: &[&str], stdin: &str, cwd: &Path) -> std::process::Output {
    let mut child = Command::new(fakes_dir().join(name))
        .args(args)
        .current_dir(cwd)
        .env_remove("FAKE_AGENT_PLAN")
        .env_remove("FAKE_AGENT_MODE")
        .env_remove("FAKE_AGENT_LOG")
        .env("IS_SANDBOX", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_fakes_reject_what_the_real_clis_reject() {
    let project = Project::git();
    let dir = project.root();
    let rejected: [(&str, &[&str], i32, &str); 8] = [
        ("claude", &["-p", "--output-format", "stream-json"], 1, "requires --verbose"),
        ("claude", &["-p", "--permission-mode", "yolo"], 1, "Allowed choices"),
        ("claude", &["-p", "--bogus"], 1, "unknown option '--bogus'"),
        ("codex", &["exec", "-a", "never", "--json", "-"], 2, "unexpected argument '-a'"),
        ("codex", &["exec", "--full-auto", "--json", "-"], 2, "unexpected argument '--full-auto'"),
        ("qwen", &["-o", "stream-json", "--approval-mode", "auto_edit"], 1, "Invalid values"),
        (
            "gemini",
            &["-o", "stream-json", "--skip-trust", "--approval-mode", "auto-edit"],
            1,
            "Invalid values",
        ),
        (
            "gemini",
            &["-o", "stream-json", "--skip-trust", "-y", "--approval-mode", "yolo"],
            1,
            "Cannot use both",
        ),
    ];
    for (name, args, code, message) in rejected {
        let out = fake(name, args, "hi", &dir);
        assert_eq!(out.status.code(), Some(code), "{name} {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{name} {args:?}: {stderr}");
    }
    // Accepted forms, as the adapters use them.
    let out = fake("claude", &["-p", "--output-format", "stream-json", "--verbose"], "hi", &dir);
    assert_eq!(out.status.code(), Some(0));
    // A list-valued option swallows a positional prompt: stdin is left as the prompt.
    let out = fake("claude", &["-p", "--allowedTools", "Bash", "Edit"], "", &dir);
    assert_eq!(out.status.code(), Some(1), "no prompt left");
    // Outside a git repository codex wants --skip-git-repo-check; gemini wants trust.
    let plain = Project::new();
    let out = fake("codex", &["exec", "--json", "-"], "hi", &plain.root());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--skip-git-repo-check"));
    let out = fake("codex", &["exec", "--json", "--skip-git-repo-check", "-"], "hi", &plain.root());
    assert_eq!(out.status.code(), Some(0));
    let out = fake("gemini", &["-o", "stream-json"], "hi", &dir);
    assert_eq!(out.status.code(), Some(55));
}

#[test]
fn fake_codex_waits_for_the_end_of_stdin() {
    let project = Project::git();
    let mut child = Command::new(fakes_dir().join("codex"))
        .args(["exec", "--json", "-"])
        .current_dir(project.root())
        .env_remove("FAKE_AGENT_MODE")
        .env_remove("FAKE_AGENT_PLAN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"do it\n").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "codex must still be reading its prompt");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("turn.completed"));
}

#[test]
fn replay_plays_a_recording_and_performs_its_tool_calls() {
    let project =
        Project::git().fixture("agents/replay/session.ndjson", "rec/session.ndjson").commit("recording");
    let out = agent_run(&project, "replay", "#{prompt: \"add a greeting\", session: \"rec/session.ndjson\"}")
        .run()
        .ok()
        .stderr_has("[replay] → Bash: git add -A && git commit -qm 'Add greeting'");
    let r = result(&out);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["text"], "Added src/greet.txt and committed it.");
    assert_eq!(r["cost_usd"], 0.0421);
    assert_eq!(project.read("src/greet.txt"), "hello, world\n", "Write then Edit, moved into this project");
    assert!(!project.exists("home/rec/project"), "no recorded absolute path is written as such");
    assert!(project.git_cmd(&["log", "--format=%s"]).starts_with("Add greeting\n"), "Bash ran the commit");
}

#[test]
fn replay_picks_the_nth_matching_recording_of_an_index() {
    let mut project = Project::git();
    for file in ["index.json", "gen-1.ndjson", "gen-2.ndjson", "eval.ndjson"] {
        project = project.fixture(&format!("agents/replay/story/{file}"), &format!("rec/{file}"));
    }
    let play = |prompt: &str| {
        let request = format!("#{{prompt: \"{prompt}\", session: \"rec\"}}");
        result(&agent_run(&project, "replay", &request).run().ok())
    };
    assert_eq!(play("Implement us-001 as the GENERATOR")["text"], "First attempt.");
    assert_eq!(project.read("attempt.txt"), "first try\n");
    assert_eq!(play("You are the evaluator of US-001")["text"], "Looks good.");
    assert_eq!(project.read("checked.txt"), "checked\n");
    assert_eq!(play("generator, US-001 again")["text"], "Fixed attempt.");
    assert_eq!(project.read("attempt.txt"), "fixed\n");
    assert_eq!(play("generator US-001, third time")["text"], "Fixed attempt.", "the last one repeats");
    let none = play("something else");
    assert_eq!(none["status"], "failed");
    assert!(none["error"].as_str().unwrap().contains("no entry of rec/index.json matches"), "{none}");
}

#[test]
fn replay_reads_the_recording_from_aloop_replay_and_can_keep_its_timing() {
    let project = Project::git().fixture("agents/replay/session.ndjson", "rec/session.ndjson");
    let start = Instant::now();
    let out = agent_run(&project, "replay", "#{prompt: \"x\", timing: \"recorded\", speed: 2}")
        .env("ALOOP_REPLAY", "rec/session.ndjson")
        .run()
        .ok();
    assert_eq!(result(&out)["status"], "ok");
    // The recording spans 0.9 s; at double speed it takes at least 0.45 s.
    assert!(start.elapsed() >= Duration::from_millis(450));
}

#[test]
fn plain_view_prints_prefixed_lines_and_none_prints_nothing() {
    let project = Project::git();
    let plan = project.path("plan.json");
    std::fs::write(&plan, r#"[{"write": {"a.txt": "x"}, "text": "All done.\nSecond line."}]"#).unwrap();
    agent_run(&project, "claude", "#{prompt: \"go\"}")
        .env("FAKE_AGENT_PLAN", &plan)
        .run()
        .ok()
        .stderr_is("[claude] → Write: {root}/a.txt\n[claude] All done.\n[claude] Second line.\n");
    agent_run(&project, "claude", "#{prompt: \"go\", view: \"none\"}")
        .env("FAKE_AGENT_PLAN", &plan)
        .run()
        .ok()
        .stderr_empty();
}

#[test]
fn live_view_redraws_a_status_line_with_agent_label_and_tool() {
    let project = Project::git();
    let plan = project.path("plan.json");
    std::fs::write(&plan, r#"[{"write": {"a.txt": "x"}, "sleep": 0.3, "text": "Finished."}]"#).unwrap();
    let out = agent_run(&project, "claude", "#{prompt: \"go\", view: \"live\", label: \"generator US-001\"}")
        .env("FAKE_AGENT_PLAN", &plan)
        .run()
        .ok();
    assert!(out.stderr.contains("\r\x1b[2K"), "the line is redrawn in place: {:?}", out.stderr);
    assert!(out.stderr.contains(" claude · generator US-001 · 0s"), "{:?}", out.stderr);
    assert!(out.stderr.contains("Write: "), "{:?}", out.stderr);
    // Once the tool's result is in, the line stops naming the tool.
    let after_result = out.stderr.rsplit("Write: ").next().unwrap();
    assert!(after_result.contains(" · 0s · thinking"), "{:?}", out.stderr);
    assert!(
        out.stderr.contains("\nFinished.\n") || out.stderr.contains("\x1b[2KFinished.\n"),
        "{:?}",
        out.stderr
    );
    assert!(out.stderr.ends_with("\r\x1b[2K"), "the status line is cleared at the end: {:?}", out.stderr);
    assert_eq!(result(&out)["text"], "Finished.");
}

#[test]
fn real_recorded_sessions_parse_as_their_clis_meant() {
    // A user-level adapter that prints a recording through a bundled parser.
    let project = Project::git()
        .fixture("agents/real/claude-2.1.197-not-logged-in.ndjson", "claude.ndjson")
        .fixture("agents/real/qwen-0.15.10-api-error-exit-0.ndjson", "qwen.ndjson")
        .fixture("agents/real/qwen-0.15.10-no-auth.ndjson", "qwen-auth.ndjson")
        .fixture("agents/real/codex-0.169.0-offline.ndjson", "codex.ndjson");
    for agent in ["claude", "qwen", "codex"] {
        let adapter = format!(
            "import \"agents/{agent}\" as real;\nfn command(req) {{ #{{ program: \"cat\", args: [req.session] }} }}\n\
             fn events() {{ real::events() }}\nfn parse(event) {{ real::parse(event) }}\n"
        );
        std::fs::create_dir_all(project.home().join("scripts/agents")).unwrap();
        std::fs::write(project.home().join(format!("scripts/agents/rec-{agent}.rhai")), adapter).unwrap();
    }
    let play = |agent: &str, file: &str| {
        result(
            &agent_run(&project, &format!("rec-{agent}"), &format!("#{{prompt: \"\", session: \"{file}\"}}"))
                .run()
                .ok(),
        )
    };
    let claude = play("claude", "claude.ndjson");
    assert_eq!(claude["status"], "failed", "is_error in an exit-0 stream");
    assert_eq!(claude["error"], "Not logged in · Please run /login");
    assert_eq!(claude["cost_usd"].as_f64(), Some(0.0));
    let qwen = play("qwen", "qwen.ndjson");
    assert_eq!(qwen["status"], "failed", "an [API Error] result with is_error false");
    assert!(qwen["error"].as_str().unwrap().starts_with("[API Error: Connection error."));
    let auth = play("qwen", "qwen-auth.ndjson");
    assert!(auth["error"].as_str().unwrap().starts_with("No auth type is selected"), "{auth}");
    let codex = play("codex", "codex.ndjson");
    assert_eq!(codex["status"], "ok", "reconnect notices are not failures: {codex}");
    assert_eq!(codex["error"], Value::Null);
    assert_eq!(
        codex["session_id"], "01a2019f-92c7-7371-9eca-89e05f99bcec",
        "mapped by the borrowed event table"
    );
}

#[test]
fn an_adapter_error_names_its_file_and_line_and_stops_the_agent() {
    let project = Project::git().home_file(
        "scripts/agents/broken.rhai",
        "fn command(req) { #{ program: \"sh\", args: [\"-c\", \"echo '{}'; sleep 100\"] } }\n\
         fn parse(event) {\n    event.missing.deeper\n}\n",
    );
    let mark = marker("broken");
    let start = Instant::now();
    let out = agent_run(&project, "broken", "#{prompt: \"x\"}").env("ALOOP_TEST_MARKER", &mark).run().code(1);
    assert!(out.stderr.contains("scripts/agents/broken.rhai:3:"), "{}", out.stderr);
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_no_survivors(&mark);
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let project = Project::git()
        .home_file("scripts/agents/noparse.rhai", "fn command(req) { #{ program: \"true\" } }\n")
        .home_file(
            "scripts/agents/noprogram.rhai",
            "fn command(req) { #{ args: [] } }\nfn parse(e) { () }\n",
        );
    agent_run(&project, "noparse", "#{prompt: \"x\"}")
        .run()
        .code(1)
        .stderr_has("must define `fn parse(event)`");
    agent_run(&project, "noprogram", "#{prompt: \"x\"}")
        .run()
        .code(1)
        .stderr_has("noprogram.rhai: command(req) must return a non-empty string 'program'");
    let cases = [
        ("#{model: \"x\"}", "needs a 'prompt'"),
        (
            "#{prompt: \"x\", autonomy: \"yolo\"}",
            "autonomy must be \"read-only\", \"edit\" or \"full\", not \"yolo\"",
        ),
        ("#{prompt: \"x\", view: \"fancy\"}", "view must be"),
        ("#{prompt: \"x\", timeout: \"soon\"}", "option 'timeout' must be a number of seconds"),
        ("#{prompt: \"x\", extra_args: [1]}", "extra_args[0] must be a string"),
        ("#{prompt: \"x\", cwd: \"/etc\"}", "outside the project"),
    ];
    for (request, message) in cases {
        agent_run(&project, "claude", request).run().code(1).stderr_has(message).stderr_has("t.rhai:1:");
    }
    agent_run(&project, "nobody", "#{prompt: \"x\"}").run().code(1).stderr_has(
        "no agent adapter named 'nobody' (adapters: claude, codex, gemini, noparse, noprogram, qwen, replay;",
    );
}

#[test]
fn aloop_agents_lists_every_adapter_with_source_install_state_and_version() {
    let project = Project::git().home_file(
        "scripts/agents/mine.rhai",
        "fn describe() { #{ program: \"no-such-agent-program\", install_hint: \"build it\" } }\n\
         fn command(req) { #{ program: \"no-such-agent-program\", args: [] } }\nfn parse(e) { () }\n",
    );
    let out = project.aloop(&["agents"]).run().ok().stderr_empty();
    let fakes = fakes_dir().display().to_string();
    let aloop = env!("CARGO_BIN_EXE_aloop");
    // The last column is as wide as its longest entry, a path of this checkout.
    let width = [fakes.len() + "/claude".len(), aloop.len()].into_iter().max().unwrap();
    let listing = out.stdout.replace(&fakes, "{fakes}").replace(aloop, "{aloop}");
    let mut rows: Vec<String> = ADAPTERS
        .iter()
        .map(|a| format!("{:<6}  bundled  yes        {:<21}  {{fakes}}/{}\n", a.name, a.version, a.name))
        .collect();
    rows.push("mine    user     no         -                      install: build it\n".into());
    rows.push(format!("replay  bundled  yes        aloop {:<15}  {{aloop}}\n", env!("CARGO_PKG_VERSION")));
    rows.sort();
    let expected = format!(
        "AGENT   SOURCE   INSTALLED  VERSION                PATH / INSTALL\n\
         ------  -------  ---------  ---------------------  {}\n{}",
        "-".repeat(width),
        rows.concat()
    );
    crate::support::assert_same("aloop agents", &listing, &expected);
    let out = project.aloop(&["agents", "--json"]).env("PATH", "/usr/bin:/bin").run().ok();
    let list = out.json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["claude", "codex", "gemini", "mine", "qwen", "replay"]);
    let claude = &list[0];
    assert_eq!(claude["installed"], false);
    assert_eq!(claude["source"], "bundled");
    assert_eq!(claude["install_hint"], "npm install -g @anthropic-ai/claude-code");
    assert_eq!(list[5]["installed"], true, "replay is aloop itself");
}

#[test]
fn the_documented_example_adapter_works() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let example = doc
        .split("## Writing an adapter")
        .nth(1)
        .expect("the adapter section")
        .split("### Example")
        .nth(1)
        .expect("an example section");
    let code = example.split("```rhai\n").nth(1).and_then(|c| c.split("```").next()).expect("a rhai block");
    let project = Project::git()
        .home_file("scripts/agents/ollama.rhai", code)
        .file("bin/ollama", "#!/bin/sh\necho \"You said:\"\ncat\necho\necho \"  indented\"\n");
    let bin = project.path("bin/ollama");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", project.path("bin").display(), std::env::var("PATH").unwrap());
    let out =
        agent_run(&project, "ollama", "#{prompt: \"hello\", model: \"tiny\"}").env("PATH", path).run().ok();
    let r = result(&out);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["text"], "You said:\nhello\n  indented");
    assert!(
        out.stderr.contains("[ollama] You said:\n[ollama] hello\n[ollama]   indented\n"),
        "{}",
        out.stderr
    );
    let cmd = argv(&project, "ollama", "#{prompt: \"p\"}");
    assert_eq!(cmd["args"], json!(["run", "llama3.2"]));
}

#[test]
fn a_limit_event_makes_the_run_limited_with_its_reset_time() {
    let adapter = "fn command(req) { #{ program: \"sh\", args: [\"-c\", \"echo limit; exit 1\"] } }\n\
                   fn parse(line) { #{ kind: \"limit\", text: \"usage limit reached\", resets_at: 1762952400 } }\n";
    let project = Project::git().home_file("scripts/agents/capped.rhai", adapter);
    let r = result(&agent_run(&project, "capped", "#{prompt: \"p\"}").run().ok());
    assert_eq!(r["status"], "limited", "{r}");
    assert_eq!(r["error"], "usage limit reached");
    assert_eq!(r["resets_at"], 1_762_952_400);
    assert_eq!(r["exit_code"], 1);
}

/// The sessions each bundled adapter's `parse` is checked against: recorded
/// real ones, the limit cases, and one session of its fake (files under
/// tests/fixtures; a `.json` file is a list of limit cases).
const PARSED_SESSIONS: [(&str, &[&str]); 4] = [
    (
        "claude",
        &[
            "agents/real/claude-2.1.197-not-logged-in.ndjson",
            "agents/replay/session.ndjson",
            "agents/replay/story/gen-1.ndjson",
            "agents/replay/story/gen-2.ndjson",
            "agents/replay/story/eval.ndjson",
            "agents/fake/claude.ndjson",
            "limits/claude-notices.ndjson",
            "limits/claude.json",
        ],
    ),
    ("codex", &["agents/real/codex-0.169.0-offline.ndjson", "agents/fake/codex.ndjson", "limits/codex.json"]),
    ("gemini", &["agents/fake/gemini.ndjson", "limits/gemini.json"]),
    (
        "qwen",
        &[
            "agents/real/qwen-0.15.10-api-error-exit-0.ndjson",
            "agents/real/qwen-0.15.10-no-auth.ndjson",
            "agents/fake/qwen.ndjson",
            "limits/qwen.json",
        ],
    ),
];

#[test]
fn each_adapter_parses_its_sessions_into_the_recorded_events() {
    // tests/fixtures/agents/parsed/AGENT.jsonl: what `parse` made of every
    // line of PARSED_SESSIONS before the event tables (one line of events
    // per line of input), so that the tables read as parse did, and a
    // change in how an adapter reads its CLI shows event by event.
    for (agent, sessions) in PARSED_SESSIONS {
        let mut project = Project::git();
        // Through agent::parse, as during a run: the event table, else `parse`.
        let mut script = String::from("let lines = [];\n");
        for (i, session) in sessions.iter().enumerate() {
            let name = format!("s{i}");
            project = project.fixture(session, &name);
            script += &if Path::new(session).extension().is_some_and(|e| e == "json") {
                format!(
                    "for recorded in json::parse(fs::read(\"{name}\")) {{\n    \
                     for event in recorded.stdout {{ lines.push(json::stringify(event)); }}\n}}\n"
                )
            } else {
                format!("lines += fs::read(\"{name}\").split(\"\\n\").filter(|line| line != \"\");\n")
            };
        }
        script += &format!(
            "for events in agent::parse(\"{agent}\", lines) {{ print(json::stringify(events)); }}\n"
        );
        std::fs::write(project.path("t.rhai"), script).unwrap();
        let out = project.aloop(&["exec", "t.rhai"]).env("ALOOP_NOW", "2026-04-20T12:00:00+02:00").run().ok();
        let expected =
            std::fs::read_to_string(crate::support::fixture(&format!("agents/parsed/{agent}.jsonl")))
                .unwrap();
        crate::support::assert_same(
            &format!("what {agent}'s parse made of its sessions"),
            &out.stdout,
            &expected,
        );
    }
}

#[test]
fn a_bad_event_table_is_refused_naming_the_adapter() {
    let project = Project::git()
        .home_file("scripts/agents/notable.rhai", "fn command(req) { #{ program: \"true\" } }\nfn parse(e) { () }\nfn events() { 3 }\n")
        .home_file(
            "scripts/agents/badrow.rhai",
            "fn command(req) { #{ program: \"true\" } }\nfn parse(e) { () }\nfn events() { #{ assistant: #{ each: \"/x\", rows: 1 } } }\n",
        );
    let out = agent_run(&project, "notable", "#{prompt: \"x\"}").run().code(1);
    assert!(out.stderr.contains("scripts/agents/notable.rhai: events() must return a map"), "{}", out.stderr);
    let out = agent_run(&project, "badrow", "#{prompt: \"x\"}").run().code(1);
    assert!(
        out.stderr.contains("scripts/agents/badrow.rhai: events().assistant.rows must be a map"),
        "{}",
        out.stderr
    );
}
