#!/usr/bin/python3
"""Where lamda and ONNX Runtime spend their time on one model, layer kind by layer kind.

    (cd bench/peers && npm ci --ignore-scripts)
    /usr/bin/python3 bench/peers/layers.py build/lamda mnasnet0_5 [--export default] [--threads 1]
        [--rounds 3] [--runs 50] [--warmup 10] [--top 12] [--pin CPU]

The model (a torchvision name or one of lamda's 28x28 zoo models, as in compare.py) is exported
to ONNX in the given style and imported with `lamda import`. Rounds alternate `lamda bench --json`
(its per-operator medians) and `node ort_profile.js` (ONNX Runtime's profiler, every graph
optimisation on). Both sides' layers are put into the same kinds -- 1x1 convolution, kxk
convolution, depthwise, fully connected, elementwise, pooling, activation, other -- from the ONNX
graph (group, kernel) and from lamda's imported DSL. The first table gives each kind's time on
both sides (medians over rounds) and the gap; the second, the convolutions joined one to one
by name where the importer's naming can be followed (the weight's name, else the module path),
largest gaps first. ORT's layout conversions (NCHWc reorders) are a kind of their own. Per-operator timing adds some overhead on both sides: compare kinds and
shares, not the totals, with compare.py's whole-model figures.
"""
import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (export(), run(): one way of making the models)

KINDS = ["conv 1x1", "conv kxk", "depthwise", "fully connected", "elementwise", "pooling", "activation", "layout",
         "other"]


def sanitize(s):
    """lamda's importer's name sanitizer (deploy/onnx_import.hpp: sanitize)."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")
    return "n" + out if out[:1].isdigit() else out


def module_path(node):
    """lamda's importer's layer name from a torch node name (deploy/onnx_import.hpp: module_path)."""
    if not node.startswith("/"):
        return sanitize(node)
    seg = node[1:].split("/")
    if len(seg) < 2:
        return sanitize(node)
    seg = seg[:-1]
    path = [s for k, s in enumerate(seg) if not (k + 1 < len(seg) and seg[k + 1].startswith(s + "."))]
    return sanitize(".".join(path))


def conv_kind(onnx, node):
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("group", 1) > 1:
        return "depthwise"
    return "conv 1x1" if list(attrs.get("kernel_shape", [])) == [1, 1] else "conv kxk"


def lamda_name(node, inits):
    """The layer name lamda's importer gives a Conv node (deploy/onnx_import.hpp: layer_name)."""
    w = node.input[1] if len(node.input) > 1 else ""
    if w in inits and "onnx" not in w:
        return sanitize(w[:-len(".weight")] if w.endswith(".weight") else w)
    return module_path(node.name) or sanitize(node.output[0])


class OnnxGraph:
    """What a profiled ORT node was in the ONNX file. ORT renames the nodes it rewrites: "fused
    NODE" for a fusion, "TENSOR_nchwc" for a convolution in its blocked layout (named after the
    tensor it writes, e.g. the Relu output a Conv+Relu fusion ends in)."""

    def __init__(self, path):
        import onnx
        self.onnx = onnx
        m = onnx.load(path)
        self.inits = {i.name for i in m.graph.initializer}
        self.nodes = {n.name: n for n in m.graph.node}
        self.producer = {o: n for n in m.graph.node for o in n.output}

    def conv_behind(self, node, steps=4):
        """The Conv a fused chain (Conv -> [Add] -> activation) starts from, or None."""
        for _ in range(steps):
            if node is None or node.op_type == "Conv":
                return node
            inputs = [self.producer.get(i) for i in node.input]
            convs = [n for n in inputs if n is not None and n.op_type == "Conv"]
            node = convs[0] if convs else (inputs[0] if inputs else None)
        return node if node is not None and node.op_type == "Conv" else None

    def resolve(self, name):
        if name.startswith("fused "):
            name = name[len("fused "):]
        if name in self.nodes:
            return self.nodes[name]
        if name.endswith("_nchwc"):
            return self.producer.get(name[:-len("_nchwc")])
        return None

    def kind_and_layer(self, name, op):
        """(kind, lamda layer name when it can be followed) of a profiled node with kernel `op`."""
        node = self.resolve(name)
        if "Conv" in op:
            conv = self.conv_behind(node)
            if conv is None:
                return "conv kxk", None
            return conv_kind(self.onnx, conv), lamda_name(conv, self.inits)
        if op.startswith("Reorder"):
            return "layout", None
        if "Gemm" in op or op == "MatMul":
            return "fully connected", None
        if op in ("Add", "Mul", "Sub", "Div", "Sum"):
            return "elementwise", None
        if op in ("GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean"):
            return "pooling", None
        if op in ("Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh"):
            return "activation", None
        return "other", None


def lamda_kinds(dsl_path):
    """lamda layer name -> kind, from the imported DSL's lines (NAME: OP ... kernel=K ...)."""
    out = {}
    for line in open(dsl_path):
        mt = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*):\s*(\w+)(.*)", line.split("#")[0])
        if not mt:
            continue
        name, op, rest = mt.groups()
        k = re.search(r"kernel=(\d+)(?:x(\d+))?", rest)
        kernel = (int(k.group(1)), int(k.group(2) or k.group(1))) if k else None
        if op == "conv2d":
            kind = "conv 1x1" if kernel == (1, 1) else "conv kxk"
        elif op == "dwconv":
            kind = "depthwise"
        elif op == "fc":
            kind = "fully connected"
        elif op in ("add", "mul", "sub"):
            kind = "elementwise"
        elif op in ("gap", "maxpool", "avgpool"):
            kind = "pooling"
        elif op in ("relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "tanh"):
            kind = "activation"
        elif op in ("input", "flatten", "reshape"):
            kind = None  # free (aliases)
        else:
            kind = "other"
        out[name] = kind
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lamda")
    ap.add_argument("model")
    ap.add_argument("--export", default="default", choices=["default", "preserve"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--pin", type=int, metavar="CPU", help="at 1 thread, run every process on this CPU (compare.py)")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "onnxruntime-node")):
        sys.exit("layers.py: run `npm ci --ignore-scripts` in bench/peers first")
    lamda = os.path.abspath(args.lamda)
    cpu = args.pin if args.threads == 1 else None
    with tempfile.TemporaryDirectory() as work:
        onnx_path, shape = compare.export(args.model, args.export, lamda, work)
        dsl = os.path.join(work, "model.lamda")
        weights = os.path.join(work, "model.safetensors")
        compare.run([lamda, "import", onnx_path, "-o", dsl, "--weights", weights])
        graph = OnnxGraph(onnx_path)
        ours_kind = lamda_kinds(dsl)
        ours_rounds, theirs_rounds = [], []
        whole_ours, whole_theirs = [], []  # whole-model medians of the same runs
        for _ in range(args.rounds):  # interleaved
            b = json.loads(compare.run([lamda, "bench", dsl, "--weights", weights, "--threads", str(args.threads),
                                        "--runs", str(args.runs), "--warmup", str(args.warmup), "--json"], cpu))
            ours_rounds.append({p["name"]: p["median_ms"] for p in b["per_op"]})
            whole_ours.append(b["median_ms"])
            o = json.loads(compare.run(["node", os.path.join(HERE, "ort_profile.js"), onnx_path, str(args.threads),
                                        str(args.runs), str(args.warmup), ",".join(str(d) for d in shape)], cpu))
            theirs_rounds.append({n["name"]: (n["op"], n["median_ms"]) for n in o["nodes"]})
            if o["median_ms"] is not None:
                whole_theirs.append(o["median_ms"])
    ours = {k: statistics.median(r.get(k, 0.0) for r in ours_rounds) for k in ours_rounds[0]}
    theirs = {k: statistics.median(r[k][1] for r in theirs_rounds if k in r) for k in theirs_rounds[0]}
    fused = {k: theirs_rounds[0][k][0] for k in theirs_rounds[0]}

    by_kind_ours, by_kind_theirs = collections.Counter(), collections.Counter()
    count_ours, count_theirs = collections.Counter(), collections.Counter()
    for name, ms in ours.items():
        kind = ours_kind.get(name, "other")
        if kind:
            by_kind_ours[kind] += ms
            count_ours[kind] += 1
    theirs_kind = {name: graph.kind_and_layer(name, fused[name]) for name in theirs}
    for name, ms in theirs.items():
        kind = theirs_kind[name][0]
        by_kind_theirs[kind] += ms
        count_theirs[kind] += 1
    total_ours, total_theirs = sum(by_kind_ours.values()), sum(by_kind_theirs.values())
    print(f"{args.model}, {args.export} export, {args.threads} thread(s), {args.rounds} interleaved rounds of "
          f"{args.runs} runs; sums of per-operator medians")
    if whole_theirs:
        print(f"whole model (medians over rounds): lamda {statistics.median(whole_ours):.3f} ms, "
              f"ORT {statistics.median(whole_theirs):.3f} ms (profiling on)")
    print()
    print("| kind | lamda layers | lamda ms | ORT nodes | ORT ms | lamda - ORT ms |")
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        if count_ours[kind] or count_theirs[kind]:
            a, b = by_kind_ours[kind], by_kind_theirs[kind]
            print(f"| {kind} | {count_ours[kind]} | {a:.3f} | {count_theirs[kind]} | {b:.3f} | {a - b:+.3f} |")
    print(f"| all | {sum(count_ours.values())} | {total_ours:.3f} | {sum(count_theirs.values())} | "
          f"{total_theirs:.3f} | {total_ours - total_theirs:+.3f} |")
    joined = []
    for node, (kind, name) in theirs_kind.items():
        if name and name in ours:
            joined.append((name, kind, fused[node], ours[name], theirs[node]))
    joined.sort(key=lambda r: abs(r[3] - r[4]), reverse=True)
    print()
    convs = sum(1 for k in theirs_kind.values() if k[0] in ("conv 1x1", "conv kxk", "depthwise"))
    print(f"Convolutions joined by name: {len(joined)} of ORT's {convs}; "
          f"the {min(args.top, len(joined))} largest gaps")
    print()
    print("| layer | kind | ORT kernel | lamda ms | ORT ms | lamda / ORT |")
    print("|---|---|---|---|---|---|")
    for name, kind, op, a, b in joined[:args.top]:
        print(f"| {name} | {kind} | {op} | {a:.4f} | {b:.4f} | {a / b if b > 0 else float('inf'):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
