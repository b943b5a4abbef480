#!/usr/bin/env python3
"""The llm_llama test: `lamda generate --proposer llm` against llama.cpp itself.

    llama_test.py LAMDA_EXE SOURCE_DIR [--turns N] [--keep DIR] [--table]

node-llama-cpp 3.21.1 (tests/llm/llama/package.json; its prebuilt linux-x64 CPU llama.cpp) serves
a tiny random-weight llama model that tests/llm/llama/make_model.py writes here (nothing is
downloaded) through tests/llm/llama/server.mjs, a loopback OpenAI-compatible server shaped like
llama-server (/props n_ctx, `grammar`, llama-server's context-size HTTP 400), with a 2048-token
window. Three searches of --turns candidates:

1. `--llm-constrain auto`: lamda must detect llama.cpp (/props) and send its DSL grammar. Every
   finished reply (finish_reason stop) must be free of syntax errors (`lamda check --json`: no
   diagnostic of the parser's line-level kind; semantics such as channel counts may still fail,
   that is what validation and repair are for), and repair turns must be sent.
2. The same with `--llm-stream`: every request streamed (SSE), the same guarantees.
3. `--llm-constrain off`: the same random model's replies are garbage: none is a valid model and
   the search hands over nothing (exit 1).
In all three no request may exceed the window (prompt tokens from the model's own tokenizer plus
the max_tokens lamda asked for within n_ctx) and the server refuses none (no context-size 400).

Prints a table of the reply counts (replies, finished, syntax-clean, valid models) per mode; with
--table only that, for docs/llm.md (--modes auto,json,off adds the JSON-schema constraint). Exits 0 on success, 1 on a failure, 77 (skipped) when node or
tests/llm/llama/node_modules is missing or does not load, unless CI=true (then 1: scripts/test.sh
runs `npm ci` there).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# The parser's line-level (syntax) messages, dsl/parser.hpp (tests/llm/test_grammar.cpp has the
# same list): a reply written under the grammar must raise none of them.
SYNTAX = ("unexpected character", "invalid layer name", "expected an op name", "unknown op",
          "unexpected '", "is not a layer name", "has no value", "is given twice", "unknown attribute",
          "invalid value", "expected `model NAME`", "the model is named twice",
          "must come before the first layer", "the line is", "the file is", " needs '")


def is_syntax_error(message):
    if message.startswith("more than ") and " layers" in message:
        return True
    return any(s in message for s in SYNTAX)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def skip(msg):
    if os.environ.get("CI") == "true":
        fail(msg + " (CI=true: scripts/test.sh runs npm ci in tests/llm/llama)")
    print("skipped: " + msg)
    sys.exit(77)


class Server:
    def __init__(self, node, llama_dir, model, ctx, log):
        self.log = log
        self.proc = subprocess.Popen([node, os.path.join(llama_dir, "server.mjs"), "--model", model, "--ctx", str(ctx),
                                      "--threads", "1", "--log", log], cwd=llama_dir, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            self.stop()
            skip("tests/llm/llama/server.mjs did not start: " + (line + rest).strip()[-2000:])
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def entries(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def check_reply(lamda, work, text, index):
    """(syntax_clean, valid, first syntax error) of a reply's text, by `lamda check --json`."""
    path = os.path.join(work, "reply%d.lamda" % index)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    r = subprocess.run([lamda, "check", path, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        fail("lamda check --json printed no JSON (exit %d): %s %s" % (r.returncode, r.stdout[-500:], r.stderr[-500:]))
    syntax = [d["message"] for d in doc.get("diagnostics", []) if is_syntax_error(d["message"])]
    return not syntax, bool(doc.get("valid")), (syntax[0] if syntax else "")


def run_search(lamda, work, port, mode, turns, seed):
    """mode: an --llm-constrain value, `+stream` for --llm-stream (SSE)."""
    constrain, _, stream = mode.partition("+")
    task = os.path.join(work, "task.json")
    with open(task, "w") as f:
        json.dump({"name": "llama_loopback", "input": [28, 28, 1], "classes": 10,
                   "constraints": {"latency_ms": 5.0, "threads": 1},
                   "budget": {"max_candidates": turns, "max_seconds": 300}}, f)
    out = os.path.join(work, "run-" + mode.replace("+", "-"))
    cmd = [lamda, "generate", task, "--out", out, "--proposer", "llm", "--seed", str(seed), "--runs", "3",
           "--confirm-runs", "5", "--llm-url", "http://127.0.0.1:%d/v1" % port, "--llm-model", "tiny",
           "--llm-context-tokens", "2048", "--llm-constrain", constrain, "--llm-timeout", "120", "--llm-max-retries", "1"]
    if stream:
        cmd.append("--llm-stream")
    started = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return r, time.time() - started, out


def summarize(lamda, work, entries, tag):
    replies = [e for e in entries if e.get("status") == 200]
    finished = [e for e in replies if e.get("finish_reason") == "stop"]
    clean = valid = 0
    first_error = None
    for i, e in enumerate(finished):
        ok, good, err = check_reply(lamda, work, e.get("content", ""), i)
        clean += ok
        valid += good
        if not ok and first_error is None:
            first_error = (err, e.get("content", "")[:400])
    return {"mode": tag, "requests": len(entries), "replies": len(replies), "finished": len(finished),
            "syntax_clean": clean, "valid": valid, "first_error": first_error,
            "too_long": [e for e in entries if e.get("error") == "exceed_context_size"],
            "refused": [e for e in entries if e.get("status") != 200],
            # what lamda asked for, not what the server cut it to
            "over_window": [e for e in replies
                            if e.get("requested_max_tokens") is None or
                            e["prompt_tokens"] + e["requested_max_tokens"] > e["n_ctx"]],
            "constraints": sorted({e.get("constraint", "?") for e in replies}),
            "streamed": len([e for e in entries if e.get("stream")]),
            "max_prompt": max([e["prompt_tokens"] for e in entries if "prompt_tokens" in e] or [0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lamda")
    ap.add_argument("source")
    ap.add_argument("--turns", type=int, default=12,
                    help="candidates per search (the grammar lets a reply hold one model: one turn each)")
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("--table", action="store_true", help="print the table only (no checks)")
    ap.add_argument("--modes", default="auto,auto+stream,off",
                    help="--llm-constrain values to run, +stream adds --llm-stream (the checks need the default)")
    a = ap.parse_args()
    a.source = os.path.abspath(a.source)
    a.lamda = os.path.abspath(a.lamda)
    llama_dir = os.path.join(a.source, "tests", "llm", "llama")
    node = shutil.which("node")
    if not node:
        skip("no node (scripts/install-deps.sh installs Debian's nodejs)")
    if not os.path.isdir(os.path.join(llama_dir, "node_modules", "node-llama-cpp")):
        skip("no tests/llm/llama/node_modules (cd tests/llm/llama && npm ci --ignore-scripts --omit=optional)")
    work = a.keep or tempfile.mkdtemp(prefix="lamda-llama-")
    os.makedirs(work, exist_ok=True)
    try:
        model = os.path.join(work, "tiny.gguf")
        subprocess.run([sys.executable, os.path.join(llama_dir, "make_model.py"), model,
                        "--corpus", os.path.join(a.source, "docs", "dsl.md"),
                        "--corpus", os.path.join(a.source, "include", "lamda", "llm", "prompt.hpp")], check=True)
        rows = []
        modes = a.modes.split(",")
        if not a.table and modes != ["auto", "auto+stream", "off"]:
            fail("--modes other than the default go with --table")
        for mode in modes:
            log = os.path.join(work, "server-%s.jsonl" % mode.replace("+", "-"))
            server = Server(node, llama_dir, model, 2048, log)
            try:
                r, seconds, out = run_search(a.lamda, work, server.port, mode, a.turns, 7)
            finally:
                server.stop()
            s = summarize(a.lamda, work, server.entries(), mode)
            s["exit"], s["seconds"], s["stderr"] = r.returncode, seconds, r.stderr
            rows.append(s)
        print("| `--llm-constrain` | requests | replies | finished (stop) | syntax-clean | valid models | largest prompt (tokens) | lamda exit |")
        print("|---|---|---|---|---|---|---|---|")
        for s in rows:
            pct = lambda n: "%d (%d%%)" % (n, round(100.0 * n / s["finished"])) if s["finished"] else "0"
            print("| %s (%s) | %d | %d | %d | %s | %s | %d of 2048 | %d |" % (
                s["mode"], "/".join(s["constraints"]), s["requests"], s["replies"], s["finished"],
                pct(s["syntax_clean"]), pct(s["valid"]), s["max_prompt"], s["exit"]))
        if a.table:
            return 0
        grammar, streamed, off = rows
        for s in rows:
            print("--- lamda generate --llm-constrain %s: exit %d in %.1f s; its stderr ends:" % (s["mode"], s["exit"], s["seconds"]))
            print("\n".join(s["stderr"].splitlines()[-15:]))
        for g in (grammar, streamed):
            if "constrained decoding: grammar" not in g["stderr"]:
                fail("--llm-constrain auto did not choose the grammar against a llama.cpp server")
            if g["constraints"] != ["grammar"]:
                fail("constrained requests: %s, want only grammar" % g["constraints"])
            if g["finished"] < 3:
                fail("only %d finished replies with the grammar (%s)" % (g["finished"], g["mode"]))
            # Every reply under the grammar is syntax-clean but semantically invalid (random
            # weights), so each search must send repair turns; a repair asks for a shorter reply
            # than a proposal's so that its quoted model fits the 2048-token window.
            if "repair of #" not in g["stderr"]:
                fail("no repair turn was sent under the grammar (%s): the repairs did not fit the window" % g["mode"])
            if g["syntax_clean"] != g["finished"]:
                err, text = g["first_error"]
                fail("%d of %d finished replies under the grammar (%s) have syntax errors; first: %s in:\n%s" % (
                    g["finished"] - g["syntax_clean"], g["finished"], g["mode"], err, text))
        if streamed["streamed"] != streamed["requests"] or grammar["streamed"] != 0:
            fail("--llm-stream: %d of %d requests streamed; without it: %d" % (
                streamed["streamed"], streamed["requests"], grammar["streamed"]))
        for s in rows:
            if s["exit"] not in (0, 1):
                fail("lamda generate --llm-constrain %s exited %d" % (s["mode"], s["exit"]))
            if s["too_long"]:
                fail("%d request(s) exceeded the 2048-token window: %s" % (len(s["too_long"]), s["too_long"][0]))
            if s["refused"]:
                fail("the server refused %d request(s): %s" % (len(s["refused"]), s["refused"][0]))
            if s["over_window"]:
                e = s["over_window"][0]
                fail("a request's prompt (%d tokens) + max_tokens (%s) does not fit n_ctx %d" % (
                    e["prompt_tokens"], e.get("requested_max_tokens"), e["n_ctx"]))
        if off["replies"] < 3:
            fail("only %d replies without constraints" % off["replies"])
        if off["valid"] != 0:
            fail("a random model wrote %d valid models without the grammar" % off["valid"])
        if off["exit"] != 1:
            fail("without constraints the search handed over a model (exit %d)" % off["exit"])
        print("ok")
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
