// lamda/train/torch_module.hpp: a lamda graph as a libtorch module, for training and for comparing against
// PyTorch. Compiled only with LAMDA_WITH_TORCH defined (Debian's libtorch-dev 1.13; link with
// -ltorch -ltorch_cpu -lc10, include /usr/include/torch/csrc/api/include as a system directory).
//
//   lamda::TorchModel model(graph);                       // any graph that passes check_runnable
//   model.load_weights(lamda::read_safetensors("w.safetensors"));
//   model.eval();
//   torch::NoGradGuard no_grad;
//   torch::Tensor y = model.forward(lamda::to_torch(image));  // NCHW in, NCHW out
//   lamda::Tensor out = lamda::from_torch(y);                  // back to lamda's NHWC, sample 0
//   lamda::Weights w = model.export_weights();                 // trained weights, torch layouts
//
// Layout: forward() takes an NCHW float32 tensor [N, C, H, W] (any N >= 1; any memory format,
// channels_last included) and returns NCHW [N, C', H', W'] for the graph's output layer; a 1x1xK
// output (fc, gap, flatten) is [N, K, 1, 1]. to_torch()/from_torch() convert lamda's NHWC batch-1
// Tensor (or a batch of them) to and from that form.
//
// Parameters: each conv2d, dwconv, fc and batchnorm layer is a submodule registered under the
// layer's name, so named_parameters() yields "LAYER.weight", "LAYER.bias" and named_buffers()
// "LAYER.running_mean", "LAYER.running_var" (and torch's "LAYER.num_batches_tracked", which is
// not a lamda weight) -- exactly the safetensors names of docs/weights.md, in the same layouts
// (conv OIHW, dwconv [C*m][1][kh][kw], fc [out][in] with `in` in H,W,C order).
//
// Semantics are exec/reference.hpp's, op by op:
//   conv2d, dwconv   torch conv2d (dwconv: groups=C, C*multiplier outputs); Layer::pads are used
//                    as resolved: symmetric pads go to the convolution, asymmetric ones (`same`
//                    with an odd total) are a zero constant_pad_nd first.
//   maxpool          windows over the input padded with -infinity (pads and ceil=true extension);
//   avgpool          sum over the zero-padded input divided by the number of in-bounds elements
//                    (count_include_pad=False, also for windows ceil=true extends); a window
//                    entirely in padding gives -inf (max) / 0 (average), as the reference does.
//   fc               linear on the input read in H,W,C order (a non-1x1 input is permuted to NHWC)
//   batchnorm        torch BatchNorm2d (eps from the layer, momentum 0.1): running statistics in
//                    eval mode, batch statistics (and running-stat updates) in train mode.
//   gap              mean over H and W;  add: sum of N inputs then the fused act;  concat: dim 1;
//   mul              elementwise, a 1x1xC operand broadcasts;  softmax: over channels (dim 1);
//   flatten          permute to NHWC, then reshape to [N, H*W*C, 1, 1] (lamda's H,W,C order);
//   dropout          torch dropout with p = rate in train mode, the identity in eval mode;
//   relu, relu6, hardswish (x*relu6(x+3)/6), hardsigmoid (relu6(x+3)/6), sigmoid.
// Outputs agree with run_reference within 1e-4 x max(1, max |reference|) (tests/test_torch.cpp).
//
// Hooks (set_hooks; train/qat.hpp's fake quantization uses them): `weight` replaces the weight a
// conv2d, dwconv or fc layer computes with (its parameter stays what training updates), `output`
// replaces each layer's output before later layers read it. Both get the layer's index in graph().
#ifndef LAMDA_TRAIN_TORCH_MODULE_HPP
#define LAMDA_TRAIN_TORCH_MODULE_HPP

#if !defined(LAMDA_WITH_TORCH)
#error "lamda/train/torch_module.hpp needs LAMDA_WITH_TORCH (Debian's libtorch-dev; CMake: link lamda::torch)"
#else

// Debian's libtorch is built with glog, whose logging.h defines CHECK, CHECK_EQ, ... macros that
// clash with test frameworks (doctest, Catch2, gtest): keep whatever those names meant before.
#pragma push_macro("CHECK")
#pragma push_macro("CHECK_EQ")
#pragma push_macro("CHECK_NE")
#pragma push_macro("CHECK_LE")
#pragma push_macro("CHECK_LT")
#pragma push_macro("CHECK_GE")
#pragma push_macro("CHECK_GT")
#include <torch/torch.h>
#pragma pop_macro("CHECK_GT")
#pragma pop_macro("CHECK_GE")
#pragma pop_macro("CHECK_LT")
#pragma pop_macro("CHECK_LE")
#pragma pop_macro("CHECK_NE")
#pragma pop_macro("CHECK_EQ")
#pragma pop_macro("CHECK")

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../core/ir.hpp"
#include "../exec/plan.hpp"  // activation_of_layer
#include "../exec/pool_plan.hpp"
#include "../exec/reference.hpp"
#include "../data/tensor.hpp"
#include "../data/weights.hpp"

namespace lamda {

namespace torch_detail {

inline torch::Tensor activate(Activation act, const torch::Tensor& x) {
    switch (act) {
    case Activation::None: return x;
    case Activation::Relu: return torch::relu(x);
    case Activation::Relu6: return torch::hardtanh(x, 0.0, 6.0);
    case Activation::HardSwish: return torch::hardswish(x);
    case Activation::HardSigmoid: return torch::hardsigmoid(x);
    case Activation::Sigmoid: return torch::sigmoid(x);
    }
    return x;
}

using lamda::PoolPlan;
using lamda::plan_pool;

}  // namespace torch_detail

// A lamda graph as a torch::nn::Module. Construction checks the graph (detail::check_runnable)
// and creates parameters with torch's default initialisation; load_weights() replaces them.
class TorchModel : public torch::nn::Module {
public:
    explicit TorchModel(const Graph& graph) : graph_(graph) {
        detail::check_runnable(graph_);
        const std::size_t n = graph_.layers.size();
        nodes_.resize(n);
        last_use_.assign(n, -1);
        for (std::size_t i = 0; i < n; ++i) {
            const Layer& l = graph_.layers[i];
            for (int in : l.inputs) last_use_[static_cast<std::size_t>(in)] = static_cast<int>(i);
            Node& node = nodes_[i];
            const Shape in = l.inputs.empty() ? l.shape : shape_of(l.inputs[0]);
            switch (l.op) {
            case OpKind::Conv2d:
            case OpKind::DepthwiseConv2d: {
                const bool dw = l.op == OpKind::DepthwiseConv2d;
                const std::int64_t out = dw ? in.c * l.multiplier : l.out_channels;
                const std::int64_t groups = dw ? in.c : l.groups;
                const bool symmetric = l.pads[0] == l.pads[2] && l.pads[1] == l.pads[3];
                auto options = torch::nn::Conv2dOptions(in.c, out, {l.kernel_h, l.kernel_w})
                                   .stride({l.stride_h, l.stride_w})
                                   .dilation({l.dilation_h, l.dilation_w})
                                   .groups(groups)
                                   .bias(l.bias);
                node.stride = {l.stride_h, l.stride_w};
                node.dilation = {l.dilation_h, l.dilation_w};
                node.groups = groups;
                if (symmetric) {
                    options.padding(torch::ExpandingArray<2>({std::int64_t{l.pads[0]},
                                                              std::int64_t{l.pads[1]}}));
                    node.padding = {l.pads[0], l.pads[1]};
                } else {
                    node.pre_pad = true;
                    node.pad = {l.pads[1], l.pads[3], l.pads[0], l.pads[2]};
                }
                node.conv = register_module(l.name, torch::nn::Conv2d(options));
                break;
            }
            case OpKind::FullyConnected:
                node.fc = register_module(
                    l.name, torch::nn::Linear(
                                torch::nn::LinearOptions(in.elements(), l.out_channels).bias(l.bias)));
                break;
            case OpKind::BatchNorm:
                node.bn = register_module(
                    l.name, torch::nn::BatchNorm2d(
                                torch::nn::BatchNorm2dOptions(in.c).eps(l.eps).momentum(0.1)));
                break;
            case OpKind::MaxPool:
            case OpKind::AvgPool: {
                const torch_detail::PoolPlan plan = torch_detail::plan_pool(l, in);
                node.pre_pad = !plan.native;
                node.pad = plan.pad;
                break;
            }
            default: break;
            }
        }
        // Every lamda weight must be a registered tensor of the expected shape.
        for (auto& p : named_parameters(true)) tensors_.emplace(p.key(), p.value());
        for (auto& b : named_buffers(true)) tensors_.emplace(b.key(), b.value());
        for (const ExpectedTensor& e : expected_weights(graph_)) {
            const auto it = tensors_.find(e.name);
            if (it == tensors_.end() || it->second.sizes().vec() != e.shape)
                throw ExecutorError("TorchModel: no torch tensor of shape " + shape_string(e.shape) +
                                    " for '" + e.name + "'");
        }
    }

    const Graph& graph() const noexcept { return graph_; }

    // Convolution weights and inputs in channels-last (NHWC) memory: oneDNN then runs the
    // convolutions, batch norms and pools of training without reordering every tensor to its
    // blocked layout and back. Values, names and export_weights() are unchanged.
    void use_channels_last(bool on) {
        torch::NoGradGuard no_grad;
        const auto format = on ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
        // Strides set explicitly, not by contiguous(): a weight of one input channel (the stem's,
        // a depthwise one) is contiguous in both formats, so contiguous() keeps its NCHW strides,
        // and with the image (one channel too) those kept the stem's output, its batch norm and
        // their gradients in NCHW (docs/training.md, "The first convolution too").
        for (Node& node : nodes_)
            if (!node.conv.is_empty()) {
                const torch::Tensor w = node.conv->weight.data();
                node.conv->weight.set_data(torch::empty(w.sizes(), w.options().memory_format(format)).copy_(w));
            }
        channels_last_ = on;
    }
    bool channels_last() const noexcept { return channels_last_; }

    // See "Hooks" above; empty functions: none (the default).
    struct Hooks {
        std::function<torch::Tensor(std::size_t layer, const torch::Tensor& weight)> weight;
        std::function<torch::Tensor(std::size_t layer, const torch::Tensor& output)> output;
    };
    void set_hooks(Hooks hooks) { hooks_ = std::move(hooks); }

    Shape input_shape() const noexcept { return graph_.layers.front().shape; }
    Shape output_shape() const noexcept { return graph_.layers.back().shape; }

    // NCHW [N, C, H, W] float32 in (the graph's input shape, any N >= 1), the graph's output out,
    // NCHW [N, C', H', W']. Throws ExecutorError on a wrong input shape.
    torch::Tensor forward(const torch::Tensor& x) { return run(x, false).back(); }

    // Every layer's output (NCHW), parallel to graph().layers; for debugging and tests.
    std::vector<torch::Tensor> forward_all(const torch::Tensor& x) { return run(x, true); }

    // Copies lamda weights (torch layouts, docs/weights.md) into the parameters and running
    // statistics, on whatever device and dtype they are. Throws ExecutorError listing every
    // problem when the weights do not fit the graph (as the executors do).
    void load_weights(const Weights& weights) {
        detail::check_weights(graph_, weights);
        torch::NoGradGuard no_grad;
        for (const ExpectedTensor& e : expected_weights(graph_)) {
            const WeightTensor& w = weights.at(e.name);
            torch::Tensor& dst = tensors_.at(e.name);
            const torch::Tensor src =
                torch::from_blob(const_cast<float*>(w.data.data()), w.shape, torch::kFloat32);
            dst.copy_(src);
        }
    }

    // The current weights (parameters and running statistics), named and laid out as lamda's
    // safetensors files expect; num_batches_tracked is left out.
    Weights export_weights() const {
        Weights out;
        for (const ExpectedTensor& e : expected_weights(graph_)) {
            const torch::Tensor t =
                tensors_.at(e.name).detach().to(torch::kCPU, torch::kFloat32).contiguous();
            WeightTensor w;
            w.shape = e.shape;
            w.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
            out.emplace(e.name, std::move(w));
        }
        return out;
    }

    // Whether the graph has a batchnorm layer.
    bool has_batchnorm() const noexcept {
        return std::any_of(nodes_.begin(), nodes_.end(), [](const Node& n) { return !n.bn.is_empty(); });
    }

    // Every batchnorm layer's running statistics (mean, variance, batches counted), copied, for
    // restore_batchnorm_statistics: a look at the weights with statistics set afresh (an epoch's
    // validation) then leaves training's running averages as they were.
    std::vector<torch::Tensor> batchnorm_statistics() const {
        std::vector<torch::Tensor> out;
        for (const Node& n : nodes_) {
            if (n.bn.is_empty()) continue;
            out.push_back(n.bn->running_mean.clone());
            out.push_back(n.bn->running_var.clone());
            out.push_back(n.bn->num_batches_tracked.clone());
        }
        return out;
    }
    void restore_batchnorm_statistics(const std::vector<torch::Tensor>& kept) {
        torch::NoGradGuard no_grad;
        std::size_t i = 0;
        for (Node& n : nodes_) {
            if (n.bn.is_empty()) continue;
            if (i + 3 > kept.size()) throw std::invalid_argument("restore_batchnorm_statistics: too few tensors");
            n.bn->running_mean.copy_(kept[i++]);
            n.bn->running_var.copy_(kept[i++]);
            n.bn->num_batches_tracked.copy_(kept[i++]);
        }
    }

    // Batch norm recalibration: collecting(true) zeroes every batchnorm layer's running statistics,
    // makes them the plain average over the batches that follow (torch's momentum None) and puts
    // only those layers in train mode (dropout stays off); collecting(false) restores momentum 0.1
    // and eval mode. Forward passes in between (under NoGradGuard) set the statistics.
    void collect_batchnorm_statistics(bool collecting) {
        eval();
        for (Node& n : nodes_) {
            if (n.bn.is_empty()) continue;
            if (collecting) {
                n.bn->reset_running_stats();
                n.bn->options.momentum(c10::nullopt);
                n.bn->train(true);
            } else {
                n.bn->options.momentum(0.1);
            }
        }
    }

private:
    struct Node {
        torch::nn::Conv2d conv{nullptr};
        torch::nn::Linear fc{nullptr};
        torch::nn::BatchNorm2d bn{nullptr};
        bool pre_pad = false;                          // constant_pad_nd before conv / pool
        std::array<std::int64_t, 4> pad{0, 0, 0, 0};   // left, right, top, bottom
        std::vector<std::int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};  // conv (for hooks)
        std::int64_t groups = 1;
    };

    Graph graph_;
    std::vector<Node> nodes_;
    std::vector<int> last_use_;  // last layer reading each value; -1 for none (the output)
    std::map<std::string, torch::Tensor> tensors_;  // lamda weight name -> parameter or buffer
    Hooks hooks_;
    bool channels_last_ = false;

    Shape shape_of(int layer) const { return graph_.layers[static_cast<std::size_t>(layer)].shape; }

    std::vector<torch::Tensor> run(const torch::Tensor& x, bool keep_all) {
        const Shape s = input_shape();
        if (x.dim() != 4 || x.size(0) < 1 || x.size(1) != s.c || x.size(2) != s.h ||
            x.size(3) != s.w || x.scalar_type() != torch::kFloat32) {
            std::string got = "[";
            for (std::int64_t k = 0; k < x.dim(); ++k) got += (k ? "," : "") + std::to_string(x.size(k));
            throw ExecutorError("TorchModel: input is " + got + "] " +
                                std::string(c10::toString(x.scalar_type())) +
                                ", the graph expects float32 NCHW [N," + std::to_string(s.c) + "," +
                                std::to_string(s.h) + "," + std::to_string(s.w) + "]");
        }
        const std::size_t n = graph_.layers.size();
        std::vector<torch::Tensor> v(n);
        for (std::size_t i = 0; i < n; ++i) {
            const Layer& l = graph_.layers[i];
            Node& node = nodes_[i];
            auto arg = [&](std::size_t k) -> const torch::Tensor& {
                return v[static_cast<std::size_t>(l.inputs[k])];
            };
            torch::Tensor y;
            switch (l.op) {
            case OpKind::Input: y = x; break;  // each convolution converts its own input (below)
            case OpKind::Conv2d:
            case OpKind::DepthwiseConv2d: {
                torch::Tensor in = arg(0);
                if (node.pre_pad) in = torch::constant_pad_nd(in, node.pad, 0.0);
                // oneDNN runs channels-last when the input or the weight is; an input of one
                // channel (the image) or one pixel reads as NCHW, its weight then decides.
                if (channels_last_) in = in.contiguous(torch::MemoryFormat::ChannelsLast);
                const torch::Tensor conv =
                    hooks_.weight ? torch::conv2d(in, hooks_.weight(i, node.conv->weight), node.conv->bias,
                                                  node.stride, node.padding, node.dilation, node.groups)
                                  : node.conv->forward(in);
                y = torch_detail::activate(l.act, conv);
                break;
            }
            case OpKind::FullyConnected: {
                torch::Tensor in = arg(0);
                if (in.size(2) != 1 || in.size(3) != 1) in = in.permute({0, 2, 3, 1});
                in = in.reshape({in.size(0), -1});
                y = hooks_.weight ? torch::linear(in, hooks_.weight(i, node.fc->weight), node.fc->bias)
                                  : node.fc->forward(in);
                y = torch_detail::activate(l.act, y).reshape({y.size(0), y.size(1), 1, 1});
                break;
            }
            case OpKind::BatchNorm: y = node.bn->forward(arg(0)); break;
            case OpKind::MaxPool:
            case OpKind::AvgPool: y = pool(l, node, arg(0)); break;
            case OpKind::GlobalAvgPool: y = arg(0).mean({2, 3}, /*keepdim=*/true); break;
            case OpKind::Add: {
                y = arg(0) + arg(1);
                for (std::size_t k = 2; k < l.inputs.size(); ++k) y = y + arg(k);
                y = torch_detail::activate(l.act, y);
                break;
            }
            case OpKind::Concat: {
                std::vector<torch::Tensor> parts;
                parts.reserve(l.inputs.size());
                for (std::size_t k = 0; k < l.inputs.size(); ++k) parts.push_back(arg(k));
                y = torch::cat(parts, 1);
                break;
            }
            case OpKind::Mul: y = arg(0) * arg(1); break;
            case OpKind::Relu:
            case OpKind::Relu6:
            case OpKind::HardSwish:
            case OpKind::HardSigmoid:
            case OpKind::Sigmoid: y = torch_detail::activate(activation_of_layer(l.op), arg(0)); break;
            case OpKind::Softmax: y = torch::softmax(arg(0), 1); break;
            case OpKind::Flatten: {
                const torch::Tensor& in = arg(0);
                y = in.permute({0, 2, 3, 1}).reshape({in.size(0), -1, 1, 1});
                break;
            }
            case OpKind::Dropout:
                y = l.rate > 0 ? torch::dropout(arg(0), l.rate, is_training()) : arg(0);
                break;
            }
            if (hooks_.output) y = hooks_.output(i, y);
            v[i] = std::move(y);
            if (!keep_all)  // release values no later layer reads
                for (int in : l.inputs)
                    if (last_use_[static_cast<std::size_t>(in)] == static_cast<int>(i))
                        v[static_cast<std::size_t>(in)] = torch::Tensor();
        }
        if (!keep_all) {
            torch::Tensor out = std::move(v.back());
            v.clear();
            v.push_back(std::move(out));
        }
        return v;
    }

    static torch::Tensor pool(const Layer& l, const Node& node, const torch::Tensor& x) {
        const bool is_max = l.op == OpKind::MaxPool;
        const std::vector<std::int64_t> kernel{l.kernel_h, l.kernel_w};
        const std::vector<std::int64_t> stride{l.stride_h, l.stride_w};
        if (!node.pre_pad) {
            const std::vector<std::int64_t> padding{node.pad[2], node.pad[0]};
            if (is_max) return torch::max_pool2d(x, kernel, stride, padding);
            return torch::avg_pool2d(x, kernel, stride, padding, /*ceil_mode=*/false,
                                     /*count_include_pad=*/false);
        }
        if (is_max) {
            const torch::Tensor padded =
                torch::constant_pad_nd(x, node.pad, -std::numeric_limits<double>::infinity());
            return torch::max_pool2d(padded, kernel, stride);
        }
        // Window sums over the zero-padded input, divided by each window's in-bounds count.
        const torch::Tensor sum = torch::avg_pool2d(torch::constant_pad_nd(x, node.pad, 0.0), kernel,
                                                    stride, {0, 0}, false, true, /*divisor=*/1);
        const torch::Tensor ones = torch::ones({1, 1, x.size(2), x.size(3)}, x.options());
        const torch::Tensor count = torch::avg_pool2d(torch::constant_pad_nd(ones, node.pad, 0.0),
                                                      kernel, stride, {0, 0}, false, true, 1);
        return sum / count.clamp_min(1.0);
    }
};

// lamda's NHWC batch-1 Tensor as an NCHW torch tensor [1, C, H, W] (a copy).
inline torch::Tensor to_torch(const Tensor& t) {
    const torch::Tensor nhwc = torch::from_blob(const_cast<float*>(t.data.data()),
                                                {1, t.shape.h, t.shape.w, t.shape.c}, torch::kFloat32);
    return nhwc.permute({0, 3, 1, 2}).contiguous();
}

// A batch of same-shape lamda Tensors as NCHW [N, C, H, W].
inline torch::Tensor to_torch(const std::vector<Tensor>& batch) {
    if (batch.empty()) throw ExecutorError("to_torch: empty batch");
    std::vector<torch::Tensor> parts;
    parts.reserve(batch.size());
    for (const Tensor& t : batch) {
        if (t.shape != batch.front().shape)
            throw ExecutorError("to_torch: batch mixes shapes " + to_string(batch.front().shape) +
                                " and " + to_string(t.shape));
        parts.push_back(to_torch(t));
    }
    return torch::cat(parts, 0);
}

// Sample `n` of an NCHW torch tensor [N, C, H, W] as a lamda NHWC Tensor (a copy, on the CPU).
inline Tensor from_torch(const torch::Tensor& nchw, std::int64_t n = 0) {
    if (nchw.dim() != 4 || n < 0 || n >= nchw.size(0))
        throw ExecutorError("from_torch: expected an NCHW tensor with a sample " + std::to_string(n));
    const torch::Tensor nhwc =
        nchw[n].detach().to(torch::kCPU, torch::kFloat32).permute({1, 2, 0}).contiguous();
    Tensor t(Shape{nchw.size(2), nchw.size(3), nchw.size(1)});
    std::copy(nhwc.data_ptr<float>(), nhwc.data_ptr<float>() + nhwc.numel(), t.data.begin());
    return t;
}

}  // namespace lamda

#endif  // defined(LAMDA_WITH_TORCH)
#endif  // LAMDA_TRAIN_TORCH_MODULE_HPP
