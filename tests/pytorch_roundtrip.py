#!/usr/bin/python3
"""Round-trips weights through `lamda export --pytorch` (docs/export.md).

    /usr/bin/python3 tests/pytorch_roundtrip.py LAMDA_EXE [MODEL.lamda ...]

For each model (built-in ones exercising every op, plus any given): exports the nn.Module,
lets lamda write random weights and its reference output for a random input, loads those
weights into the module and compares its output; then changes the weights in PyTorch (a
stand-in for training), saves them with save_lamda_weights() and checks that lamda loads them
and computes the same output as PyTorch. Exits 77 (skipped) when torch is not importable.
"""
import importlib.util
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError:
    print("skipped: python3-torch is not installed (apt-get install python3-torch)")
    sys.exit(77)

# Every op and the awkward cases of train/torch_module.hpp's semantics: asymmetric `same` padding, pools
# with padding and ceil=true, avgpool's count_include_pad=False, fc on a flattened HxWxC value
# (H, W, C order) after flatten, concat, squeeze-excitation mul, multi-input add, keyword names.
ALL_OPS = """model all_ops
input: input shape=13x11x3
stem: conv2d out=8 kernel=3 stride=2 act=hardswish
bn: batchnorm eps=0.001
dw: dwconv kernel=3 multiplier=2 act=relu6
grp: conv2d out=8 kernel=1 groups=2 bias=false act=sigmoid
pad: conv2d out=8 kernel=3 padding=1x0x2x1 dilation=2 act=relu
mp: maxpool kernel=3 stride=2 padding=1 ceil=true
ap: avgpool pad kernel=3 stride=2 padding=1 ceil=true
ap2: avgpool mp kernel=2 stride=1 padding=same
cat: concat mp, ap, ap2
se_pool: gap
se_fc: conv2d out=24 kernel=1 act=hardsigmoid
se: mul cat, se_fc
pass: conv2d cat out=24 kernel=1
sum3: add se, pass, cat act=relu
hs: hardswish
hsig: hardsigmoid
r6: relu6
r: relu
sg: sigmoid
flat: flatten
dense: fc out=12 act=relu
drop: dropout rate=0.3
fc2: fc out=12 bias=false
both: add dense, fc2
sm: softmax
"""

TINY_CHAIN = """model chain
input: input shape=8x8x2
c: conv2d out=4 kernel=2 stride=2 padding=valid
p: avgpool kernel=3 stride=2 padding=same
f: flatten
o: fc out=3 act=relu6
"""

# Names that collide in generated Python (issue 16): layers `x` and `x_` (the forward() argument and
# its escape), `x__`, a layer named like the file's helper `_pool_sum_count` while an avgpool needs
# that helper, and `getattr`, which forward() calls for keyword-named modules (`pass`).
COLLIDING_NAMES = """model int
input: input shape=7x7x2
x: conv2d out=4 kernel=3 act=relu
x_: conv2d out=4 kernel=1
x__: add x, x_
_pool_sum_count: relu
p: avgpool kernel=2 stride=2 padding=same
getattr: relu6 x__
pass: conv2d getattr out=4 kernel=1 stride=2
j: concat p, pass
f: flatten
self: fc out=3
"""


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}:\n{r.stdout}")
    return r.stdout


def close(a, b):
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= 1e-4 * scale


def check_model(lamda, model_path, work):
    name = os.path.splitext(os.path.basename(model_path))[0]
    py = os.path.join(work, name + "_module.py")
    run([lamda, "export", model_path, "--pytorch", py])
    spec = importlib.util.spec_from_file_location(name + "_module", py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Model().eval()
    c, h, w = model.input_shape

    torch.manual_seed(0)
    x = torch.rand(1, c, h, w) * 2 - 1
    x_file = os.path.join(work, name + "_x.safetensors")
    mod.write_safetensors(x_file, {"input": x.permute(0, 2, 3, 1).contiguous()})

    # 1. lamda's weights into PyTorch.
    w0 = os.path.join(work, name + "_w0.safetensors")
    y0 = os.path.join(work, name + "_y0.safetensors")
    run([lamda, "run", model_path, "--seed", "7", "--save-weights", w0, "--input", x_file,
         "--out", y0])
    model.load_lamda_weights(w0)
    with torch.no_grad():
        got = model(x)
    want = mod.read_safetensors(y0)["output"].permute(0, 3, 1, 2)
    if tuple(got.shape) != tuple(want.shape) or not close(got, want):
        sys.exit(f"FAIL: {name}: PyTorch output differs from lamda's with lamda's weights "
                 f"(max diff {float((got - want).abs().max())})")

    # 2. Weights changed in PyTorch, back into lamda.
    with torch.no_grad():
        for k, v in model.lamda_state_dict().items():
            if k.endswith("running_var"):
                v.mul_(1.5)
            else:
                v.add_(0.05 * torch.randn_like(v))
        got = model(x)
    w1 = os.path.join(work, name + "_w1.safetensors")
    y1 = os.path.join(work, name + "_y1.safetensors")
    model.save_lamda_weights(w1, {"source": "pytorch_roundtrip"})
    run([lamda, "run", model_path, "--weights", w1, "--input", x_file, "--out", y1])
    want = mod.read_safetensors(y1)["output"].permute(0, 3, 1, 2)
    if not close(got, want):
        sys.exit(f"FAIL: {name}: lamda's output differs from PyTorch's with PyTorch's weights "
                 f"(max diff {float((got - want).abs().max())})")
    # The saved weights are exactly the module's.
    back = mod.read_safetensors(w1)
    for k, v in model.lamda_state_dict().items():
        if not torch.equal(back[k], v):
            sys.exit(f"FAIL: {name}: tensor {k} changed on the way through safetensors")
    # Training mode runs (dropout, batch statistics) and gives gradients to every weight.
    model.train()
    model(torch.rand(2, c, h, w)).sum().backward()
    for k, p in model.named_parameters():
        if p.grad is None:
            sys.exit(f"FAIL: {name}: no gradient for {k}")
    print(f"ok: {name}: {len(back)} tensors round-trip, outputs agree")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lamda = os.path.abspath(sys.argv[1])
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        models = []
        for name, text in (("all_ops", ALL_OPS), ("chain", TINY_CHAIN), ("colliding_names", COLLIDING_NAMES)):
            path = os.path.join(work, name + ".lamda")
            with open(path, "w") as f:
                f.write(text)
            models.append(path)
        models += sys.argv[2:]
        for m in models:
            check_model(lamda, m, work)


if __name__ == "__main__":
    main()
