#!/usr/bin/env bash
# End-to-end checks of `lamda generate` (native builds only: it measures on this machine):
# malformed task files, a search that ends with a feasible model whose measured latency meets the
# constraint, kill -9 at random moments followed by --resume, and resume refusals.
# usage: bash tests/generate_test.sh PATH_TO_LAMDA SOURCE_DIR
set -u
lamda=$1
src=$2
failures=0
passes=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3

pass() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_rc() {  # expect_rc RC COMMAND...: stdout to $tmp/out, stderr to $tmp/err
    local want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then pass; else fail "exit $got (wanted $want): $*"; tail -20 "$tmp/err"; fi
}
expect_in() {  # expect_in FILE TEXT
    if grep -qF -- "$2" "$1"; then pass; else fail "'$2' not in $(basename "$1"):"; head -20 "$1"; fi
}

# ---- Malformed task files: exit 1, the file and the field named --------------------------------
task() { printf '%s\n' "$2" >"$tmp/$1.json"; }
task no_input '{"name": "t", "classes": 10, "constraints": {"latency_ms": 0.1}}'
task bad_latency '{"name": "t", "input": [28, 28, 1], "classes": 10, "constraints": {"latency_ms": -1}}'
task unknown_key '{"name": "t", "input": [28, 28, 1], "classes": 10, "constraints": {"latncy_ms": 0.1}}'
task not_json '{"name": "t", "input": [28, 28, 1'
task wrong_type '{"name": "t", "input": "28x28", "classes": 10, "constraints": {"latency_ms": 0.1}}'
for t in no_input bad_latency unknown_key not_json wrong_type; do
    expect_rc 1 "$lamda" generate "$tmp/$t.json" --out "$tmp/out_$t"
    expect_in "$tmp/err" "$t.json"
done
expect_rc 1 "$lamda" generate "$tmp/no_input.json" --out "$tmp/o"; expect_in "$tmp/err" "input"
expect_rc 1 "$lamda" generate "$tmp/bad_latency.json" --out "$tmp/o"; expect_in "$tmp/err" "constraints.latency_ms"
expect_rc 1 "$lamda" generate "$tmp/unknown_key.json" --out "$tmp/o"; expect_in "$tmp/err" "latency_ms"
expect_rc 1 "$lamda" generate "$tmp/missing.json" --out "$tmp/o"; expect_in "$tmp/err" "missing.json"

# ---- A search on an example task ends with a model that meets its latency limit ---------------
fast=$src/examples/tasks/fmnist_fast.json
expect_rc 0 "$lamda" generate "$fast" --out "$tmp/fast" --objective capacity --max-candidates 25 --json
for f in best.lamda report.json report.html journal.jsonl; do
    [ -s "$tmp/fast/$f" ] && pass || fail "generate wrote no $f"
done
$py - "$tmp/fast" "$fast" <<'PY' && pass || fail "fast task: best model does not meet its limit"
import json, sys
out, task = sys.argv[1], json.load(open(sys.argv[2]))
report = json.load(open(out + "/report.json"))
best = report["best"]
limit = task["constraints"]["latency_ms"]
assert best is not None, "no best"
ms = report["best_confirmed_ms"]
assert ms <= limit, f"confirmed {ms} ms > {limit} ms"
assert best["verdict"] == "feasible"
PY
expect_rc 0 "$lamda" check "$tmp/fast/best.lamda"
# What the generator hands over is already in fmt's canonical form (comment header included).
expect_rc 0 "$lamda" fmt --check "$tmp/fast/best.lamda"

# The real report renders in headless Chromium with one circle per candidate that has a latency
# (tests/report_render.sh checks the page in depth on synthetic candidates).
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chromium" ]; then
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/chromium" \
        --dump-dom "file://$tmp/fast/report.html" >"$tmp/dom.html" 2>/dev/null
    plotted=$($py -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for c in r["summary"] if c.get("measured_ms") is not None or c.get("predicted_ms") is not None))' "$tmp/fast/report.json")
    circles=$(grep -o -F '<circle class="candidate ' "$tmp/dom.html" | wc -l | tr -d ' ')
    [ "$circles" = "$plotted" ] && [ "$plotted" -gt 0 ] && pass || fail "rendered report: $circles circles, $plotted candidates with a latency"
    expect_in "$tmp/dom.html" '<svg id="scatter"'
    expect_in "$tmp/dom.html" 'id="pareto"'
else
    echo "note: chromium not installed, the rendered-report check is skipped"
fi

# ---- Resume refusals --------------------------------------------------------------------------
expect_rc 1 "$lamda" generate "$fast" --out "$tmp/fast" --objective capacity --max-candidates 25
expect_in "$tmp/err" "--resume"
expect_rc 1 "$lamda" generate "$fast" --out "$tmp/fast" --objective capacity --max-candidates 30 --resume --seed 9
expect_in "$tmp/err" "seed"

# ---- kill -9 at any moment, then --resume: nothing recorded is lost or evaluated twice --------
# The uninterrupted run of the same seed records exactly N candidates; so must the killed one.
large=$src/examples/tasks/fmnist_large.json
n=70
for proposer in random offline; do
    run=$tmp/kill_$proposer
    "$lamda" generate "$large" --out "$run" --proposer "$proposer" --seed 5 --objective capacity \
        --max-candidates $n --runs 5 --confirm-runs 5 -q >/dev/null 2>&1 &
    pid=$!
    kills=0
    for at in 8 25 45; do  # kill when the journal has passed `at` candidates
        while kill -0 $pid 2>/dev/null; do
            lines=$({ wc -l <"$run/journal.jsonl"; } 2>/dev/null || echo 0)
            [ "$lines" -gt $at ] && break
            sleep 0.02
        done
        if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
        wait $pid 2>/dev/null
        "$lamda" generate "$large" --out "$run" --proposer "$proposer" --seed 5 --objective capacity \
            --max-candidates $n --runs 5 --confirm-runs 5 -q --resume >/dev/null 2>"$run.err" &
        pid=$!
    done
    wait $pid
    rc=$?
    [ $kills -ge 1 ] && pass || fail "$proposer: the search ended before it could be killed"
    [ $rc -le 1 ] && pass || fail "$proposer: resumed run exited $rc: $(cat "$run.err")"
    $py - "$run/journal.jsonl" $n <<'PY' && pass || fail "$proposer: journal after kill -9 and --resume"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
header, records = json.loads(lines[0]), [json.loads(l) for l in lines[1:]]
assert header["type"] == "header"
assert len(records) == int(sys.argv[2]), f"{len(records)} records, wanted {sys.argv[2]}"
assert [r["index"] for r in records] == list(range(len(records))), "indices not 0..n-1"
assert len({r["hash"] for r in records}) == len(records), "a candidate was evaluated twice"
PY
done

# ---- With a trainer: proxy accuracy in the loop, the best trained in full, XNNPACK agrees -------
# A 3,000/1,000-image slice of Fashion-MNIST keeps this to seconds.
if "$lamda" train --help 2>&1 | grep -q -- "--dataset" && [ -d /usr/share/datasets/fashion-mnist ] &&
        ! "$lamda" train x 2>&1 | grep -q "without a trainer"; then
    mkdir -p "$tmp/fm"
    $py - /usr/share/datasets/fashion-mnist "$tmp/fm" <<'PY'
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for split, n in (("train", 3000), ("t10k", 1000)):
    with gzip.open(f"{src}/{split}-images-idx3-ubyte.gz") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        images = f.read(n * rows * cols)
    with gzip.open(f"{src}/{split}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = f.read(n)
    open(f"{dst}/{split}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", magic, n, rows, cols) + images)
    open(f"{dst}/{split}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 2049, n) + labels)
PY
    printf '{"name": "fm_slice", "input": [28, 28, 1], "classes": 10, "dataset": "./fm",\n "constraints": {"latency_ms": 0.05, "min_accuracy": 0.1}, "budget": {"max_candidates": 3}}\n' >"$tmp/slice.json"
    expect_rc 0 "$lamda" generate "$tmp/slice.json" --out "$tmp/slice" --final-top 1 --final-epochs 2 --json
    [ -s "$tmp/slice/best.safetensors" ] && pass || fail "no best.safetensors after full training"
    expect_rc 0 "$lamda" eval "$tmp/slice/best.lamda" --weights "$tmp/slice/best.safetensors" --dataset "$tmp/fm" --json
    $py - "$tmp/slice/report.json" "$tmp/out" <<'PY' && pass || fail "accuracy: loop, report and XNNPACK disagree"
import json, sys
report, ev = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert report["objective"] == "accuracy", report["objective"]
best = report["best"]
assert best["accuracy"] is not None, "no proxy accuracy in the best record"
final = report["final_training"]
assert final is not None, "the best was not trained in full"
libtorch, xnnpack = final["test_accuracy"], ev["accuracy"]
assert final["val_accuracy"] >= 0.1, final  # min_accuracy, checked on the full training
assert abs(libtorch - xnnpack) <= 0.001, (libtorch, xnnpack)  # 0.1 points
PY
    expect_rc 0 "$lamda" fmt --check "$tmp/slice/best.lamda"

    # ---- Adapting that model (--start-from, docs/adapt.md) ------------------------------------
    # Candidate 0 is the start model with its own weights (its test accuracy through libtorch is
    # XNNPACK's), the others inherit weights and are fine-tuned; the journal names the files.
    printf '{"name": "fm_adapt", "input": [28, 28, 1], "classes": 10, "dataset": "./fm",\n "constraints": {"latency_ms": 0.05, "min_accuracy_drop": 30}, "budget": {"max_candidates": 3}}\n' >"$tmp/adapt.json"
    # The final training also distils the start model (--distill): the report records it.
    "$lamda" generate "$tmp/adapt.json" --out "$tmp/adapt" --start-from "$tmp/slice/best.lamda" \
        --final-top 1 --final-epochs 1 --runs 5 --confirm-runs 5 --distill 0.5 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -le 1 ] && pass || { fail "adapt: exit $rc"; tail -20 "$tmp/err"; }
    expect_in "$tmp/err" "lamda: start model:"
    "$lamda" eval "$tmp/slice/best.lamda" --weights "$tmp/slice/best.safetensors" --dataset "$tmp/fm" --json >"$tmp/eval_start" 2>/dev/null
    $py - "$tmp/adapt" "$tmp/eval_start" "$tmp/err" <<'PY' && pass || fail "adapt: journal or start accuracy wrong"
import json, os, re, sys
out, ev, err = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read()
lines = [json.loads(l) for l in open(out + "/journal.jsonl")]
assert lines[0]["proposer"] == "adapt", lines[0]
recs = [l for l in lines if l.get("type") == "candidate"]
assert len(recs) == 3, len(recs)
assert recs[0]["weights"] == "weights/start.safetensors" and recs[0]["accuracy"] is not None, recs[0]
assert "start model" in recs[0]["inherited"], recs[0]
for r in recs[1:]:
    if r["verdict"] in ("over_predicted", "invalid", "wrong_task"):
        continue
    assert r["parent"] >= 0 and "reused" in r["inherited"], r
    assert os.path.exists(os.path.join(out, r["weights"])), r["weights"]
# The start model's test accuracy through libtorch equals lamda eval's (XNNPACK), to 0.1 points.
m = re.search(r"start model: [0-9.]+ ms, test accuracy ([0-9.]+)%", err)
assert m, err[-500:]
assert abs(float(m.group(1)) / 100 - ev["accuracy"]) <= 0.001, (m.group(1), ev["accuracy"])
report = json.load(open(out + "/report.json"))
assert report["start_model"]["distillation"] == {"weight": 0.5, "temperature": 4}, report["start_model"]
assert "learn from the start model too (distillation: weight 0.50, temperature 4.0)" in err, err[-500:]
PY
    expect_rc 2 "$lamda" generate "$tmp/adapt.json" --out "$tmp/nostart" --distill 0.5
    expect_in "$tmp/err" "--distill: the teacher is the start model: give --start-from"
    # ---- The same with --proposer llm: the model is shown the start model and edits it -----------
    # A stand-in server answers each turn with the start model from its prompt, one conv narrowed
    # (a different width each time); the edits inherit the start model's weights.
    if "$lamda" --version | grep -q "features:.*llm"; then
        $py - "$tmp/llm_port" <<'PY' &
import json, re, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = "\n".join(m["content"] for m in body["messages"])
        start = re.search(r"## Start model\n.*?```lamda\n(.*?)```", prompt, re.S)
        content = "no start model in the prompt"
        if start:
            self.server.turns += 1
            convs = [m for m in re.finditer(r"^(\w+): conv2d out=(\d+)", start.group(1), re.M)]
            m = convs[-1]
            width = max(1, int(m.group(2)) - self.server.turns)
            edited = start.group(1)[:m.start(2)] + str(width) + start.group(1)[m.end(2):]
            content = "Narrowed %s:\n```lamda\n%s```\n" % (m.group(1), edited)
        out = json.dumps({"model": "stand-in", "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
s = HTTPServer(("127.0.0.1", 0), H)
s.timeout = 60
s.turns = 0
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
for _ in range(20): s.handle_request()
PY
        server=$!
        for _ in $(seq 50); do [ -s "$tmp/llm_port" ] && break; sleep 0.1; done
        "$lamda" generate "$tmp/adapt.json" --out "$tmp/adapt_llm" --start-from "$tmp/slice/best.lamda" \
            --proposer llm --llm-url "http://127.0.0.1:$(cat "$tmp/llm_port")/v1" --llm-model m \
            --llm-candidates 1 --llm-max-retries 0 --final-top 1 --final-epochs 1 --runs 5 --confirm-runs 5 \
            >"$tmp/out" 2>"$tmp/err"
        rc=$?
        kill "$server" 2>/dev/null
        wait "$server" 2>/dev/null
        [ $rc -le 1 ] && pass || { fail "adapt with the llm: exit $rc"; tail -20 "$tmp/err"; }
        $py - "$tmp/adapt_llm" <<'PY' && pass || fail "adapt with the llm: journal wrong"
import json, os, sys
out = sys.argv[1]
recs = [json.loads(l) for l in open(out + "/journal.jsonl")]
recs = [r for r in recs if r.get("type") == "candidate"]
assert len(recs) == 3, len(recs)
assert recs[0]["note"].startswith("start model") and recs[0]["weights"] == "weights/start.safetensors", recs[0]
for r in recs[1:]:
    assert r["proposer"] == "llm" and "(an edit of #0)" in r["note"], r
    assert r["verdict"] != "invalid", r
    if r["verdict"] in ("over_predicted", "wrong_task"):
        continue
    assert r["parent"] == 0 and "reused" in r["inherited"] and "0 fresh" in r["inherited"], r
    assert os.path.exists(os.path.join(out, r["weights"])), r["weights"]
PY
    fi

    # Bad input: a start model of another task, or weights of another model, refused with what differs.
    printf '{"name": "fm_rgb", "input": [32, 32, 3], "classes": 10, "dataset": "./fm", "constraints": {"latency_ms": 0.05}}\n' >"$tmp/rgb.json"
    expect_rc 1 "$lamda" generate "$tmp/rgb.json" --out "$tmp/rgb" --start-from "$tmp/slice/best.lamda"
    expect_in "$tmp/err" "its input is 28x28x1, the task's is 32x32x3"
    printf 'input: input shape=28x28x1\npool: gap\nfc: fc out=10\n' >"$tmp/other.lamda"
    expect_rc 1 "$lamda" generate "$tmp/adapt.json" --out "$tmp/other" --start-from "$tmp/other.lamda" \
        --start-weights "$tmp/slice/best.safetensors"
    expect_in "$tmp/err" "do not fit the model"
else
    echo "note: this lamda has no trainer (libtorch) or no fashion-mnist: the accuracy path is skipped"
fi

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
