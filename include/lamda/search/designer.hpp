// lamda/search/designer.hpp: the design space the built-in proposers search -- a compact description of a
// stage-wise convolutional classifier (stem, stages of blocks, head) that renders to DSL text.
// The offline designer edits these the way an engineer would (width, depth, kernel size, stride
// placement, expansion ratio, block type, squeeze-excitation); the random baseline samples them.
//
//   Design d = zoo_seed_designs()[0];          // tiny_mobilenet's structure
//   std::string dsl = render_design(d, {28, 28, 1}, 10, "candidate");
//   std::string compact = design_to_string(d); // "stem=16k3s2 act=relu6 | ir c16 r1 s1 k3 e3 se | ..."
//   Design back; std::string err = parse_design(compact, back);   // exact round trip
//
// Layer names follow the structure: `stem`, `s<I>b<J>_<part>` for block J of stage I, `head`,
// `fc`; stage_of_layer() maps a name back to its stage, which is how per-layer latency feedback
// becomes an edit of the right stage.
#ifndef LAMDA_SEARCH_DESIGNER_HPP
#define LAMDA_SEARCH_DESIGNER_HPP

#include <algorithm>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/ir.hpp"
#include "../exec/device.hpp"
#include "sampler.hpp"

namespace lamda {

enum class BlockKind {
    Conv,       // kxk conv -> bn -> act (VGG style)
    Residual,   // two kxk convs with an identity or 1x1 shortcut (ResNet basic block)
    Separable,  // kxk depthwise -> bn -> act -> 1x1 conv -> bn -> act (MobileNetV1)
    Inverted,   // 1x1 expand -> kxk depthwise -> [SE] -> 1x1 linear project (+ residual) (MobileNetV2)
};

inline constexpr std::string_view block_kind_name(BlockKind k) noexcept {
    switch (k) {
    case BlockKind::Conv: return "conv";
    case BlockKind::Residual: return "res";
    case BlockKind::Separable: return "sep";
    case BlockKind::Inverted: return "ir";
    }
    return "?";
}

struct StageDesign {
    BlockKind kind = BlockKind::Inverted;
    int channels = 16;  // output channels of every block in the stage
    int repeats = 1;    // blocks in the stage, 1..6
    int stride = 1;     // 1 or 2, applied by the first block
    bool pool = false;  // downsample with a 2x2 max pool after the first block instead of stride
    int kernel = 3;     // 3, 5 or 7
    int expansion = 1;  // Inverted only, 1..6
    bool se = false;    // squeeze-excitation at the end of each block
    bool operator==(const StageDesign& o) const {
        return kind == o.kind && channels == o.channels && repeats == o.repeats &&
               stride == o.stride && pool == o.pool && kernel == o.kernel &&
               expansion == o.expansion && se == o.se;
    }
};

struct Design {
    int stem_channels = 16;
    int stem_kernel = 3;
    int stem_stride = 1;
    std::vector<StageDesign> stages;
    int head_channels = 0;  // 1x1 conv before global pooling; 0: none
    Activation act = Activation::Relu;
    bool operator==(const Design& o) const {
        return stem_channels == o.stem_channels && stem_kernel == o.stem_kernel &&
               stem_stride == o.stem_stride && stages == o.stages &&
               head_channels == o.head_channels && act == o.act;
    }
};

// The design as it runs in int8 without float fallbacks (a task in int8 precision): a main
// activation without an int8 kernel (hardswish) becomes relu6, and squeeze-excitation (a float
// multiply, exec/reference_int8.hpp) goes.
inline Design int8_design(Design d) {
    if (d.act != Activation::Relu && d.act != Activation::Relu6 && d.act != Activation::None) d.act = Activation::Relu6;
    for (StageDesign& s : d.stages) s.se = false;
    return d;
}

// Bounds of the design space, shared by the editor, the sampler and parse_design.
struct DesignBounds {
    int min_channels = 8, max_channels = 512;  // multiples of 8
    // Widths the designer picks are multiples of this from it up (8 below it): XNNPACK's f32
    // kernels on x86 with AVX work on 16 channels at a time, and a width past a multiple pays
    // for a whole tile (docs/benchmarks.md: 24 outputs cost as much as 32). channel_step_for().
    int channel_step = 8;
    int max_stages = 6, max_repeats = 6, max_expansion = 6;
    int max_head = 1280;
};

// DesignBounds::channel_step for the XNNPACK kernel family a task runs on (DeviceInfo::
// xnnpack_isa; "" unknown): the f32 kernels' channel tile, and 8 for the int8 kernels.
inline int channel_step_for(const std::string& xnnpack_isa, bool int8) {
    return int8 ? 8 : xnnpack_f32_channel_tile(xnnpack_isa);
}

namespace design_detail {

inline int round_channels(double v, const DesignBounds& b) {
    const int step = v < b.channel_step ? 8 : b.channel_step;
    const int r = static_cast<int>(v / step + 0.5) * step;
    return std::clamp(r, b.min_channels, b.max_channels);
}

struct Writer {
    std::string out;
    std::string last;  // the value the next plain-chain layer reads
    void line(const std::string& name, const std::string& rest) {
        out += name + ": " + rest + "\n";
        last = name;
    }
    // conv/dwconv followed by batchnorm and the activation; returns the last name.
    std::string conv_bn(const std::string& name, const std::string& op, Activation act) {
        line(name, op + " bias=false");
        line(name + "_bn", "batchnorm");
        if (act != Activation::None) line(name + "_act", std::string(activation_name(act)));
        return last;
    }
};

inline std::string conv_op(int out, int kernel, int stride) {
    std::string s = "conv2d out=" + std::to_string(out) + " kernel=" + std::to_string(kernel);
    if (stride != 1) s += " stride=" + std::to_string(stride);
    return s;
}
inline std::string dw_op(int kernel, int stride) {
    std::string s = "dwconv kernel=" + std::to_string(kernel);
    if (stride != 1) s += " stride=" + std::to_string(stride);
    return s;
}

// Squeeze-excitation on `value` (channels c): gap -> 1x1 conv + relu -> 1x1 conv + hardsigmoid -> mul.
inline std::string squeeze_excite(Writer& w, const std::string& prefix, const std::string& value, int c) {
    const int squeezed = std::max(8, (c / 4 + 7) / 8 * 8);
    w.line(prefix + "_se_pool", "gap " + value);
    w.line(prefix + "_se_fc1", "conv2d out=" + std::to_string(squeezed) + " kernel=1 act=relu");
    w.line(prefix + "_se_fc2", "conv2d out=" + std::to_string(c) + " kernel=1 act=hardsigmoid");
    w.line(prefix + "_se", "mul " + value + ", " + prefix + "_se_fc2");
    return w.last;
}

inline std::string block(Writer& w, const std::string& p, const StageDesign& s, int in_c, int stride,
                         Activation act) {
    const std::string input = w.last;
    const int c = s.channels;
    std::string out;
    bool residual_ok = stride == 1 && in_c == c;
    switch (s.kind) {
    case BlockKind::Conv:
        out = w.conv_bn(p + "_conv", conv_op(c, s.kernel, stride), act);
        if (s.se) out = squeeze_excite(w, p, out, c);
        return out;
    case BlockKind::Separable:
        w.conv_bn(p + "_dw", dw_op(s.kernel, stride), act);
        out = w.conv_bn(p + "_pw", conv_op(c, 1, 1), act);
        if (s.se) out = squeeze_excite(w, p, out, c);
        return out;
    case BlockKind::Residual: {
        w.conv_bn(p + "_conv1", conv_op(c, s.kernel, stride), act);
        out = w.conv_bn(p + "_conv2", conv_op(c, s.kernel, 1), Activation::None);
        if (s.se) out = squeeze_excite(w, p, out, c);
        std::string shortcut = input;
        if (!residual_ok) {
            // The projection reads the block's input by name: a layer without inputs reads the line
            // above it, which here is the main path.
            std::string op = conv_op(c, 1, stride);
            op.insert(std::string_view("conv2d").size(), " " + input);
            shortcut = w.conv_bn(p + "_down", op, Activation::None);
        }
        w.line(p, "add " + shortcut + ", " + out + " act=" + std::string(activation_name(act)));
        return w.last;
    }
    case BlockKind::Inverted: {
        const int hidden = s.expansion * in_c;
        if (s.expansion > 1) w.conv_bn(p + "_expand", conv_op(hidden, 1, 1), act);
        out = w.conv_bn(p + "_dw", dw_op(s.kernel, stride), act);
        if (s.se) out = squeeze_excite(w, p, out, hidden);
        w.last = out;
        out = w.conv_bn(p + "_project", conv_op(c, 1, 1), Activation::None);
        if (residual_ok) w.line(p, "add " + input + ", " + out);
        return w.last;
    }
    }
    return out;
}

}  // namespace design_detail

// The DSL text of `d` for inputs of shape `input` and `classes` outputs (logits). The text may
// still be invalid for the input (too many downsamplings for a small image): parse it to know.
inline std::string render_design(const Design& d, const Shape& input, int classes,
                                 const std::string& model_name = "candidate") {
    using namespace design_detail;
    Writer w;
    w.out = "model " + model_name + "\n";
    w.line("input", "input shape=" + std::to_string(input.h) + "x" + std::to_string(input.w) + "x" +
                        std::to_string(input.c));
    w.conv_bn("stem", conv_op(d.stem_channels, d.stem_kernel, d.stem_stride), d.act);
    int c = d.stem_channels;
    for (std::size_t i = 0; i < d.stages.size(); ++i) {
        const StageDesign& s = d.stages[i];
        for (int j = 0; j < s.repeats; ++j) {
            const std::string p = "s" + std::to_string(i) + "b" + std::to_string(j);
            const int stride = (j == 0 && !s.pool) ? s.stride : 1;
            block(w, p, s, c, stride, d.act);
            c = s.channels;
            if (j == 0 && s.pool && s.stride == 2) w.line(p + "_pool", "maxpool kernel=2");
        }
    }
    if (d.head_channels > 0) w.conv_bn("head", conv_op(d.head_channels, 1, 1), d.act);
    w.line("pool", "gap");
    w.line("fc", "fc out=" + std::to_string(classes));
    return w.out;
}

// The stage a layer named by render_design belongs to: -1 for the stem, stages.size() for the
// head and classifier, -2 for a name render_design does not produce.
inline int stage_of_layer(std::string_view name, std::size_t stage_count) {
    if (name.rfind("stem", 0) == 0 || name == "input") return -1;
    if (name.rfind("head", 0) == 0 || name == "pool" || name == "fc") return static_cast<int>(stage_count);
    if (name.size() < 2 || name[0] != 's') return -2;
    int v = 0;
    std::size_t i = 1;
    for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) v = v * 10 + (name[i] - '0');
    if (i == 1 || i >= name.size() || name[i] != 'b') return -2;
    return v;
}

// ---- Compact text form, kept in journal notes so a resumed search knows every design ----------

inline std::string design_to_string(const Design& d) {
    std::string s = "stem=" + std::to_string(d.stem_channels) + "k" + std::to_string(d.stem_kernel) +
                    "s" + std::to_string(d.stem_stride) + " act=" + std::string(activation_name(d.act)) +
                    " head=" + std::to_string(d.head_channels);
    for (const StageDesign& st : d.stages) {
        s += " | " + std::string(block_kind_name(st.kind)) + " c" + std::to_string(st.channels) + " r" +
             std::to_string(st.repeats) + " s" + std::to_string(st.stride) + (st.pool ? "p" : "") +
             " k" + std::to_string(st.kernel) + " e" + std::to_string(st.expansion) +
             (st.se ? " se" : "");
    }
    return s;
}

// Reads design_to_string's form; returns "" on success, else what is wrong.
inline std::string parse_design(std::string_view text, Design& out, const DesignBounds& b = {}) {
    Design d;
    d.stages.clear();
    std::vector<std::string> parts;
    {
        std::string cur;
        for (char ch : text) {
            if (ch == '|') {
                parts.push_back(cur);
                cur.clear();
            } else {
                cur += ch;
            }
        }
        parts.push_back(cur);
    }
    auto number = [](const std::string& tok, std::size_t from, int& v, std::size_t& end) {
        v = 0;
        end = from;
        while (end < tok.size() && tok[end] >= '0' && tok[end] <= '9' && v < 100000)
            v = v * 10 + (tok[end++] - '0');
        return end > from;
    };
    {
        std::istringstream head(parts[0]);
        std::string tok;
        int seen = 0;
        while (head >> tok) {
            std::size_t e = 0;
            if (tok.rfind("stem=", 0) == 0) {
                int c = 0, k = 0, s = 0;
                if (!number(tok, 5, c, e) || e >= tok.size() || tok[e] != 'k' || !number(tok, e + 1, k, e) ||
                    e >= tok.size() || tok[e] != 's' || !number(tok, e + 1, s, e) || e != tok.size())
                    return "bad stem '" + tok + "'";
                d.stem_channels = c, d.stem_kernel = k, d.stem_stride = s;
                seen |= 1;
            } else if (tok.rfind("act=", 0) == 0) {
                bool found = false;
                for (Activation a : all_activations)
                    if (activation_name(a) == tok.substr(4)) d.act = a, found = true;
                if (!found) return "bad activation '" + tok + "'";
                seen |= 2;
            } else if (tok.rfind("head=", 0) == 0) {
                if (!number(tok, 5, d.head_channels, e) || e != tok.size()) return "bad head '" + tok + "'";
                seen |= 4;
            } else {
                return "unexpected '" + tok + "'";
            }
        }
        if (seen != 7) return "missing stem=, act= or head=";
    }
    for (std::size_t i = 1; i < parts.size(); ++i) {
        std::istringstream in(parts[i]);
        std::string kind, tok;
        in >> kind;
        StageDesign st;
        bool known = false;
        for (BlockKind k : {BlockKind::Conv, BlockKind::Residual, BlockKind::Separable, BlockKind::Inverted})
            if (block_kind_name(k) == kind) st.kind = k, known = true;
        if (!known) return "stage " + std::to_string(i - 1) + ": unknown block kind '" + kind + "'";
        while (in >> tok) {
            std::size_t e = 0;
            int v = 0;
            if (tok == "se") {
                st.se = true;
                continue;
            }
            if (!number(tok, 1, v, e)) return "stage " + std::to_string(i - 1) + ": bad '" + tok + "'";
            switch (tok[0]) {
            case 'c': st.channels = v; break;
            case 'r': st.repeats = v; break;
            case 's':
                st.stride = v;
                if (e < tok.size() && tok[e] == 'p') st.pool = true, ++e;
                break;
            case 'k': st.kernel = v; break;
            case 'e': st.expansion = v; break;
            default: return "stage " + std::to_string(i - 1) + ": bad '" + tok + "'";
            }
            if (e != tok.size()) return "stage " + std::to_string(i - 1) + ": bad '" + tok + "'";
        }
        d.stages.push_back(st);
    }
    // Bounds, so that a hand-edited journal cannot ask for something absurd.
    if (d.stem_channels < b.min_channels || d.stem_channels > b.max_channels) return "stem channels out of range";
    if (d.stem_kernel < 1 || d.stem_kernel > 7 || d.stem_stride < 1 || d.stem_stride > 2) return "stem out of range";
    if (d.head_channels < 0 || d.head_channels > b.max_head) return "head out of range";
    if (d.stages.empty() || static_cast<int>(d.stages.size()) > b.max_stages) return "stage count out of range";
    for (const StageDesign& st : d.stages) {
        if (st.channels < b.min_channels || st.channels > b.max_channels || st.repeats < 1 ||
            st.repeats > b.max_repeats || st.stride < 1 || st.stride > 2 || st.kernel < 1 ||
            st.kernel > 7 || st.expansion < 1 || st.expansion > b.max_expansion)
            return "stage out of range";
    }
    out = d;
    return {};
}

// The zoo's small models as designs: where the offline designer starts.
//  - tiny_mobilenet (examples/models/tiny_mobilenet.lamda): stride-2 stem, inverted residuals
//    with squeeze-excitation, a 1x1 head;
//  - lenet5 (examples/models/lenet5.lamda) in modern form: conv + max-pool stages;
//  - a MobileNetV1-style separable chain (the zoo's mobilenet family at 28x28 scale);
//  - ResNet basic blocks (the zoo's resnet family at 28x28 scale).
inline std::vector<std::pair<std::string, Design>> zoo_seed_designs() {
    std::vector<std::pair<std::string, Design>> seeds;
    Design tiny;
    tiny.stem_channels = 16, tiny.stem_kernel = 3, tiny.stem_stride = 2, tiny.act = Activation::Relu6;
    tiny.stages = {{BlockKind::Inverted, 16, 1, 1, false, 3, 3, true},
                   {BlockKind::Inverted, 24, 1, 2, false, 3, 4, false},
                   {BlockKind::Inverted, 24, 1, 1, false, 3, 4, true}};
    tiny.head_channels = 128;
    seeds.emplace_back("tiny_mobilenet", tiny);
    Design lenet;
    lenet.stem_channels = 8, lenet.stem_kernel = 5, lenet.stem_stride = 1, lenet.act = Activation::Relu;
    lenet.stages = {{BlockKind::Conv, 16, 1, 2, true, 5, 1, false}};
    lenet.stages.insert(lenet.stages.begin(), StageDesign{BlockKind::Conv, 8, 1, 2, true, 3, 1, false});
    lenet.head_channels = 0;
    seeds.emplace_back("lenet5", lenet);
    Design sep;
    sep.stem_channels = 16, sep.stem_kernel = 3, sep.stem_stride = 2, sep.act = Activation::Relu;
    sep.stages = {{BlockKind::Separable, 32, 1, 1, false, 3, 1, false},
                  {BlockKind::Separable, 64, 2, 2, false, 3, 1, false}};
    sep.head_channels = 0;
    seeds.emplace_back("separable", sep);
    // ResNet's basic block (the zoo's resnet18 at 28x28 scale): dense kxk convolutions are the
    // most multiply-adds per millisecond XNNPACK runs (GEMM near the FMA peak, where depthwise is
    // bound by memory traffic), which is what a budget in time wants.
    Design res;
    res.stem_channels = 16, res.stem_kernel = 3, res.stem_stride = 2, res.act = Activation::Relu;
    res.stages = {{BlockKind::Residual, 16, 1, 1, false, 3, 1, false},
                  {BlockKind::Residual, 32, 1, 2, false, 3, 1, false}};
    res.head_channels = 0;
    seeds.emplace_back("resnet", res);
    return seeds;
}

// A uniform draw from the design space (the random baseline): 1..4 stages of any block kind.
inline Design random_design(std::mt19937_64& rng, const DesignBounds& b = {}) {
    using namespace sample_detail;
    Design d;
    const int widths[] = {8, 16, 24, 32, 48, 64, 96, 128};
    d.stem_channels = widths[uniform(rng, 0, 5)];
    d.stem_kernel = uniform(rng, 0, 1) ? 5 : 3;
    d.stem_stride = uniform(rng, 1, 2);
    const Activation acts[] = {Activation::Relu, Activation::Relu6, Activation::HardSwish};
    d.act = acts[uniform(rng, 0, 2)];
    const int stages = uniform(rng, 1, 4);
    for (int i = 0; i < stages; ++i) {
        StageDesign s;
        s.kind = static_cast<BlockKind>(uniform(rng, 0, 3));
        s.channels = std::clamp(widths[uniform(rng, 0, 7)], b.min_channels, b.max_channels);
        s.repeats = uniform(rng, 1, 3);
        s.stride = uniform(rng, 1, 2);
        s.pool = s.stride == 2 && chance(rng, 30);
        const int kernels[] = {3, 5, 7};
        s.kernel = kernels[uniform(rng, 0, 2)];
        s.expansion = s.kind == BlockKind::Inverted ? uniform(rng, 1, 6) : 1;
        s.se = chance(rng, 30);
        d.stages.push_back(s);
    }
    d.head_channels = chance(rng, 40) ? widths[uniform(rng, 3, 7)] * 2 : 0;
    return d;
}

// Multiplies every width by `factor` (rounded to b.channel_step, within bounds).
inline Design scale_width(Design d, double factor, const DesignBounds& b = {}) {
    d.stem_channels = design_detail::round_channels(d.stem_channels * factor, b);
    for (StageDesign& s : d.stages) s.channels = design_detail::round_channels(s.channels * factor, b);
    if (d.head_channels > 0) d.head_channels = std::min(b.max_head, design_detail::round_channels(d.head_channels * factor, b));
    return d;
}

}  // namespace lamda

#endif  // LAMDA_SEARCH_DESIGNER_HPP
