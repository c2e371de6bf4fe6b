//! Usage and rate limits: every bundled adapter turns its CLI's real limit
//! messages (tests/fixtures/limits/CLI.json, played by the fakes) into a
//! `limited` run with the message and its exact reset time; a limit said
//! only on stderr counts; other failures stay `failed`; Claude Code's retry
//! notices are shown, and a failure said twice is shown once.

use serde_json::{json, Value};

use crate::support::{Output, Project, Run};

/// The "now" of these tests: Monday 2026-04-20, noon at UTC+02:00 (the
/// local zone under `ALOOP_NOW`); 1776679200 in unix seconds.
const NOW: &str = "2026-04-20T12:00:00+02:00";

fn exec(project: &Project, script: &str) -> Run {
    std::fs::write(project.path("t.rhai"), script).unwrap();
    project.aloop(&["exec", "t.rhai"]).env("ALOOP_NOW", NOW)
}

/// Each line of stdout as JSON.
#[track_caller]
fn results(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", out.stderr)))
        .collect()
}

/// (agent, case of tests/fixtures/limits/AGENT.json, the run's error, `resets_at`).
const CASES: &[(&str, &str, &str, Option<i64>)] = &[
    ("claude", "epoch", "Claude AI usage limit reached|1762952400", Some(1_762_952_400)),
    // 2am local (UTC+02:00) the next day.
    ("claude", "five-hour-reached", "5-hour limit reached ∙ resets 2am", Some(1_776_729_600)),
    // 18:20 CEST.
    ("claude", "berlin", "You've hit your limit · resets 6:20pm (Europe/Berlin)", Some(1_776_702_000)),
    // 16:00 at UTC-03:00, three days later.
    ("claude", "recife", "You've hit your limit · resets Apr 23 at 4pm (America/Recife)", Some(1_776_970_800)),
    // Feb 7 has passed this year: 11:00 KST on 2027-02-07.
    ("claude", "seoul", "You've hit your limit · resets Feb 7, 11am (Asia/Seoul)", Some(1_801_965_600)),
    ("claude", "five-hour", "You've hit your 5-hour limit · resets 11:15pm (UTC)", Some(1_776_726_900)),
    ("claude", "session", "You've hit your session limit · resets 11:15pm (UTC)", Some(1_776_726_900)),
    (
        "claude",
        "api-429",
        "API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later.",
        None,
    ),
    (
        "codex",
        "at-time",
        "You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or \
         try again at 3:15 PM.",
        Some(1_776_690_900),
    ),
    (
        "codex",
        "at-date",
        "You've hit your usage limit. Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus), \
         or try again at Apr 24th, 2026 9:05 AM.",
        Some(1_777_014_300),
    ),
    (
        "codex",
        "in",
        "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 3 hours \
         32 minutes.",
        Some(1_776_679_200 + 3 * 3600 + 32 * 60),
    ),
    ("codex", "later", "You've hit your usage limit. Try again later.", None),
    // 2:33 local (UTC+02:00) the next day; codex 0.171's own apostrophe.
    ("codex", "real-0.171", "You\u{2019}ve hit your usage limit. Try again at 2:33 AM.", Some(1_776_731_580)),
    ("codex", "retry-429", "exceeded retry limit, last status: 429 Too Many Requests, request id: req_7f3a", None),
    (
        "gemini",
        "daily",
        "[API Error: You have exhausted your daily quota on this model.]\nPlease wait and try again later. To \
         increase your limits, request a quota increase through AI Studio, or switch to another /auth method",
        None,
    ),
    (
        "gemini",
        "retry-in",
        "[API Error: You exceeded your current quota, please check your plan and billing details. For more \
         information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded \
         for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: \
         gemini-2.5-pro\nPlease retry in 41.3s.]\nPlease wait and try again later. To increase your limits, request \
         a quota increase through AI Studio, or switch to another /auth method",
        // 41.3 s, rounded up.
        Some(1_776_679_242),
    ),
    (
        "gemini",
        "retryable",
        "[API Error: Resource has been exhausted (e.g. check quota).]\nPlease wait and try again later. To increase \
         your limits, request a quota increase through AI Studio, or switch to another /auth method",
        None,
    ),
    (
        "qwen",
        "rate",
        "[API Error: 429 Requests rate limit exceeded, please try again later.]\nPossible quota limitations in place \
         or slow response times detected. Please wait and try again later.",
        None,
    ),
    (
        "qwen",
        "quota",
        "[API Error: 429 You exceeded your current quota, please check your plan and billing details.]\nPossible \
         quota limitations in place or slow response times detected. Please wait and try again later.",
        None,
    ),
];

#[test]
fn every_real_limit_message_makes_the_run_limited_with_its_exact_reset_time() {
    let project = Project::git();
    // One call per case, in order: the plan tells each fake which case to play.
    let plan: Vec<Value> =
        CASES.iter().map(|(_, case, _, _)| json!({"mode": "limit", "limit": case})).collect();
    std::fs::write(project.path("plan.json"), serde_json::to_string(&plan).unwrap()).unwrap();
    let mut calls = String::new();
    for (agent, _, _, _) in CASES {
        calls += &format!(
            "print(json::stringify(agent::run(\"{agent}\", #{{prompt: \"go\", view: \"none\"}})));\n"
        );
    }
    let out = exec(&project, &calls).env("FAKE_AGENT_PLAN", project.path("plan.json")).run().ok();
    let results = results(&out);
    assert_eq!(results.len(), CASES.len());
    for ((agent, case, message, resets_at), result) in CASES.iter().zip(&results) {
        let got = (&result["status"], &result["error"], &result["resets_at"]);
        let expected = (&json!("limited"), &json!(message), &json!(resets_at));
        assert_eq!(got, expected, "{agent} {case}: {result}");
    }
}

#[test]
fn a_limit_said_only_on_stderr_counts() {
    // codex without --json says its errors only on stderr ("ERROR: ...").
    let project = Project::git().home_file(
        "scripts/agents/codex-text.rhai",
        "import \"agents/codex\" as codex;\n\
         fn command(req) { #{ program: \"codex\", args: [\"exec\", \"-\"], stdin: req.prompt } }\n\
         fn parse(event) { codex::parse(event) }\n\
         fn parse_stderr(line) { codex::parse_stderr(line) }\n",
    );
    let out = exec(&project, "print(json::stringify(agent::run(\"codex-text\", #{prompt: \"go\"})));\n")
        .env("FAKE_AGENT_MODE", "limit")
        .env("FAKE_AGENT_LIMIT", "stderr")
        .run()
        .ok();
    let result = &results(&out)[0];
    assert_eq!(result["status"], "limited", "{result}");
    assert_eq!(result["error"], "You've hit your usage limit. Try again at 3:15 PM.");
    assert_eq!(result["resets_at"], 1_776_690_900);
    assert_eq!(result["exit_code"], 1);
    assert!(out.stderr.contains("[codex-text] limit: You've hit your usage limit. Try again at 3:15 PM.\n"));
}

#[test]
fn other_failures_stay_failed_without_a_reset_time() {
    let project = Project::git();
    for agent in ["claude", "codex", "gemini", "qwen"] {
        for mode in ["error_result", "fail"] {
            let out = exec(
                &project,
                &format!("print(json::stringify(agent::run(\"{agent}\", #{{prompt: \"go\"}})));\n"),
            )
            .env("FAKE_AGENT_MODE", mode)
            .run()
            .ok();
            let result = &results(&out)[0];
            assert_eq!(
                (&result["status"], &result["resets_at"]),
                (&json!("failed"), &Value::Null),
                "{agent} {mode}"
            );
        }
    }
}

#[test]
fn claude_api_retries_are_notices_and_a_failure_said_twice_is_shown_once() {
    // The api_retry line is one Claude Code 2.1.330 printed (aloop issue 17);
    // the informational one has the shape Claude Code 2.1.333's bundle gives it.
    let project = Project::git()
        .fixture("limits/claude-notices.ndjson", "retry.ndjson")
        .fixture("agents/real/claude-2.1.197-not-logged-in.ndjson", "auth.ndjson")
        .home_file(
            "scripts/agents/rec.rhai",
            "import \"agents/claude\" as claude;\n\
             fn command(req) { #{ program: \"cat\", args: [req.session] } }\n\
             fn events() { claude::events() }\n\
             fn parse(event) { claude::parse(event) }\n",
        );
    let run = |session: &str| {
        let script =
            format!("agent::run(\"rec\", #{{prompt: \"\", session: \"{session}\", view: \"plain\"}});\n");
        exec(&project, &script).run().ok().stderr
    };
    crate::support::assert_same(
        "the view of a run with retries",
        &run("retry.ndjson"),
        "[rec] API error 529 (overloaded), retry 1 of 2 in 0.5s\n\
         [rec] Claude Code is using a fallback model\n\
         [rec] Done.\n",
    );
    crate::support::assert_same(
        "the view of a run that is not logged in",
        &run("auth.ndjson"),
        "[rec] error: Not logged in · Please run /login\n",
    );
    // codex says a failure as an `error` and again as `turn.failed`.
    let out = exec(&project, "agent::run(\"codex\", #{prompt: \"go\", view: \"plain\"});\n")
        .env("FAKE_AGENT_MODE", "error_result")
        .run()
        .ok();
    assert_eq!(out.stderr.matches("simulated error result").count(), 1, "{}", out.stderr);
}

#[test]
fn lib_limits_reads_the_other_ways_of_saying_when_a_limit_lifts() {
    let project = Project::git();
    let script = "import \"lib/limits\" as limits;\n\
        for text in [\"Try again in less than a minute.\", \"You've hit your fast limit · resets in 2h 5m\",\n\
                     \"Limits reset every 5h and every week.\", \"spend limit reached · resets Aug 8 · request an increase\",\n\
                     \"resets 13pm\", \"no time here\"] {\n\
            print(`${limits::resets_at(text)}`);\n\
        }\n";
    exec(&project, script).run().ok().stdout_is("1776679260\n1776686700\n\n\n\n\n");
}
