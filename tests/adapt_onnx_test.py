#!/usr/bin/python3
"""Adapting a PyTorch model through ONNX (docs/adapt.md, "Starting from a PyTorch model through ONNX").

    /usr/bin/python3 tests/adapt_onnx_test.py LAMDA_EXE [WORK_DIR]

Trains a small CNN in torch (seed 0, CPU, one thread) on a Fashion-MNIST slice (the first 3,000
training and 1,000 test images, as tests/generate_test.sh cuts it), exports it to ONNX with its
trained weights (opset 13), and checks:

1. `lamda import` + `lamda eval` (XNNPACK) on the ONNX model give torch's test accuracy on the
   same 1,000 images to 0.1 points (pixels / 255 in both, lamda's normalisation: data/dataset.hpp);
   so does the same model exported with its batch norms kept (TrainingMode.PRESERVE), which
   imports as batchnorm layers (the default export folds them into the convolutions).
2. `lamda generate TASK --start-from model.onnx`, with a latency budget below the start model's
   measured latency and a `min_accuracy_drop`, either hands over a model that meets the budget and
   keeps its accuracy within the drop (validation accuracy, the documented guarantee; test
   accuracy through `lamda eval` within the drop plus 6 points of sampling noise), or says that it found none and exits 1 with no best model
   written (docs/cli.md's exit codes). Either way the start model's test accuracy it prints is
   torch's, and candidate 0 in its journal is the start model with its own weights.

Exits 77 (skipped) without python3-torch or python3-onnx under /usr/bin/python3, without
/usr/share/datasets/fashion-mnist, or when lamda has no trainer (libtorch) or no ONNX import.
Prints the measured numbers (docs/adapt.md quotes them). WORK_DIR, when given, is kept.
"""
import gzip
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

FASHION = "/usr/share/datasets/fashion-mnist"
N_TRAIN, N_TEST = 3000, 1000
W1, W2 = 16, 32  # the CNN's widths: 1.47 MMACs, about 0.02 ms, latency mostly compute
DROP = 5.0  # min_accuracy_drop, accuracy points
TEST_SLACK = 6.0  # points the test accuracy may lose beyond DROP (sampling noise, see below)
BUDGET_FRACTION = 0.75  # the task's latency budget, as a fraction of the start model's measured ms
FINAL_TOP = 1  # generate --final-top: at most this many candidates trained in full

try:
    import numpy
    import onnx
    import torch
except ImportError as e:
    print(f"skipped: {e} (apt-get install python3-torch python3-onnx; run under /usr/bin/python3)")
    sys.exit(77)


def run(cmd, ok=(0,)):
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode not in ok:
        sys.exit(f"FAIL: exit {r.returncode}: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r, time.time() - t0


def write_slice(dst):
    """The first N_TRAIN/N_TEST images as IDX files in dst; returns them as arrays too."""
    arrays = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        with gzip.open(f"{FASHION}/{split}-images-idx3-ubyte.gz") as f:
            magic, _, rows, cols = struct.unpack(">IIII", f.read(16))
            images = f.read(n * rows * cols)
        with gzip.open(f"{FASHION}/{split}-labels-idx1-ubyte.gz") as f:
            f.read(8)
            labels = f.read(n)
        with open(f"{dst}/{split}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", magic, n, rows, cols) + images)
        with open(f"{dst}/{split}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels)
        x = numpy.frombuffer(images, dtype=numpy.uint8).reshape(n, 1, rows, cols)
        arrays[split] = (torch.from_numpy(x.astype(numpy.float32) / 255.0),  # lamda: value / 255
                         torch.from_numpy(numpy.frombuffer(labels, dtype=numpy.uint8).astype(numpy.int64)))
    return arrays


class SmallCnn(torch.nn.Module):
    """Three conv + batch norm + ReLU blocks (the third stride 1, same width: a layer the
    adapting designer may drop), global average pooling, one fully connected classifier."""

    def __init__(self):
        super().__init__()
        def block(cin, cout):
            return [torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout),
                    torch.nn.ReLU()]
        self.features = torch.nn.Sequential(
            *block(1, W1), torch.nn.MaxPool2d(2),
            *block(W1, W2), torch.nn.MaxPool2d(2),
            *block(W2, W2))
        self.classifier = torch.nn.Linear(W2, 10)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def train(model, x, y, epochs=4):
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lamda = sys.argv[1]
    if not os.path.isdir(FASHION):
        print(f"skipped: no {FASHION} (apt-get install dataset-fashion-mnist)")
        sys.exit(77)
    probe = subprocess.run([lamda, "train", "x"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if "without a trainer" in probe.stdout:
        print("skipped: this lamda has no trainer (libtorch): --start-from cannot evaluate or fine-tune")
        sys.exit(77)
    probe = subprocess.run([lamda, "import", "/nonexistent.onnx"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    if "without ONNX import" in probe.stdout:
        print("skipped: this lamda was built without ONNX import (libonnx-dev)")
        sys.exit(77)

    keep = len(sys.argv) > 2
    work = sys.argv[2] if keep else tempfile.mkdtemp(prefix="lamda_adapt_onnx_")
    os.makedirs(f"{work}/fm", exist_ok=True)
    t_start = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = write_slice(f"{work}/fm")

    # ---- torch: train, test accuracy, export -----------------------------------------------
    model = SmallCnn()
    t0 = time.time()
    train(model, *data["train"])
    train_s = time.time() - t0
    with torch.no_grad():
        x_test, y_test = data["t10k"]
        torch_acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    onnx_path = f"{work}/model.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), onnx_path, opset_version=13,
                      input_names=["image"], output_names=["logits"])
    print(f"torch: test accuracy {torch_acc * 100:.2f}% on {N_TEST} images ({train_s:.1f} s training)")

    # ---- lamda import + eval: the same accuracy ----------------------------------------------
    dsl, weights = f"{work}/model.lamda", f"{work}/model.safetensors"
    run([lamda, "import", onnx_path, "-o", dsl, "--weights", weights])
    r, _ = run([lamda, "eval", dsl, "--weights", weights, "--dataset", f"{work}/fm", "--json"])
    ev = json.loads(r.stdout)
    lamda_acc = ev["accuracy"]
    print(f"lamda eval (XNNPACK, imported): test accuracy {lamda_acc * 100:.2f}% ({ev['correct']} of {ev['n']})")
    if abs(lamda_acc - torch_acc) > 0.001:
        sys.exit(f"FAIL: lamda's accuracy on the imported model {lamda_acc} is not torch's {torch_acc}")
    # torch's exporter folded batch norm into the convolutions (eval mode); exported with the
    # batch norms kept, lamda imports them as batchnorm layers and computes the same accuracy.
    ops = {n.op_type for n in onnx.load(onnx_path).graph.node}
    if "BatchNormalization" in ops:
        sys.exit(f"FAIL: the exporter left batch norm in the graph ({sorted(ops)}): the test assumes it folds")
    bn_path, bn_dsl, bn_weights = f"{work}/model_bn.onnx", f"{work}/model_bn.lamda", f"{work}/model_bn.safetensors"
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), bn_path, opset_version=13,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    run([lamda, "import", bn_path, "-o", bn_dsl, "--weights", bn_weights])
    if open(bn_dsl).read().count(": batchnorm") != 3:
        sys.exit(f"FAIL: the export with batch norm kept does not import as 3 batchnorm layers:\n{open(bn_dsl).read()}")
    r, _ = run([lamda, "eval", bn_dsl, "--weights", bn_weights, "--dataset", f"{work}/fm", "--json"])
    if abs(json.loads(r.stdout)["accuracy"] - torch_acc) > 0.001:
        sys.exit(f"FAIL: with batch norm kept, lamda's accuracy {r.stdout} is not torch's {torch_acc}")

    # ---- the start model's latency, and a task whose budget is below it -----------------------
    r, _ = run([lamda, "bench", dsl, "--weights", weights, "--runs", "200", "--threads", "1", "--json"])
    bench = json.loads(r.stdout)
    start_ms = bench["median_ms"]
    budget = round(start_ms * BUDGET_FRACTION, 4)
    task_path = f"{work}/adapt.json"
    with open(task_path, "w") as f:
        json.dump({"name": "fm_onnx_adapt", "input": [28, 28, 1], "classes": 10, "dataset": "./fm",
                   "constraints": {"latency_ms": budget, "min_accuracy_drop": DROP, "threads": 1},
                   "budget": {"max_candidates": 8}}, f)
    print(f"start model: {start_ms:.4f} ms (lamda bench, median of 200); budget {budget} ms, drop {DROP} points")

    # ---- lamda generate --start-from model.onnx ----------------------------------------------
    out = f"{work}/adapted"
    gen_cmd = [lamda, "generate", task_path, "--out", out, "--start-from", onnx_path,
               "--final-top", str(FINAL_TOP), "--final-epochs", "3", "--runs", "10", "--confirm-runs", "30", "--json"]
    r, gen_s = run(gen_cmd, ok=(0, 1))
    err = r.stderr
    print(" ".join(["lamda"] + gen_cmd[1:]) + f"   # exit {r.returncode}, {gen_s:.1f} s")
    journal = [json.loads(l) for l in open(f"{out}/journal.jsonl")]
    recs = [l for l in journal if l.get("type") == "candidate"]
    start = recs[0]
    if not (start["weights"] == "weights/start.safetensors" and "start model" in start["inherited"]):
        sys.exit(f"FAIL: candidate 0 is not the start model with its own weights: {start}")
    if start["accuracy"] is None:
        sys.exit(f"FAIL: the start model was not evaluated: {start}")
    m = re.search(r"start model: validation accuracy ([0-9.]+)%; candidates must keep ([0-9.]+)%", err)
    if not m or abs(float(m.group(1)) - start["accuracy"] * 100) > 0.01 or \
            abs(float(m.group(2)) - (start["accuracy"] * 100 - DROP)) > 0.01:
        sys.exit(f"FAIL: the relative accuracy bar is not the start's validation accuracy - {DROP}:\n{err[-2000:]}")
    m = re.search(r"start model: ([0-9.]+|-) ms, test accuracy ([0-9.]+)%", err)
    if not m:
        sys.exit(f"FAIL: no start model line:\n{err[-2000:]}")
    start_test = float(m.group(2)) / 100
    if abs(start_test - torch_acc) > 0.001:  # libtorch on the imported, folded weights: torch's accuracy
        sys.exit(f"FAIL: generate's start model test accuracy {start_test} is not torch's {torch_acc}")
    report = json.load(open(f"{out}/report.json"))
    recorded = report.get("start_model")
    if not recorded or recorded["test_accuracy"] is None or abs(recorded["test_accuracy"] - torch_acc) > 0.001:
        sys.exit(f"FAIL: report.json's start_model {recorded} does not have torch's test accuracy {torch_acc}")
    if (start["measured_ms"] is not None and recorded["measured_ms"] != start["measured_ms"]) or \
            recorded["source"] != onnx_path:
        sys.exit(f"FAIL: report.json's start_model {recorded} is not candidate 0 ({start['measured_ms']} ms, {onnx_path})")
    summary = json.loads(r.stdout)
    rows = [f"#{x['index']} {x['verdict']} {x.get('note', '')} meas {x.get('measured_ms')} acc {x.get('accuracy')}"
            for x in recs]
    print("\n".join("  " + row for row in rows))

    if r.returncode == 0:
        best = summary["best"]
        if not (os.path.exists(f"{out}/best.lamda") and os.path.exists(f"{out}/best.safetensors")):
            sys.exit("FAIL: exit 0 without best.lamda and best.safetensors")
        if best["index"] == 0:
            sys.exit(f"FAIL: the start model itself was handed over, but lamda bench measured it at {start_ms} ms, "
                     f"over the budget {budget} ms (timing this noisy makes the test meaningless)")
        confirmed = best.get("confirmed_ms", best.get("measured_ms"))
        if confirmed is None or confirmed > budget:
            sys.exit(f"FAIL: the adapted model's latency {confirmed} ms is over the budget {budget} ms")
        final = report["final_training"]
        if final["val_accuracy"] < start["accuracy"] - DROP / 100 - 1e-9:
            sys.exit(f"FAIL: validation accuracy {final['val_accuracy']} is more than {DROP} points below "
                     f"the start's {start['accuracy']}")
        r2, _ = run([lamda, "eval", f"{out}/best.lamda", "--weights", f"{out}/best.safetensors",
                     "--dataset", f"{work}/fm", "--json"])
        adapted_test = json.loads(r2.stdout)["accuracy"]
        if abs(adapted_test - best["test_accuracy"]) > 0.001:
            sys.exit(f"FAIL: lamda eval says {adapted_test}, the search's final training {best['test_accuracy']}")
        # The bar is held on the validation split (300 images here: a standard error of about 2.5
        # points; 1.4 on the 1,000 test images), so on the test images the drop may exceed it by
        # the difference of the two, whose standard error is about 2.9 points: TEST_SLACK is two of
        # them. Measured: -3.6, -4.3, -5.1 points (docs/adapt.md), and -7.2 once (2026-12-04, the
        # Meson run of a clean-clone CI; its validation kept the bar), which a 2-point slack failed.
        # The validation guarantee is checked exactly above; this catches gross losses only.
        if adapted_test < torch_acc - (DROP + TEST_SLACK) / 100:
            sys.exit(f"FAIL: the adapted model's test accuracy {adapted_test} is more than {DROP} + {TEST_SLACK} "
                     f"points below the start's {torch_acc}")
        print(f"adapted: #{best['index']} {confirmed:.4f} ms confirmed (budget {budget}), test accuracy "
              f"{adapted_test * 100:.2f}% (lamda eval; start {torch_acc * 100:.2f}%), val "
              f"{final['val_accuracy'] * 100:.2f}% (start {start['accuracy'] * 100:.2f}%)")
    else:
        # No model met both limits: said so, nothing handed over, and no candidate is feasible.
        if "no feasible model" not in err:
            sys.exit(f"FAIL: exit 1 without saying that no model was found:\n{err[-2000:]}")
        if os.path.exists(f"{out}/best.lamda") or summary["best"] is not None or report["best"] is not None:
            sys.exit("FAIL: exit 1, yet a best model was handed over")
        # Each candidate the search found feasible was turned down for a reason report.json shows:
        # its confirming measurement missed the budget, or its full training missed the bar, or
        # --final-top candidates ranked above it had been trained in full (and missed the bar).
        confirmed = {c["index"]: c["median_ms"] for c in report["confirmations"]}
        trained = {t["index"]: t["val_accuracy"] for t in report["final_trainings"]}
        bar = start["accuracy"] - DROP / 100
        for x in recs:
            if x["verdict"] != "feasible":
                continue
            i = x["index"]
            if i not in confirmed:
                if len(trained) < FINAL_TOP:
                    sys.exit(f"FAIL: exit 1, but feasible candidate #{i} was never confirmed, and fewer than "
                             f"--final-top {FINAL_TOP} candidates were trained in full: {trained}")
                continue
            if confirmed[i] <= budget and not (i in trained and trained[i] < bar - 1e-9):
                sys.exit(f"FAIL: exit 1, but feasible #{i} was confirmed at {confirmed[i]} ms and not shown "
                         f"to miss the accuracy bar {bar}: {trained.get(i)}")
        why = ", ".join(f"#{i} confirmed at {ms:.4f} ms" for i, ms in confirmed.items()) or "none feasible"
        print(f"adapted: none (lamda: no feasible model within the budget; {why})")
    print(f"wall time: {time.time() - t_start:.1f} s in all, lamda generate {gen_s:.1f} s")
    if not keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print("adapt_onnx: ok")


if __name__ == "__main__":
    main()
