#!/usr/bin/env python3
"""A scripted model server for the real-CLI tests (tests/cli/real_agents.rs).

It speaks enough of four model APIs for the real agent CLIs to complete
turns against it, on 127.0.0.1 only:

  Anthropic Messages      POST /v1/messages (SSE when "stream": true)  Claude Code
  OpenAI Responses        POST .../responses (SSE)                      Codex
  OpenAI Chat Completions POST .../chat/completions (SSE, tool calls)   Qwen Code
  Gemini                  POST .../models/M:streamGenerateContent,      Gemini CLI
                          :generateContent, :countTokens

Usage: server.py SCENARIO.json [LOG.jsonl]

It prints the port it bound on its first stdout line, logs every request
(path, headers, body) as one JSON line in LOG.jsonl, and exits when its
stdin closes (the test that started it ended) or after an hour.

The scenario says what the "model" answers:

  {"conversations": [
     {"match": "text in the request", "turns": [TURN, ...]},
     {"turns": [TURN, ...]}]}

A request belongs to the first conversation whose "match" occurs in its
body (one without "match" takes the rest). Its turn is the number of tool
results already in its history: the first request of an agent call gets
turn 0, the request after one tool call turn 1, and so on; past the last
turn the last repeats. Requests that declare no tools (titles, summaries,
checks the CLIs make on the side) get a short text instead. A TURN is:

  {"text": "..."}                               a final answer
  {"call": {"name": "...", "arguments": {...}}, a call of the CLI's tool
   "text": "optional words before it"}
  {"error": 401|429|529|..., "message": "...",  an HTTP error; "reset_in"
   "reset_in": seconds, "retry": false}         (429) says when the limit lifts,
                                                "retry": false asks not to retry
  {"stall": true}                               the stream starts, then nothing

and may carry "fail_first": [ERROR, ...]: errors served in order, one per
request of that turn, before the turn itself (529 overloaded, then success).
"""

import json
import select
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STALL_SECONDS = 600
LIFETIME_SECONDS = 3600

REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
           529: "Overloaded"}


class Scenario:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.conversations = json.load(f)["conversations"]
        self.served = {}
        self.lock = threading.Lock()

    def conversation(self, body_text):
        for index, conv in enumerate(self.conversations):
            if "match" not in conv or conv["match"] in body_text:
                return index, conv
        return None, None

    def answer(self, body_text, tool_results):
        """The TURN for a request: an error first if its turn has one left."""
        index, conv = self.conversation(body_text)
        if conv is None:
            return {"text": "OK"}
        turns = conv["turns"]
        turn_index = min(tool_results, len(turns) - 1)
        turn = turns[turn_index]
        with self.lock:
            key = (index, turn_index)
            count = self.served.get(key, 0)
            self.served[key] = count + 1
        fails = turn.get("fail_first", [])
        if count < len(fails):
            return fails[count]
        return turn


class Log:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, record):
        if not self.path:
            return
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def text_of(value):
    return json.dumps(value) if not isinstance(value, str) else value


def new_id(prefix):
    return prefix + uuid.uuid4().hex[:24]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    scenario = None
    log = None

    def log_message(self, *_args):
        pass

    # --- plumbing -----------------------------------------------------

    def read_body(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return raw.decode("utf-8"), json.loads(raw or b"{}")
        except ValueError:
            return raw.decode("utf-8", "replace"), {}

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status, REASONS.get(status))
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self):
        """An SSE response whose end is the connection's close."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse(self, data, event=None):
        chunk = (f"event: {event}\n" if event else "") + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
        self.wfile.write(chunk.encode())
        self.wfile.flush()

    def stall(self):
        """Nothing more until the client goes away (or a long time passed)."""
        deadline = time.time() + STALL_SECONDS
        while time.time() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.5)
            if readable and not self.connection.recv(1024):
                return

    def do_GET(self):
        self.log.write({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if self.path.rstrip("/").endswith("/models"):
            return self.send_json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        self.send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        raw, body = self.read_body()
        self.log.write({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
        path = self.path.split("?")[0]
        try:
            if path.endswith("/messages/count_tokens"):
                return self.send_json(200, {"input_tokens": 100})
            if path.endswith("/messages"):
                return self.anthropic(raw, body)
            if path.endswith("/responses"):
                return self.openai_responses(raw, body)
            if path.endswith("/chat/completions"):
                return self.chat(raw, body)
            if ":countTokens" in path:
                return self.send_json(200, {"totalTokens": 100})
            if ":streamGenerateContent" in path or ":generateContent" in path:
                return self.gemini(raw, body, stream=":streamGenerateContent" in path)
        except (BrokenPipeError, ConnectionResetError):
            return None
        return self.send_json(404, {"error": {"message": f"no route {self.path}"}})

    def send_model_error(self, api, turn):
        status = int(turn["error"])
        message = turn.get("message") or REASONS.get(status, "error")
        # "retry": false says so to the client (the OpenAI and Anthropic
        # SDKs honour x-should-retry), so a limit that lifts in an hour is
        # not retried for minutes.
        headers = {} if turn.get("retry", True) else {"x-should-retry": "false"}
        reset_in = turn.get("reset_in")
        if reset_in is not None:
            reset_at = int(time.time()) + int(reset_in)
            headers["retry-after"] = str(int(reset_in))
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_at))
            headers["anthropic-ratelimit-requests-reset"] = iso
            headers["anthropic-ratelimit-unified-reset"] = str(reset_at)
            headers["anthropic-ratelimit-unified-status"] = "rejected"
            headers["x-ratelimit-reset-requests"] = f"{int(reset_in)}s"
        if api == "anthropic":
            kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
                    529: "overloaded_error", 400: "invalid_request_error"}.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        elif api == "gemini":
            kind = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED",
                    503: "UNAVAILABLE", 529: "UNAVAILABLE"}.get(status, "INTERNAL")
            body = {"error": {"code": status, "message": message, "status": kind}}
            if status == 429 and reset_in is not None:
                # A daily quota, as Google words it: the CLI does not retry it.
                body["error"]["details"] = [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{int(reset_in)}s"}]
        else:
            kind = {401: "invalid_request_error", 429: "usage_limit_reached"}.get(status, "server_error")
            error = {"message": message, "type": kind, "code": {401: "invalid_api_key", 429: "rate_limit_exceeded"}
                     .get(status)}
            if status == 429 and reset_in is not None:
                error["resets_in_seconds"] = int(reset_in)
                error["resets_at"] = int(time.time()) + int(reset_in)
            body = {"error": error}
        self.send_json(status, body, headers)

    # --- Anthropic Messages ------------------------------------------

    def anthropic(self, raw, body):
        results = sum(1 for m in body.get("messages", []) if m.get("role") == "user" and isinstance(m.get("content"), list)
                      for block in m["content"] if isinstance(block, dict) and block.get("type") == "tool_result")
        turn = self.scenario.answer(raw, results) if body.get("tools") else {"text": "OK"}
        if "error" in turn:
            return self.send_model_error("anthropic", turn)
        model = body.get("model", "claude-test")
        blocks = []
        if turn.get("text"):
            blocks.append({"type": "text", "text": turn["text"]})
        if "call" in turn:
            blocks.append({"type": "tool_use", "id": new_id("toolu_"), "name": turn["call"]["name"],
                           "input": turn["call"]["arguments"]})
        stop = "tool_use" if "call" in turn else "end_turn"
        usage = {"input_tokens": 1200, "output_tokens": 40, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": model, "content": blocks,
                   "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return self.send_json(200, message)
        self.start_stream()
        self.sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                        "usage": {**usage, "output_tokens": 1}}}, "message_start")
        if turn.get("stall"):
            return self.stall()
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                self.sse({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                         "content_block_start")
                self.sse({"type": "content_block_delta", "index": index,
                          "delta": {"type": "text_delta", "text": block["text"]}}, "content_block_delta")
            else:
                self.sse({"type": "content_block_start", "index": index,
                          "content_block": {**block, "input": {}}}, "content_block_start")
                self.sse({"type": "content_block_delta", "index": index,
                          "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}},
                         "content_block_delta")
            self.sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        self.sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": usage["output_tokens"]}}, "message_delta")
        self.sse({"type": "message_stop"}, "message_stop")

    # --- OpenAI Responses --------------------------------------------

    def openai_responses(self, raw, body):
        items = body.get("input") if isinstance(body.get("input"), list) else []
        results = sum(1 for item in items if isinstance(item, dict) and item.get("type", "").endswith("call_output"))
        turn = self.scenario.answer(raw, results) if body.get("tools") else {"text": "OK"}
        if "error" in turn:
            return self.send_model_error("openai", turn)
        response_id = new_id("resp_")
        self.start_stream()
        self.sse({"type": "response.created", "response": {"id": response_id}}, "response.created")
        if turn.get("stall"):
            return self.stall()
        if turn.get("text"):
            item = {"type": "message", "role": "assistant", "id": new_id("msg_"),
                    "content": [{"type": "output_text", "text": turn["text"], "annotations": []}]}
            self.sse({"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
                     "response.output_item.added")
            self.sse({"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0,
                      "content_index": 0, "delta": turn["text"]}, "response.output_text.delta")
            self.sse({"type": "response.output_item.done", "output_index": 0, "item": item},
                     "response.output_item.done")
        if "call" in turn:
            call = turn["call"]
            if call.get("custom"):
                item = {"type": "custom_tool_call", "id": new_id("ctc_"), "call_id": new_id("call_"),
                        "name": call["name"], "input": call["arguments"], "status": "completed"}
            else:
                item = {"type": "function_call", "id": new_id("fc_"), "call_id": new_id("call_"),
                        "name": call["name"], "arguments": text_of(call["arguments"]), "status": "completed"}
            self.sse({"type": "response.output_item.added", "output_index": 1, "item": item},
                     "response.output_item.added")
            self.sse({"type": "response.output_item.done", "output_index": 1, "item": item},
                     "response.output_item.done")
        self.sse({"type": "response.completed", "response": {
            "id": response_id, "object": "response", "status": "completed",
            "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 40,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1240}}},
            "response.completed")

    # --- OpenAI Chat Completions -------------------------------------

    def chat(self, raw, body):
        results = sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
        turn = self.scenario.answer(raw, results) if body.get("tools") else {"text": "OK"}
        if "error" in turn:
            return self.send_model_error("openai", turn)
        model = body.get("model", "test-model")
        chunk_id = new_id("chatcmpl-")
        created = int(time.time())
        usage = {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240}
        message = {"role": "assistant", "content": turn.get("text") or None}
        if "call" in turn:
            message["tool_calls"] = [{"id": new_id("call_"), "type": "function", "function": {
                "name": turn["call"]["name"], "arguments": text_of(turn["call"]["arguments"])}}]
        finish = "tool_calls" if "call" in turn else "stop"
        if not body.get("stream"):
            return self.send_json(200, {"id": chunk_id, "object": "chat.completion", "created": created,
                                        "model": model, "usage": usage,
                                        "choices": [{"index": 0, "message": message, "finish_reason": finish}]})

        def chunk(delta, finish_reason=None, **extra):
            return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}

        self.start_stream()
        self.sse(chunk({"role": "assistant", "content": ""}))
        if turn.get("stall"):
            return self.stall()
        if turn.get("text"):
            self.sse(chunk({"content": turn["text"]}))
        for index, call in enumerate(message.get("tool_calls", [])):
            self.sse(chunk({"tool_calls": [{"index": index, **call}]}))
        self.sse(chunk({}, finish))
        self.sse({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                  "choices": [], "usage": usage})
        self.sse("[DONE]")

    # --- Gemini -------------------------------------------------------

    def gemini(self, raw, body, stream):
        contents = body.get("contents", [])
        results = sum(1 for c in contents for part in c.get("parts", [])
                      if isinstance(part, dict) and "functionResponse" in part)
        config = body.get("generationConfig") or body.get("generation_config") or {}
        if config.get("responseMimeType") == "application/json" or config.get("responseJsonSchema") \
                or config.get("responseSchema"):
            # The CLI's side checks ask for JSON: who speaks next, which model
            # routes the turn; one answer fits them all.
            turn = {"text": json.dumps({"reasoning": "The model has answered.", "next_speaker": "user",
                                        "complexity_reasoning": "A small task.", "complexity_score": 1,
                                        "model_choice": "flash"})}
        elif body.get("tools"):
            turn = self.scenario.answer(raw, results)
        else:
            turn = {"text": "OK"}
        if "error" in turn:
            return self.send_model_error("gemini", turn)
        parts = []
        if turn.get("text"):
            parts.append({"text": turn["text"]})
        if "call" in turn:
            parts.append({"functionCall": {"name": turn["call"]["name"], "args": turn["call"]["arguments"]}})
        usage = {"promptTokenCount": 1200, "candidatesTokenCount": 40, "totalTokenCount": 1240}
        response = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                                    "index": 0}], "usageMetadata": usage, "modelVersion": "gemini-test"}
        if not stream:
            return self.send_json(200, response)
        self.start_stream()
        if turn.get("stall"):
            self.sse({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "index": 0}]})
            return self.stall()
        self.sse(response)


def watch_stdin(server):
    """Ends the server when the test that started it goes away."""
    sys.stdin.buffer.read()
    server.shutdown()


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: server.py SCENARIO.json [LOG.jsonl]\n")
        return 2
    Handler.scenario = Scenario(sys.argv[1])
    Handler.log = Log(sys.argv[2] if len(sys.argv) == 3 else None)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=watch_stdin, args=(server,), daemon=True).start()
    lifetime = threading.Timer(LIFETIME_SECONDS, server.shutdown)
    lifetime.daemon = True
    lifetime.start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
