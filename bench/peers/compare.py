#!/usr/bin/python3
"""lamda's XNNPACK executor side by side with ONNX Runtime, on the same ONNX models.

    (cd bench/peers && npm install --ignore-scripts)     # onnxruntime-node 1.17.3 (CPU)
    /usr/bin/python3 bench/peers/compare.py build/lamda [--rounds 5] [--runs 30] [MODEL ...]

Each model (default: mobilenet_v2, mobilenet_v3_small, squeezenet1_1, resnet18) is built by
torchvision with random weights (weights=None; nothing is downloaded), exported to ONNX
(batch norms kept), and imported with `lamda import`. Then, for 1 and 2 threads, rounds
alternate between `lamda bench` (XNNPACK, the imported model and weights) and ONNX Runtime
(`node ort_bench.js`, the same ONNX file, all graph optimisations), each round a fresh process
with warm-up runs; the table gives the median over rounds of each round's median latency, and
lamda / ONNX Runtime (below 1: lamda is faster). Needs python3-torch, python3-torchvision,
python3-onnx, node, and a lamda built with XNNPACK and ONNX import.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r.stdout


def export(name, work):
    import torch
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    path = os.path.join(work, name + ".onnx")
    torch.onnx.export(model, torch.rand(1, 3, 224, 224), path, opset_version=14,
                      input_names=["input"], training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=False)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lamda")
    ap.add_argument("models", nargs="*",
                    default=["mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1", "resnet18"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        sys.exit("compare.py: run `npm install --ignore-scripts` in bench/peers first")
    lamda = os.path.abspath(args.lamda)
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            onnx_path = export(name, work)
            dsl = os.path.join(work, name + ".lamda")
            w = os.path.join(work, name + ".safetensors")
            run([lamda, "import", onnx_path, "-o", dsl, "--weights", w])
            for t in threads:
                ours, theirs = [], []
                for _ in range(args.rounds):  # interleaved: lamda, ORT, lamda, ORT, ...
                    b = json.loads(run([lamda, "bench", dsl, "--weights", w, "--threads", str(t),
                                        "--runs", str(args.runs), "--warmup", str(args.warmup),
                                        "--peak", "1", "--json"]))
                    ours.append(b["median_ms"])
                    o = json.loads(run(["node", os.path.join(HERE, "ort_bench.js"), onnx_path,
                                        str(t), str(args.runs), str(args.warmup)]))
                    theirs.append(o["median_ms"])
                a, b = statistics.median(ours), statistics.median(theirs)
                rows.append((name, t, a, b))
                print(f"{name:20s} {t} thread{'s' if t > 1 else ' '}  lamda {a:8.3f} ms  "
                      f"onnxruntime {b:8.3f} ms  ratio {a / b:5.2f}", file=sys.stderr)
    print("| model | threads | lamda (XNNPACK) ms | ONNX Runtime ms | lamda / ORT |")
    print("|---|---|---|---|---|")
    for name, t, a, b in rows:
        print(f"| {name} | {t} | {a:.3f} | {b:.3f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
