// lamda/deploy/export.hpp: a lamda model as source code for other tools (docs/export.md).
//
//   std::string py  = lamda::pytorch_module_source(graph);              // a plain torch nn.Module
//   std::string hpp = lamda::cpp_header_source(graph, weights, "fmnist"); // a firmware header
//   std::string h8  = lamda::cpp_header_source_int8(folded, quantized, float_weights, "fmnist8");
//
// PyTorch: the module `Model` registers one submodule per conv2d, dwconv, fc and batchnorm layer
// under the layer's name, so its state_dict() keys are lamda's safetensors names (docs/weights.md)
// in the same layouts; forward() takes NCHW float32 [N, C, H, W] and returns NCHW [N, C', H', W']
// (a 1x1xK output is [N, K, 1, 1]), with train/torch_module.hpp's semantics op by op (asymmetric `same`
// padding as an explicit F.pad, avgpool with count_include_pad=False, flatten and fc reading
// H, W, C order, ...). The file also holds read_safetensors()/write_safetensors() (plain Python,
// no safetensors package needed) and Model.load_lamda_weights()/save_lamda_weights().
//
// C++: the header expresses the model as dsl/layers.hpp templates (`NS::Net`; the compiler checks its
// shapes, and static_asserts check its parameter and MAC counts against the exported graph), embeds
// every weight tensor as a constant float array, and offers NS::graph() (Net::to_graph with the
// layers' original names), NS::weights(), and, with LAMDA_WITH_XNNPACK, NS::run(input, output)
// through a lazily built XnnExecutor. It includes only <lamda/lamda.hpp>. The int8 header (from a
// `lamda quantize` file, data/weights.hpp's read_quantized) embeds int8_t weights, int32 biases,
// weight and activation scales and the float layers' float weights instead, offers
// NS::quantized_model() too, and its run() builds the XnnExecutor in int8 (XnnOptions::quantized).
//
// Both throw ExportError for a graph they cannot express (the message says why).
#ifndef LAMDA_DEPLOY_EXPORT_HPP
#define LAMDA_DEPLOY_EXPORT_HPP

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../exception.hpp"
#include "../core/analysis.hpp"
#include "../core/ir.hpp"
#include "../exec/plan.hpp"  // activation_of_layer
#include "../exec/pool_plan.hpp"
#include "../exec/reference_int8.hpp"  // check_int8_params
#include "../core/quant.hpp"
#include "../data/weights.hpp"

namespace lamda {

class ExportError : public Exception {
public:
    using Exception::Exception;
};

namespace export_detail {

inline std::string str(std::int64_t v) { return std::to_string(v); }

// The shortest decimal that reads back as `v` (as a double).
inline std::string shortest(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// A float literal that reads back exactly as `v` (C++ `f` suffix; Python takes it without).
inline std::string float_literal(float v) {
    if (!std::isfinite(v)) throw ExportError("cannot export a non-finite weight value");
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    std::string s(buf, r.ptr);
    if (s.find_first_of(".e") == std::string::npos) s += ".0";
    return s;
}

inline bool is_python_keyword(std::string_view s) {
    static const std::set<std::string_view> kw{
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield", "match", "case", "_", "torch", "nn", "F", "x", "self",
        "math", "json", "struct", "os"};
    return kw.count(s) > 0;
}

// Attributes of torch.nn.Module (torch 1.13 and later): a submodule cannot take these names.
inline bool clashes_with_module(std::string_view s) {
    static const std::set<std::string_view> names{
        "training", "forward", "eval", "train", "to", "cuda", "cpu", "ipu", "xpu", "float",
        "double", "half", "bfloat16", "type", "apply", "modules", "children", "parameters",
        "buffers", "named_modules", "named_children", "named_parameters", "named_buffers",
        "state_dict", "load_state_dict", "zero_grad", "requires_grad_", "register_buffer",
        "register_parameter", "register_module", "register_forward_hook",
        "register_forward_pre_hook", "register_backward_hook", "register_full_backward_hook",
        "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
        "register_state_dict_pre_hook", "add_module", "get_submodule", "get_parameter",
        "get_buffer", "extra_repr", "share_memory", "to_empty", "dump_patches", "T_destination",
        "call_super_init", "get_extra_state", "set_extra_state", "compile", "smart_apply",
        "load_lamda_weights", "save_lamda_weights", "lamda_state_dict", "input_shape",
        "output_shape"};
    return names.count(s) > 0 || (!s.empty() && s[0] == '_');
}

// Names a forward() local must not take: Python keywords, the modules and helpers the generated
// file defines or imports, and the builtins forward() calls.
inline bool py_reserved_local(std::string_view s) {
    static const std::set<std::string_view> names{"getattr", "super", "Model", "read_safetensors",
                                                  "write_safetensors", "_pool_sum_count"};
    return is_python_keyword(s) || names.count(s) > 0;
}

// The Python local variable holding a layer's value: the layer's name, or the name with '_'
// appended when it is reserved (`pass` -> `pass_`) or already ends in '_' (`x_` -> `x__`). The
// second rule keeps the map one-to-one: layers `x` and `x_` get `x_` and `x__`, never one
// variable; no reserved name ends in '_'.
inline std::string py_var(const std::string& name) {
    const bool escape = py_reserved_local(name) || (!name.empty() && name.back() == '_');
    return escape ? name + "_" : name;
}

// C++ keywords, alternative tokens, the standard library's macros and namespaces, and the names
// the generated header itself declares: none may be its namespace.
inline bool is_cpp_reserved(std::string_view s) {
    static const std::set<std::string_view> names{
        "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break",
        "case", "catch", "char", "char8_t", "char16_t", "char32_t", "class", "compl", "concept",
        "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "co_await",
        "co_return", "co_yield", "decltype", "default", "delete", "do", "double", "dynamic_cast",
        "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto",
        "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
        "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register",
        "reinterpret_cast", "requires", "return", "short", "signed", "sizeof", "static",
        "static_assert", "static_cast", "struct", "switch", "template", "this", "thread_local",
        "throw", "true", "try", "typedef", "typeid", "typename", "union", "unsigned", "using",
        "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq", "final", "override",
        "import", "module",
        // macros of the C and C++ standard libraries (and common POSIX ones)
        "NULL", "errno", "assert", "EOF", "stdin", "stdout", "stderr", "EDOM", "ERANGE", "EILSEQ",
        "INFINITY", "NAN", "HUGE_VAL", "BUFSIZ", "FILENAME_MAX", "RAND_MAX", "EXIT_SUCCESS",
        "EXIT_FAILURE", "CHAR_BIT", "INT_MAX", "INT_MIN", "SIZE_MAX", "offsetof", "setjmp",
        "va_arg", "va_start", "va_end", "va_copy", "unix", "linux", "major", "minor",
        // namespaces a header sees
        "std", "lamda", "posix", "detail", "L",
        // names the generated header declares in its namespace
        "Net", "input_size", "output_size", "model_name", "layer_names", "data", "TensorInfo",
        "tensor_count", "tensors", "graph", "weights", "executor", "run", "main"};
    if (names.count(s) > 0) return true;
    // Reserved to the implementation: a double underscore anywhere, or '_' and a capital first.
    if (s.find("__") != std::string_view::npos) return true;
    return s.size() >= 2 && s[0] == '_' && s[1] >= 'A' && s[1] <= 'Z';
}

// Names the int8 header declares besides the float header's: none may be its namespace either.
inline bool is_cpp_reserved_int8(std::string_view s) {
    static const std::set<std::string_view> names{
        "precision", "weight_bytes", "QuantLayerInfo", "quant_layer_count", "quant_layers",
        "ActivationInfo", "activation_count", "activations", "float_layer_count", "float_layers",
        "quantized_model"};
    return names.count(s) > 0;
}

inline std::string py_act(Activation a, const std::string& x) {
    switch (a) {
    case Activation::None: return x;
    case Activation::Relu: return "F.relu(" + x + ")";
    case Activation::Relu6: return "F.hardtanh(" + x + ", 0.0, 6.0)";
    case Activation::HardSwish: return "F.hardswish(" + x + ")";
    case Activation::HardSigmoid: return "F.hardsigmoid(" + x + ")";
    case Activation::Sigmoid: return "torch.sigmoid(" + x + ")";
    }
    return x;
}

inline void check_exportable(const Graph& g) {
    if (g.layers.empty() || g.layers.front().op != OpKind::Input)
        throw ExportError("the graph has no input layer");
    for (const Layer& l : g.layers)
        if (!l.shape.known())
            throw ExportError("layer '" + l.name + "' has no inferred shape (export a graph from "
                              "parse_dsl, which infers shapes)");
}

inline const char* python_prelude() {
    return R"PY(import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    """Reads a safetensors file of float32 tensors: {name: tensor}. Skips num_batches_tracked."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, entry in header.items():
        if name == "__metadata__" or name.endswith(".num_batches_tracked"):
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: tensor '{name}' is {entry['dtype']}; only F32 is supported")
        begin, end = entry["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=torch.float32)
        out[name] = t.reshape(entry["shape"]).clone()
    return out


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} as float32 safetensors, tensors in name order (as lamda writes)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        blob = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _pool_sum_count(x, pad, kernel, stride):
    # Window sums over the zero-padded input and each window's count of in-bounds elements.
    s = F.avg_pool2d(F.pad(x, pad), kernel, stride, 0, False, True, 1)
    ones = torch.ones((1, 1, x.shape[2], x.shape[3]), dtype=x.dtype, device=x.device)
    c = F.avg_pool2d(F.pad(ones, pad), kernel, stride, 0, False, True, 1)
    return s / c.clamp_min(1.0)


)PY";
}

inline const char* python_methods() {
    return R"PY(
    def lamda_state_dict(self):
        """The weights as lamda names them: state_dict() without num_batches_tracked."""
        return {k: v for k, v in self.state_dict().items()
                if not k.endswith(".num_batches_tracked")}

    def load_lamda_weights(self, path):
        """Loads a lamda safetensors file (exactly this model's tensors, torch layouts)."""
        tensors = read_safetensors(path)
        expected = self.lamda_state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for k, v in tensors.items():
                if tuple(v.shape) != tuple(expected[k].shape):
                    raise ValueError(f"{path}: '{k}' has shape {list(v.shape)}, "
                                     f"expected {list(expected[k].shape)}")
                expected[k].copy_(v)

    def save_lamda_weights(self, path, metadata=None):
        """Saves the weights as a lamda safetensors file (lamda eval, lamda export --cpp, ...)."""
        write_safetensors(path, self.lamda_state_dict(), metadata)
)PY";
}

// The Python class name: the model name in CamelCase, or Model.
inline std::string python_class_alias(const std::string& model) {
    std::string out;
    bool up = true;
    for (char ch : model) {
        if (ch == '_') { up = true; continue; }
        out += up && ch >= 'a' && ch <= 'z' ? static_cast<char>(ch - 'a' + 'A') : ch;
        up = false;
    }
    if (out.empty() || (out[0] >= '0' && out[0] <= '9') || out == "Model" || is_python_keyword(out))
        return "";
    return out;
}

}  // namespace export_detail

// ---------------------------------------------------------------------------------------------
// PyTorch
// ---------------------------------------------------------------------------------------------

// Python source of a torch nn.Module computing `graph` (shape-inferred, as parse_dsl returns it).
inline std::string pytorch_module_source(const Graph& graph) {
    using namespace export_detail;
    check_exportable(graph);
    for (const Layer& l : graph.layers)
        if (has_weights(l.op) && clashes_with_module(l.name))
            throw ExportError("layer name '" + l.name + "' is an attribute of torch.nn.Module (or "
                              "starts with '_'), so PyTorch cannot register it; rename the layer");
    const Shape in = graph.input().shape;
    const Shape out = graph.output().shape;
    std::string s;
    s += "# Generated by `lamda export --pytorch` from the lamda model '" + graph.name +
         "' (docs/export.md).\n"
         "# A plain torch nn.Module: state_dict() keys are the lamda layer names (NAME.weight, ...)\n"
         "# in torch layouts, so lamda safetensors weights load as they are, and trained weights\n"
         "# save back with save_lamda_weights(). Input NCHW [N, " + str(in.c) + ", " + str(in.h) +
         ", " + str(in.w) + "], output NCHW [N, " + str(out.c) + ", " + str(out.h) + ", " +
         str(out.w) + "].\n";
    s += python_prelude();
    s += "class Model(nn.Module):\n";
    s += "    input_shape = (" + str(in.c) + ", " + str(in.h) + ", " + str(in.w) + ")  # C, H, W\n";
    s += "    output_shape = (" + str(out.c) + ", " + str(out.h) + ", " + str(out.w) + ")\n\n";
    s += "    def __init__(self):\n        super().__init__()\n";
    auto shape_of = [&](int i) { return graph.layers[static_cast<std::size_t>(i)].shape; };
    auto mod = [&](const Layer& l) {
        return is_python_keyword(l.name) ? "getattr(self, \"" + l.name + "\")" : "self." + l.name;
    };
    bool any_module = false;
    for (const Layer& l : graph.layers) {
        if (!has_weights(l.op)) continue;
        any_module = true;
        const Shape x = shape_of(l.inputs[0]);
        std::string m;
        switch (l.op) {
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d: {
            const bool dw = l.op == OpKind::DepthwiseConv2d;
            const std::int64_t o = dw ? x.c * l.multiplier : l.out_channels;
            const std::int64_t groups = dw ? x.c : l.groups;
            const bool symmetric = l.pads[0] == l.pads[2] && l.pads[1] == l.pads[3];
            m = "nn.Conv2d(" + str(x.c) + ", " + str(o) + ", (" + str(l.kernel_h) + ", " +
                str(l.kernel_w) + "), stride=(" + str(l.stride_h) + ", " + str(l.stride_w) +
                "), padding=(" + str(symmetric ? l.pads[0] : 0) + ", " +
                str(symmetric ? l.pads[1] : 0) + "), dilation=(" + str(l.dilation_h) + ", " +
                str(l.dilation_w) + "), groups=" + str(groups) +
                ", bias=" + (l.bias ? "True" : "False") + ")";
            break;
        }
        case OpKind::FullyConnected:
            m = "nn.Linear(" + str(x.elements()) + ", " + str(l.out_channels) +
                ", bias=" + (l.bias ? "True" : "False") + ")";
            break;
        default:  // BatchNorm
            m = "nn.BatchNorm2d(" + str(x.c) + ", eps=" + shortest(l.eps) + ", momentum=0.1)";
            break;
        }
        if (is_python_keyword(l.name))
            s += "        self.add_module(\"" + l.name + "\", " + m + ")\n";
        else
            s += "        self." + l.name + " = " + m + "\n";
    }
    if (!any_module) s += "        pass\n";
    s += "\n    def forward(self, x):\n";
    for (const Layer& l : graph.layers) {
        const std::string v = py_var(l.name);
        auto arg = [&](std::size_t k) {
            return py_var(graph.layers[static_cast<std::size_t>(l.inputs[k])].name);
        };
        std::string e;
        const Shape x = l.inputs.empty() ? l.shape : shape_of(l.inputs[0]);
        switch (l.op) {
        case OpKind::Input: e = "x"; break;
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d: {
            const bool symmetric = l.pads[0] == l.pads[2] && l.pads[1] == l.pads[3];
            const std::string a = symmetric ? arg(0)
                                            : "F.pad(" + arg(0) + ", (" + str(l.pads[1]) + ", " +
                                                  str(l.pads[3]) + ", " + str(l.pads[0]) + ", " +
                                                  str(l.pads[2]) + "))";
            e = py_act(l.act, mod(l) + "(" + a + ")");
            break;
        }
        case OpKind::FullyConnected: {
            std::string a = arg(0);
            if (x.h != 1 || x.w != 1) a += ".permute(0, 2, 3, 1)";
            e = py_act(l.act, mod(l) + "(" + a + ".reshape(" + arg(0) + ".shape[0], -1))") +
                "[:, :, None, None]";
            break;
        }
        case OpKind::BatchNorm: e = mod(l) + "(" + arg(0) + ")"; break;
        case OpKind::MaxPool:
        case OpKind::AvgPool: {
            // plan_pool (exec/pool_plan.hpp), as train/torch_module.hpp runs it: torch's own pool when its
            // arithmetic gives the inferred size, else explicit padding/cropping first.
            const PoolPlan plan = plan_pool(l, x);
            const bool is_max = l.op == OpKind::MaxPool;
            const std::string k = "(" + str(l.kernel_h) + ", " + str(l.kernel_w) + ")";
            const std::string st = "(" + str(l.stride_h) + ", " + str(l.stride_w) + ")";
            if (plan.native) {
                const std::string p = "(" + str(plan.pad[2]) + ", " + str(plan.pad[0]) + ")";
                e = is_max ? "F.max_pool2d(" + arg(0) + ", " + k + ", " + st + ", " + p + ")"
                           : "F.avg_pool2d(" + arg(0) + ", " + k + ", " + st + ", " + p +
                                 ", count_include_pad=False)";
            } else {
                const std::string pad = "(" + str(plan.pad[0]) + ", " + str(plan.pad[1]) + ", " +
                                        str(plan.pad[2]) + ", " + str(plan.pad[3]) + ")";
                e = is_max ? "F.max_pool2d(F.pad(" + arg(0) + ", " + pad +
                                 ", value=-math.inf), " + k + ", " + st + ")"
                           : "_pool_sum_count(" + arg(0) + ", " + pad + ", " + k + ", " + st + ")";
            }
            break;
        }
        case OpKind::GlobalAvgPool: e = arg(0) + ".mean((2, 3), keepdim=True)"; break;
        case OpKind::Add: {
            e = arg(0);
            for (std::size_t k = 1; k < l.inputs.size(); ++k) e += " + " + arg(k);
            if (l.act != Activation::None) e = py_act(l.act, e);
            break;
        }
        case OpKind::Concat: {
            e = "torch.cat([";
            for (std::size_t k = 0; k < l.inputs.size(); ++k) e += (k ? ", " : "") + arg(k);
            e += "], 1)";
            break;
        }
        case OpKind::Mul: e = arg(0) + " * " + arg(1); break;
        case OpKind::Relu:
        case OpKind::Relu6:
        case OpKind::HardSwish:
        case OpKind::HardSigmoid:
        case OpKind::Sigmoid: e = py_act(activation_of_layer(l.op), arg(0)); break;
        case OpKind::Softmax: e = "torch.softmax(" + arg(0) + ", 1)"; break;
        case OpKind::Flatten:
            e = arg(0) + ".permute(0, 2, 3, 1).reshape(" + arg(0) + ".shape[0], -1, 1, 1)";
            break;
        case OpKind::Dropout:
            e = l.rate > 0 ? "F.dropout(" + arg(0) + ", " + shortest(l.rate) + ", self.training)"
                           : arg(0);
            break;
        }
        s += "        " + v + " = " + e + "  # " + std::string(op_name(l.op)) + ", " +
             to_string(l.shape) + "\n";
    }
    s += "        return " + py_var(graph.output().name) + "\n";
    s += python_methods();
    const std::string alias = python_class_alias(graph.name);
    if (!alias.empty()) s += "\n\n" + alias + " = Model\n";
    return s;
}

// ---------------------------------------------------------------------------------------------
// C++ (dsl/layers.hpp templates)
// ---------------------------------------------------------------------------------------------

namespace export_detail {

// The graph as nested dsl/layers.hpp blocks: a chain of items, each a layer or a join of branches.
struct TemplateBuilder {
    const Graph& g;
    std::vector<int> idom;
    std::vector<int> order;  // original layer indices in to_graph's order

    explicit TemplateBuilder(const Graph& graph) : g(graph), idom(graph.layers.size(), -1) {
        for (std::size_t v = 1; v < g.layers.size(); ++v) {
            const Layer& l = g.layers[v];
            if (l.inputs.empty()) throw ExportError("layer '" + l.name + "' has no input");
            int d = l.inputs[0];
            for (std::size_t k = 1; k < l.inputs.size(); ++k) {
                int b = l.inputs[k];
                while (d != b) {
                    if (d > b) d = idom[static_cast<std::size_t>(d)];
                    else b = idom[static_cast<std::size_t>(b)];
                }
            }
            idom[v] = d;
        }
    }

    static bool is_join(OpKind op) {
        return op == OpKind::Add || op == OpKind::Concat || op == OpKind::Mul;
    }

    static std::string padding(const Layer& l) {
        switch (l.padding.mode) {
        case PaddingMode::Same: return "L::Same";
        case PaddingMode::Valid: return "L::Valid";
        case PaddingMode::Explicit: break;
        }
        const auto& a = l.padding.amounts;
        return "L::Pad<" + str(a[0]) + ", " + str(a[1]) + ", " + str(a[2]) + ", " + str(a[3]) + ">";
    }

    static std::string act(Activation a) {
        switch (a) {
        case Activation::None: return "L::Act::None";
        case Activation::Relu: return "L::Act::Relu";
        case Activation::Relu6: return "L::Act::Relu6";
        case Activation::HardSwish: return "L::Act::HardSwish";
        case Activation::HardSigmoid: return "L::Act::HardSigmoid";
        case Activation::Sigmoid: return "L::Act::Sigmoid";
        }
        return "L::Act::None";
    }

    // A decimal as a fraction Num/Den with Den a power of ten.
    static std::string fraction(double v, const std::string& what) {
        const std::string dec = shortest(v);
        std::int64_t mant = 0;
        int frac_digits = 0, exp10 = 0;
        bool after_point = false;
        std::size_t i = 0;
        for (; i < dec.size() && dec[i] != 'e'; ++i) {
            if (dec[i] == '.') { after_point = true; continue; }
            if (dec[i] < '0' || dec[i] > '9') throw ExportError("cannot express " + what + "=" + dec);
            if (mant > (std::int64_t{1} << 58)) throw ExportError("cannot express " + what + "=" + dec);
            mant = mant * 10 + (dec[i] - '0');
            if (after_point) ++frac_digits;
        }
        if (i < dec.size()) exp10 = std::stoi(dec.substr(i + 1));
        int den_digits = frac_digits - exp10;
        while (den_digits < 0) { mant *= 10; ++den_digits; }
        if (den_digits > 18) throw ExportError("cannot express " + what + "=" + dec + " as a fraction");
        std::int64_t den = 1;
        for (int k = 0; k < den_digits; ++k) den *= 10;
        return str(mant) + ", " + str(den);
    }

    std::string layer_type(int i) const {
        const Layer& l = g.layers[static_cast<std::size_t>(i)];
        switch (l.op) {
        case OpKind::Input:
            return "L::Input<" + str(l.shape.h) + ", " + str(l.shape.w) + ", " + str(l.shape.c) + ">";
        case OpKind::Conv2d:
            return "L::Conv2dHW<" + str(l.out_channels) + ", " + str(l.kernel_h) + ", " +
                   str(l.kernel_w) + ", " + str(l.stride_h) + ", " + str(l.stride_w) + ", " +
                   padding(l) + ", " + act(l.act) + ", " + str(l.dilation_h) + ", " +
                   str(l.dilation_w) + ", " + str(l.groups) + ", " + (l.bias ? "true" : "false") + ">";
        case OpKind::DepthwiseConv2d:
            return "L::DepthwiseConv2dHW<" + str(l.kernel_h) + ", " + str(l.kernel_w) + ", " +
                   str(l.stride_h) + ", " + str(l.stride_w) + ", " + padding(l) + ", " + act(l.act) +
                   ", " + str(l.multiplier) + ", " + str(l.dilation_h) + ", " + str(l.dilation_w) +
                   ", " + (l.bias ? "true" : "false") + ">";
        case OpKind::FullyConnected:
            return "L::FullyConnected<" + str(l.out_channels) + ", " + act(l.act) + ", " +
                   (l.bias ? "true" : "false") + ">";
        case OpKind::BatchNorm: return "L::BatchNormEps<" + fraction(l.eps, "eps") + ">";
        case OpKind::MaxPool:
        case OpKind::AvgPool:
            return std::string(l.op == OpKind::MaxPool ? "L::MaxPoolHW<" : "L::AvgPoolHW<") +
                   str(l.kernel_h) + ", " + str(l.kernel_w) + ", " + str(l.stride_h) + ", " +
                   str(l.stride_w) + ", " + padding(l) + ", " + (l.ceil_mode ? "true" : "false") + ">";
        case OpKind::GlobalAvgPool: return "L::GlobalAvgPool";
        case OpKind::Relu: return "L::Relu";
        case OpKind::Relu6: return "L::Relu6";
        case OpKind::HardSwish: return "L::HardSwish";
        case OpKind::HardSigmoid: return "L::HardSigmoid";
        case OpKind::Sigmoid: return "L::Sigmoid";
        case OpKind::Softmax: return "L::Softmax";
        case OpKind::Flatten: return "L::Flatten";
        case OpKind::Dropout: return "L::Dropout<" + fraction(l.rate, "rate") + ">";
        default: break;
        }
        throw ExportError("layer '" + l.name + "': unexpected op");
    }

    // Items computing value `e` from value `s` (s dominates e), in to_graph order; appends the
    // layers to `order` as to_graph numbers them.
    std::vector<std::string> chain(int s, int e, int depth) {
        if (depth > 200) throw ExportError("the graph nests blocks too deeply for dsl/layers.hpp");
        std::vector<int> path;  // layers (or joins) from e back to s
        int v = e;
        while (v != s) {
            if (v <= 0 || v < s)
                throw ExportError("layer '" + g.layers[static_cast<std::size_t>(e)].name +
                                  "' cannot be expressed as a block of dsl/layers.hpp templates "
                                  "(its inputs do not nest as branches)");
            path.push_back(v);
            const Layer& l = g.layers[static_cast<std::size_t>(v)];
            v = is_join(l.op) ? idom[static_cast<std::size_t>(v)] : l.inputs[0];
        }
        std::vector<std::string> items;
        for (auto it = path.rbegin(); it != path.rend(); ++it) {
            const int u = *it;
            const Layer& l = g.layers[static_cast<std::size_t>(u)];
            if (!is_join(l.op)) {
                order.push_back(u);
                items.push_back(layer_type(u));
                continue;
            }
            const int p = idom[static_cast<std::size_t>(u)];
            std::vector<std::string> branches;
            for (int in : l.inputs) branches.push_back(block(chain(p, in, depth + 1)));
            std::string head = l.op == OpKind::Add ? "L::AddAct<" + act(l.act) + ", "
                               : l.op == OpKind::Concat ? "L::Concat<" : "L::Multiply<";
            for (std::size_t k = 0; k < branches.size(); ++k) head += (k ? ", " : "") + branches[k];
            order.push_back(u);
            items.push_back(head + ">");
        }
        return items;
    }

    // A branch: one item as itself, none as Identity, more as Sequential (nested in groups of 64
    // to stay well inside the template recursion limits).
    static std::string block(const std::vector<std::string>& items) {
        if (items.empty()) return "L::Identity";
        if (items.size() == 1) return items[0];
        return "L::Sequential<" + join_grouped(items) + ">";
    }

    static std::string join_grouped(std::vector<std::string> items) {
        while (items.size() > 64) {
            std::vector<std::string> grouped;
            for (std::size_t k = 0; k < items.size(); k += 64) {
                std::string s = "L::Sequential<";
                for (std::size_t j = k; j < std::min(items.size(), k + 64); ++j)
                    s += (j > k ? ",\n    " : "") + items[j];
                grouped.push_back(s + ">");
            }
            items = std::move(grouped);
        }
        std::string s;
        for (std::size_t k = 0; k < items.size(); ++k) s += (k ? ",\n    " : "") + items[k];
        return s;
    }
};

}  // namespace export_detail

// The dsl/layers.hpp type of `graph` (`lamda::layers` as `L`) and the original layer indices in the
// order to_graph() numbers them. Throws ExportError when the graph's joins do not nest as
// branches (every add, concat and mul must join branches that start at one common value).
struct TemplateModel {
    std::string type;
    std::vector<int> order;
};

inline TemplateModel template_model(const Graph& graph) {
    using namespace export_detail;
    check_exportable(graph);
    TemplateBuilder b(graph);
    const int last = static_cast<int>(graph.layers.size()) - 1;
    std::vector<std::string> items{b.layer_type(0)};
    b.order.push_back(0);
    for (std::string& it : b.chain(0, last, 0)) items.push_back(std::move(it));
    if (b.order.size() != graph.layers.size()) {
        std::vector<bool> seen(graph.layers.size(), false);
        for (int i : b.order) seen[static_cast<std::size_t>(i)] = true;
        for (std::size_t i = 0; i < graph.layers.size(); ++i)
            if (!seen[i] || std::count(b.order.begin(), b.order.end(), static_cast<int>(i)) > 1)
                throw ExportError("layer '" + graph.layers[i].name + "' " +
                                  (seen[i] ? "is shared by several branches"
                                           : "does not lead to the output") +
                                  ", which dsl/layers.hpp templates cannot express");
    }
    return TemplateModel{"L::Sequential<" + TemplateBuilder::join_grouped(items) + ">", b.order};
}

// A C++ namespace for a model name: non-identifier characters become '_', a leading digit gets
// "model_" before it, and a reserved name (is_cpp_reserved: `int`, `errno`, `NULL`, `std`,
// `lamda`, ...; with `int8`, also the int8 header's own names) gets "_model" after it; an empty
// name is "model".
inline std::string cpp_namespace_for(const std::string& name, bool int8 = false) {
    std::string s;
    for (char ch : name)
        s += ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) ? ch : '_';
    if (s.empty()) return "model";
    if (s[0] >= '0' && s[0] <= '9') s = "model_" + s;
    while (s.find("__") != std::string::npos) s.replace(s.find("__"), 2, "_");
    if (s.size() >= 2 && s[0] == '_' && s[1] >= 'A' && s[1] <= 'Z') s = "m" + s;
    if (export_detail::is_cpp_reserved(s) || (int8 && export_detail::is_cpp_reserved_int8(s))) s += "_model";
    return s;
}

namespace export_detail {

// Refuses a namespace that is no C++ identifier or is reserved (for the int8 header, also its
// own declarations).
inline void check_cpp_namespace(const std::string& ns, bool int8) {
    auto ident = [](const std::string& s) {
        if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
        for (char ch : s)
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '_'))
                return false;
        return true;
    };
    if (!ident(ns)) throw ExportError("namespace '" + ns + "' is not a C++ identifier");
    if (is_cpp_reserved(ns) || (int8 && is_cpp_reserved_int8(ns)))
        throw ExportError("namespace '" + ns + "' is a C++ keyword, a standard macro or namespace, or a name "
                          "the header declares; choose another (cpp_namespace_for() gives a safe one)");
}

inline std::string cpp_guard(const std::string& ns) {
    std::string guard = "LAMDA_MODEL_";
    for (char ch : ns) guard += (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;
    return guard + "_HPP";
}

// From the include guard to the layer names: the parts the float and the int8 header share.
inline std::string cpp_header_model_part(const Graph& graph, const std::string& ns,
                                         const TemplateModel& tm, const ModelStats& stats) {
    const std::string guard = cpp_guard(ns);
    const Shape in = graph.input().shape, out = graph.output().shape;
    std::string s;
    s += "#ifndef " + guard + "\n#define " + guard + "\n\n"
         "#include <algorithm>\n#include <cstddef>\n#include <cstdint>\n#include <string>\n\n"
         "#include <lamda/lamda.hpp>\n\n"
         "namespace " + ns + " {\n\nnamespace L = lamda::layers;\n\n"
         "// The model as dsl/layers.hpp templates: the compiler checks every shape.\n"
         "using Net = " + tm.type + ";\n\n";
    s += "static_assert(Net::params == " + str(stats.params) + ", \"" + ns +
         ": parameter count differs from the exported model\");\n"
         "static_assert(Net::macs == " + str(stats.macs) + ", \"" + ns +
         ": MAC count differs from the exported model\");\n"
         "static_assert(Net::input_shape == lamda::Shape{" + str(in.h) + ", " + str(in.w) + ", " +
         str(in.c) + "}, \"" + ns + ": input shape\");\n"
         "static_assert(Net::output_shape == lamda::Shape{" + str(out.h) + ", " + str(out.w) +
         ", " + str(out.c) + "}, \"" + ns + ": output shape\");\n\n"
         "inline constexpr std::size_t input_size = " + str(in.elements()) + ";   // floats, NHWC\n"
         "inline constexpr std::size_t output_size = " + str(out.elements()) + ";\n"
         "inline constexpr const char* model_name = \"" + graph.name + "\";\n\n"
         "// Layer names in the order Net::to_graph() numbers the layers.\n"
         "inline constexpr const char* layer_names[" + str(static_cast<std::int64_t>(tm.order.size())) +
         "] = {";
    for (std::size_t k = 0; k < tm.order.size(); ++k)
        s += std::string(k % 6 == 0 ? "\n    " : " ") + "\"" +
             graph.layers[static_cast<std::size_t>(tm.order[k])].name + "\",";
    s += "\n};\n\n";
    return s;
}

// `float` arrays data::w0, w1, ... of the tensors `names` (entries of `weights`), in that order,
// written inside the header's `namespace data`.
inline std::string cpp_float_arrays(const std::vector<std::string>& names, const Weights& weights) {
    std::string s;
    for (std::size_t t = 0; t < names.size(); ++t) {
        const WeightTensor& w = weights.at(names[t]);
        s += "// " + names[t] + " " + shape_string(w.shape) + "\n";
        s += "alignas(16) inline constexpr float w" + str(static_cast<std::int64_t>(t)) + "[" +
             str(static_cast<std::int64_t>(w.data.size())) + "] = {";
        for (std::size_t k = 0; k < w.data.size(); ++k) {
            s += (k % 8 == 0 ? "\n    " : " ");
            s += float_literal(w.data[k]) + "f,";
        }
        s += "\n};\n";
    }
    return s;
}

// TensorInfo and tensors[]: the table of the float arrays cpp_float_arrays wrote.
inline std::string cpp_tensor_table(const std::vector<std::string>& names, const Weights& weights) {
    std::string s;
    s += "struct TensorInfo {\n    const char* name;\n    const float* data;\n    std::size_t size;\n"
         "    int rank;\n    std::int64_t shape[4];\n};\n\n"
         "inline constexpr std::size_t tensor_count = " + str(static_cast<std::int64_t>(names.size())) +
         ";\n";
    if (names.empty()) {
        s += "inline constexpr TensorInfo* tensors = nullptr;\n\n";
    } else {
        s += "inline constexpr TensorInfo tensors[" + str(static_cast<std::int64_t>(names.size())) +
             "] = {\n";
        for (std::size_t t = 0; t < names.size(); ++t) {
            const WeightTensor& w = weights.at(names[t]);
            if (w.shape.size() > 4) throw ExportError("tensor '" + names[t] + "' has rank > 4");
            s += "    {\"" + names[t] + "\", data::w" + str(static_cast<std::int64_t>(t)) + ", " +
                 str(static_cast<std::int64_t>(w.data.size())) + ", " +
                 str(static_cast<std::int64_t>(w.shape.size())) + ", {";
            for (std::size_t d = 0; d < 4; ++d)
                s += (d ? ", " : "") + str(d < w.shape.size() ? w.shape[d] : 0);
            s += "}},\n";
        }
        s += "};\n\n";
    }
    return s;
}

// graph() and weights(), as both headers define them.
inline const char* cpp_graph_function() {
    return R"CPP(// The model graph (dsl/layers.hpp's to_graph, with the original layer names).
inline lamda::Graph graph() {
    lamda::Graph g = Net::to_graph(model_name);
    for (std::size_t i = 0; i < g.layers.size(); ++i) g.layers[i].name = layer_names[i];
    return g;
}

)CPP";
}

inline const char* cpp_weights_function() {
    return R"CPP(inline lamda::Weights weights() {
    lamda::Weights w;
    for (std::size_t t = 0; t < tensor_count; ++t) {
        lamda::WeightTensor& x = w[tensors[t].name];
        x.shape.assign(tensors[t].shape, tensors[t].shape + tensors[t].rank);
        x.data.assign(tensors[t].data, tensors[t].data + tensors[t].size);
    }
    return w;
}

)CPP";
}

// An int32 literal (INT32_MIN written so that no operand overflows int).
inline std::string int32_literal(std::int32_t v) {
    return v == std::numeric_limits<std::int32_t>::min() ? std::string("(-2147483647 - 1)") : str(v);
}

}  // namespace export_detail

// A C++17 header holding `graph` with `weights` (validated first) in namespace `ns`.
inline std::string cpp_header_source(const Graph& graph, const Weights& weights,
                                     const std::string& ns) {
    using namespace export_detail;
    check_exportable(graph);
    check_cpp_namespace(ns, false);
    const std::vector<std::string> problems = validate_weights(graph, weights);
    if (!problems.empty()) {
        std::string msg = "the weights do not fit the model:";
        for (const std::string& p : problems) msg += "\n  " + p;
        throw ExportError(msg);
    }
    const TemplateModel tm = template_model(graph);
    const ModelStats stats = analyze(graph);
    const Shape in = graph.input().shape, out = graph.output().shape;
    std::string s;
    s += "// Generated by `lamda export --cpp` from the lamda model '" + graph.name +
         "' (docs/export.md); do not edit.\n"
         "// " + str(stats.params) + " parameters, " + str(stats.macs) + " MACs, input " +
         to_string(in) + " (NHWC), output " + to_string(out) + ".\n"
         "//\n"
         "//   float out[" + ns + "::output_size];\n"
         "//   " + ns + "::run(image, out);   // needs LAMDA_WITH_XNNPACK (link XNNPACK)\n";
    s += cpp_header_model_part(graph, ns, tm, stats);
    // Weights, in expected_weights order.
    std::vector<std::string> names;
    for (const ExpectedTensor& e : expected_weights(graph)) names.push_back(e.name);
    s += "namespace data {\n";
    s += cpp_float_arrays(names, weights);
    s += "}  // namespace data\n\n";
    s += cpp_tensor_table(names, weights);
    s += cpp_graph_function();
    s += "// The weights as a lamda::Weights map (a copy of the constant arrays).\n";
    s += cpp_weights_function();
    s += R"CPP(#if defined(LAMDA_WITH_XNNPACK)
// The executor run() uses, built on first use (one thread).
inline lamda::XnnExecutor& executor() {
    static lamda::XnnExecutor exec(graph(), weights(), lamda::XnnOptions{1});
    return exec;
}

// input: input_size floats (NHWC); output: output_size floats. Not reentrant.
inline void run(const float* input, float* output) {
    lamda::XnnExecutor& exec = executor();
    std::copy(input, input + input_size, exec.input());
    exec.run();
    std::copy(exec.output(), exec.output() + output_size, output);
}
#endif  // defined(LAMDA_WITH_XNNPACK)

)CPP";
    s += "}  // namespace " + ns + "\n\n#endif  // " + cpp_guard(ns) + "\n";
    return s;
}

// Sizes of an int8 header's data (cpp_header_source_int8), for its comment and `lamda export`.
struct Int8HeaderSizes {
    std::int64_t int8_weights = 0;   // int8 weight values (one byte each)
    std::int64_t int32_biases = 0;   // int32 bias values
    std::int64_t weight_scales = 0;  // float per-channel (or per-tensor) weight scales
    std::int64_t activations = 0;    // activation scale (float) and zero point (int32) pairs
    std::int64_t float_values = 0;   // float weights of the layers that run in float
    std::int64_t weight_bytes = 0;   // all of the above in bytes
    std::int64_t float32_bytes = 0;  // the same model's weights as float32 (cpp_header_source)
};

inline Int8HeaderSizes int8_header_sizes(const Graph& graph, const QuantizedModel& model,
                                         const Weights& float_weights) {
    Int8HeaderSizes z;
    for (const QuantizedWeights& l : model.layers) {
        z.int8_weights += static_cast<std::int64_t>(l.weights.size());
        z.int32_biases += static_cast<std::int64_t>(l.bias.size());
        z.weight_scales += static_cast<std::int64_t>(l.weight_scales.size());
    }
    z.activations = static_cast<std::int64_t>(model.activations.size());
    for (const ExpectedTensor& e : expected_weights(graph)) {
        std::int64_t n = 1;
        for (std::int64_t d : e.shape) n *= d;
        z.float32_bytes += 4 * n;
        const auto it = float_weights.find(e.name);
        if (detail::in_list(model.float_layers, graph.layers[static_cast<std::size_t>(e.layer)].name) &&
            it != float_weights.end())
            z.float_values += static_cast<std::int64_t>(it->second.data.size());
    }
    z.weight_bytes = z.int8_weights + 4 * (z.int32_biases + z.weight_scales + z.float_values) + 8 * z.activations;
    return z;
}

// A C++17 header holding `graph` (batch norms folded, as read_quantized wants it) with the int8
// model `model` and the F32 tensors of its float layers (`float_weights`), in namespace `ns`: int8_t
// weight arrays, int32 biases, per-channel weight scales, activation scales and zero points, the
// float layers with their float weights, and a run() through XnnExecutor in int8 with the file's
// parameters (the XnnOptions `lamda eval` uses for an int8 file). Checks everything first (the
// scales, the shapes against the graph, the int8 parameters XNNPACK needs); throws ExportError.
inline std::string cpp_header_source_int8(const Graph& graph, const QuantizedModel& model,
                                          const Weights& float_weights, const std::string& ns) {
    using namespace export_detail;
    check_exportable(graph);
    check_cpp_namespace(ns, true);
    if (const std::optional<Error> e = validate_quantized_model(model))
        throw ExportError("int8 model: tensor '" + e->where.field + "': " + e->message);
    auto is_float = [&](const std::string& layer) { return detail::in_list(model.float_layers, layer); };
    for (const std::string& f : model.float_layers)
        if (graph.find(f) < 0) throw ExportError("int8 model: float layer '" + f + "' is no layer of the model");
    // Every weighted layer: int8 weights of its shape, or (a float layer) its F32 tensors.
    std::vector<std::string> float_names;
    for (const ExpectedTensor& e : expected_weights(graph)) {
        const Layer& l = graph.layers[static_cast<std::size_t>(e.layer)];
        if (is_float(l.name)) {
            const auto it = float_weights.find(e.name);
            if (it == float_weights.end())
                throw ExportError("int8 model: missing float tensor '" + e.name + "' of float layer '" + l.name + "'");
            if (it->second.dtype != WeightDType::F32 || it->second.shape != e.shape ||
                static_cast<std::int64_t>(it->second.data.size()) != it->second.elements())
                throw ExportError("int8 model: float tensor '" + e.name + "' is " + dtype_name(it->second.dtype) + " " +
                                  shape_string(it->second.shape) + ", expected F32 " + shape_string(e.shape));
            float_names.push_back(e.name);
            continue;
        }
        if (e.name != l.name + ".weight") continue;
        const QuantizedWeights* q = model.find_layer(l.name);
        if (!q) throw ExportError("int8 model: layer '" + l.name + "' has no int8 weights and is no float layer");
        if (q->weight_shape != e.shape)
            throw ExportError("int8 model: tensor '" + e.name + "' has shape " + shape_string(q->weight_shape) +
                              ", expected " + shape_string(e.shape));
    }
    for (const QuantizedWeights& q : model.layers) {
        const int i = graph.find(q.layer);
        if (i < 0 || !has_weights(graph.layers[static_cast<std::size_t>(i)].op) || is_float(q.layer))
            throw ExportError("int8 model: int8 weights for '" + q.layer +
                              "', which is no int8 layer with weights of the model");
        if (q.weight_shape.size() > 4) throw ExportError("tensor '" + q.layer + ".weight' has rank > 4");
    }
    try {
        detail::check_int8_params(graph, model);  // what XnnExecutor checks before it builds
    } catch (const ExecutorError& e) {
        throw ExportError(std::string("int8 model: ") + e.what());
    }
    const TemplateModel tm = template_model(graph);
    const ModelStats stats = analyze(graph);
    const Int8HeaderSizes z = int8_header_sizes(graph, model, float_weights);
    const Shape in = graph.input().shape, out = graph.output().shape;
    std::string float_list;
    for (const std::string& f : model.float_layers) float_list += (float_list.empty() ? "" : ", ") + f;
    std::string s;
    s += "// Generated by `lamda export --cpp` from the lamda model '" + graph.name +
         "' and an int8 weights file (lamda quantize; docs/export.md, docs/int8.md); do not edit.\n"
         "// " + str(stats.params) + " parameters, " + str(stats.macs) + " MACs, input " +
         to_string(in) + " (NHWC), output " + to_string(out) + ".\n"
         "// Precision int8: " + str(z.int8_weights) + " int8 weights, " + str(z.int32_biases) +
         " int32 biases, " + str(z.weight_scales) + " weight scales, " + str(z.activations) +
         " activation scales and zero points;\n"
         "// layers in float: " + (float_list.empty() ? std::string("none") : float_list) + " (" +
         str(z.float_values) + " float weights). Weight data: " + str(z.weight_bytes) +
         " bytes (float32: " + str(z.float32_bytes) + ").\n"
         "//\n"
         "//   float out[" + ns + "::output_size];\n"
         "//   " + ns + "::run(image, out);   // int8 inside, float in and out; needs LAMDA_WITH_XNNPACK\n";
    s += cpp_header_model_part(graph, ns, tm, stats);
    s += "inline constexpr const char* precision = \"int8\";\n"
         "// Bytes of the arrays below: int8 weights, int32 biases, float scales, activation\n"
         "// parameters and the float layers' weights.\n"
         "inline constexpr std::size_t weight_bytes = " + str(z.weight_bytes) + ";\n\n";
    s += "namespace data {\n";
    for (std::size_t k = 0; k < model.layers.size(); ++k) {
        const QuantizedWeights& q = model.layers[k];
        const std::string id = str(static_cast<std::int64_t>(k));
        s += "// " + q.layer + ".weight " + shape_string(q.weight_shape) + " int8\n"
             "alignas(16) inline constexpr std::int8_t q" + id + "[" +
             str(static_cast<std::int64_t>(q.weights.size())) + "] = {";
        for (std::size_t i = 0; i < q.weights.size(); ++i)
            s += (i % 16 == 0 ? "\n    " : " ") + str(q.weights[i]) + ",";
        s += "\n};\n// " + q.layer + ".bias int32, scale act_scale(input) * weight_scale\n"
             "alignas(16) inline constexpr std::int32_t b" + id + "[" +
             str(static_cast<std::int64_t>(q.bias.size())) + "] = {";
        for (std::size_t i = 0; i < q.bias.size(); ++i)
            s += (i % 8 == 0 ? "\n    " : " ") + int32_literal(q.bias[i]) + ",";
        s += "\n};\n// " + q.layer + ".weight_scale " +
             (q.weight_scales.size() == 1 ? "per tensor" : "per channel") + "\n"
             "inline constexpr float s" + id + "[" + str(static_cast<std::int64_t>(q.weight_scales.size())) +
             "] = {";
        for (std::size_t i = 0; i < q.weight_scales.size(); ++i)
            s += (i % 8 == 0 ? "\n    " : " ") + float_literal(q.weight_scales[i]) + "f,";
        s += "\n};\n";
    }
    s += cpp_float_arrays(float_names, float_weights);
    s += "}  // namespace data\n\n";
    s += "// The float layers' weights (F32 tensors of the layers in float_layers).\n";
    s += cpp_tensor_table(float_names, float_weights);
    s += "// A layer running in int8: its int8 weights (the float layout: OIHW, [out][in]), int32\n"
         "// biases and weight scales (one per output channel, or one).\n"
         "struct QuantLayerInfo {\n    const char* layer;\n    const std::int8_t* weights;\n"
         "    std::size_t weight_count;\n    int rank;\n    std::int64_t shape[4];\n"
         "    const std::int32_t* bias;\n    std::size_t bias_count;\n    const float* weight_scales;\n"
         "    std::size_t scale_count;\n};\n\n"
         "inline constexpr std::size_t quant_layer_count = " +
         str(static_cast<std::int64_t>(model.layers.size())) + ";\n";
    if (model.layers.empty()) {
        s += "inline constexpr QuantLayerInfo* quant_layers = nullptr;\n\n";
    } else {
        s += "inline constexpr QuantLayerInfo quant_layers[" + str(static_cast<std::int64_t>(model.layers.size())) +
             "] = {\n";
        for (std::size_t k = 0; k < model.layers.size(); ++k) {
            const QuantizedWeights& q = model.layers[k];
            const std::string id = str(static_cast<std::int64_t>(k));
            s += "    {\"" + q.layer + "\", data::q" + id + ", " + str(static_cast<std::int64_t>(q.weights.size())) +
                 ", " + str(static_cast<std::int64_t>(q.weight_shape.size())) + ", {";
            for (std::size_t d = 0; d < 4; ++d)
                s += (d ? ", " : "") + str(d < q.weight_shape.size() ? q.weight_shape[d] : 0);
            s += "}, data::b" + id + ", " + str(static_cast<std::int64_t>(q.bias.size())) + ", data::s" + id +
                 ", " + str(static_cast<std::int64_t>(q.weight_scales.size())) + "},\n";
        }
        s += "};\n\n";
    }
    s += "// Each layer's output quantization (the input layer's: the model input's): real = scale * (q - zero_point).\n"
         "struct ActivationInfo {\n    const char* layer;\n    float scale;\n    std::int32_t zero_point;\n};\n\n"
         "inline constexpr std::size_t activation_count = " +
         str(static_cast<std::int64_t>(model.activations.size())) + ";\n"
         "inline constexpr ActivationInfo activations[" + str(static_cast<std::int64_t>(model.activations.size())) +
         "] = {\n";  // never empty: check_exportable wants an input layer, and it has parameters
    for (const auto& a : model.activations)
        s += "    {\"" + a.first + "\", " + float_literal(a.second.scale) + "f, " + str(a.second.zero_point) + "},\n";
    s += "};\n\n"
         "// Layers without an int8 kernel: they run in float between convert operators.\n"
         "inline constexpr std::size_t float_layer_count = " +
         str(static_cast<std::int64_t>(model.float_layers.size())) + ";\n";
    if (model.float_layers.empty()) {
        s += "inline constexpr const char* const* float_layers = nullptr;\n\n";
    } else {
        s += "inline constexpr const char* float_layers[" + str(static_cast<std::int64_t>(model.float_layers.size())) +
             "] = {";
        for (std::size_t k = 0; k < model.float_layers.size(); ++k)
            s += std::string(k ? " " : "") + "\"" + model.float_layers[k] + "\",";
        s += "};\n\n";
    }
    s += cpp_graph_function();
    s += "// The float layers' weights as a lamda::Weights map (a copy of the constant arrays).\n";
    s += cpp_weights_function();
    s += R"CPP(// The int8 model as lamda::QuantizedModel (a copy; what read_quantized reads from the file).
inline lamda::QuantizedModel quantized_model() {
    lamda::QuantizedModel m;
    for (std::size_t k = 0; k < quant_layer_count; ++k) {
        const QuantLayerInfo& q = quant_layers[k];
        lamda::QuantizedWeights l;
        l.layer = q.layer;
        l.weight_shape.assign(q.shape, q.shape + q.rank);
        l.weights.assign(q.weights, q.weights + q.weight_count);
        l.bias.assign(q.bias, q.bias + q.bias_count);
        l.weight_scales.assign(q.weight_scales, q.weight_scales + q.scale_count);
        m.layers.push_back(std::move(l));
    }
    for (std::size_t k = 0; k < activation_count; ++k)
        m.activations.push_back({activations[k].layer, lamda::ActivationQuant{activations[k].scale, activations[k].zero_point}});
    for (std::size_t k = 0; k < float_layer_count; ++k) m.float_layers.push_back(float_layers[k]);
    return m;
}

#if defined(LAMDA_WITH_XNNPACK)
// The executor run() uses, built on first use (one thread), in int8 with the model's own scales:
// XnnOptions::quantized, as `lamda eval` runs an int8 file.
inline lamda::XnnExecutor& executor() {
    static lamda::XnnExecutor exec = [] {
        const lamda::QuantizedModel model = quantized_model();  // read while the executor is built
        lamda::XnnOptions options{1};
        options.int8 = true;
        options.quantized = &model;
        return lamda::XnnExecutor(graph(), weights(), options);
    }();
    return exec;
}

// input: input_size floats (NHWC), quantized inside; output: output_size floats. Not reentrant.
inline void run(const float* input, float* output) {
    lamda::XnnExecutor& exec = executor();
    std::copy(input, input + input_size, exec.input());
    exec.run();
    std::copy(exec.output(), exec.output() + output_size, output);
}
#endif  // defined(LAMDA_WITH_XNNPACK)

)CPP";
    s += "}  // namespace " + ns + "\n\n#endif  // " + cpp_guard(ns) + "\n";
    return s;
}

}  // namespace lamda

#endif  // LAMDA_DEPLOY_EXPORT_HPP
