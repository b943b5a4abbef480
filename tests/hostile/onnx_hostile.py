#!/usr/bin/python3
"""Hostile ONNX files for `lamda import` (issue 16), generated here, never committed.

    /usr/bin/python3 tests/hostile/onnx_hostile.py LAMDA_EXE
    /usr/bin/python3 tests/hostile/onnx_hostile.py --seeds DIR   (fuzz_onnx's seed corpus)

Each file must give exit status 1 and a clear error (or, for the large-but-valid ones, import)
within a memory cap (RLIMIT_AS) and a generous wall-clock cap that only catches hangs: the
quadratic cases took 12-17 s before, and take well under a second now. Exits 77 (skipped)
without python3-onnx.
"""
import os
import resource
import subprocess
import sys
import tempfile

try:
    import onnx
    from onnx import TensorProto, helper
except ImportError:
    print("skipped: python3-onnx is not installed (apt-get install python3-onnx)")
    sys.exit(77)

MEMORY_CAP = 2 << 30  # address space of the lamda process


def cap_memory():
    # Not under AddressSanitizer (LAMDA_HOSTILE_NO_RLIMIT=1): its shadow memory needs terabytes
    # of address space; ASan's own allocator limits still catch a runaway allocation there.
    if os.environ.get("LAMDA_HOSTILE_NO_RLIMIT") != "1":
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def model(nodes, inits=(), shape=(1, 3, 8, 8), outputs=("y",)):
    graph = helper.make_graph(
        list(nodes), "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return m.SerializeToString()


def conv_relu_chain(n_nodes, name):
    """n convolutions that all carry the same node name (16k of one name: quadratic before)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], [0.5] * 9)
    nodes, prev = [], "x"
    for i in range(n_nodes):
        out = "y" if i == n_nodes - 1 else f"v{i}"
        nodes.append(helper.make_node("Conv", [prev, "w"], [out], name=name))
        prev = out
    return model(nodes, [w])


def many_shapes(n):
    """n Shape nodes reading the input (each one re-parsed the whole model before)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], [0.5] * 9)
    nodes = [helper.make_node("Shape", ["x"], [f"s{i}"], name=f"shape{i}") for i in range(n)]
    nodes.append(helper.make_node("Conv", ["x", "w"], ["y"], name="c"))
    return model(nodes, [w])


def interleaved_shapes(n):
    """n convolutions each followed by a Shape node of its output: every Shape needs the shapes
    of a model that just grew. The text parsed for them in all is bounded (32 MiB), so this
    imports or stops with that error; it cannot take minutes."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], [0.5] * 9)
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"v{i}"
        nodes.append(helper.make_node("Conv", [prev, "w"], [out], name=f"c{i}"))
        nodes.append(helper.make_node("Shape", [out], [f"s{i}"], name=f"shape{i}"))
        prev = out
    return model(nodes, [w])


CASES = []


def case(name, data, expect, status=1):
    CASES.append((name, data, expect, status))


# Gemm whose weight dims overflow when multiplied (SIGSEGV and heap overflow before).
flat = helper.make_node("Flatten", ["x"], ["f"], name="flat")
huge = TensorProto()
huge.name = "W"
huge.data_type = TensorProto.FLOAT
huge.dims.extend([3, 6148914691236517206])
huge.raw_data = b"\0" * 48
case("gemm_overflow", model([flat, helper.make_node("Gemm", ["f", "W"], ["y"], name="fc")], [huge]),
     "more than 2^31 elements")
# MaxPool with an empty or a one-element `dilations` (over-read before).
for dil in ([], [2]):
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], dilations=dil)
    case(f"maxpool_dilations_{len(dil)}", model([pool]), "attribute 'dilations' has")
# A node with no inputs and one with no outputs (protobuf CHECK before).
case("relu_no_input", model([helper.make_node("Relu", [], ["y"], name="r")]), "the node has no input")
case("relu_no_output", model([helper.make_node("Relu", ["x"], [], name="r")]), "the node has no output")
# Clip whose bound is an empty constant (vector::_M_range_check before).
empty = helper.make_tensor("lo", TensorProto.FLOAT, [0], [])
case("clip_empty_bound", model([helper.make_node("Clip", ["x", "lo"], ["y"], name="clip")], [empty]),
     "must be a scalar")
# 16k nodes of one name: valid but over lamda's 10000-layer limit, refused quickly; 5000 import.
case("same_name_16k", conv_relu_chain(16000, "dup"), "more than 10000 layers")
case("same_name_5k", conv_relu_chain(5000, "dup"), None, 0)
case("many_shape_nodes", many_shapes(20000), None, 0)
case("interleaved_shape_nodes", interleaved_shapes(9000), "too many Shape, Flatten, Reshape or Softmax nodes")


def write_seeds(directory):
    """Valid models for fuzz_onnx's corpus (scripts/test.sh, scripts/fuzz-long.sh)."""
    os.makedirs(directory, exist_ok=True)
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], [0.5] * 9)
    b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.1, 0.2, 0.3])
    fcw = helper.make_tensor("fc.weight", TensorProto.FLOAT, [4, 48], [0.01] * 192)
    seeds = {
        "chain": conv_relu_chain(3, "c"),
        "shapes": many_shapes(2),
        "conv_relu_pool_gemm": model([
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/features/features.0/Conv"),
            helper.make_node("Relu", ["c"], ["r"], name="/features/features.1/Relu"),
            helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1),
        ], [w, b, fcw]),
    }
    for name, data in seeds.items():
        with open(os.path.join(directory, name + ".onnx"), "wb") as f:
            f.write(data)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(sys.argv[2])
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    lamda = sys.argv[1]
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        for name, data, expect, status in CASES:
            path = os.path.join(work, name + ".onnx")
            with open(path, "wb") as f:
                f.write(data)
            out = os.path.join(work, name + ".lamda")
            try:
                r = subprocess.run([lamda, "import", path, "-o", out], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=120,
                                   preexec_fn=cap_memory)
            except subprocess.TimeoutExpired:
                print(f"FAIL {name}: still running after 120 s")
                failures += 1
                continue
            text = r.stdout.strip()
            ok = r.returncode == status and (expect is None or expect in text)
            print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {r.returncode}: {text[-300:]}")
            failures += not ok
    if failures:
        sys.exit(f"{failures} hostile ONNX case(s) failed")
    print(f"all {len(CASES)} hostile ONNX cases handled")


if __name__ == "__main__":
    main()
