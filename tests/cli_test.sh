#!/usr/bin/env bash
# End-to-end checks of the `lamda` command line: exit codes, JSON fields, diagnostics.
# usage: bash tests/cli_test.sh PATH_TO_LAMDA SOURCE_DIR [EMULATOR [ARGS...]]
# EMULATOR runs a cross-built lamda, e.g. qemu-aarch64 -L /usr/aarch64-linux-gnu (CMake passes
# its CMAKE_CROSSCOMPILING_EMULATOR; `meson test` sets MESON_EXE_WRAPPER, used when none is given).
set -u
src=$2
if [ $# -gt 2 ]; then
    lamda=("${@:3}" "$1")
elif [ -n "${MESON_EXE_WRAPPER:-}" ]; then
    eval "lamda=($MESON_EXE_WRAPPER \"\$1\")"  # a shell-quoted command line
else
    lamda=("$1")
fi
failures=0
passes=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass() { passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_rc RC COMMAND...: run COMMAND, stdout to $tmp/out, stderr to $tmp/err, check the exit code.
expect_rc() {
    local want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then pass; else fail "exit $got (wanted $want): $*"; cat "$tmp/err"; fi
}
expect_in() {  # expect_in FILE TEXT
    if grep -qF -- "$2" "$1"; then pass; else fail "'$2' not in $(basename "$1"):"; head -20 "$1"; fi
}
json_field() {  # json_field FILE KEY: prints the value of a top-level JSON field
    /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# The zoo through `check --json`: torchvision's exact numbers.
while read -r model params macs; do
    expect_rc 0 "${lamda[@]}" check --json "$src/examples/models/$model.lamda"
    [ "$(json_field "$tmp/out" params)" = "$params" ] && pass || fail "$model params"
    [ "$(json_field "$tmp/out" macs)" = "$macs" ] && pass || fail "$model macs"
    [ "$(json_field "$tmp/out" valid)" = "True" ] && pass || fail "$model valid"
    [ "$(json_field "$tmp/out" output_shape)" = "[1, 1, 1000]" ] && pass || fail "$model output_shape"
    for key in weight_bytes activation_bytes layers; do
        json_field "$tmp/out" "$key" >/dev/null 2>&1 && pass || fail "$model has no $key"
    done
done <<'TABLE'
mobilenet_v2 3504872 300774272
mobilenet_v3_small 2542856 56510400
resnet18 11689512 1814073344
squeezenet1_1 1235496 349151936
mnasnet0_5 2218512 104455968
TABLE

# The table form.
expect_rc 0 "${lamda[@]}" check "$src/examples/models/lenet5.lamda"
expect_in "$tmp/out" "parameters:"
expect_in "$tmp/out" "conv1"

# Invalid models: exit 1, diagnostics with FILE:LINE:COL on stderr.
printf 'i: input shape=28x28x1\nb3: conv2d out=16 kernel=3\nc: conv2d in=32 out=8 kernel=1\nd: conv3d out=4 kernel=3\n' >"$tmp/bad.lamda"
expect_rc 1 "${lamda[@]}" check "$tmp/bad.lamda"
expect_in "$tmp/err" "$tmp/bad.lamda:3:1: error: expected 32 input channels from 'b3', got 16"
expect_in "$tmp/err" "$tmp/bad.lamda:4:4: error: unknown op 'conv3d'"
expect_in "$tmp/err" "hint: did you mean 'conv2d'?"
expect_rc 1 "${lamda[@]}" check --json "$tmp/bad.lamda"
[ "$(json_field "$tmp/out" valid)" = "False" ] && pass || fail "invalid --json valid=false"
expect_rc 1 "${lamda[@]}" check "$tmp/does-not-exist.lamda"
expect_in "$tmp/err" "cannot open the file"
head -c 20000 /dev/urandom >"$tmp/random.lamda"
expect_rc 1 "${lamda[@]}" check "$tmp/random.lamda"

# fmt: canonical output is a fixed point and parses to the same numbers.
expect_rc 0 "${lamda[@]}" fmt "$src/examples/models/mobilenet_v2.lamda"
cp "$tmp/out" "$tmp/canonical.lamda"
expect_rc 0 "${lamda[@]}" fmt --check "$tmp/canonical.lamda"
expect_rc 0 "${lamda[@]}" check --json "$tmp/canonical.lamda"
[ "$(json_field "$tmp/out" params)" = "3504872" ] && pass || fail "fmt output params"
printf 'i: input shape=8x8x1\nc:   conv2d kernel=3 out=4   # comment\n' >"$tmp/messy.lamda"
expect_rc 1 "${lamda[@]}" fmt --check "$tmp/messy.lamda"
expect_rc 0 "${lamda[@]}" fmt -i "$tmp/messy.lamda"
expect_rc 0 "${lamda[@]}" fmt --check "$tmp/messy.lamda"
expect_in "$tmp/messy.lamda" "c: conv2d out=4 kernel=3"

# Device facts: the fields every efficiency figure relies on.
expect_rc 0 "${lamda[@]}" device --json --seconds 0.05
cp "$tmp/out" "$tmp/device.json"  # checked against its schema below
for key in cpu_model architecture isa xnnpack_isa logical_cores peak_gflops; do
    json_field "$tmp/out" "$key" >/dev/null 2>&1 && pass || fail "device --json has no $key"
done
# Under an emulator the measured peak means nothing (and qemu on a busy machine can be slow).
min_peak=0.1
[ ${#lamda[@]} -gt 1 ] && min_peak=0
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["peak_gflops"] > float(sys.argv[2]) and d["logical_cores"] >= 1 else 1)' "$tmp/out" "$min_peak" && pass || fail "device peak/cores"
expect_rc 0 "${lamda[@]}" device --seconds 0.05
expect_in "$tmp/out" "GFLOP/s"
"${lamda[@]}" device --seconds 0 >"$tmp/out" 2>"$tmp/err" && fail "device --seconds 0 accepted" || pass

# bench: through XNNPACK when lamda was built with it; otherwise a clear refusal.
if "${lamda[@]}" bench "$src/examples/models/lenet5.lamda" --runs 3 --warmup 1 --peak 100 --json >"$tmp/out" 2>"$tmp/err"; then
    for key in median_ms p10_ms p90_ms gflops peak_fraction threads per_op context init_ms first_ms p99_ms; do
        json_field "$tmp/out" "$key" >/dev/null 2>&1 && pass || fail "bench --json has no $key"
    done
    expect_rc 0 "${lamda[@]}" bench "$src/examples/models/tiny_mobilenet.lamda" --runs 3 --peak 100
    expect_in "$tmp/out" "of the 100.0 GFLOP/s single-thread FMA peak"
    printf 'i: input shape=4096x4096x64\nc: conv2d out=64 kernel=3\n' >"$tmp/huge.lamda"
    expect_rc 1 "${lamda[@]}" bench "$tmp/huge.lamda" --runs 1 --peak 100
    expect_in "$tmp/err" "more than the limit"
    expect_rc 1 "${lamda[@]}" bench "$tmp/bad.lamda"
    expect_in "$tmp/err" "unknown op 'conv3d'"
    # Every zoo model benches and gives the JSON fields (natively: under qemu full-size models
    # take minutes and the timings mean nothing).
    if [ ${#lamda[@]} -eq 1 ]; then
        for model in "$src"/examples/models/*.lamda; do
            expect_rc 0 "${lamda[@]}" bench "$model" --runs 1 --warmup 0 --peak 100 --json
            /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["median_ms"] > 0 and d["per_op"] else 1)' "$tmp/out" && pass || fail "bench --json $(basename "$model")"
        done
    fi
else
    expect_in "$tmp/err" "built without XNNPACK"
fi
for bad in "--threads 0" "--threads 10000" "--runs 0" "--warmup -1"; do
    # shellcheck disable=SC2086
    "${lamda[@]}" bench "$src/examples/models/lenet5.lamda" $bad >"$tmp/out" 2>"$tmp/err" && fail "bench $bad accepted" || pass
done

# sample: valid models, deterministic, and it refuses to clobber a directory.
expect_rc 0 "${lamda[@]}" sample --count 5 --seed 7 --out "$tmp/samples"
for model in "$tmp"/samples/*.lamda; do
    expect_rc 0 "${lamda[@]}" check "$model"
done
expect_rc 0 "${lamda[@]}" sample --count 5 --seed 7 --out "$tmp/samples_again"
diff -r "$tmp/samples" "$tmp/samples_again" >/dev/null && pass || fail "sample is not deterministic"
expect_rc 1 "${lamda[@]}" sample --count 5 --seed 7 --out "$tmp/samples"
expect_rc 1 "${lamda[@]}" sample --count 1 --family bogus --out "$tmp/samples_bogus"

# Help for the tool and every subcommand.
expect_rc 0 "${lamda[@]}" --help
expect_in "$tmp/out" "check"
for sub in check fmt device bench sample profile predict eval-predictor; do
    expect_rc 0 "${lamda[@]}" "$sub" --help
    expect_in "$tmp/out" "Usage"
done
expect_rc 0 "${lamda[@]}" --version
# Usage errors exit non-zero with a message.
"${lamda[@]}" check >"$tmp/out" 2>"$tmp/err" && fail "check without a model succeeded" || pass
"${lamda[@]}" frobnicate >"$tmp/out" 2>"$tmp/err" && fail "unknown subcommand succeeded" || pass


# --- The conventions (docs/cli.md): one exit-code table, '-', clear usage errors ---------------
# Usage errors exit 2 for every subcommand (CLI11's own 105/106/109 never leak out).
expect_rc 2 "${lamda[@]}" frobnicate
expect_in "$tmp/err" "unknown command 'frobnicate'"
expect_rc 2 "${lamda[@]}" chek "$src/examples/models/lenet5.lamda"
expect_in "$tmp/err" "did you mean 'check'?"
expect_rc 2 "${lamda[@]}"
for sub in check fmt bench sample profile predict eval-predictor generate llm-check train eval import export run; do
    "${lamda[@]}" "$sub" --help >/dev/null 2>&1 || continue  # not built in
    case $sub in train|eval) "${lamda[@]}" --version | grep -q "features:.*torch" || continue ;; esac  # stubs without libtorch
    expect_rc 2 "${lamda[@]}" "$sub" --no-such-option
    expect_in "$tmp/err" "lamda $sub: error:"
done
for sub in check fmt bench export run; do
    expect_rc 2 "${lamda[@]}" "$sub"  # the model is required
done
expect_rc 2 "${lamda[@]}" bench --runs abc "$src/examples/models/lenet5.lamda"
expect_in "$tmp/err" "'abc' is not a number"
expect_rc 2 "${lamda[@]}" bench --runs 0 "$src/examples/models/lenet5.lamda"
expect_in "$tmp/err" "'0' is out of range"
expect_rc 2 "${lamda[@]}" device --seconds abc
expect_rc 0 "${lamda[@]}" --version
expect_in "$tmp/out" "features:"
expect_rc 0 "${lamda[@]}" bench --help
expect_in "$tmp/out" "50"  # the default number of runs is shown
# ... but never a "not given" sentinel the option itself refuses (--epochs 0, --erase -1).
for sub in generate train quantize; do
    "${lamda[@]}" "$sub" --help >"$tmp/out" 2>/dev/null || continue  # not built in
    grep -Eq -- '(--max-candidates|--final-epochs|--final-erase|--epochs|--erase|--shift) .*\]=' "$tmp/out" \
        && fail "$sub --help shows a sentinel default: $(grep -E -- '\]=-?[0-9]' "$tmp/out" | head -3)" || pass
done

# fmt keeps comments, reads '-', and has --json (schema in docs/cli.md).
printf '# head\nmodel m  # name\n\ninput: input shape=8x8x1\nc: conv2d out=4 kernel=3 stride=1 # trail\ngap\n' >"$tmp/commented.lamda"
expect_rc 1 "${lamda[@]}" fmt --check "$tmp/commented.lamda"
expect_rc 0 "${lamda[@]}" fmt -i "$tmp/commented.lamda"
expect_in "$tmp/commented.lamda" "# head"
expect_in "$tmp/commented.lamda" "c: conv2d out=4 kernel=3  # trail"
expect_rc 0 "${lamda[@]}" fmt --check "$tmp/commented.lamda"
expect_rc 0 "${lamda[@]}" fmt - <"$tmp/commented.lamda"
cmp -s "$tmp/out" "$tmp/commented.lamda" && pass || fail "fmt - is not fmt FILE"
expect_rc 2 "${lamda[@]}" fmt -i - <"$tmp/commented.lamda"
for f in "$src"/examples/models/*.lamda "$src/examples/firmware/model.lamda"; do
    expect_rc 0 "${lamda[@]}" fmt --check "$f"
done
expect_rc 0 "${lamda[@]}" fmt --json "$tmp/commented.lamda"
/usr/bin/python3 "$src/tests/cli_schema.py" "$src/docs/cli.md" fmt "$tmp/out" && pass || fail "fmt --json schema"
expect_rc 1 "${lamda[@]}" fmt --json "$tmp/bad.lamda"
/usr/bin/python3 "$src/tests/cli_schema.py" "$src/docs/cli.md" fmt "$tmp/out" && pass || fail "fmt --json schema (invalid)"
expect_rc 0 "${lamda[@]}" check --json - <"$src/examples/models/lenet5.lamda"
/usr/bin/python3 "$src/tests/cli_schema.py" "$src/docs/cli.md" check "$tmp/out" && pass || fail "check --json schema"

# export writes to '-' (standard output), status on stderr.
expect_rc 0 "${lamda[@]}" export "$src/examples/models/lenet5.lamda" --pytorch -
expect_in "$tmp/out" "import torch"
expect_in "$tmp/err" "wrote the module to standard output"
[ -e ./- ] && fail "export --pytorch - wrote a file named '-'" || pass

# A file that is not lamda DSL says what it is and which command reads it.
printf '\x08\x07\x12\x07pytorch' >"$tmp/model.onnx"
expect_rc 1 "${lamda[@]}" check "$tmp/model.onnx"
expect_in "$tmp/err" "this is an ONNX file"
[ "$(wc -l <"$tmp/err")" -le 3 ] && pass || fail "an ONNX file gives more than 3 lines"

# --- --json on every subcommand (schemas in docs/cli.md), '-' where it makes sense ------------------
schema() {  # schema COMMAND: the last output against the command's documented schema
    /usr/bin/python3 "$src/tests/cli_schema.py" "$src/docs/cli.md" "$1" "$tmp/out" && pass || fail "$1 --json schema: $(head -c 300 "$tmp/out")"
}
printf 'model tiny\ni: input shape=4x4x2\nc: conv2d out=3 kernel=1\n' >"$tmp/tiny.lamda"

# sample --json: the files it wrote; the "wrote" status line on stderr, not in the data.
expect_rc 0 "${lamda[@]}" sample --count 3 --seed 2 --out "$tmp/samples_json" --json
schema sample
[ "$(/usr/bin/python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["files"]))' "$tmp/out")" = 3 ] && pass || fail "sample --json lists 3 files"
expect_in "$tmp/err" "wrote 3 models"
grep -q "wrote" "$tmp/out" && fail "sample prints its status line on stdout" || pass

# export --json lists what it wrote; the model may come from '-'.
expect_rc 0 "${lamda[@]}" export - --pytorch "$tmp/tiny.py" --json <"$tmp/tiny.lamda"
schema export
expect_in "$tmp/out" '"kind":"pytorch"'
expect_in "$tmp/tiny.py" "import torch"
expect_rc 2 "${lamda[@]}" export "$tmp/tiny.lamda" --pytorch - --json
expect_rc 1 "${lamda[@]}" export - --pytorch "$tmp/x.py" <"$tmp/bad.lamda"
expect_in "$tmp/err" "<stdin>:4:4: error: unknown op 'conv3d'"

# run --json on an input tensor (safetensors written here), the model from '-'.
/usr/bin/python3 - "$tmp/x.safetensors" <<'PY'
import json, struct, sys
data = struct.pack("<32f", *[i / 32 for i in range(32)])
header = json.dumps({"input": {"dtype": "F32", "shape": [1, 4, 4, 2], "data_offsets": [0, len(data)]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + data)
PY
expect_rc 0 "${lamda[@]}" run - --input "$tmp/x.safetensors" --out "$tmp/y.safetensors" --json <"$tmp/tiny.lamda"
schema run
[ "$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["output"]["shape"])' "$tmp/out")" = "[1, 4, 4, 3]" ] && pass || fail "run --json output shape"
[ -s "$tmp/y.safetensors" ] && pass || fail "run --out wrote nothing"

# import --json (and '-'), when this lamda imports ONNX and a Python with the onnx module can
# write a model.
if "${lamda[@]}" import --help >/dev/null 2>&1 && python3 -c 'import onnx' 2>/dev/null; then
    python3 - "$tmp/small.onnx" <<'PY'
import sys
import onnx
from onnx import TensorProto, helper
w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
                       helper.make_node("Relu", ["c"], ["y"])], "small",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
PY
    if "${lamda[@]}" import "$tmp/small.onnx" >/dev/null 2>&1; then
        expect_rc 0 "${lamda[@]}" import "$tmp/small.onnx" --weights "$tmp/small.safetensors" --json
        schema import
        expect_in "$tmp/out" '"dsl":'
        expect_rc 0 "${lamda[@]}" import - -o - <"$tmp/small.onnx"
        expect_in "$tmp/out" "conv2d"
        expect_rc 2 "${lamda[@]}" import "$tmp/small.onnx" -o - --json
    else
        fail "import of a one-conv ONNX model: $("${lamda[@]}" import "$tmp/small.onnx" 2>&1 | head -3)"
    fi
fi

# llm-check --json also when no server answers: one object with ok=false, exit 1.
if "${lamda[@]}" --version | grep -q "features:.*llm"; then
    expect_rc 1 "${lamda[@]}" llm-check --llm-url http://127.0.0.1:9/v1 --llm-model m --llm-max-retries 0 --llm-timeout 2 --json
    schema llm-check
    [ "$(json_field "$tmp/out" ok)" = "False" ] && pass || fail "llm-check --json ok=false"
    # ... and with one: a stand-in OpenAI-compatible server that answers every chat request.
    if [ ${#lamda[@]} -eq 1 ]; then
        /usr/bin/python3 - "$tmp/llm_port" <<'PY' &
import json, re, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self): self.reply(404, {"error": "not found"})
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if self.path.endswith("/chat/completions"):
            # A search's turn: note how many models it asked for, answer with one small model.
            asked = re.search(r"Propose (\d+) new models", body)
            content = "ready"
            if asked:
                open(sys.argv[1] + ".asked", "a").write(asked.group(1) + "\n")
                content = ("```lamda\nmodel m%d\ni: input shape=28x28x1\nc: conv2d out=%d kernel=3 stride=2 act=relu\n"
                           "g: gap\nf: fc out=10\n```" % (self.server.turns, 4 + self.server.turns))
                self.server.turns += 1
            self.reply(200, {"model": "stand-in", "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}]})
        else:
            self.reply(404, {"error": "not found"})
s = HTTPServer(("127.0.0.1", 0), H)
s.timeout = 30
s.turns = 0
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
for _ in range(40): s.handle_request()
PY
        server=$!
        for _ in $(seq 50); do [ -s "$tmp/llm_port" ] && break; sleep 0.1; done
        expect_rc 0 "${lamda[@]}" llm-check --llm-url "http://127.0.0.1:$(cat "$tmp/llm_port")/v1" --llm-model m --llm-max-retries 0 --json
        schema llm-check
        [ "$(json_field "$tmp/out" answered_by)" = "stand-in" ] && pass || fail "llm-check --json answered_by"
        # A search asks for one model per parallel evaluator (at least 3) unless --llm-candidates says.
        llm_url="http://127.0.0.1:$(cat "$tmp/llm_port")/v1"
        for run in "2 -" "5 -" "5 2"; do
            set -- $run
            rm -f "$tmp/llm_port.asked"
            extra=(); [ "$2" != - ] && extra=(--llm-candidates "$2")
            expect_rc 0 "${lamda[@]}" generate "$src/examples/tasks/fmnist_fast.json" --out "$tmp/llm_w$1$2" \
                --objective capacity --max-candidates 1 --proposer llm --llm-url "$llm_url" --llm-model m \
                --llm-max-retries 0 --workers "$1" "${extra[@]}"
            want=$([ "$2" != - ] && echo "$2" || { [ "$1" -gt 3 ] && echo "$1" || echo 3; })
            [ "$(head -n1 "$tmp/llm_port.asked" 2>/dev/null)" = "$want" ] && pass ||
                fail "generate --workers $1 --llm-candidates $2: asked for $(head -n1 "$tmp/llm_port.asked" 2>/dev/null), want $want"
        done
        kill "$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
fi

# bench: what TFLite's benchmark_model reports, microseconds for tiny models, --duration, a
# context block, and no "% of peak" without --peak.
if "${lamda[@]}" --version | grep -q "features:.*xnnpack"; then
    expect_rc 0 "${lamda[@]}" bench - --runs 5 --warmup 1 --json <"$tmp/tiny.lamda"
    schema bench
    for key in host date load_average lamda_version xnnpack_version threads cpus; do
        /usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))["context"][sys.argv[2]]' "$tmp/out" "$key" 2>/dev/null && pass || fail "bench --json context has no $key"
    done
    grep -q peak_fraction "$tmp/out" && fail "bench --json has peak_fraction without --peak" || pass
    expect_rc 0 "${lamda[@]}" bench "$tmp/tiny.lamda" --runs 5 --warmup 1
    for text in "init:" "first inference" "mean" "std" "p95" "p99" "for % of peak: --peak G"; do
        expect_in "$tmp/out" "$text"
    done
    if [ ${#lamda[@]} -eq 1 ]; then  # natively: a 4x4 conv takes microseconds, and Linux has the RSS peak
        grep -Eq "median [0-9]+\.[0-9]{2} us" "$tmp/out" && pass || fail "bench prints a tiny model's median in us: $(grep latency "$tmp/out")"
        expect_in "$tmp/out" "memory:"
        # (runs until 0.3 s have passed, or until the cap of 1,000,000 runs: a 4x4 conv takes ~0.1 us)
        expect_rc 0 "${lamda[@]}" bench "$tmp/tiny.lamda" --duration 0.3 --runs 7 --json
        /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["runs"] > 7 and (d["timed_s"] >= 0.3 or d["runs"] == 1000000) and d["per_op_runs"] == 7 else 1)' "$tmp/out" && pass || fail "bench --duration 0.3: $(head -c 300 "$tmp/out")"
    fi
    expect_rc 2 "${lamda[@]}" bench "$tmp/tiny.lamda" --duration -1
    expect_rc 2 "${lamda[@]}" bench "$tmp/tiny.lamda" --duration abc
fi

# train: the images it really trains on, and progress lines within an epoch (a log gets plain
# lines; --progress 0: after every step).
if "${lamda[@]}" --version | grep -q "features:.*torch" && [ -f /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz ] &&
        [ ${#lamda[@]} -eq 1 ]; then
    printf 'i: input shape=28x28x1\nc: conv2d out=4 kernel=3 stride=2\ng: gap\nf: fc out=10\n' >"$tmp/small_train.lamda"
    expect_rc 0 "${lamda[@]}" train "$tmp/small_train.lamda" --dataset fashion-mnist --subset 1000 --epochs 1 \
        --batch 250 --progress 0
    expect_in "$tmp/err" ": 1000 training images (a seeded sample of the 54000 left after 6000 of 60000 held out"
    expect_in "$tmp/err" "epoch 1/1: 500/1000 images (50%), loss"
    expect_in "$tmp/err" "epoch 1/1: 1000/1000 images (100%), loss"
    grep -q $'\r' "$tmp/err" && fail "train draws '\\r' progress into a log" || pass
fi

# --- The other commands' --json (schemas in docs/cli.md) ------------------------------------------
cp "$tmp/device.json" "$tmp/out"
schema device

# A dataset of 4x4 images small enough for every build, qemu included (IDX, docs/training.md): 20
# training and 4 test images of 2 classes; dsn has no test set. The classifier has a batch norm to
# fold and a softmax that stays in float when quantized.
/usr/bin/python3 - "$tmp" <<'PY'
import os, struct, sys
def idx(path, dims, data):
    open(path, "wb").write(bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", x) for x in dims) + bytes(data))
for d in ("ds", "dsn"):
    os.makedirs(os.path.join(sys.argv[1], d))
    idx(os.path.join(sys.argv[1], d, "train-images-idx3-ubyte"), [20, 4, 4], [(i * 37 + p * 11) * 7 % 256 for i in range(20) for p in range(16)])
    idx(os.path.join(sys.argv[1], d, "train-labels-idx1-ubyte"), [20], [i % 2 for i in range(20)])
idx(os.path.join(sys.argv[1], "ds", "t10k-images-idx3-ubyte"), [4, 4, 4], [(i * 41 + p * 13) * 5 % 256 for i in range(4) for p in range(16)])
idx(os.path.join(sys.argv[1], "ds", "t10k-labels-idx1-ubyte"), [4], [i % 2 for i in range(4)])
PY
printf 'model cls\ni: input shape=4x4x1\nc: conv2d out=3 kernel=1\nb: batchnorm\nr: relu\ng: gap\nf: fc out=2\ns: softmax\n' >"$tmp/cls.lamda"
expect_rc 0 "${lamda[@]}" run "$tmp/cls.lamda" --seed 3 --save-weights "$tmp/cls.safetensors"

# eval --json (XNNPACK) on the first 2 test images.
if "${lamda[@]}" --version | grep -q "features:.*xnnpack"; then
    expect_rc 0 "${lamda[@]}" eval "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" --limit 2 --json
    schema eval
    [ "$(json_field "$tmp/out" n)" = 2 ] && pass || fail "eval --limit 2 --json: n"
fi

# quantize --json: with the accuracy block, and (percentile, --eval 0) without it.
if "${lamda[@]}" quantize --help >/dev/null 2>&1; then
    expect_rc 0 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" \
        --out "$tmp/cls_int8.safetensors" --calibration 4 --eval 4 --json
    schema quantize
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["folded"] == ["b"] and [f["layer"] for f in d["float_layers"]] == ["s"] and d["accuracy"]["images"] == 4 else 1)' "$tmp/out" && pass || fail "quantize --json: folded, float_layers, accuracy: $(head -c 300 "$tmp/out")"
    expect_rc 0 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" \
        --out "$tmp/cls_int8p.safetensors" --calibration 4 --eval 0 --range percentile --json
    schema quantize
    grep -q '"accuracy"' "$tmp/out" && fail "quantize --eval 0 --json has accuracy" || pass
    # --fake-quant and --qat-epochs (libtorch): forced QAT (negative threshold) reports validation
    # before/after and the test accuracy of both; without libtorch both are refused in one line.
    if "${lamda[@]}" --version | grep -q "features:.*torch"; then
        expect_rc 0 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" \
            --out "$tmp/cls_qat.safetensors" --calibration 4 --eval 4 --fake-quant --qat-epochs 1 --qat-threshold -100 --json
        schema quantize
        /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); q=d["qat"]; a=d["accuracy"]; sys.exit(0 if q["ran"] and q["validation"]["images"] == 2 and len(q["epoch_loss"]) == 1 and "fake_quant" in a and (q["kept"] == "ptq" or "ptq_int8" in a) else 1)' "$tmp/out" && pass || fail "quantize --qat-epochs --json: $(head -c 400 "$tmp/out")"
        expect_rc 0 "${lamda[@]}" eval "$tmp/cls.lamda" --weights "$tmp/cls_qat.safetensors" --dataset "$tmp/ds" --json
        [ "$(json_field "$tmp/out" precision)" = int8 ] && pass || fail "eval of the QAT file: precision"
        expect_rc 1 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" \
            --out "$tmp/cls_qat.safetensors" --qat-epochs -2
        expect_in "$tmp/err" "--qat-epochs must be in 1..1000 (0: no QAT), got -2"
    else
        expect_rc 1 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" \
            --out "$tmp/cls_qat.safetensors" --qat-epochs 2
        expect_in "$tmp/err" "--qat-epochs needs libtorch"
    fi
    # export --cpp with an int8 file: an int8 header (int8_t weights, its own precision), "precision"
    # int8 in the JSON and the status line, and its weight bytes well under the float header's.
    expect_rc 0 "${lamda[@]}" export "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --cpp "$tmp/cls.hpp" --json
    schema export
    [ "$(json_field "$tmp/out" precision)" = float32 ] && pass || fail "export --cpp of an fp32 file: precision"
    cp "$tmp/out" "$tmp/export_f32.json"
    expect_rc 0 "${lamda[@]}" export "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --cpp "$tmp/cls_int8.hpp" --json
    schema export
    [ "$(json_field "$tmp/out" precision)" = int8 ] && pass || fail "export --cpp of an int8 file: precision"
    [ "$(json_field "$tmp/out" folded)" = True ] && pass || fail "export --cpp of an int8 file: folded (b is folded)"
    /usr/bin/python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["written"][0]["weight_bytes"]; q=json.load(open(sys.argv[2]))["written"][0]["weight_bytes"]; sys.exit(0 if 0 < q < f else 1)' \
        "$tmp/export_f32.json" "$tmp/out" && pass || fail "export --cpp int8 weight_bytes not below float's"
    expect_in "$tmp/cls_int8.hpp" 'inline constexpr const char* precision = "int8";'
    expect_in "$tmp/cls_int8.hpp" "alignas(16) inline constexpr std::int8_t q0[3] = {"
    expect_in "$tmp/cls_int8.hpp" "// layers in float: s (0 float weights)"
    expect_rc 0 "${lamda[@]}" export "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --cpp "$tmp/cls_int8b.hpp"
    expect_in "$tmp/err" "(namespace cls, int8,"
    # Wrong precision: an int8 file where fp32 weights are needed says so in one line; an int8 file
    # with a negative weight scale is refused naming the file and the tensor.
    expect_rc 1 "${lamda[@]}" export "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --pytorch "$tmp/cls.py"
    expect_in "$tmp/err" "cls_int8.safetensors: is an int8 weights file (lamda quantize), but --pytorch"
    expect_rc 1 "${lamda[@]}" run "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --input "$tmp/x.safetensors" --out "$tmp/y.safetensors"
    expect_in "$tmp/err" "cls_int8.safetensors: is an int8 weights file (lamda quantize), but run takes fp32 weights"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && pass || fail "run of an int8 file: more than one line of error"
    expect_rc 1 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --dataset "$tmp/ds" --out "$tmp/q2.safetensors"
    expect_in "$tmp/err" "is already an int8 file"
    /usr/bin/python3 - "$tmp/cls_int8.safetensors" "$tmp/cls_negscale_int8.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
begin, end = json.loads(raw[8:8 + n])["c.weight_scale"]["data_offsets"]
out = bytearray(raw)
out[8 + n + begin:8 + n + begin + 4] = struct.pack("<f", -0.5)
open(sys.argv[2], "wb").write(bytes(out))
PY
    expect_rc 1 "${lamda[@]}" export "$tmp/cls.lamda" --weights "$tmp/cls_negscale_int8.safetensors" --cpp "$tmp/neg.hpp"
    expect_in "$tmp/err" "cls_negscale_int8.safetensors: tensor 'c.weight_scale': scale of channel 0 is negative"
    [ -e "$tmp/neg.hpp" ] && fail "export --cpp of a bad int8 file wrote a header" || pass
fi
# eval with an int8 file: through XNNPACK's int8 operators; natively on x86 the same 4 predictions
# as the integer reference quantize evaluated with (docs/int8.md: bit for bit on x86).
if "${lamda[@]}" quantize --help >/dev/null 2>&1 && "${lamda[@]}" --version | grep -q "features:.*xnnpack"; then
    expect_rc 0 "${lamda[@]}" quantize "$tmp/cls.lamda" --weights "$tmp/cls.safetensors" --dataset "$tmp/ds" \
        --out "$tmp/cls_int8.safetensors" --calibration 4 --eval 4 --json
    cp "$tmp/out" "$tmp/quantize.json"
    expect_rc 0 "${lamda[@]}" eval "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --dataset "$tmp/ds" --json
    schema eval
    [ "$(json_field "$tmp/out" precision)" = int8 ] && pass || fail "eval of an int8 file: precision"
    if [ ${#lamda[@]} -eq 1 ] && [ "$(uname -m)" = x86_64 ]; then
        /usr/bin/python3 -c 'import json,sys; q=json.load(open(sys.argv[1]))["accuracy"]["int8"]; e=json.load(open(sys.argv[2]))["accuracy"]; sys.exit(0 if abs(q - e) < 1e-9 else 1)' \
            "$tmp/quantize.json" "$tmp/out" && pass || fail "eval int8 accuracy differs from quantize's integer reference"
    fi
    expect_rc 0 "${lamda[@]}" eval "$tmp/cls.lamda" --weights "$tmp/cls_int8.safetensors" --dataset "$tmp/ds"
    expect_in "$tmp/out" "precision: int8 (layers without an int8 kernel in float: 1)"
    # A quantized file with a zero activation scale: refused, naming the file and the tensor.
    /usr/bin/python3 - "$tmp/cls_int8.safetensors" "$tmp/cls_bad_int8.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
begin, end = json.loads(raw[8:8 + n])["c.act_scale"]["data_offsets"]
out = bytearray(raw)
out[8 + n + begin:8 + n + end] = struct.pack("<f", 0.0)
open(sys.argv[2], "wb").write(bytes(out))
PY
    expect_rc 1 "${lamda[@]}" eval "$tmp/cls.lamda" --weights "$tmp/cls_bad_int8.safetensors" --dataset "$tmp/ds"
    expect_in "$tmp/err" "cls_bad_int8.safetensors"
    expect_in "$tmp/err" "c.act_scale"
fi

# train --json (libtorch, natively): with --out, and on a dataset without a test set (nulls).
if "${lamda[@]}" --version | grep -q "features:.*torch" && [ ${#lamda[@]} -eq 1 ]; then
    expect_rc 0 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/ds" --epochs 1 --batch 8 --out "$tmp/cls_trained.safetensors" --json
    schema train
    [ "$(json_field "$tmp/out" weights)" = "$tmp/cls_trained.safetensors" ] && pass || fail "train --json weights"
    expect_rc 0 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/dsn" --epochs 1 --batch 8 --json
    schema train
    # --max-seconds that no epoch fits: one epoch all the same, the rest not begun.
    expect_rc 0 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/dsn" --epochs 3 --max-seconds 0.001 --batch 8 --json
    schema train
    [ "$(json_field "$tmp/out" epochs)" = 1 ] && [ "$(json_field "$tmp/out" epochs_trained)" = 1 ] && pass ||
        fail "train --max-seconds: $(head -c 300 "$tmp/out")"
    [ "$(json_field "$tmp/out" test_accuracy)" = None ] && [ "$(json_field "$tmp/out" weights)" = None ] && pass ||
        fail "train --json without a test set or --out: $(head -c 300 "$tmp/out")"
    # Fine-tuning (--init) with a teacher whose weights are folded, as --out wrote them.
    expect_rc 0 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/ds" --epochs 1 --batch 8 --init "$tmp/cls.safetensors" \
        --teacher "$tmp/cls.lamda" --teacher-weights "$tmp/cls_trained.safetensors" --distill 0.7 --json
    schema train
    [ "$(json_field "$tmp/out" init)" = "$tmp/cls.safetensors" ] && pass || fail "train --json init"
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["distillation"]; sys.exit(d["weight"]!=0.7 or d["temperature"]!=4)' "$tmp/out" &&
        pass || fail "train --json distillation: $(head -c 400 "$tmp/out")"
    printf 'model cls3\ni: input shape=4x4x1\ng: gap\nf: fc out=3\n' >"$tmp/cls3.lamda"
    expect_rc 0 "${lamda[@]}" run "$tmp/cls3.lamda" --seed 3 --save-weights "$tmp/cls3.safetensors"
    expect_rc 1 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/ds" --epochs 1 --teacher "$tmp/cls3.lamda"
    expect_in "$tmp/err" "the distillation teacher's output 'f' is 1x1x3 but the model's is 1x1x2"
    expect_rc 2 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/ds" --distill 0.5
    expect_in "$tmp/err" "--distill requires --teacher"
    # libtorch is the training module's (lamda-train.so), opened when a command trains: lamda
    # itself does not link it (it cost every command 0.7 s at start-up), and a module that
    # cannot be loaded is a one-line error naming where it was looked for.
    if command -v ldd >/dev/null; then
        ldd "${lamda[0]}" >"$tmp/ldd" && pass || fail "ldd ${lamda[0]}"
        grep -q "libtorch" "$tmp/ldd" && fail "lamda links libtorch itself: $(grep libtorch "$tmp/ldd")" || pass
    fi
    LAMDA_TRAIN_MODULE=$tmp/no-such-module.so expect_rc 1 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/ds" --epochs 1
    expect_in "$tmp/err" "lamda-train.so, which could not be loaded ($tmp/no-such-module.so: not found)"
    expect_in "$tmp/err" "hint: set LAMDA_TRAIN_MODULE"
    printf 'not an ELF file\n' >"$tmp/bad-module.so"
    LAMDA_TRAIN_MODULE=$tmp/bad-module.so expect_rc 1 "${lamda[@]}" train "$tmp/cls.lamda" --dataset "$tmp/ds" --epochs 1
    expect_in "$tmp/err" "$tmp/bad-module.so"
fi

# examples/adapt (docs/adapt.md's Fashion-MNIST adaptation): the start model is what its header
# says, and each task file starts a search (one candidate, no training).
expect_rc 0 "${lamda[@]}" check --json "$src/examples/adapt/fmnist_large_start.lamda"
[ "$(json_field "$tmp/out" params)" = 549690 ] && pass || fail "fmnist_large_start params"
if "${lamda[@]}" --version | grep -q "features:.*latency" && "${lamda[@]}" --version | grep -q "features:.*xnnpack"; then
    for task in "$src"/examples/adapt/*.json; do
        "${lamda[@]}" generate "$task" --out "$tmp/adapt_$(basename "$task" .json)" --objective capacity --max-candidates 1 \
            --runs 3 --confirm-runs 3 -q >"$tmp/out" 2>"$tmp/err"
        rc=$?
        [ $rc -le 1 ] && pass || { fail "generate $(basename "$task"): exit $rc"; head -5 "$tmp/err"; }
    done
fi

# generate --json: a feasible search (best an object), an infeasible one (best null, exit 1), and,
# with libtorch, a trained one (val_accuracy, and test_accuracy from the full training at the end).
# 3 candidates on an 8x8 input: under a second, also under qemu.
if "${lamda[@]}" --version | grep -q "features:.*latency" && "${lamda[@]}" --version | grep -q "features:.*xnnpack"; then
    printf '{"name": "t", "input": [8, 8, 1], "classes": 2, "constraints": {"latency_ms": 1000, "threads": 1}}\n' >"$tmp/task.json"
    printf '{"name": "t", "input": [8, 8, 1], "classes": 2, "constraints": {"latency_ms": 0.000001, "threads": 1}}\n' >"$tmp/task_none.json"
    expect_rc 0 "${lamda[@]}" generate "$tmp/task.json" --out "$tmp/gen" --objective capacity --max-candidates 3 \
        --runs 3 --confirm-runs 3 --json -q
    schema generate
    /usr/bin/python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; sys.exit(0 if b["macs"] > 0 and "confirmed_ms" in b else 1)' "$tmp/out" && pass || fail "generate --json best: $(head -c 300 "$tmp/out")"
    expect_rc 1 "${lamda[@]}" generate "$tmp/task_none.json" --out "$tmp/gen_none" --objective capacity --max-candidates 3 \
        --runs 3 --confirm-runs 3 --json -q
    schema generate
    [ "$(json_field "$tmp/out" best)" = None ] && pass || fail "generate --json: best is not null without a feasible model"
    # An int8 task: measured in int8 (the journal and the summary say so).
    printf '{"name": "t", "input": [8, 8, 1], "classes": 2, "constraints": {"latency_ms": 1000, "threads": 1}, "precision": "int8"}\n' >"$tmp/task_int8.json"
    expect_rc 0 "${lamda[@]}" generate "$tmp/task_int8.json" --out "$tmp/gen_int8" --objective capacity --max-candidates 3 \
        --runs 3 --confirm-runs 3 --json -q
    schema generate
    /usr/bin/python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["best"]["precision"] == "int8" else 1)' "$tmp/out" && grep -q '"precision":"int8"' "$tmp/gen_int8/journal.jsonl" &&
        ! grep -q '"precision":"fp32"' "$tmp/gen_int8/journal.jsonl" && pass || fail "generate int8: $(head -c 300 "$tmp/out")"
    if "${lamda[@]}" --version | grep -q "features:.*torch" && [ ${#lamda[@]} -eq 1 ]; then
        printf '{"name": "t", "input": [4, 4, 1], "classes": 2, "dataset": "%s", "constraints": {"latency_ms": 1000, "threads": 1}}\n' \
            "$tmp/ds" >"$tmp/task_ds.json"
        expect_rc 0 "${lamda[@]}" generate "$tmp/task_ds.json" --out "$tmp/gen_ds" --max-candidates 2 --runs 3 --confirm-runs 3 \
            --final-top 1 --final-epochs 1 --json -q
        schema generate
        /usr/bin/python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; sys.exit(0 if "val_accuracy" in b and "test_accuracy" in b and 0 < b["final_val_accuracy"] <= 1 else 1)' "$tmp/out" && pass || fail "generate --json trained best: $(head -c 300 "$tmp/out")"
        # Trained in int8: best.safetensors is the int8 file (lamda eval says so) with the fp32 one beside.
        sed 's/"threads": 1}/"threads": 1}, "precision": "int8"/' "$tmp/task_ds.json" >"$tmp/task_ds_int8.json"
        expect_rc 0 "${lamda[@]}" generate "$tmp/task_ds_int8.json" --out "$tmp/gen_ds_int8" --max-candidates 2 --runs 3 \
            --confirm-runs 3 --final-top 1 --final-epochs 1 --json -q
        schema generate
        /usr/bin/python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; sys.exit(0 if b["precision"] == "int8" and "float_test_accuracy" in b else 1)' "$tmp/out" &&
            [ -s "$tmp/gen_ds_int8/best_fp32.safetensors" ] && pass || fail "generate int8 trained: $(head -c 300 "$tmp/out")"
        expect_rc 0 "${lamda[@]}" eval "$tmp/gen_ds_int8/best.lamda" --weights "$tmp/gen_ds_int8/best.safetensors" --dataset "$tmp/ds" --json
        [ "$(json_field "$tmp/out" precision)" = int8 ] && pass || fail "eval of an int8 search's best: $(head -c 300 "$tmp/out")"
    fi
fi

# profile --json (at least 5 s of measuring), then predict --json and eval-predictor --json from
# the profile it wrote; natively only (under qemu the timings mean nothing).
if "${lamda[@]}" --version | grep -q "features:.*latency" && "${lamda[@]}" --version | grep -q "features:.*xnnpack" &&
        [ ${#lamda[@]} -eq 1 ]; then
    expect_rc 0 "${lamda[@]}" profile --out "$tmp/profile.json" --budget-s 5 --calibration-models 0 -q --json
    schema profile
    /usr/bin/python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["profiles"]; sys.exit(0 if len(p) == 1 and p[0]["out"] == sys.argv[2] and p[0]["samples"] > 0 and p[0]["kinds"] else 1)' "$tmp/out" "$tmp/profile.json" && pass || fail "profile --json: $(head -c 300 "$tmp/out")"
    expect_rc 0 "${lamda[@]}" predict "$src/examples/models/lenet5.lamda" --profile "$tmp/profile.json" --json
    schema predict
    [ "$(json_field "$tmp/out" model)" = lenet5 ] && pass || fail "predict --json model"
    [ "$(json_field "$tmp/out" precision)" = fp32 ] && pass || fail "predict --json precision"
    mkdir "$tmp/zoo" && cp "$tmp/tiny.lamda" "$tmp/zoo/"
    expect_rc 0 "${lamda[@]}" eval-predictor --profile "$tmp/profile.json" --models 2 --zoo "$tmp/zoo" --runs 3 --rounds 1 --json
    schema eval-predictor
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["n"] == 2 and "zoo" in d["families"] and len(d["models"]) == 3 else 1)' "$tmp/out" && pass || fail "eval-predictor --json: $(head -c 300 "$tmp/out")"
    # int8 (docs/latency.md): an fp32-only profile refuses it, saying what to run; a profile made
    # with --precision both predicts it, and eval-predictor reports each precision apart.
    expect_rc 1 "${lamda[@]}" predict "$src/examples/models/lenet5.lamda" --profile "$tmp/profile.json" --precision int8
    expect_in "$tmp/err" "lamda profile --precision both"
    expect_rc 2 "${lamda[@]}" predict "$src/examples/models/lenet5.lamda" --profile "$tmp/profile.json" --precision int4
    # (A 6 s budget under ASan or qemu leaves int8 too few samples to fit a kind: the list may be empty.)
    expect_rc 0 "${lamda[@]}" profile --out "$tmp/profile8.json" --budget-s 6 --calibration-models 0 --precision both -q --json
    schema profile
    /usr/bin/python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["profiles"][0]; sys.exit(0 if p["precisions"] == ["fp32", "int8"] and p["int8"]["samples"] > 0 and isinstance(p["int8"]["kinds"], list) else 1)' "$tmp/out" && pass || fail "profile --precision both --json: $(head -c 300 "$tmp/out")"
    expect_rc 0 "${lamda[@]}" predict "$src/examples/models/lenet5.lamda" --profile "$tmp/profile8.json" --precision int8 --json
    schema predict
    [ "$(json_field "$tmp/out" precision)" = int8 ] && pass || fail "predict --precision int8 --json precision"
    /usr/bin/python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["predicted_ms"] > 0 else 1)' "$tmp/out" && pass || fail "predict --precision int8: $(head -c 300 "$tmp/out")"
    expect_rc 0 "${lamda[@]}" predict "$src/examples/models/lenet5.lamda" --profile "$tmp/profile8.json" --precision int8
    expect_in "$tmp/out" "(int8, "
    expect_rc 0 "${lamda[@]}" eval-predictor --profile "$tmp/profile8.json" --models 2 --zoo "$tmp/zoo" --runs 3 --rounds 1 --json
    schema eval-predictor
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["precision"] == "fp32" and sorted(d["by_precision"]) == ["fp32", "int8"] and d["by_precision"]["int8"]["n"] == 2 and sorted(m["precision"] for m in d["models"]) == ["fp32"] * 3 + ["int8"] * 3 else 1)' "$tmp/out" && pass || fail "eval-predictor int8 --json: $(head -c 300 "$tmp/out")"
fi

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
