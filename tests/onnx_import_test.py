#!/usr/bin/python3
"""`lamda import` on torchvision models (docs/export.md, "ONNX in").

    /usr/bin/python3 tests/onnx_import_test.py LAMDA_EXE SOURCE_DIR [MODEL ...]

For each model (default: mobilenet_v2, resnet18, squeezenet1_1, mobilenet_v3_small), built by
torchvision with random weights (weights=None: nothing is downloaded) and random batch-norm
statistics, exported to ONNX here, in a temporary directory: imports it with `lamda import`,
checks that lamda counts torchvision's parameters and the MACs of lamda's zoo model
(examples/models/NAME.lamda, whose counts are torchvision's), and that lamda's XNNPACK executor
on the imported weights computes the model's outputs within 1e-4 x max |y| of two references
on the same input: ONNX Runtime running the same .onnx file (bench/peers/ort_run.js,
onnxruntime-node from bench/peers/package.json, one thread, no graph optimisations) and the
torch model it was exported from.

Exits 77 (skipped) without python3-torch, python3-torchvision or python3-onnx. Without node or
onnxruntime-node (`(cd bench/peers && npm ci --ignore-scripts)`, which scripts/test.sh runs), it
fails when $CI is set (CI runs .ci/run with CI=true); elsewhere it does everything else, compares
with torch only, says what it left out and exits 77 (skipped).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy
    import onnx  # noqa: F401  (the exporter needs it)
    import torch
    import torchvision
except ImportError as e:
    print(f"skipped: {e} (apt-get install python3-torch python3-torchvision python3-onnx)")
    sys.exit(77)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        blob = tensors[name].detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[8 + n + b:8 + n + end]),
                                     dtype=torch.float32).reshape(e["shape"])
    return out


def in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class OnnxRuntime:
    """bench/peers/ort_run.js under node: ONNX Runtime's outputs for an .onnx file and an input.
    `reason` says why it cannot run (None when it can)."""

    def __init__(self, src):
        self.peers = os.path.join(os.path.abspath(src), "bench", "peers")
        self.script = os.path.join(self.peers, "ort_run.js")
        self.node = shutil.which("node") or shutil.which("nodejs")
        self.reason = None
        install = f"(cd {self.peers} && npm ci --ignore-scripts)"
        if not self.node:
            self.reason = "node not found (apt-get install nodejs npm; then " + install + ")"
            return
        r = subprocess.run([self.node, "-e", "require('onnxruntime-node')"], cwd=self.peers,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            lines = r.stdout.strip().splitlines()
            why = next((ln.strip() for ln in lines if "Error" in ln), lines[0] if lines else "?")
            self.reason = f"onnxruntime-node does not load in {self.peers} ({why}): run {install}"

    def outputs(self, onnx_path, x):
        """ONNX Runtime's first output for the NCHW float32 tensor x, flattened."""
        stem = os.path.splitext(onnx_path)[0]
        xf, yf = stem + "_ort_x.npy", stem + "_ort_y.npy"
        numpy.save(xf, x.detach().contiguous().numpy().astype("<f4"))
        run([self.node, self.script, onnx_path, xf, yf])
        return torch.from_numpy(numpy.load(yf).astype("float32")).reshape(-1)


def compare(what, got, refs, detail=""):
    """Fails (printing detail) unless got is within 1e-4 x max |ref| of every reference
    ({name: flat tensor}); returns a summary of the differences."""
    parts = []
    for ref_name, want in refs.items():
        if got.numel() != want.numel():
            sys.exit(f"FAIL: {what}: {got.numel()} outputs, {ref_name} has {want.numel()}{detail}")
        err = float((got - want).abs().max())
        scale = float(want.abs().max())
        tol = 1e-4 * scale  # relative: random-init logits are small
        if not err <= tol:
            sys.exit(f"FAIL: {what}: output differs from {ref_name}'s by {err:.3e} (tolerance "
                     f"{tol:.3e} = 1e-4 x max |{ref_name} output| {scale:.3g}){detail}")
        parts.append(f"vs {ref_name} {err:.2e}")
    return ", ".join(parts)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}")
    return r.stdout


def check(lamda, src, name, work, ort):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    path = os.path.join(work, name + ".onnx")
    # PRESERVE: keep BatchNormalization nodes (EVAL would fold them into the convolutions,
    # and the parameter counts would no longer be torchvision's). No constant folding: the
    # shape subgraphs the exporter emits are left for lamda to fold.
    torch.onnx.export(model, x, path, opset_version=14, input_names=["input"],
                      output_names=["logits"], training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=False)
    dsl = os.path.join(work, name + ".lamda")
    w = os.path.join(work, name + ".safetensors")
    run([lamda, "import", path, "-o", dsl, "--weights", w])
    got_stats = json.loads(run([lamda, "check", dsl, "--json"]))
    zoo = json.loads(run([lamda, "check", os.path.join(src, "examples", "models", name + ".lamda"),
                          "--json"]))
    params = sum(p.numel() for p in model.parameters())
    if got_stats["params"] != params:
        sys.exit(f"FAIL: {name}: lamda counts {got_stats['params']} parameters, torchvision {params}")
    if got_stats["macs"] != zoo["macs"]:
        sys.exit(f"FAIL: {name}: {got_stats['macs']} MACs, the zoo model has {zoo['macs']}")
    xf = os.path.join(work, name + "_x.safetensors")
    yf = os.path.join(work, name + "_y.safetensors")
    write_safetensors(xf, {"input": x.permute(0, 2, 3, 1)})
    run([lamda, "run", dsl, "--weights", w, "--executor", "xnnpack", "--input", xf, "--out", yf])
    got = read_safetensors(yf)["output"].reshape(-1)
    refs = {}
    if ort is not None:
        refs["ONNX Runtime"] = ort.outputs(path, x)
    refs["torch"] = want.reshape(-1)
    diffs = compare(f"{name} (xnnpack)", got, refs)
    scale = float(refs["torch"].abs().max())
    print(f"ok: {name}: {params} parameters, {got_stats['macs']} MACs, "
          f"{got_stats['layer_count']} layers, max |output| {scale:.3g}, "
          f"XNNPACK max difference {diffs}")


def check_default_export(lamda, work, ort):
    """mobilenet_v3_small exported as users do (eval mode, constant folding) at opset 13, which
    has no HardSwish: torch writes x * HardSigmoid(x), and the importer must give one hardswish
    layer back (core/rewrite.hpp) and still compute what ONNX Runtime and torch compute."""
    torch.manual_seed(2)
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        want = model(x)
    path = os.path.join(work, "v3_opset13.onnx")
    torch.onnx.export(model, x, path, opset_version=13, input_names=["input"], output_names=["logits"])
    dsl = os.path.join(work, "v3_opset13.lamda")
    w = os.path.join(work, "v3_opset13.safetensors")
    run([lamda, "import", path, "-o", dsl, "--weights", w])
    with open(dsl) as f:
        ops = [line.split(":", 1)[1].split()[0] for line in f if ":" in line and not line.startswith("#")]
    hardswish = ops.count("hardswish") + sum(1 for line in open(dsl) if "act=hardswish" in line)
    if hardswish < 19:  # mobilenet_v3_small has 19 hardswish activations
        sys.exit(f"FAIL: opset-13 mobilenet_v3_small imported with {hardswish} hardswish layers "
                 f"(want 19: x * HardSigmoid(x) not recognised)")
    xf = os.path.join(work, "v3_opset13_x.safetensors")
    yf = os.path.join(work, "v3_opset13_y.safetensors")
    write_safetensors(xf, {"input": x.permute(0, 2, 3, 1)})
    run([lamda, "run", dsl, "--weights", w, "--executor", "xnnpack", "--input", xf, "--out", yf])
    got = read_safetensors(yf)["output"].reshape(-1)
    refs = {"torch": want.reshape(-1)}
    if ort is not None:
        refs["ONNX Runtime"] = ort.outputs(path, x)
    diffs = compare("mobilenet_v3_small, opset 13 (xnnpack)", got, refs)
    print(f"ok: mobilenet_v3_small exported at opset 13: {len(ops)} layers, {hardswish} hardswish, "
          f"XNNPACK max difference {diffs}")


def check_zoo28(lamda, src, work, ort):
    """lamda's own 28x28 models (lenet5, tiny_mobilenet) through `lamda export --pytorch` and
    torch.onnx.export, in both export styles, imported back: the exported module writes flatten
    and fc inputs as x.permute(0, 2, 3, 1).reshape(N, -1) (Transpose + Reshape), fc outputs as
    y[:, :, None, None] (Unsqueeze) and global pooling as x.mean((2, 3)) (ReduceMean). With
    PRESERVE the parameters and MACs must be the zoo model's; in both styles the outputs torch's
    and ONNX Runtime's."""
    import importlib.util
    for name in ("lenet5", "tiny_mobilenet"):
        zoo_path = os.path.join(src, "examples", "models", name + ".lamda")
        py = os.path.join(work, name + "_module.py")
        run([lamda, "export", zoo_path, "--pytorch", py])
        spec = importlib.util.spec_from_file_location(name + "_module", py)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(3)
        model = module.Model().eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
        x = torch.rand(1, 1, 28, 28)
        with torch.no_grad():
            want = model(x).reshape(-1)
        zoo = json.loads(run([lamda, "check", zoo_path, "--json"]))
        for style in ("default", "preserve"):
            path = os.path.join(work, f"{name}.{style}.onnx")
            if style == "preserve":
                torch.onnx.export(model, x, path, opset_version=14, input_names=["input"],
                                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
            else:
                torch.onnx.export(model, x, path, input_names=["input"])
            dsl = os.path.join(work, f"{name}.{style}.lamda")
            w = os.path.join(work, f"{name}.{style}.safetensors")
            run([lamda, "import", path, "-o", dsl, "--weights", w])
            stats = json.loads(run([lamda, "check", dsl, "--json"]))
            if style == "preserve" and (stats["params"], stats["macs"]) != (zoo["params"], zoo["macs"]):
                sys.exit(f"FAIL: {name} ({style}): imported {stats['params']} parameters, {stats['macs']} MACs; "
                         f"the zoo model has {zoo['params']}, {zoo['macs']}\n" + open(dsl).read())
            if stats["layer_count"] > zoo["layer_count"]:
                sys.exit(f"FAIL: {name} ({style}): {stats['layer_count']} layers, more than the zoo model's "
                         f"{zoo['layer_count']} (a Reshape/Unsqueeze became a layer)\n" + open(dsl).read())
            xf = os.path.join(work, f"{name}_x.safetensors")
            yf = os.path.join(work, f"{name}_y.safetensors")
            write_safetensors(xf, {"input": x.permute(0, 2, 3, 1)})
            refs = {"torch": want}
            if ort is not None:
                refs["ONNX Runtime"] = ort.outputs(path, x)
            diffs = []
            for executor in ("reference", "xnnpack"):
                run([lamda, "run", dsl, "--weights", w, "--executor", executor, "--input", xf, "--out", yf])
                got = read_safetensors(yf)["output"].reshape(-1)
                diffs.append(f"{executor} " + compare(f"{name} {style} ({executor})", got, refs,
                                                           "\n" + open(dsl).read()))
            print(f"ok: {name} ({style} export): {stats['params']} parameters, {stats['layer_count']} layers, "
                  f"max difference {'; '.join(diffs)}")


class Custom(torch.nn.Module):
    """The cases torchvision's models leave out: flatten of an HxWxC value before a Linear
    (C,H,W in ONNX, H,W,C in lamda), MatMul + Add, Clip as relu6, grouped and dilated
    convolutions, padded pools with ceil_mode, concat, softmax."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=(1, 2), dilation=(1, 2))
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(16 * 4 * 3, 10)
        self.w = torch.nn.Parameter(torch.randn(10, 6) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(6))

    def forward(self, x):
        y = torch.nn.functional.relu6(self.conv(x))
        z = torch.sigmoid(self.bn(self.grouped(y)))
        m = torch.nn.functional.max_pool2d(y, 3, 2, 1, ceil_mode=True)
        a = torch.nn.functional.avg_pool2d(z, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        c = torch.cat([m, a], 1)
        h = torch.relu(self.fc(torch.flatten(c, 1)))
        return torch.softmax(torch.matmul(h, self.w) + self.b, 1)


def check_custom(lamda, work, ort):
    torch.manual_seed(1)
    model = Custom().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 11, 10)
    with torch.no_grad():
        want = model(x).reshape(-1)
    path = os.path.join(work, "custom.onnx")
    torch.onnx.export(model, x, path, opset_version=14, training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=False)
    dsl, w = os.path.join(work, "custom.lamda"), os.path.join(work, "custom.safetensors")
    run([lamda, "import", path, "-o", dsl, "--weights", w])
    stats = json.loads(run([lamda, "check", dsl, "--json"]))
    params = sum(p.numel() for p in model.parameters())
    if stats["params"] != params:
        sys.exit(f"FAIL: custom: lamda counts {stats['params']} parameters, torch {params}")
    xf, yf = os.path.join(work, "custom_x.safetensors"), os.path.join(work, "custom_y.safetensors")
    write_safetensors(xf, {"input": x.permute(0, 2, 3, 1)})
    refs = {}
    if ort is not None:
        refs["ONNX Runtime"] = ort.outputs(path, x)
    refs["torch"] = want
    diffs = []
    for executor in ("reference", "xnnpack"):
        run([lamda, "run", dsl, "--weights", w, "--executor", executor, "--input", xf, "--out", yf])
        got = read_safetensors(yf)["output"].reshape(-1)
        diffs.append(f"{executor} " + compare(f"custom ({executor})", got, refs,
                                                   "\n" + open(dsl).read()))
    print(f"ok: custom: {params} parameters, max difference {'; '.join(diffs)}")

    # An unsupported op: the error names the node, its op type and its inputs.
    class Elu(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.elu(x)

    path = os.path.join(work, "elu.onnx")
    torch.onnx.export(Elu(), torch.rand(1, 3, 4, 4), path, opset_version=14,
                      input_names=["image"])
    r = subprocess.run([lamda, "import", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode == 0 or "(Elu, inputs 'image')" not in r.stdout or "node '" not in r.stdout:
        sys.exit(f"FAIL: an unsupported op gave exit {r.returncode}: {r.stdout}")
    print("ok: unsupported op:", r.stdout.strip())


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    lamda, src = os.path.abspath(sys.argv[1]), sys.argv[2]
    names = sys.argv[3:] or ["mobilenet_v2", "resnet18", "squeezenet1_1", "mobilenet_v3_small"]
    torch.set_num_threads(1)
    ort = OnnxRuntime(src)
    if ort.reason:
        if in_ci():
            sys.exit(f"FAIL: ONNX Runtime, the reference this test compares against, cannot run: "
                     f"{ort.reason}")
        print(f"ONNX Runtime comparison left out: {ort.reason}; comparing against torch only",
              flush=True)
        ort = None
    with tempfile.TemporaryDirectory() as work:
        if len(sys.argv) == 3:
            check_custom(lamda, work, ort)
            check_zoo28(lamda, src, work, ort)
            check_default_export(lamda, work, ort)
        for name in names:
            check(lamda, src, name, work, ort)
    if ort is None:
        print("skipped: everything else passed, but the outputs were not compared with ONNX "
              "Runtime's (see above)")
        sys.exit(77)


if __name__ == "__main__":
    main()
