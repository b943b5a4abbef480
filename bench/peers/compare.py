#!/usr/bin/python3
"""lamda's XNNPACK executor side by side with ONNX Runtime, on the same ONNX models.

    (cd bench/peers && npm ci --ignore-scripts)     # onnxruntime-node as package-lock.json pins it (CPU)
    /usr/bin/python3 bench/peers/compare.py build/lamda [--rounds 5] [--runs 30] [--export default,preserve]
        [--baseline OLD_LAMDA] [--pin CPU] [MODEL ...]

Each torchvision model (default: mobilenet_v2, mobilenet_v3_small, mnasnet0_5, squeezenet1_1,
resnet18) is built with random weights (weights=None; nothing is downloaded); lamda's 28x28 zoo
models (lenet5, tiny_mobilenet) go through `lamda export --pytorch`. Each is exported to ONNX in
one or both styles:
  default   torch.onnx.export's defaults (opset 13 here, eval mode, constant folding: batch norm
            folded into the convolutions, HardSwish written as x * HardSigmoid(x)): what users do
  preserve  opset 14, TrainingMode.PRESERVE, no constant folding (batch norms kept)
and imported with `lamda import`. Then, for 1 and 2 threads, rounds
alternate between `lamda bench` (XNNPACK, the imported model and weights) and ONNX Runtime
(`node ort_bench.js`, the same ONNX file, all graph optimisations), each round a fresh process
with warm-up runs; the table gives the median over rounds of each round's median latency, and
lamda / ONNX Runtime (below 1: lamda is faster). --baseline OLD_LAMDA times another lamda build
(an earlier commit) in the same rounds, on the same imported files, for a before/after. Needs python3-torch, python3-torchvision,
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


def run(cmd, cpu=None):
    """cmd's stdout; `cpu`: pin the process to that CPU (os.sched_setaffinity)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=pin)
    if r.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r.stdout


ZOO_28 = {"lenet5", "tiny_mobilenet"}  # lamda's own 28x28x1 models (examples/models)


def build_model(name, lamda, work):
    """The model as a torch module and its input shape (NCHW)."""
    import torch
    torch.manual_seed(0)
    if name in ZOO_28:
        import importlib.util
        src = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models", name + ".lamda")
        py = os.path.join(work, name + "_module.py")
        run([lamda, "export", src, "--pytorch", py])
        spec = importlib.util.spec_from_file_location(name + "_module", py)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.Model().eval(), (1, 1, 28, 28)
    import torchvision
    return getattr(torchvision.models, name)(weights=None).eval(), (1, 3, 224, 224)


def export(name, style, lamda, work):
    import torch
    model, shape = build_model(name, lamda, work)
    path = os.path.join(work, f"{name}.{style}.onnx")
    if style == "preserve":
        torch.onnx.export(model, torch.rand(*shape), path, opset_version=14, input_names=["input"],
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        torch.onnx.export(model, torch.rand(*shape), path, input_names=["input"])
    return path, shape


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lamda")
    ap.add_argument("models", nargs="*",
                    default=["mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "squeezenet1_1",
                             "resnet18", "lenet5", "tiny_mobilenet"])
    ap.add_argument("--export", default="default,preserve",
                    help="export styles, comma-separated: default (torch.onnx.export's defaults), "
                         "preserve (opset 14, batch norms kept, no folding)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--baseline", help="another lamda binary timed in the same rounds (before/after)")
    ap.add_argument("--pin", type=int, metavar="CPU",
                    help="run every 1-thread process on this CPU (on a shared VM one vCPU can be 1.5x slower "
                         "than the other: unpinned, each process's lot decides its time)")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        sys.exit("compare.py: run `npm ci --ignore-scripts` in bench/peers first")
    ort_version = json.load(open(os.path.join(HERE, "node_modules", "onnxruntime-node", "package.json")))["version"]
    styles = [s for s in args.export.split(",") if s]
    for s in styles:
        if s not in ("default", "preserve"):
            sys.exit(f"compare.py: unknown export style '{s}' (default, preserve)")
    lamda = os.path.abspath(args.lamda)
    baseline = os.path.abspath(args.baseline) if args.baseline else None
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    skipped = []
    with tempfile.TemporaryDirectory() as work:
        for name, style in [(n, s) for n in args.models for s in styles]:
            onnx_path, shape = export(name, style, lamda, work)
            dsl = os.path.join(work, f"{name}.{style}.lamda")
            w = os.path.join(work, f"{name}.{style}.safetensors")
            imported = subprocess.run([lamda, "import", onnx_path, "-o", dsl, "--weights", w],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if imported.returncode != 0:  # a gap in the importer: say so, go on with the others
                why = imported.stderr.strip().splitlines()[-1] if imported.stderr.strip() else "exit code " + str(imported.returncode)
                print(f"{name:20s} {style:8s} not imported: {why}", file=sys.stderr)
                skipped.append((name, style, why))
                continue
            for t in threads:
                cpu = args.pin if t == 1 else None

                def bench(binary):
                    return json.loads(run([binary, "bench", dsl, "--weights", w, "--threads", str(t),
                                           "--runs", str(args.runs), "--warmup", str(args.warmup),
                                           "--peak", "1", "--json"], cpu))["median_ms"]
                ours, theirs, before = [], [], []
                for _ in range(args.rounds):  # interleaved: lamda, ORT, [baseline,] lamda, ORT, ...
                    ours.append(bench(lamda))
                    o = json.loads(run(["node", os.path.join(HERE, "ort_bench.js"), onnx_path,
                                        str(t), str(args.runs), str(args.warmup),
                                        ",".join(str(d) for d in shape)], cpu))
                    theirs.append(o["median_ms"])
                    if baseline:
                        before.append(bench(baseline))
                a, b = statistics.median(ours), statistics.median(theirs)
                c = statistics.median(before) if before else None
                rows.append((name, style, t, a, b, c))
                print(f"{name:20s} {style:8s} {t} thread{'s' if t > 1 else ' '}  lamda {a:8.3f} ms  "
                      f"onnxruntime {b:8.3f} ms  ratio {a / b:5.2f}"
                      + (f"  baseline {c:8.3f} ms  ratio {c / b:5.2f}" if c is not None else ""), file=sys.stderr)
    extra = " baseline ms | baseline / ORT |" if baseline else ""
    print(f"| model | export | threads | lamda (XNNPACK) ms | ONNX Runtime {ort_version} ms | lamda / ORT |{extra}")
    print("|---|---|---|---|---|---|" + ("---|---|" if baseline else ""))
    for name, style, t, a, b, c in rows:
        tail = f" {c:.3f} | {c / b:.2f} |" if c is not None else ""
        print(f"| {name} | {style} | {t} | {a:.3f} | {b:.3f} | {a / b:.2f} |{tail}")
    for name, style, why in skipped:
        print(f"| {name} | {style} | - | not imported | - | - |")
        print(f"compare.py: {name} ({style} export): {why}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
