// lamda/deploy/onnx_import.hpp: an ONNX model as a lamda graph and weights (docs/export.md, "ONNX in").
// Compiled only with LAMDA_WITH_ONNX defined (Debian's libonnx-dev: link onnx_proto and
// libprotobuf, define ONNX_ML=1 and ONNX_NAMESPACE=onnx; CMake's target lamda::onnx does).
//
//   lamda::OnnxImport m = lamda::import_onnx_file("resnet18.onnx");
//   m.dsl       // the model in the DSL (canonical form), parsed and shape-checked
//   m.graph     // the same, as a Graph;  m.weights: the initializers, lamda names and layouts
//
// Supported (batch 1, NCHW float32 input): Conv (groups, pads, strides, dilations; group == C
// with one input channel per group becomes dwconv), Gemm, MatMul (+ Add of a constant bias),
// BatchNormalization, Relu, Clip (0..6 as relu6, 0..inf as relu), HardSwish, HardSigmoid
// (alpha 1/6, beta 1/2), Sigmoid, Add, Mul, Concat (channels), GlobalAveragePool, ReduceMean
// over H,W (as global average pooling), MaxPool, AveragePool (count_include_pad=0, or no
// padding), Flatten, Reshape to 2-D (or to [N, -1, 1, 1]), Softmax (channels), Dropout, Identity,
// Transpose to NHWC (perm 0,2,3,1) right before a Flatten/Reshape, Unsqueeze/Squeeze of H,W on
// a 1x1 value (`fc(x)[:, :, None, None]`); Constant, Shape, Gather, Unsqueeze, Concat, Cast and
// Squeeze of constants are folded (the shape subgraphs exporters emit). Activations are fused
// into the conv, fc or add that feeds only them. Flatten/Reshape of an HxWxC value reads C,H,W
// in ONNX and H,W,C in lamda: the following Gemm's weight columns are permuted (not after a
// Transpose to NHWC, whose flattening is lamda's order already); a Flatten/Reshape of a value
// already flat (an fc's or a flatten's) adds no layer. Weighted layers are named after their
// weight initializer ("features.0.0.weight" -> features_0_0), others after the node.
// Anything else throws OnnxImportError naming the node, its op type and its inputs.
#ifndef LAMDA_DEPLOY_ONNX_IMPORT_HPP
#define LAMDA_DEPLOY_ONNX_IMPORT_HPP

#if !defined(LAMDA_WITH_ONNX)
#error "lamda/deploy/onnx_import.hpp needs LAMDA_WITH_ONNX (Debian's libonnx-dev; CMake: link lamda::onnx)"
#else

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../core/rewrite.hpp"
#include "../exception.hpp"
#include "../detail/checked.hpp"
#include "../dsl/parser.hpp"
#include "../core/ir.hpp"
#include "../data/weights.hpp"

namespace lamda {

class OnnxImportError : public Exception {
public:
    using Exception::Exception;
};

struct OnnxImport {
    std::string dsl;
    Graph graph;
    Weights weights;
};

namespace onnx_detail {

struct Const {
    std::vector<std::int64_t> dims;
    std::vector<double> v;  // values (floats and integers alike)
};

inline Const to_const(const onnx::TensorProto& t, const std::string& where) {
    Const c;
    if (t.dims_size() > 8) throw OnnxImportError(where + ": tensor '" + t.name() + "' has " + std::to_string(t.dims_size()) + " dimensions, more than 8");
    for (auto d : t.dims()) c.dims.push_back(d);
    // Checked: a product that overflows (e.g. [3, 6148914691236517206]) is an error, not a
    // small wrapped-around count.
    const std::optional<std::int64_t> count = detail::checked_elements(c.dims, std::int64_t{1} << 31);
    if (!count)
        throw OnnxImportError(where + ": tensor '" + t.name() + "' has dimensions " + shape_string(c.dims) +
                              ": negative, or more than 2^31 elements");
    const std::int64_t n = *count;
    const std::string& raw = t.raw_data();
    // The data must be there before anything is allocated for it.
    const auto type = t.data_type();
    const std::size_t item = type == onnx::TensorProto::INT64 ? 8 : 4;
    const std::int64_t listed = !raw.empty() ? static_cast<std::int64_t>(raw.size() / item)
                                : type == onnx::TensorProto::FLOAT ? t.float_data_size()
                                : type == onnx::TensorProto::INT64 ? t.int64_data_size()
                                : t.int32_data_size();
    if (type != onnx::TensorProto::FLOAT && type != onnx::TensorProto::INT64 && type != onnx::TensorProto::INT32)
        throw OnnxImportError(where + ": tensor '" + t.name() + "' has ONNX data type " +
                              std::to_string(type) + "; only float32, int64 and int32 are supported");
    if (listed != n || (!raw.empty() && raw.size() % item != 0))
        throw OnnxImportError(where + ": tensor '" + t.name() + "' " + shape_string(c.dims) + " needs " +
                              std::to_string(n) + " values, its data holds " +
                              (raw.empty() ? std::to_string(listed) + " values" : std::to_string(raw.size()) + " bytes"));
    c.v.resize(static_cast<std::size_t>(n));
    auto need = [&](std::size_t bytes) {
        if (raw.size() != bytes * static_cast<std::size_t>(n))
            throw OnnxImportError(where + ": tensor '" + t.name() + "' has " +
                                  std::to_string(raw.size()) + " bytes of data, expected " +
                                  std::to_string(bytes * static_cast<std::size_t>(n)));
    };
    switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
        if (!raw.empty()) {
            need(4);
            for (std::size_t i = 0; i < c.v.size(); ++i) {
                float f;
                std::memcpy(&f, raw.data() + 4 * i, 4);
                c.v[i] = f;
            }
        } else {
            if (t.float_data_size() != n) throw OnnxImportError(where + ": bad float data");
            for (int i = 0; i < t.float_data_size(); ++i) c.v[static_cast<std::size_t>(i)] = t.float_data(i);
        }
        break;
    case onnx::TensorProto::INT64:
        if (!raw.empty()) {
            need(8);
            for (std::size_t i = 0; i < c.v.size(); ++i) {
                std::int64_t x;
                std::memcpy(&x, raw.data() + 8 * i, 8);
                c.v[i] = static_cast<double>(x);
            }
        } else {
            if (t.int64_data_size() != n) throw OnnxImportError(where + ": bad int64 data");
            for (int i = 0; i < t.int64_data_size(); ++i)
                c.v[static_cast<std::size_t>(i)] = static_cast<double>(t.int64_data(i));
        }
        break;
    case onnx::TensorProto::INT32:
        if (!raw.empty()) {
            need(4);
            for (std::size_t i = 0; i < c.v.size(); ++i) {
                std::int32_t x;
                std::memcpy(&x, raw.data() + 4 * i, 4);
                c.v[i] = x;
            }
        } else {
            if (t.int32_data_size() != n) throw OnnxImportError(where + ": bad int32 data");
            for (int i = 0; i < t.int32_data_size(); ++i) c.v[static_cast<std::size_t>(i)] = t.int32_data(i);
        }
        break;
    default:
        throw OnnxImportError(where + ": tensor '" + t.name() + "' has ONNX data type " +
                              std::to_string(t.data_type()) + "; only float32, int64 and int32 are supported");
    }
    return c;
}

// A lamda layer being built.
struct Spec {
    std::string name, op;
    std::vector<std::string> inputs;
    std::vector<std::string> attrs;
    std::string act;  // fused activation
    bool has_bias_attr = false;
};

inline std::string sanitize(const std::string& s) {
    std::string out;
    for (char ch : s) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (ok) out += ch;
        else if (!out.empty() && out.back() != '_') out += '_';
    }
    while (!out.empty() && out.back() == '_') out.pop_back();
    if (!out.empty() && out[0] >= '0' && out[0] <= '9') out = "n" + out;
    return out;
}

class Importer {
public:
    Importer(const onnx::ModelProto& model, std::string name) : m_(model), name_(std::move(name)) {}

    OnnxImport run() {
        const onnx::GraphProto& g = m_.graph();
        for (const auto& t : g.initializer()) consts_[t.name()] = to_const(t, "initializer '" + t.name() + "'");
        for (const auto& n : g.node())
            for (const auto& in : n.input()) ++uses_[in];
        for (const auto& o : g.output()) ++uses_[o.name()];
        // The input.
        for (const auto& in : g.input()) {
            if (consts_.count(in.name())) continue;
            const auto& shape = in.type().tensor_type().shape();
            if (shape.dim_size() != 4)
                throw OnnxImportError("input '" + in.name() + "' is not 4-D NCHW");
            std::int64_t d[4];
            for (int k = 0; k < 4; ++k) {
                d[k] = shape.dim(k).dim_value();
                if (k > 0 && d[k] <= 0)
                    throw OnnxImportError("input '" + in.name() + "' has no static shape");
            }
            Spec s{unique("input"), "input", {}, {"shape=" + std::to_string(d[2]) + "x" + std::to_string(d[3]) + "x" + std::to_string(d[1])}, "", false};
            value_[in.name()] = s.name;
            add(std::move(s));
            break;
        }
        if (specs_.empty()) throw OnnxImportError("the model has no input");
        for (const auto& n : g.node()) node(n);
        if (g.output_size() != 1) throw OnnxImportError("the model has " + std::to_string(g.output_size()) + " outputs; lamda models have one");
        const std::string out = lamda_value(g.output(0).name(), "graph output");
        if (out != specs_.back().name)
            throw OnnxImportError("the output '" + g.output(0).name() + "' is not computed last");
        OnnxImport r;
        r.dsl = text();
        ParseResult p = parse_dsl(r.dsl, "imported.lamda");
        if (!p.ok()) throw OnnxImportError("the imported model does not check:\n" + format_diagnostics(p.diagnostics) + "\n" + r.dsl);
        r.graph = p.graph;
        // Exporters spell some activations out (x * HardSigmoid(x) below opset 14): one layer
        // again, which the executor fuses into the convolution before it.
        fuse_activation_patterns(r.graph);
        r.dsl = print_dsl(r.graph);
        r.weights = weights_;
        const std::vector<std::string> problems = validate_weights(r.graph, r.weights);
        if (!problems.empty()) {
            std::string msg = "the imported weights do not fit the imported model:";
            for (const auto& q : problems) msg += "\n  " + q;
            throw OnnxImportError(msg);
        }
        return r;
    }

private:
    const onnx::ModelProto& m_;
    std::string name_;
    std::map<std::string, Const> consts_;
    std::map<std::string, int> uses_;
    std::map<std::string, std::string> value_;  // ONNX value -> lamda layer
    std::map<std::string, Shape> chw_flat_;    // lamda flatten layer -> the HxWxC it flattened
    std::map<std::string, std::string> nhwc_;  // ONNX value of a Transpose to NHWC -> its lamda input
    std::vector<Spec> specs_;
    std::map<std::string, std::size_t> index_;
    std::set<std::string> names_;
    std::map<std::string, int> next_suffix_;  // unique(): base name -> next suffix to try
    Weights weights_;
    std::optional<Graph> partial_;             // shape_of(): the last partial model parsed
    std::size_t partial_layers_ = 0;           // ... and how many layers it had
    std::size_t parsed_bytes_ = 0;             // ... and the DSL text parsed for it in all
    static constexpr std::size_t max_parsed_bytes = std::size_t{32} << 20;

    std::string text() const {
        std::string model = sanitize(name_.empty() ? m_.graph().name() : name_);
        if (model.empty()) model = "imported";
        std::string t = "model " + model + "\n";
        for (const Spec& s : specs_) {
            t += s.name + ": " + s.op;
            for (std::size_t k = 0; k < s.inputs.size(); ++k) t += (k ? ", " : " ") + s.inputs[k];
            for (const auto& a : s.attrs) t += " " + a;
            if (!s.act.empty()) t += " act=" + s.act;
            t += "\n";
        }
        return t;
    }

    // The shape of a layer built so far. The partial model is parsed again only when layers were
    // added since the last parse (a layer's shape never changes once added: fusing an activation
    // or a bias does not change it), and the text parsed in all is bounded, so that a file of
    // many Shape/Flatten nodes costs time linear in its size up to that bound, then an error.
    Shape shape_of(const std::string& layer) {
        if (!partial_ || partial_layers_ != specs_.size()) {
            const std::string t = text();
            parsed_bytes_ += t.size();
            if (parsed_bytes_ > max_parsed_bytes)
                throw OnnxImportError("the model needs the shapes of too many values (more than " +
                                      std::to_string(max_parsed_bytes >> 20) +
                                      " MiB of partial models checked): too many Shape, Flatten, Reshape or Softmax nodes");
            ParseResult p = parse_dsl(t, "partial.lamda");
            if (!p.ok()) throw OnnxImportError("the partial model does not check:\n" + format_diagnostics(p.diagnostics));
            partial_ = std::move(p.graph);
            partial_layers_ = specs_.size();
        }
        const int i = partial_->find(layer);
        if (i < 0) throw OnnxImportError("internal: layer '" + layer + "' is not in the partial model");
        return partial_->layers[static_cast<std::size_t>(i)].shape;
    }

    // A layer name not used yet. Linear time: each base remembers the next suffix to try, so n
    // nodes of one name cost n lookups, not n^2.
    std::string unique(std::string base) {
        if (base.empty()) base = "layer";
        if (base.size() > 56) base = base.substr(base.size() - 56);
        if (base[0] >= '0' && base[0] <= '9') base = "n" + base;
        if (base[0] == '_') base = "n" + base;
        std::string n = base;
        if (names_.count(n)) {
            int& k = next_suffix_[base];
            if (k < 2) k = 2;
            do n = base + "_" + std::to_string(k++);
            while (names_.count(n));
        }
        names_.insert(n);
        return n;
    }

    void add(Spec s) {
        if (specs_.size() >= static_cast<std::size_t>(Limits{}.max_layers))
            throw OnnxImportError("the model has more than " + std::to_string(Limits{}.max_layers) +
                                  " layers, the limit of a lamda model");
        index_[s.name] = specs_.size();
        specs_.push_back(std::move(s));
    }

    static std::string describe(const onnx::NodeProto& n) {
        std::string s = "node '" + n.name() + "' (" + n.op_type() + ", inputs ";
        for (int k = 0; k < n.input_size(); ++k) s += (k ? ", " : "") + std::string("'") + n.input(k) + "'";
        return s + ")";
    }

    [[noreturn]] static void fail(const onnx::NodeProto& n, const std::string& why) {
        throw OnnxImportError(describe(n) + ": " + why);
    }

    std::string lamda_value(const std::string& v, const std::string& who) const {
        const auto it = value_.find(v);
        if (it == value_.end() && nhwc_.count(v))
            throw OnnxImportError(who + ": value '" + v + "' is a Transpose to NHWC, which is supported only right before a Flatten or Reshape");
        if (it == value_.end()) throw OnnxImportError(who + ": value '" + v + "' is not computed by a supported node (or is a constant where lamda needs a tensor)");
        return it->second;
    }

    const Const* constant(const std::string& v) const {
        const auto it = consts_.find(v);
        return it == consts_.end() ? nullptr : &it->second;
    }

    static const onnx::AttributeProto* attr(const onnx::NodeProto& n, const std::string& name) {
        for (const auto& a : n.attribute())
            if (a.name() == name) return &a;
        return nullptr;
    }
    static std::vector<std::int64_t> ints(const onnx::NodeProto& n, const std::string& name, std::vector<std::int64_t> def) {
        const auto* a = attr(n, name);
        if (!a) return def;
        return std::vector<std::int64_t>(a->ints().begin(), a->ints().end());
    }
    static std::int64_t int_attr(const onnx::NodeProto& n, const std::string& name, std::int64_t def) {
        const auto* a = attr(n, name);
        return a ? a->i() : def;
    }
    static double float_attr(const onnx::NodeProto& n, const std::string& name, double def) {
        const auto* a = attr(n, name);
        return a ? static_cast<double>(a->f()) : def;
    }

    std::string layer_name(const onnx::NodeProto& n, const std::string& weight) {
        if (!weight.empty()) {
            std::string w = weight;
            const std::string suffix = ".weight";
            if (w.size() > suffix.size() && w.compare(w.size() - suffix.size(), suffix.size(), suffix) == 0)
                w = w.substr(0, w.size() - suffix.size());
            const std::string s = sanitize(w);
            if (!s.empty() && s.find("onnx") == std::string::npos) return unique(s);
        }
        std::string s = module_path(n.name());
        if (s.empty()) s = sanitize(n.output(0));
        return unique(s.empty() ? sanitize(n.op_type()) : s);
    }

    WeightTensor tensor(const Const& c) const {
        WeightTensor t;
        t.shape = c.dims;
        t.data.reserve(c.v.size());
        for (double x : c.v) t.data.push_back(static_cast<float>(x));
        return t;
    }

    const Const& need_const(const onnx::NodeProto& n, int k) const {
        if (k >= n.input_size() || n.input(k).empty()) fail(n, "input " + std::to_string(k) + " is missing");
        const Const* c = constant(n.input(k));
        if (!c) fail(n, "input '" + n.input(k) + "' must be a constant (an initializer)");
        return *c;
    }

    // Fuses `act` into the layer producing `v` when it may; otherwise adds an activation layer.
    void activation(const onnx::NodeProto& n, const std::string& act, const std::string& op) {
        const std::string in = lamda_value(n.input(0), describe(n));
        Spec& p = specs_[index_.at(in)];
        const bool fusable = (p.op == "conv2d" || p.op == "dwconv" || p.op == "fc" || p.op == "add") &&
                             p.act.empty() && uses_[n.input(0)] == 1 && in == specs_.back().name;
        if (fusable) {
            p.act = act;
            value_[n.output(0)] = in;
            return;
        }
        Spec s{layer_name(n, ""), op, {in}, {}, "", false};
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    void fold(const onnx::NodeProto& n) {
        if (consts_.size() > (std::size_t{1} << 20)) fail(n, "more than 2^20 constants");
        const std::string& op = n.op_type();
        Const out;
        if (op == "Constant") {
            const auto* a = attr(n, "value");
            if (!a) fail(n, "only Constant with a tensor `value` is supported");
            out = to_const(a->t(), describe(n));
        } else if (op == "Shape") {
            const Shape s = shape_of(lamda_value(n.input(0), describe(n)));
            out.dims = {4};
            out.v = {1, static_cast<double>(s.c), static_cast<double>(s.h), static_cast<double>(s.w)};
        } else if (op == "Gather") {
            const Const& d = need_const(n, 0);
            const Const& idx = need_const(n, 1);
            if (d.dims.size() != 1 || int_attr(n, "axis", 0) != 0) fail(n, "only Gather on a 1-D constant is supported");
            out.dims = idx.dims;
            for (double i : idx.v) {
                auto k = static_cast<std::int64_t>(i);
                if (k < 0) k += d.dims[0];
                if (k < 0 || k >= d.dims[0] || static_cast<std::size_t>(k) >= d.v.size()) fail(n, "index out of range");
                out.v.push_back(d.v[static_cast<std::size_t>(k)]);
            }
        } else if (op == "Unsqueeze" || op == "Squeeze" || op == "Cast" || op == "Identity") {
            out = need_const(n, 0);
            out.dims = {static_cast<std::int64_t>(out.v.size())};  // shape constants are 1-D or scalars; 1-D is what consumers read
        } else if (op == "Concat") {
            for (int k = 0; k < n.input_size(); ++k) {
                const Const& c = need_const(n, k);
                if (out.v.size() + c.v.size() > (std::size_t{1} << 24)) fail(n, "the folded constant is too large");
                out.v.insert(out.v.end(), c.v.begin(), c.v.end());
            }
            out.dims = {static_cast<std::int64_t>(out.v.size())};
        } else {
            fail(n, "unsupported op on constants");
        }
        consts_[n.output(0)] = std::move(out);
    }

    // One ONNX node: checked for the outputs and inputs every op needs before any protobuf
    // accessor is indexed, then handed to the function for its op.
    void node(const onnx::NodeProto& n) {
        const std::string& op = n.op_type();
        if (n.domain() != "" && n.domain() != "ai.onnx") fail(n, "op domain '" + n.domain() + "' is not supported");
        if (n.output_size() < 1 || n.output(0).empty()) fail(n, "the node has no output");
        bool all_const = n.input_size() > 0 || op == "Constant";
        for (const auto& in : n.input())
            if (!in.empty() && !constant(in)) all_const = false;
        if (op == "Constant" || (all_const && op != "Shape")) return fold(n);
        if (n.input_size() < 1 || n.input(0).empty()) fail(n, "the node has no input");
        if (op == "Shape") return fold(n);
        if (op == "Identity" || op == "Dropout") return passthrough(n);
        if (op == "Conv") return conv(n);
        if (op == "Gemm" || op == "MatMul") return gemm(n);
        if (op == "BatchNormalization") return batchnorm(n);
        if (op == "Relu") return activation(n, "relu", "relu");
        if (op == "Sigmoid") return activation(n, "sigmoid", "sigmoid");
        if (op == "HardSwish") return activation(n, "hardswish", "hardswish");
        if (op == "HardSigmoid") return hardsigmoid(n);
        if (op == "Clip") return clip(n);
        if (op == "Add" || op == "Mul" || op == "Sum") return elementwise(n);
        if (op == "Concat") return concat(n);
        if (op == "GlobalAveragePool") return simple(n, "gap");
        if (op == "ReduceMean") return reduce_mean(n);
        if (op == "Transpose") return transpose(n);
        if (op == "Unsqueeze" || op == "Squeeze") return unsqueeze(n);
        if (op == "MaxPool" || op == "AveragePool") return pool(n);
        if (op == "Flatten" || op == "Reshape") return flatten(n);
        if (op == "Softmax") return softmax(n);
        fail(n, "op type '" + op + "' is not supported");
    }

    std::string in0(const onnx::NodeProto& n) const { return lamda_value(n.input(0), describe(n)); }

    void passthrough(const onnx::NodeProto& n) {
        if (n.output_size() > 1 && !n.output(1).empty() && uses_[n.output(1)] > 0) fail(n, "the dropout mask is not supported");
        value_[n.output(0)] = in0(n);
    }

    void simple(const onnx::NodeProto& n, const std::string& lamda_op) {
        Spec s{layer_name(n, ""), lamda_op, {in0(n)}, {}, "", false};
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    // A length-checked integer-list attribute: `def` when absent, an error naming the attribute
    // when it has another number of entries than `arity`.
    static std::vector<std::int64_t> ints_n(const onnx::NodeProto& n, const std::string& name,
                                            std::vector<std::int64_t> def, std::size_t arity) {
        std::vector<std::int64_t> v = ints(n, name, std::move(def));
        if (!detail::arity_ok(v.size(), arity))
            fail(n, "attribute '" + name + "' has " + std::to_string(v.size()) + " value(s), expected " +
                        std::to_string(arity) + " (only 2-D operations are supported)");
        for (std::int64_t x : v)
            if (x < 0 || x > (std::int64_t{1} << 20)) fail(n, "attribute '" + name + "' has the value " + std::to_string(x));
        return v;
    }

    void conv(const onnx::NodeProto& n) {
        const std::string x = in0(n);
        const Const& w = need_const(n, 1);
        if (w.dims.size() != 4) fail(n, "only 2-D convolutions are supported");
        const std::int64_t group = int_attr(n, "group", 1);
        if (group < 1 || group > (std::int64_t{1} << 20)) fail(n, "group " + std::to_string(group) + " is not positive");
        const std::string autopad = attr(n, "auto_pad") ? attr(n, "auto_pad")->s() : "NOTSET";
        if (autopad != "NOTSET" && autopad != "VALID") fail(n, "auto_pad=" + autopad + " is not supported");
        const auto strides = ints_n(n, "strides", {1, 1}, 2);
        const auto dil = ints_n(n, "dilations", {1, 1}, 2);
        const auto pads = ints_n(n, "pads", {0, 0, 0, 0}, 4);
        Spec s{layer_name(n, n.input(1)), "", {x}, {}, "", false};
        const bool dw = group > 1 && w.dims[1] == 1;
        if (dw) {
            s.op = "dwconv";
            if (w.dims[0] % group) fail(n, "output channels do not divide by group");
            if (w.dims[0] / group != 1) s.attrs.push_back("multiplier=" + std::to_string(w.dims[0] / group));
        } else {
            s.op = "conv2d";
            s.attrs.push_back("out=" + std::to_string(w.dims[0]));
            if (group != 1) s.attrs.push_back("groups=" + std::to_string(group));
        }
        s.attrs.push_back("kernel=" + size(w.dims[2], w.dims[3]));
        if (strides[0] != 1 || strides[1] != 1) s.attrs.push_back("stride=" + size(strides[0], strides[1]));
        if (dil[0] != 1 || dil[1] != 1) s.attrs.push_back("dilation=" + size(dil[0], dil[1]));
        const std::string pad = conv_padding(pads, w.dims[2], w.dims[3], strides, dil);
        if (!pad.empty()) s.attrs.push_back(pad);
        const bool bias = n.input_size() > 2 && !n.input(2).empty();
        if (!bias) s.attrs.push_back("bias=false");
        weights_[s.name + ".weight"] = tensor(w);
        if (bias) weights_[s.name + ".bias"] = tensor(need_const(n, 2));
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    void gemm(const onnx::NodeProto& n) {
        const std::string& op = n.op_type();
        const std::string x = in0(n);
        const Const& b = need_const(n, 1);
        if (b.dims.size() != 2) fail(n, "the weight must be 2-D");
        bool trans_b = op == "Gemm" && int_attr(n, "transB", 0) != 0;
        if (op == "Gemm" && (int_attr(n, "transA", 0) != 0 || float_attr(n, "alpha", 1.0) != 1.0 || float_attr(n, "beta", 1.0) != 1.0))
            fail(n, "only Gemm with transA=0, alpha=1, beta=1 is supported");
        const std::int64_t out = trans_b ? b.dims[0] : b.dims[1], in = trans_b ? b.dims[1] : b.dims[0];
        // to_const() bounded the element count, so out * in cannot overflow; checked anyway.
        std::int64_t count = 0;
        if (!detail::checked_mul(out, in, count) || static_cast<std::size_t>(count) != b.v.size())
            fail(n, "the weight's dimensions do not match its data");
        WeightTensor wt;
        wt.shape = {out, in};
        wt.data.resize(static_cast<std::size_t>(count));
        for (std::int64_t o = 0; o < out; ++o)
            for (std::int64_t i = 0; i < in; ++i)
                wt.data[static_cast<std::size_t>(o * in + i)] = static_cast<float>(
                    trans_b ? b.v[static_cast<std::size_t>(o * in + i)] : b.v[static_cast<std::size_t>(i * out + o)]);
        // ONNX flattened C,H,W; lamda H,W,C: permute the columns.
        const auto flat = chw_flat_.find(x);
        if (flat != chw_flat_.end()) {
            const Shape s = flat->second;
            if (s.elements() != in) fail(n, "the weight does not fit the flattened input");
            std::vector<float> p(wt.data.size());
            for (std::int64_t o = 0; o < out; ++o)
                for (std::int64_t c = 0; c < s.c; ++c)
                    for (std::int64_t h = 0; h < s.h; ++h)
                        for (std::int64_t w = 0; w < s.w; ++w)
                            p[static_cast<std::size_t>(o * in + (h * s.w + w) * s.c + c)] =
                                wt.data[static_cast<std::size_t>(o * in + c * s.h * s.w + h * s.w + w)];
            wt.data = std::move(p);
        }
        Spec s{layer_name(n, n.input(1)), "fc", {x}, {"out=" + std::to_string(out)}, "", false};
        const bool bias = op == "Gemm" && n.input_size() > 2 && !n.input(2).empty();
        if (bias) {
            const Const& c = need_const(n, 2);
            if (static_cast<std::int64_t>(c.v.size()) != out) fail(n, "only a per-output bias is supported");
            WeightTensor bt = tensor(c);
            bt.shape = {out};
            weights_[s.name + ".bias"] = bt;
        } else {
            s.attrs.push_back("bias=false");
        }
        weights_[s.name + ".weight"] = std::move(wt);
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    void batchnorm(const onnx::NodeProto& n) {
        Spec s{layer_name(n, n.input_size() > 1 ? n.input(1) : std::string()), "batchnorm", {in0(n)}, {}, "", false};
        const double eps = float_attr(n, "epsilon", 1e-5);
        // The float attribute widened to double: print the float's shortest decimal.
        char buf[64];
        const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<float>(eps));
        if (r.ec != std::errc() || !std::isfinite(eps) || eps <= 0) fail(n, "epsilon must be a positive number");
        const std::string es(buf, r.ptr);
        if (static_cast<float>(eps) != 1e-5f) s.attrs.push_back("eps=" + es);
        const char* names[4] = {".weight", ".bias", ".running_mean", ".running_var"};
        for (int k = 0; k < 4; ++k) weights_[s.name + names[k]] = tensor(need_const(n, k + 1));
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    void hardsigmoid(const onnx::NodeProto& n) {
        if (std::fabs(float_attr(n, "alpha", 0.2) - 1.0 / 6) > 1e-6 || std::fabs(float_attr(n, "beta", 0.5) - 0.5) > 1e-6)
            fail(n, "only HardSigmoid with alpha=1/6, beta=1/2 (torch's) is supported");
        activation(n, "hardsigmoid", "hardsigmoid");
    }

    void clip(const onnx::NodeProto& n) {
        double lo = float_attr(n, "min", -INFINITY), hi = float_attr(n, "max", INFINITY);
        const auto scalar = [&](int k) {
            const Const& c = need_const(n, k);
            if (c.v.size() != 1) fail(n, "the Clip bound '" + n.input(k) + "' must be a scalar, it has " +
                                             std::to_string(c.v.size()) + " values");
            return c.v[0];
        };
        if (n.input_size() > 1 && !n.input(1).empty()) lo = scalar(1);
        if (n.input_size() > 2 && !n.input(2).empty()) hi = scalar(2);
        if (lo == 0 && hi == 6) return activation(n, "relu6", "relu6");
        if (lo == 0 && std::isinf(hi) && hi > 0) return activation(n, "relu", "relu");
        fail(n, "only Clip to [0, 6] (relu6) or [0, inf) (relu) is supported");
    }

    void elementwise(const onnx::NodeProto& n) {
        const std::string& op = n.op_type();
        // fc + constant bias (MatMul + Add)
        if (op == "Add" && n.input_size() == 2 && constant(n.input(1)) && value_.count(n.input(0))) {
            const std::string x = in0(n);
            Spec& p = specs_[index_.at(x)];
            const Const& c = *constant(n.input(1));
            const bool no_bias = std::find(p.attrs.begin(), p.attrs.end(), "bias=false") != p.attrs.end();
            if (p.op == "fc" && no_bias && p.act.empty() && uses_[n.input(0)] == 1) {
                p.attrs.erase(std::find(p.attrs.begin(), p.attrs.end(), "bias=false"));
                WeightTensor bt = tensor(c);
                bt.shape = {static_cast<std::int64_t>(bt.data.size())};
                weights_[p.name + ".bias"] = bt;
                value_[n.output(0)] = x;
                return;
            }
            fail(n, "adding a constant is supported only as the bias of a MatMul");
        }
        Spec s{layer_name(n, ""), op == "Mul" ? "mul" : "add", {}, {}, "", false};
        for (const auto& in : n.input()) s.inputs.push_back(lamda_value(in, describe(n)));
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    void concat(const onnx::NodeProto& n) {
        if (int_attr(n, "axis", 1) != 1) fail(n, "only Concat on channels (axis=1) is supported");
        Spec s{layer_name(n, ""), "concat", {}, {}, "", false};
        for (const auto& in : n.input()) s.inputs.push_back(lamda_value(in, describe(n)));
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    void pool(const onnx::NodeProto& n) {
        const std::string& op = n.op_type();
        if (n.output_size() > 1 && !n.output(1).empty() && uses_[n.output(1)] > 0) fail(n, "MaxPool indices are not supported");
        const auto k = ints_n(n, "kernel_shape", {}, 2);
        const auto strides = ints_n(n, "strides", {1, 1}, 2);
        const auto pads = ints_n(n, "pads", {0, 0, 0, 0}, 4);
        const auto dil = ints_n(n, "dilations", {1, 1}, 2);
        if (dil[0] != 1 || dil[1] != 1) fail(n, "dilated pools are not supported");
        const std::string autopad = attr(n, "auto_pad") ? attr(n, "auto_pad")->s() : "NOTSET";
        if (autopad != "NOTSET" && autopad != "VALID") fail(n, "auto_pad=" + autopad + " is not supported");
        const bool padded = pads[0] || pads[1] || pads[2] || pads[3];
        const bool ceil = int_attr(n, "ceil_mode", 0) != 0;
        if (op == "AveragePool" && int_attr(n, "count_include_pad", 0) != 0 && (padded || ceil))
            fail(n, "count_include_pad=1 with padding is not supported (lamda never counts padding)");
        Spec s{layer_name(n, ""), op == "MaxPool" ? "maxpool" : "avgpool", {in0(n)},
               {"kernel=" + size(k[0], k[1]), "stride=" + size(strides[0], strides[1]), padding(pads)},
               "", false};
        if (ceil) s.attrs.push_back("ceil=true");
        value_[n.output(0)] = s.name;
        add(std::move(s));
    }

    // Axes of a node (an `axes` attribute, or from opset 13/18 on a constant second input).
    std::vector<std::int64_t> axes_of(const onnx::NodeProto& n) const {
        if (attr(n, "axes")) return ints(n, "axes", {});
        if (n.input_size() < 2 || n.input(1).empty()) return {};
        const Const& c = need_const(n, 1);
        if (c.v.size() > 8) fail(n, "more than 8 axes");
        std::vector<std::int64_t> a;
        for (double v : c.v) a.push_back(static_cast<std::int64_t>(v));
        return a;
    }

    // ReduceMean over H and W of an NCHW value: global average pooling (keepdims or not: lamda's
    // 1x1xC is both [N, C, 1, 1] and [N, C]).
    void reduce_mean(const onnx::NodeProto& n) {
        std::vector<std::int64_t> axes = axes_of(n);
        for (auto& a : axes)
            if (a < 0) a += 4;
        std::sort(axes.begin(), axes.end());
        if (axes != std::vector<std::int64_t>{2, 3})
            fail(n, "only ReduceMean over H and W (axes 2, 3: global average pooling) is supported");
        simple(n, "gap");
    }

    // Transpose NCHW -> NHWC, supported right before a Flatten/Reshape (lenet-style exports:
    // x.permute(0, 2, 3, 1).reshape(N, -1)): it only marks the value; the flatten that follows
    // reads lamda's H,W,C order, so the next Gemm's columns are not permuted.
    void transpose(const onnx::NodeProto& n) {
        const std::string x = in0(n);
        if (ints(n, "perm", {}) != std::vector<std::int64_t>{0, 2, 3, 1})
            fail(n, "only Transpose to NHWC (perm 0, 2, 3, 1) before a Flatten or Reshape is supported");
        nhwc_[n.output(0)] = x;
    }

    // Unsqueeze/Squeeze of H, W on a value lamda holds as 1x1xC (an fc's output as [N, K] or
    // [N, K, 1, 1]): nothing to do.
    void unsqueeze(const onnx::NodeProto& n) {
        const std::string x = in0(n);
        const Shape s = shape_of(x);
        std::vector<std::int64_t> axes = axes_of(n);
        bool ok = s.h == 1 && s.w == 1 && !axes.empty() && axes.size() <= 2;
        for (std::int64_t a : axes) ok = ok && (a == 2 || a == 3 || a == -1 || a == -2);
        if (!ok) fail(n, "only " + n.op_type() + " of axes 2, 3 on a 1x1 value is supported");
        value_[n.output(0)] = x;
    }

    void flatten(const onnx::NodeProto& n) {
        const std::string& op = n.op_type();
        const auto transposed = nhwc_.find(n.input(0));
        const bool nhwc = transposed != nhwc_.end();
        const std::string x = nhwc ? transposed->second : in0(n);
        if (op == "Flatten" && int_attr(n, "axis", 1) != 1) fail(n, "only Flatten with axis=1 is supported");
        const Shape s = shape_of(x);
        const bool flat = s.h == 1 && s.w == 1;
        if (op == "Reshape") {
            const Const& shape = need_const(n, 1);
            const auto& v = shape.v;
            const double all = static_cast<double>(s.elements());
            const bool batch = !v.empty() && (v[0] == 1 || v[0] == 0 || v[0] == -1);
            const bool two_d = v.size() == 2 && batch && (v[1] == -1 || v[1] == all);
            // [N, -1, 1, 1]: flat in the channels, as lamda's flatten; from C,H,W order only when H = W = 1.
            const bool four_d = v.size() == 4 && batch && (v[1] == -1 || v[1] == all) && v[2] == 1 && v[3] == 1 &&
                                (nhwc || flat);
            if (!two_d && !four_d) fail(n, "only Reshape to 2-D [N, H*W*C] (or [N, H*W*C, 1, 1]) is supported");
        }
        // Already flat (an fc's or a flatten's output): the same values in the same order.
        const std::string producer = specs_[index_.at(x)].op;
        if (flat && (producer == "fc" || producer == "flatten")) {
            value_[n.output(0)] = x;
            return;
        }
        Spec sp{layer_name(n, ""), "flatten", {x}, {}, "", false};
        if (!nhwc && !flat) chw_flat_[sp.name] = s;
        value_[n.output(0)] = sp.name;
        add(std::move(sp));
    }

    void softmax(const onnx::NodeProto& n) {
        const std::string x = in0(n);
        const Shape s = shape_of(x);
        const std::int64_t axis = int_attr(n, "axis", -1);
        if (!(axis == 1 || (axis == -1 && s.h == 1 && s.w == 1))) fail(n, "only Softmax over channels is supported");
        Spec sp{layer_name(n, ""), "softmax", {x}, {}, "", false};
        value_[n.output(0)] = sp.name;
        add(std::move(sp));
    }
    // torch's exporter names nodes "/features/features.1/block/block.1/Mul": the module path
    // (features.1.block.1) with each level's prefix repeated. Other names are used as they are.
    static std::string module_path(const std::string& node) {
        if (node.empty() || node[0] != '/') return sanitize(node);
        std::vector<std::string> seg;
        std::size_t at = 1;
        while (at <= node.size()) {
            const std::size_t next = std::min(node.find('/', at), node.size());
            seg.push_back(node.substr(at, next - at));
            at = next + 1;
        }
        if (seg.size() < 2) return sanitize(node);
        seg.pop_back();  // the op
        std::string path;
        for (std::size_t k = 0; k < seg.size(); ++k) {
            if (k + 1 < seg.size() && seg[k + 1].compare(0, seg[k].size() + 1, seg[k] + ".") == 0) continue;
            path += (path.empty() ? "" : ".") + seg[k];
        }
        return sanitize(path);
    }

    // Conv padding: left out (the DSL's `same`) when it is what `same` gives at stride 1.
    static std::string conv_padding(const std::vector<std::int64_t>& p, std::int64_t kh, std::int64_t kw,
                                    const std::vector<std::int64_t>& stride, const std::vector<std::int64_t>& dil) {
        const bool same = stride[0] == 1 && stride[1] == 1 && kh % 2 == 1 && kw % 2 == 1 &&
                          p[0] == p[2] && p[1] == p[3] && p[0] == dil[0] * (kh - 1) / 2 && p[1] == dil[1] * (kw - 1) / 2;
        return same ? "" : padding(p);
    }

    static std::string size(std::int64_t h, std::int64_t w) {
        return h == w ? std::to_string(h) : std::to_string(h) + "x" + std::to_string(w);
    }

    static std::string padding(const std::vector<std::int64_t>& p) {
        if (p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0) return "padding=valid";
        return "padding=" + std::to_string(p[0]) + "x" + std::to_string(p[1]) + "x" + std::to_string(p[2]) + "x" + std::to_string(p[3]);
    }
};

}  // namespace onnx_detail

// `name` is the model's name in the DSL (default: the ONNX graph's name).
inline OnnxImport import_onnx(const onnx::ModelProto& model, const std::string& name = "") {
    return onnx_detail::Importer(model, name).run();
}

// The model is named after the file ("models/resnet18.onnx" -> resnet18).
inline OnnxImport import_onnx_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw OnnxImportError("cannot open '" + path + "'");
    onnx::ModelProto model;
    if (!model.ParseFromIstream(&f)) throw OnnxImportError(path + ": not an ONNX model (protobuf parse failed)");
    try {
        std::string stem = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
        stem = stem.substr(0, stem.find('.'));
        return import_onnx(model, stem);
    } catch (const OnnxImportError& e) {
        throw OnnxImportError(path + ": " + e.what());
    }
}

}  // namespace lamda

#endif  // defined(LAMDA_WITH_ONNX)
#endif  // LAMDA_DEPLOY_ONNX_IMPORT_HPP
