// lamda/search/sampler.hpp: random, valid models drawn from a design space of the op catalog.
//
// Six families of realistic structure (plain chains, ResNet-style residual blocks, MobileNetV2
// inverted residuals, squeeze-excitation, concatenated branches, and a mix of all of them) over
// a range of input sizes and widths. Every model returned has passed infer_shapes and lies within
// the space's MAC, parameter and layer bounds. Used to evaluate the latency predictor and as the
// `random` proposer of the search.
//
//     std::mt19937_64 rng(42);
//     lamda::Graph g = lamda::sample_model(rng, lamda::SampleSpace{}, lamda::ModelFamily::Residual);
//     std::cout << lamda::print_dsl(g);
//
// Deterministic: the same seed gives the same model on every platform. Only the raw output of
// std::mt19937_64 (fully specified by the standard) and integer arithmetic decide anything; no
// std::uniform_*_distribution (their output is implementation-defined) and no libm calls.
#ifndef LAMDA_SEARCH_SAMPLER_HPP
#define LAMDA_SEARCH_SAMPLER_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/analysis.hpp"
#include "../core/diagnostics.hpp"
#include "../dsl/parser.hpp"
#include "../core/ir.hpp"
#include "../core/validate.hpp"

namespace lamda {

enum class ModelFamily {
    Chain,             // VGG / LeNet / MobileNetV1: one path, no add, concat or mul
    Residual,          // ResNet basic or bottleneck (ResNeXt groups sometimes) blocks with add
    InvertedResidual,  // MobileNetV2: 1x1 expand, dwconv, 1x1 project, add when shapes match
    SqueezeExcite,     // MobileNetV3 / EfficientNet / SE-ResNet blocks: gap, 2 x 1x1, mul
    ConcatBranches,    // SqueezeNet fire, Inception and DenseNet blocks joined by concat
    Mixed,             // every stage picks its block type from all of the above
};

inline constexpr std::array<ModelFamily, 6> all_model_families{
    ModelFamily::Chain,         ModelFamily::Residual,       ModelFamily::InvertedResidual,
    ModelFamily::SqueezeExcite, ModelFamily::ConcatBranches, ModelFamily::Mixed};

// The family's name on the command line and in sample files.
inline constexpr std::string_view family_name(ModelFamily f) noexcept {
    switch (f) {
    case ModelFamily::Chain: return "chain";
    case ModelFamily::Residual: return "residual";
    case ModelFamily::InvertedResidual: return "inverted-residual";
    case ModelFamily::SqueezeExcite: return "se";
    case ModelFamily::ConcatBranches: return "concat";
    case ModelFamily::Mixed: return "mixed";
    }
    return "?";
}

// Parses a family name (as family_name prints it); false when unknown.
inline bool parse_model_family(std::string_view text, ModelFamily& family) noexcept {
    for (ModelFamily f : all_model_families)
        if (family_name(f) == text) return family = f, true;
    return false;
}

// The design space. Widths are multiples of 8; every range is inclusive.
struct SampleSpace {
    std::vector<Shape> input_shapes{{28, 28, 1},   {32, 32, 3},   {64, 64, 3},  {96, 96, 3},
                                    {128, 128, 3}, {160, 160, 3}, {224, 224, 3}};
    int min_stages = 2, max_stages = 5;     // stages after the stem (most start by downsampling)
    int min_blocks = 1, max_blocks = 4;     // blocks per stage
    int min_width = 8, max_width = 512;     // output channels of stems, blocks and stages
    int max_wide_width = 1280;              // expanded (inverted-residual) and head widths
    std::vector<int> kernel_sizes{1, 3, 5, 7};        // spatial kernels (odd); dwconv uses > 1
    std::vector<int> expansion_ratios{1, 2, 3, 4, 5, 6};  // inverted residuals
    int se_percent = 70;  // chance of SE on a block that can take it (SqueezeExcite; half in Mixed)
    std::vector<Activation> activations{Activation::Relu, Activation::Relu6,
                                        Activation::HardSwish};  // a model's main activation
    int silu_percent = 10;  // chance that a branching model uses x * sigmoid(x) instead
    std::vector<int> classes{10, 100, 1000};
    // Relative weights of chain, residual, inverted-residual, se, concat, mixed (sample_family).
    std::array<unsigned, 6> family_weights{1, 1, 1, 1, 1, 1};

    // Bounds every model respects (a model outside them is drawn again).
    std::int64_t min_macs = 1'000'000;
    std::int64_t max_macs = 600'000'000;
    std::int64_t max_params = 20'000'000;
    int max_layers = 200;
    int max_attempts = 2000;  // draws per model before giving up (sample_model then throws)
};

// What one sample_model call did (optional output).
struct SampleInfo {
    ModelFamily family = ModelFamily::Chain;
    int attempts = 0;          // draws, the accepted one included
    int rejected_invalid = 0;  // draws that failed shape inference (a sampler bug if ever > 0)
    int rejected_bounds = 0;   // draws outside the MAC, parameter or layer bounds
    std::int64_t params = 0, macs = 0;
    int layers = 0;
};

// Empty when the space is usable, otherwise what is wrong with it.
inline std::string sample_space_error(const SampleSpace& s) {
    const Limits limits;
    if (s.input_shapes.empty()) return "no input shapes";
    for (const Shape& in : s.input_shapes)
        if (in.h < 1 || in.w < 1 || in.c < 1 || in.h > 4096 || in.w > 4096 || in.c > 4096)
            return "input shape " + to_string(in) + " is out of range (1..4096 on each axis)";
    if (s.min_stages < 1 || s.max_stages < s.min_stages || s.max_stages > 8)
        return "stages must satisfy 1 <= min <= max <= 8";
    if (s.min_blocks < 1 || s.max_blocks < s.min_blocks || s.max_blocks > 16)
        return "blocks must satisfy 1 <= min <= max <= 16";
    if (s.min_width < 8 || s.min_width % 8 != 0 || s.max_width % 8 != 0 ||
        s.max_width < s.min_width || s.max_width > 8192)
        return "widths must be multiples of 8 with 8 <= min <= max <= 8192";
    if (s.max_wide_width < s.max_width || s.max_wide_width > 16384)
        return "max_wide_width must be in [max_width, 16384]";
    if (s.kernel_sizes.empty()) return "no kernel sizes";
    for (int k : s.kernel_sizes)
        if (k < 1 || k > 15 || k % 2 == 0)
            return "kernel size " + std::to_string(k) + " is not odd in [1, 15]";
    if (s.expansion_ratios.empty()) return "no expansion ratios";
    for (int t : s.expansion_ratios)
        if (t < 1 || t > 8) return "expansion ratio " + std::to_string(t) + " is not in [1, 8]";
    if (s.se_percent < 0 || s.se_percent > 100) return "se_percent must be in [0, 100]";
    if (s.silu_percent < 0 || s.silu_percent > 100) return "silu_percent must be in [0, 100]";
    if (s.activations.empty()) return "no activations";
    for (Activation a : s.activations)
        if (a == Activation::None) return "activation none is not a main activation";
    if (s.classes.empty()) return "no class counts";
    for (int c : s.classes)
        if (c < 1 || c > limits.max_channels) return "class count out of range";
    std::uint64_t weights = 0;
    for (unsigned w : s.family_weights) weights += w;
    if (weights == 0) return "every family weight is 0";
    if (s.min_macs < 0 || s.max_macs <= s.min_macs) return "MAC bounds must satisfy 0 <= min < max";
    if (s.max_params < 1) return "max_params must be positive";
    if (s.max_layers < 12 || s.max_layers > limits.max_layers)
        return "max_layers must be in [12, " + std::to_string(limits.max_layers) + "]";
    if (s.max_attempts < 1 || s.max_attempts > 1'000'000)
        return "max_attempts must be in [1, 1000000]";
    return {};
}

namespace sample_detail {

// ---- Portable randomness on top of the raw 64-bit output ----------------------------------

// Uniform in [0, n), n > 0, by rejection (no modulo bias).
inline std::uint64_t below(std::mt19937_64& rng, std::uint64_t n) {
    const std::uint64_t threshold = (std::uint64_t{0} - n) % n;  // 2^64 mod n
    for (;;) {
        const std::uint64_t r = rng();
        if (r >= threshold) return r % n;
    }
}

// Uniform in [lo, hi].
inline int uniform(std::mt19937_64& rng, int lo, int hi) {
    if (hi <= lo) return lo;
    return lo + static_cast<int>(below(rng, static_cast<std::uint64_t>(hi - lo) + 1));
}

inline bool chance(std::mt19937_64& rng, int percent) {
    return static_cast<int>(below(rng, 100)) < percent;
}

template <class T>
const T& pick(std::mt19937_64& rng, const std::vector<T>& items) {
    return items[static_cast<std::size_t>(below(rng, items.size()))];
}

// Index drawn with the given non-negative weights (at least one positive).
template <std::size_t N>
std::size_t weighted(std::mt19937_64& rng, const std::array<unsigned, N>& weights) {
    std::uint64_t total = 0;
    for (unsigned w : weights) total += w;
    std::uint64_t r = below(rng, total);
    for (std::size_t i = 0; i < N; ++i) {
        if (r < weights[i]) return i;
        r -= weights[i];
    }
    return N - 1;
}

// ---- Model style ------------------------------------------------------------------------------

// Activations as the sampler thinks of them: Silu is x * sigmoid(x), two layers.
enum class Act { None, Relu, Relu6, HardSwish, HardSigmoid, Sigmoid, Silu };

inline Act act_of(Activation a) noexcept {
    switch (a) {
    case Activation::None: return Act::None;
    case Activation::Relu: return Act::Relu;
    case Activation::Relu6: return Act::Relu6;
    case Activation::HardSwish: return Act::HardSwish;
    case Activation::HardSigmoid: return Act::HardSigmoid;
    case Activation::Sigmoid: return Act::Sigmoid;
    }
    return Act::None;
}

inline Activation fused_of(Act a) noexcept {
    switch (a) {
    case Act::Relu: return Activation::Relu;
    case Act::Relu6: return Activation::Relu6;
    case Act::HardSwish: return Activation::HardSwish;
    case Act::HardSigmoid: return Activation::HardSigmoid;
    case Act::Sigmoid: return Activation::Sigmoid;
    default: return Activation::None;
    }
}

inline OpKind op_of(Act a) noexcept {
    switch (a) {
    case Act::Relu6: return OpKind::Relu6;
    case Act::HardSwish: return OpKind::HardSwish;
    case Act::HardSigmoid: return OpKind::HardSigmoid;
    case Act::Sigmoid: return OpKind::Sigmoid;
    default: return OpKind::Relu;
    }
}

// Choices made once per model, so that a model looks like one design, not noise.
struct Style {
    bool bn = true;               // conv (usually bias=false) -> batchnorm -> standalone activation
    bool bias_with_bn = false;    // conv keeps its bias before batchnorm
    bool fuse = true;             // without batchnorm: act= on the conv, else a layer of its own
    bool explicit_pad = false;    // padding=k/2 written out (torchvision style) instead of same
    double eps = 1e-5;
    Act act = Act::Relu;          // main activation
    Act late_act = Act::Relu;     // from stage late_from on (MobileNetV3 switches to hardswish)
    int late_from = 1 << 20;
    Act gate = Act::HardSigmoid;  // SE gate
    bool gate_fused = true;
    bool se_fc = false;           // SE squeeze/excite as fc layers instead of 1x1 convs
    bool add_act_fused = true;    // residual: add act=relu instead of add then relu
};

struct BuildFailed {};  // a layer the sampler made was rejected by shape inference
struct OverBudget {};   // the model grew past the layer bound while being built

// ---- The graph under construction ---------------------------------------------------------------

class Builder {
public:
    Builder(std::mt19937_64& rng, const SampleSpace& space, Style style)
        : rng_(rng), space_(space), style_(style) {}

    Graph graph;
    int stage = 0;  // selects the main activation (Style::late_from)

    std::mt19937_64& rng() { return rng_; }
    const SampleSpace& space() const { return space_; }
    Style& style() { return style_; }

    const Shape& shape(int v) const { return graph.layers[static_cast<std::size_t>(v)].shape; }
    int channels(int v) const { return static_cast<int>(shape(v).c); }
    int spatial(int v) const { return static_cast<int>(std::min(shape(v).h, shape(v).w)); }
    Act act() const { return stage >= style_.late_from ? style_.late_act : style_.act; }

    int add_layer(Layer layer) {
        if (!names_.insert(layer.name).second) throw BuildFailed{};
        graph.layers.push_back(std::move(layer));
        if (graph.layers.size() > static_cast<std::size_t>(space_.max_layers)) throw OverBudget{};
        const std::size_t i = graph.layers.size() - 1;
        std::vector<Diagnostic> diags;
        if (!infer_layer(graph, i, diags)) throw BuildFailed{};
        return static_cast<int>(i);
    }

    int input(const Shape& s) {
        Layer l;
        l.name = "input";
        l.op = OpKind::Input;
        l.input_shape = s;
        return add_layer(std::move(l));
    }

    Padding conv_padding(int kh, int kw, int dilation) const {
        Padding p;  // Same
        if (style_.explicit_pad) {
            const int ph = dilation * (kh - 1) / 2, pw = dilation * (kw - 1) / 2;
            p.mode = PaddingMode::Explicit;
            p.amounts = {ph, pw, ph, pw};
        }
        return p;
    }

    int conv(const std::string& name, int in, int out, int kh, int kw, int stride, int groups,
             int dilation, bool bias, Activation act) {
        Layer l;
        l.name = name;
        l.op = OpKind::Conv2d;
        l.inputs = {in};
        l.out_channels = out;
        l.kernel_h = kh;
        l.kernel_w = kw;
        l.stride_h = l.stride_w = stride;
        l.dilation_h = l.dilation_w = dilation;
        l.groups = groups;
        l.padding = conv_padding(kh, kw, dilation);
        l.bias = bias;
        l.act = act;
        return add_layer(std::move(l));
    }

    int dwconv(const std::string& name, int in, int k, int stride, int multiplier, int dilation,
               bool bias, Activation act) {
        Layer l;
        l.name = name;
        l.op = OpKind::DepthwiseConv2d;
        l.inputs = {in};
        l.kernel_h = l.kernel_w = k;
        l.stride_h = l.stride_w = stride;
        l.dilation_h = l.dilation_w = dilation;
        l.multiplier = multiplier;
        l.padding = conv_padding(k, k, dilation);
        l.bias = bias;
        l.act = act;
        return add_layer(std::move(l));
    }

    int fc(const std::string& name, int in, int out, Activation act, bool bias = true) {
        Layer l;
        l.name = name;
        l.op = OpKind::FullyConnected;
        l.inputs = {in};
        l.out_channels = out;
        l.bias = bias;
        l.act = act;
        return add_layer(std::move(l));
    }

    int unary(const std::string& name, OpKind op, int in) {
        Layer l;
        l.name = name;
        l.op = op;
        l.inputs = {in};
        return add_layer(std::move(l));
    }

    int batchnorm(const std::string& name, int in) {
        Layer l;
        l.name = name;
        l.op = OpKind::BatchNorm;
        l.inputs = {in};
        l.eps = style_.eps;
        return add_layer(std::move(l));
    }

    int dropout(const std::string& name, int in) {
        static const std::vector<double> rates{0.1, 0.2, 0.25, 0.3, 0.5};
        Layer l;
        l.name = name;
        l.op = OpKind::Dropout;
        l.inputs = {in};
        l.rate = pick(rng_, rates);
        return add_layer(std::move(l));
    }

    // A pool; `same` pads like a convolution (amounts at most kernel/2, which XNNPACK needs).
    int pool(const std::string& name, OpKind op, int in, int k, int stride, bool same,
             bool ceil_mode = false) {
        Layer l;
        l.name = name;
        l.op = op;
        l.inputs = {in};
        l.kernel_h = l.kernel_w = k;
        l.stride_h = l.stride_w = stride;
        l.ceil_mode = ceil_mode;
        l.padding.mode = PaddingMode::Valid;
        if (same) {
            l.padding = style_.explicit_pad ? conv_padding(k, k, 1) : Padding{};
        }
        return add_layer(std::move(l));
    }

    int join(const std::string& name, OpKind op, std::vector<int> inputs,
             Activation act = Activation::None) {
        Layer l;
        l.name = name;
        l.op = op;
        l.inputs = std::move(inputs);
        l.act = act;
        return add_layer(std::move(l));
    }

    // A standalone activation after `in`, named after `prefix`.
    int activate(const std::string& prefix, int in, Act a) {
        if (a == Act::None) return in;
        if (a == Act::Silu) {
            const int s = unary(prefix + "_sigmoid", OpKind::Sigmoid, in);
            return join(prefix + "_silu", OpKind::Mul, {in, s});
        }
        return unary(prefix + "_" + std::string(op_name(op_of(a))), op_of(a), in);
    }

    // conv2d [-> batchnorm] -> activation, in the model's style.
    int conv_unit(const std::string& name, int in, int out, int kh, int kw, int stride, Act a,
                  int groups = 1, int dilation = 1) {
        if (style_.bn) {
            const int c = conv(name, in, out, kh, kw, stride, groups, dilation,
                               style_.bias_with_bn, Activation::None);
            return activate(name, batchnorm(name + "_bn", c), a);
        }
        if (style_.fuse && a != Act::Silu)
            return conv(name, in, out, kh, kw, stride, groups, dilation, true, fused_of(a));
        return activate(name,
                        conv(name, in, out, kh, kw, stride, groups, dilation, true, Activation::None),
                        a);
    }

    int dw_unit(const std::string& name, int in, int k, int stride, Act a, int multiplier = 1,
                int dilation = 1) {
        if (style_.bn) {
            const int c = dwconv(name, in, k, stride, multiplier, dilation, style_.bias_with_bn,
                                 Activation::None);
            return activate(name, batchnorm(name + "_bn", c), a);
        }
        if (style_.fuse && a != Act::Silu)
            return dwconv(name, in, k, stride, multiplier, dilation, true, fused_of(a));
        return activate(name, dwconv(name, in, k, stride, multiplier, dilation, true, Activation::None),
                        a);
    }

    // Residual join: add, then the activation (fused when the style and activation allow).
    int residual(const std::string& name, int a, int b, Act after) {
        const bool first = chance(rng_, 80);  // the shortcut usually comes second
        std::vector<int> inputs = first ? std::vector<int>{a, b} : std::vector<int>{b, a};
        if (after == Act::None) return join(name, OpKind::Add, std::move(inputs));
        if (style_.add_act_fused && after != Act::Silu)
            return join(name, OpKind::Add, std::move(inputs), fused_of(after));
        return activate(name, join(name, OpKind::Add, std::move(inputs)), after);
    }

    // Squeeze-excitation on `x`: gap -> reduce (relu) -> expand (gate) -> mul.
    int squeeze_excite(const std::string& name, int x, int squeeze) {
        const int c = channels(x);
        const int pooled = unary(name + "_pool", OpKind::GlobalAvgPool, x);
        const Activation gate = style_.gate_fused ? fused_of(style_.gate) : Activation::None;
        int g;
        if (style_.se_fc) {
            const int f1 = fc(name + "_fc1", pooled, squeeze, Activation::Relu);
            g = fc(name + "_fc2", f1, c, gate);
        } else {
            const int f1 = conv(name + "_fc1", pooled, squeeze, 1, 1, 1, 1, 1, true, Activation::Relu);
            g = conv(name + "_fc2", f1, c, 1, 1, 1, 1, 1, true, gate);
        }
        if (!style_.gate_fused) g = activate(name + "_fc2", g, style_.gate);
        return chance(rng_, 80) ? join(name, OpKind::Mul, {x, g}) : join(name, OpKind::Mul, {g, x});
    }

private:
    std::mt19937_64& rng_;
    const SampleSpace& space_;
    Style style_;
    std::set<std::string> names_;
};

// ---- Sizes -----------------------------------------------------------------------------------

// The nearest multiple of 8 to v, within [lo, hi] (both multiples of 8).
inline int round8(std::int64_t v, int lo, int hi) {
    std::int64_t r = (v + 4) / 8 * 8;
    return static_cast<int>(std::clamp<std::int64_t>(r, lo, hi));
}

// A spatial kernel size from the space: 3 most of the time when it is offered, like real models.
inline int spatial_kernel(std::mt19937_64& rng, const SampleSpace& s, bool allow_one) {
    std::vector<int> ks;
    for (int k : s.kernel_sizes)
        if (allow_one || k > 1) ks.push_back(k);
    if (ks.empty()) return 3;
    const bool has3 = std::find(ks.begin(), ks.end(), 3) != ks.end();
    if (has3 && chance(rng, 50)) return 3;
    return pick(rng, ks);
}

// A divisor of both a and b from the candidates (1 when none).
inline int pick_groups(std::mt19937_64& rng, int a, int b, std::vector<int> candidates) {
    std::vector<int> ok;
    for (int g : candidates)
        if (g > 1 && a % g == 0 && b % g == 0) ok.push_back(g);
    return ok.empty() ? 1 : pick(rng, ok);
}

// ---- Blocks ------------------------------------------------------------------------------------

enum class Block { Plain, Separable, Basic, Bottleneck, MBConv, Fire, Inception, Dense };

inline constexpr std::array<Block, 8> all_blocks{Block::Plain,     Block::Separable, Block::Basic,
                                                 Block::Bottleneck, Block::MBConv,   Block::Fire,
                                                 Block::Inception,  Block::Dense};

// Knobs that depend on how many draws have failed (see sample_model: `tilt`).
struct Scale {
    int num = 8;            // widths are multiplied by num / 8
    int max_blocks = 4;     // per stage
    int max_stages = 5;
};

class ModelSampler {
public:
    ModelSampler(Builder& b, ModelFamily family, const Scale& scale)
        : b_(b), rng_(b.rng()), s_(b.space()), family_(family), scale_(scale) {}

    void build(const Shape& input_shape) {
        int x = b_.input(input_shape);
        x = stem(x);
        const int stages = uniform(rng_, s_.min_stages, std::max(s_.min_stages, scale_.max_stages));
        bool has_se = false;
        for (int s = 1; s <= stages; ++s) {
            b_.stage = s;
            const Block kind = block_for_stage();
            const std::string sp = "s" + std::to_string(s);
            // Most stages start by halving the resolution; the first sometimes keeps it.
            const bool down = b_.spatial(x) >= 4 && chance(rng_, s == 1 ? 45 : 85);
            // Widths grow with depth, most when the resolution halves (by at least 8 then).
            const int grow_num = down ? uniform(rng_, 13, 20) : uniform(rng_, 10, 14);
            const std::int64_t grown = std::int64_t{width_} * grow_num / 10;
            width_ = clamp_width(down ? std::max<std::int64_t>(grown, width_ + 8) : grown);
            const int blocks = uniform(rng_, s_.min_blocks, std::max(s_.min_blocks, scale_.max_blocks));
            x = stage_of(kind, sp, x, down, blocks, s == stages, has_se);
        }
        head(x);
    }

private:
    Builder& b_;
    std::mt19937_64& rng_;
    const SampleSpace& s_;
    ModelFamily family_;
    Scale scale_;
    Block model_block_ = Block::Plain;  // per-model block for the single-kind families
    int width_ = 16;                    // the current stage's output width

    int scaled(int v) const { return v * scale_.num / 8; }
    int clamp_width(std::int64_t v) const { return round8(v, s_.min_width, s_.max_width); }
    int wide(std::int64_t v) const { return round8(v, s_.min_width, s_.max_wide_width); }

    Block block_for_stage() {
        if (family_ == ModelFamily::Mixed) return all_blocks[below(rng_, all_blocks.size())];
        return model_block_;
    }

    int stem(int x) {
        const int in = b_.spatial(x);
        switch (family_) {
        case ModelFamily::Chain: model_block_ = chance(rng_, 65) ? Block::Plain : Block::Separable; break;
        case ModelFamily::Residual: model_block_ = chance(rng_, 60) ? Block::Basic : Block::Bottleneck; break;
        case ModelFamily::InvertedResidual: model_block_ = Block::MBConv; break;
        case ModelFamily::SqueezeExcite: model_block_ = chance(rng_, 80) ? Block::MBConv : Block::Basic; break;
        case ModelFamily::ConcatBranches: {
            const int r = uniform(rng_, 0, 2);
            model_block_ = r == 0 ? Block::Fire : r == 1 ? Block::Inception : Block::Dense;
            break;
        }
        case ModelFamily::Mixed: model_block_ = Block::Plain; break;
        }
        // Stage widths start narrow for mobile blocks, wider for plain and residual ones.
        const bool mobile = model_block_ == Block::MBConv || model_block_ == Block::Separable ||
                            family_ == ModelFamily::Mixed;
        width_ = clamp_width(scaled(mobile ? 8 * uniform(rng_, 1, 4) : 8 * uniform(rng_, 2, 8)));
        const int stem_width = clamp_width(scaled(8 * uniform(rng_, 1, mobile ? 6 : 8)));
        const int stride = in >= 64 || chance(rng_, 50) ? 2 : 1;
        int k = 3;
        if (family_ == ModelFamily::Residual && in >= 64 && chance(rng_, 60)) k = 7;
        else if (chance(rng_, 20)) k = spatial_kernel(rng_, s_, false);
        if (family_ == ModelFamily::Residual && in >= 96 && chance(rng_, 25)) {
            // Deep stem (ResNet-C): three 3x3 convs.
            x = b_.conv_unit("stem1", x, clamp_width(stem_width / 2), 3, 3, stride, b_.act());
            x = b_.conv_unit("stem2", x, clamp_width(stem_width / 2), 3, 3, 1, b_.act());
            x = b_.conv_unit("stem", x, stem_width, 3, 3, 1, b_.act());
        } else {
            x = b_.conv_unit("stem", x, stem_width, k, k, stride, b_.act());
        }
        // ResNet and SqueezeNet follow the stem with a 3x3 stride-2 max pool on large inputs.
        const bool pool_family = family_ == ModelFamily::Residual ||
                                 model_block_ == Block::Fire || model_block_ == Block::Inception;
        if (pool_family && b_.spatial(x) >= 32 && chance(rng_, 70)) {
            if (model_block_ == Block::Fire)
                x = b_.pool("stem_pool", OpKind::MaxPool, x, 3, 2, false, true);  // ceil, valid
            else
                x = b_.pool("stem_pool", OpKind::MaxPool, x, 3, 2, true);
        }
        return x;
    }

    // A standalone downsampling pool before a stage.
    int down_pool(const std::string& name, int x) {
        switch (uniform(rng_, 0, 4)) {
        case 0: return b_.pool(name, OpKind::MaxPool, x, 2, 2, false);
        case 1: return b_.pool(name, OpKind::MaxPool, x, 3, 2, true);
        case 2: return b_.pool(name, OpKind::MaxPool, x, 3, 2, false, true);
        case 3: return b_.pool(name, OpKind::AvgPool, x, 2, 2, false, chance(rng_, 50));
        default: return b_.pool(name, OpKind::AvgPool, x, 3, 2, true);
        }
    }

    int stage_of(Block kind, const std::string& sp, int x, bool down, int blocks, bool last,
                 bool& has_se) {
        const int out = width_;
        const bool se_ok = family_ == ModelFamily::SqueezeExcite || family_ == ModelFamily::Mixed;
        const int se_percent = family_ == ModelFamily::Mixed ? s_.se_percent / 2 : s_.se_percent;
        auto want_se = [&](int j) {
            if (!se_ok) return false;
            // The SqueezeExcite family always has one: the last block of the last stage.
            if (family_ == ModelFamily::SqueezeExcite && last && j == blocks && !has_se) return true;
            return chance(rng_, se_percent);
        };
        auto block_name = [&](int j) { return sp + "_b" + std::to_string(j); };
        switch (kind) {
        case Block::Plain: {
            const bool pool_down = down && chance(rng_, 50);
            if (pool_down) x = down_pool(sp + "_pool", x);
            const bool dilate = !down && b_.stage >= 3 && chance(rng_, 25);
            for (int j = 1; j <= blocks; ++j) {
                const int stride = down && !pool_down && j == 1 ? 2 : 1;
                const int k = spatial_kernel(rng_, s_, j > 1);
                const int groups = j > 1 && chance(rng_, 12)
                                       ? pick_groups(rng_, b_.channels(x), out, {2, 4, 8})
                                       : 1;
                x = b_.conv_unit(block_name(j), x, out, k, k, stride, b_.act(), groups,
                                 dilate && k > 1 ? 2 : 1);
            }
            return x;
        }
        case Block::Separable:
            for (int j = 1; j <= blocks; ++j) {
                const std::string p = block_name(j);
                const int k = spatial_kernel(rng_, s_, false);
                const int mult = chance(rng_, 15) && b_.channels(x) <= s_.max_width / 2 ? 2 : 1;
                const int dil = !down && b_.stage >= 3 && k == 3 && chance(rng_, 10) ? 2 : 1;
                x = b_.dw_unit(p + "_dw", x, k, down && j == 1 ? 2 : 1, b_.act(), mult, dil);
                x = b_.conv_unit(p + "_pw", x, out, 1, 1, 1, b_.act());
            }
            return x;
        case Block::Basic:
        case Block::Bottleneck:
            for (int j = 1; j <= blocks; ++j) {
                const bool se = want_se(j);
                has_se = has_se || se;
                x = resnet_block(kind, block_name(j), x, out, down && j == 1 ? 2 : 1, se);
            }
            return x;
        case Block::MBConv: {
            // MobileNetV2's first stage: no expansion, narrow output.
            for (int j = 1; j <= blocks; ++j) {
                const bool se = want_se(j);
                has_se = has_se || se;
                const int t = b_.stage == 1 && j == 1 && chance(rng_, 50)
                                  ? 1
                                  : pick(rng_, s_.expansion_ratios);
                const int k = spatial_kernel(rng_, s_, false);
                x = mbconv(block_name(j), x, out, k, down && j == 1 ? 2 : 1, t, se);
            }
            return x;
        }
        case Block::Fire: {
            if (down) x = down_pool(sp + "_pool", x);
            for (int j = 1; j <= blocks; ++j) x = fire(block_name(j), x, out);
            return x;
        }
        case Block::Inception:
            for (int j = 1; j <= blocks; ++j) {
                if (down && j == 1 && chance(rng_, 60))
                    x = inception_reduction(block_name(j), x, out);
                else {
                    if (down && j == 1) x = down_pool(sp + "_pool", x);
                    x = inception(block_name(j), x, out);
                }
            }
            return x;
        case Block::Dense: {
            if (down) {
                // DenseNet transition: 1x1 conv halving the channels, then 2x2 average pool.
                const int t = b_.conv_unit(sp + "_transition", x,
                                           clamp_width(b_.channels(x) / 2), 1, 1, 1, b_.act());
                x = b_.pool(sp + "_transition_pool", OpKind::AvgPool, t, 2, 2, false,
                            b_.spatial(t) % 2 == 1);
            }
            const int growth = 8 * uniform(rng_, 1, 4);
            const bool bottleneck = chance(rng_, 50);
            for (int j = 1; j <= blocks; ++j) {
                const std::string p = block_name(j);
                int n = x;
                if (bottleneck) n = b_.conv_unit(p + "_conv1", n, clamp_width(4 * growth), 1, 1, 1, b_.act());
                n = b_.conv_unit(p + "_conv2", n, growth, 3, 3, 1, b_.act());
                x = b_.join(p, OpKind::Concat, {x, n});
            }
            return x;
        }
        }
        return x;
    }

    int shortcut(const std::string& p, int x, int out, int stride) {
        const Shape& in = b_.shape(x);
        const std::int64_t h = (in.h + stride - 1) / stride, w = (in.w + stride - 1) / stride;
        if (in.c == out && h == in.h && w == in.w) return x;
        int s = x;
        int conv_stride = stride;
        if (stride == 2 && chance(rng_, 20)) {
            // ResNet-D: average pool, then the 1x1 projection (ceil keeps odd sizes in step).
            s = b_.pool(p + "_down_pool", OpKind::AvgPool, x, 2, 2, false, true);
            conv_stride = 1;
        }
        if (b_.style().bn) {
            s = b_.conv(p + "_down", s, out, 1, 1, conv_stride, 1, 1, b_.style().bias_with_bn,
                        Activation::None);
            return b_.batchnorm(p + "_down_bn", s);
        }
        return b_.conv(p + "_down", s, out, 1, 1, conv_stride, 1, 1, true, Activation::None);
    }

    int resnet_block(Block kind, const std::string& p, int x, int out, int stride, bool se) {
        int y;
        if (kind == Block::Basic) {
            const int k = chance(rng_, 80) ? 3 : spatial_kernel(rng_, s_, false);
            y = b_.conv_unit(p + "_conv1", x, out, k, k, stride, b_.act());
            y = b_.conv_unit(p + "_conv2", y, out, 3, 3, 1, Act::None);
        } else {
            // Bottleneck (ResNet v1.5: stride on the 3x3); ResNeXt widens it and groups it.
            const bool next = chance(rng_, 35);
            const int mid = clamp_width(next ? out / 2 : out / 4);
            const int groups = next ? pick_groups(rng_, mid, mid, {4, 8, 16, 32}) : 1;
            y = b_.conv_unit(p + "_conv1", x, mid, 1, 1, 1, b_.act());
            y = b_.conv_unit(p + "_conv2", y, mid, 3, 3, stride, b_.act(), groups);
            y = b_.conv_unit(p + "_conv3", y, out, 1, 1, 1, Act::None);
        }
        if (se) y = b_.squeeze_excite(p + "_se", y, clamp_width(out / 16 > 8 ? out / 16 : out / 4));
        const int s = shortcut(p, x, out, stride);
        return b_.residual(p, y, s, b_.act());
    }

    int mbconv(const std::string& p, int x, int out, int k, int stride, int t, bool se) {
        const int in = b_.channels(x);
        int h = x;
        int mult = 1;
        if (t > 1 && t <= 2 && chance(rng_, 15)) mult = 2;  // expand inside the dwconv instead
        else if (t > 1) h = b_.conv_unit(p + "_expand", x, wide(std::int64_t{in} * t), 1, 1, 1, b_.act());
        h = b_.dw_unit(p + "_dw", h, k, stride, b_.act(), mult);
        if (se) h = b_.squeeze_excite(p + "_se", h, clamp_width(chance(rng_, 50) ? in / 4 : b_.channels(h) / 4));
        h = b_.conv_unit(p + "_project", h, out, 1, 1, 1, Act::None);
        if (stride == 1 && in == out) return b_.residual(p, x, h, Act::None);
        return h;
    }

    int fire(const std::string& p, int x, int out) {
        const int e1 = clamp_width(out / 2), e3 = clamp_width(out - e1);
        const int squeeze = clamp_width(out / uniform(rng_, 4, 8));
        const int sq = b_.conv_unit(p + "_squeeze", x, squeeze, 1, 1, 1, b_.act());
        const int a = b_.conv_unit(p + "_expand1", sq, e1, 1, 1, 1, b_.act());
        const int c = b_.conv_unit(p + "_expand3", sq, e3, 3, 3, 1, b_.act());
        const int y = b_.join(p, OpKind::Concat, {a, c});
        // SqueezeNet's simple bypass, where the shapes allow it.
        if (b_.shape(y) == b_.shape(x) && chance(rng_, 40))
            return b_.join(p + "_bypass", OpKind::Add, {x, y});
        return y;
    }

    int inception(const std::string& p, int x, int out) {
        const int c1 = clamp_width(out / 4), c3 = clamp_width(out * 3 / 8);
        const int c5 = clamp_width(out / 8), cp = clamp_width(out / 4);
        const Act a = b_.act();
        const int b1 = b_.conv_unit(p + "_b1", x, c1, 1, 1, 1, a);
        int b2 = b_.conv_unit(p + "_b2_reduce", x, clamp_width(c3 / 2), 1, 1, 1, a);
        b2 = b_.conv_unit(p + "_b2", b2, c3, 3, 3, 1, a);
        int b3 = b_.conv_unit(p + "_b3_reduce", x, clamp_width(c5 / 2), 1, 1, 1, a);
        switch (uniform(rng_, 0, 3)) {
        case 0: b3 = b_.conv_unit(p + "_b3", b3, c5, 5, 5, 1, a); break;
        case 1:
            b3 = b_.conv_unit(p + "_b3_a", b3, c5, 3, 3, 1, a);
            b3 = b_.conv_unit(p + "_b3", b3, c5, 3, 3, 1, a);
            break;
        case 2: {  // factorized (Inception v3): 1xk then kx1
            const int k = chance(rng_, 50) ? 7 : 5;
            b3 = b_.conv_unit(p + "_b3_a", b3, c5, 1, k, 1, a);
            b3 = b_.conv_unit(p + "_b3", b3, c5, k, 1, 1, a);
            break;
        }
        default: b3 = b_.conv_unit(p + "_b3", b3, c5, 3, 3, 1, a, 1, 2); break;  // dilated
        }
        const OpKind pool = chance(rng_, 60) ? OpKind::MaxPool : OpKind::AvgPool;
        const int b4 = b_.conv_unit(p + "_b4", b_.pool(p + "_b4_pool", pool, x, 3, 1, true), cp,
                                    1, 1, 1, a);
        return b_.join(p, OpKind::Concat, {b1, b2, b3, b4});
    }

    // Inception's grid reduction: strided 3x3, strided double 3x3 and a strided max pool.
    int inception_reduction(const std::string& p, int x, int out) {
        const Act a = b_.act();
        const int in = b_.channels(x);
        const int rest = std::max(16, out - in);
        const int b1 = b_.conv_unit(p + "_b1", x, clamp_width(rest / 2), 3, 3, 2, a);
        int b2 = b_.conv_unit(p + "_b2_reduce", x, clamp_width(rest / 4), 1, 1, 1, a);
        b2 = b_.conv_unit(p + "_b2_a", b2, clamp_width(rest / 2), 3, 3, 1, a);
        b2 = b_.conv_unit(p + "_b2", b2, clamp_width(rest / 2), 3, 3, 2, a);
        const int b3 = b_.pool(p + "_b3_pool", OpKind::MaxPool, x, 3, 2, true);
        return b_.join(p, OpKind::Concat, {b1, b2, b3});
    }

    void head(int x) {
        const int classes = pick(rng_, s_.classes);
        const Act a = b_.act();
        const bool mobile = model_block_ == Block::MBConv || model_block_ == Block::Separable;
        const std::int64_t flat_elements = b_.shape(x).elements();
        int style = uniform(rng_, 0, 9);
        // 0-5: gap -> fc; 6-7: MobileNetV3 (gap -> fc hidden -> fc); 8: SqueezeNet (1x1 conv to
        // classes, then gap); 9: VGG/LeNet (flatten the feature map -> fc hidden -> fc).
        if (style == 9 && flat_elements > 16384) style = 0;
        if (mobile && chance(rng_, 70)) {
            // MobileNet's last 1x1 conv widens the features before pooling.
            x = b_.conv_unit("head", x, wide(b_.channels(x) * uniform(rng_, 2, 6)), 1, 1, 1, a);
        }
        if (style == 8) {
            if (chance(rng_, 50)) x = b_.dropout("dropout", x);
            x = b_.conv("classifier", x, classes, 1, 1, 1, 1, 1, true, Activation::Relu);
            x = b_.unary("pool", OpKind::GlobalAvgPool, x);
            x = b_.unary("flatten", OpKind::Flatten, x);
        } else if (style == 9) {
            x = b_.unary("flatten", OpKind::Flatten, x);
            x = b_.fc("fc1", x, clamp_width(8 * uniform(rng_, 8, 64)), fused_of(a == Act::Silu ? Act::Relu : a));
            if (chance(rng_, 60)) x = b_.dropout("dropout", x);
            x = b_.fc("logits", x, classes, Activation::None);
        } else {
            x = b_.unary("pool", OpKind::GlobalAvgPool, x);
            if (chance(rng_, 50)) x = b_.unary("flatten", OpKind::Flatten, x);
            if (style >= 6) {
                const int hidden = wide(8 * uniform(rng_, 16, 160));
                if (chance(rng_, 50))
                    x = b_.fc("fc1", x, hidden, fused_of(a == Act::Silu ? Act::HardSwish : a));
                else
                    x = b_.activate("fc1", b_.fc("fc1", x, hidden, Activation::None),
                                    a == Act::Silu ? Act::HardSwish : a);
            }
            if (chance(rng_, 50)) x = b_.dropout("dropout", x);
            x = b_.fc("logits", x, classes, Activation::None, !chance(rng_, 5));
        }
        if (chance(rng_, 30)) b_.unary("softmax", OpKind::Softmax, x);
    }
};

inline Style sample_style(std::mt19937_64& rng, const SampleSpace& s, ModelFamily family) {
    Style st;
    st.bn = chance(rng, 60);
    st.bias_with_bn = chance(rng, 10);
    st.fuse = chance(rng, 80);
    st.explicit_pad = chance(rng, 25);
    st.eps = chance(rng, 80) ? 1e-5 : 1e-3;
    st.act = act_of(pick(rng, s.activations));
    const bool branching = family != ModelFamily::Chain;  // silu needs a mul: not a plain chain
    if (branching && chance(rng, s.silu_percent)) st.act = Act::Silu;
    st.late_act = st.act;
    if (chance(rng, 25)) {  // MobileNetV3: relu early, hardswish late
        st.act = Act::Relu;
        st.late_act = Act::HardSwish;
        st.late_from = uniform(rng, 2, 4);
    }
    st.gate = chance(rng, 50) ? Act::HardSigmoid : Act::Sigmoid;
    st.gate_fused = chance(rng, 70);
    st.se_fc = chance(rng, 30);
    st.add_act_fused = chance(rng, 50);
    return st;
}

inline bool has_op(const Graph& g, OpKind op) {
    for (const Layer& l : g.layers)
        if (l.op == op) return true;
    return false;
}

// The ops that make a family what it is.
inline bool has_signature(const Graph& g, ModelFamily family) {
    switch (family) {
    case ModelFamily::Chain:
        return !has_op(g, OpKind::Add) && !has_op(g, OpKind::Concat) && !has_op(g, OpKind::Mul);
    case ModelFamily::Residual: return has_op(g, OpKind::Add);
    case ModelFamily::InvertedResidual:
        return has_op(g, OpKind::DepthwiseConv2d) && has_op(g, OpKind::Add);
    case ModelFamily::SqueezeExcite:
        return has_op(g, OpKind::Mul) && has_op(g, OpKind::GlobalAvgPool);
    case ModelFamily::ConcatBranches: return has_op(g, OpKind::Concat);
    case ModelFamily::Mixed: return true;
    }
    return true;
}

}  // namespace sample_detail

// Draws a family with the space's family weights.
inline ModelFamily sample_family(std::mt19937_64& rng, const SampleSpace& space) {
    return all_model_families[sample_detail::weighted(rng, space.family_weights)];
}

// Draws one valid model of `family` within the space's bounds. Throws std::invalid_argument for
// an unusable space (sample_space_error) and std::runtime_error when max_attempts draws all fall
// outside the bounds (a space whose bounds its ranges cannot meet). After 16 failed draws the
// sampler leans towards smaller (or larger) models, so reachable bounds are met quickly.
inline Graph sample_model(std::mt19937_64& rng, const SampleSpace& space, ModelFamily family,
                          SampleInfo* info = nullptr) {
    using namespace sample_detail;
    if (const std::string why = sample_space_error(space); !why.empty())
        throw std::invalid_argument("lamda::sample_model: " + why);
    SampleInfo local;
    SampleInfo& report = info ? *info : local;
    report = SampleInfo{};
    report.family = family;
    int tilt = 0;  // < 0: draws were too big, lean smaller; > 0: too small, lean larger
    for (int attempt = 0; attempt < space.max_attempts; ++attempt) {
        ++report.attempts;
        Scale scale;
        scale.num = std::clamp(8 + tilt, 2, 16);
        scale.max_blocks = std::clamp(space.max_blocks + std::min(tilt, 0) / 2, space.min_blocks,
                                      space.max_blocks);
        scale.max_stages = std::clamp(space.max_stages + std::min(tilt, 0) / 3, space.min_stages,
                                      space.max_stages);
        const Shape input = pick(rng, space.input_shapes);
        Builder builder(rng, space, sample_style(rng, space, family));
        builder.graph.name = "sample_" + std::string(family_name(family));
        for (char& c : builder.graph.name)
            if (c == '-') c = '_';
        int verdict = 0;  // -1 too big, +1 too small, 0 fine
        try {
            ModelSampler(builder, family, scale).build(input);
        } catch (const BuildFailed&) {
            ++report.rejected_invalid;
            continue;
        } catch (const OverBudget&) {
            verdict = -1;
        }
        Graph& g = builder.graph;
        if (verdict == 0) {
            std::vector<Diagnostic> diags;
            if (!infer_shapes(g, diags)) {
                ++report.rejected_invalid;
                continue;
            }
            if (!has_signature(g, family)) {
                ++report.rejected_bounds;
                continue;
            }
            const ModelStats stats = analyze(g);
            if (stats.macs > space.max_macs || stats.params > space.max_params) verdict = -1;
            else if (stats.macs < space.min_macs) verdict = 1;
            else {
                report.params = stats.params;
                report.macs = stats.macs;
                report.layers = static_cast<int>(g.layers.size());
                return std::move(g);
            }
        }
        ++report.rejected_bounds;
        if (attempt >= 16) tilt = std::clamp(tilt + verdict, -6, 8);
    }
    throw std::runtime_error("lamda::sample_model: no " + std::string(family_name(family)) +
                             " model within the bounds after " +
                             std::to_string(space.max_attempts) +
                             " draws; widen the MAC, parameter or layer bounds");
}

// Draws the family too (SampleSpace::family_weights).
inline Graph sample_model(std::mt19937_64& rng, const SampleSpace& space,
                          SampleInfo* info = nullptr) {
    const ModelFamily family = sample_family(rng, space);
    return sample_model(rng, space, family, info);
}

// The canonical text (print_dsl) of a sampled model.
inline std::string sample_model_text(std::mt19937_64& rng, const SampleSpace& space,
                                     ModelFamily family, SampleInfo* info = nullptr) {
    return print_dsl(sample_model(rng, space, family, info));
}

// The seed of the index-th model of a run seeded with `seed` (splitmix64 of both), so that a
// model depends only on (seed, index), not on how many were drawn before it.
inline std::uint64_t sample_seed(std::uint64_t seed, std::uint64_t index) noexcept {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}


// `count` models cycling through every family, named PREFIX<i>-<family>, model i drawn from
// sample_seed(seed, i); each one's family is appended to `families`. What `lamda profile` and
// `eval-predictor` measure.
inline std::vector<std::pair<std::string, Graph>> sample_named_models(std::uint64_t seed, int count,
                                                                      const std::string& prefix,
                                                                      std::vector<std::string>& families,
                                                                      const SampleSpace& space = {}) {
    std::vector<std::pair<std::string, Graph>> out;
    for (int i = 0; i < count; ++i) {
        const ModelFamily f = all_model_families[static_cast<std::size_t>(i) % all_model_families.size()];
        std::mt19937_64 rng(sample_seed(seed, static_cast<std::uint64_t>(i)));
        out.emplace_back(prefix + std::to_string(i) + "-" + std::string(family_name(f)), sample_model(rng, space, f));
        families.emplace_back(family_name(f));
    }
    return out;
}

// The whole models a latency profile is calibrated on (`lamda profile`, and the device agent's
// profiling jobs): count/8 tiny ones first (LeNet-sized: tens of microseconds, where per-operator
// costs inside a model dominate; from a space of their own, so they cannot coincide with
// evaluation models; they take milliseconds in all, and the phase stops when the budget is
// spent), then `count` from the default space.
inline std::vector<std::pair<std::string, Graph>> calibration_models(std::uint64_t seed, int count,
                                                                     std::vector<std::string>& families) {
    SampleSpace tiny;
    tiny.input_shapes = {{28, 28, 1}, {32, 32, 3}, {32, 32, 1}};
    tiny.min_stages = 1;
    tiny.max_stages = 2;
    tiny.max_blocks = 2;
    tiny.max_width = 48;
    tiny.max_wide_width = 128;
    tiny.min_macs = 20'000;
    tiny.max_macs = 3'000'000;
    auto models = sample_named_models(seed + 1, count / 8, "calib-tiny-", families, tiny);
    auto rest = sample_named_models(seed, count, "calib-", families);
    for (auto& m : rest) models.push_back(std::move(m));
    return models;
}

}  // namespace lamda

#endif  // LAMDA_SEARCH_SAMPLER_HPP
