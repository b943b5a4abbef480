// lamda/train/qat.hpp: a quantized model (exec/reference_int8.hpp's PtqResult) evaluated in libtorch
// with fake quantization, and quantization-aware fine-tuning (QAT). Compiled only with
// LAMDA_WITH_TORCH (like train/trainer.hpp); without it this header is an #error.
//
//   lamda::PtqResult q = lamda::quantize_ptq(graph, weights, calibration);
//   lamda::Accuracy a = lamda::fake_quant_accuracy(q.graph, q.model, q.float_weights, data.test);
//   // a.accuracy is evaluate_accuracy_int8's (XNNPACK int8) within rounding (docs/int8.md)
//
//   lamda::QatOptions o;  o.epochs = 2;
//   lamda::QatResult r = lamda::quantization_aware_finetune(graph, weights, train, calibration, o);
//   // r.ptq: quantize_ptq of the fine-tuned float weights r.weights (which fit r.ptq.graph)
//
// Fake-quant evaluation: a TorchModel of the batch-norm-folded graph whose conv2d/dwconv/fc layers
// that run in int8 hold the dequantized int8 weights (q x scale[c]) and bias (int32 x in_scale x
// w_scale[c]), and the float layers QuantizedModel::float_layers names their float_weights. Every
// layer's output goes through torch::fake_quantize_per_tensor_affine in [-128, 127] with the
// parameters the integer executors give it: pass-through ops (int8_passthrough: maxpool, relu,
// relu6, flatten, dropout) their input's, an int8 sigmoid scale 1/256 and zero point -128,
// every other layer (float layers too) its own calibrated parameters. The model input is
// quantized the same way (the input layer's parameters). That is what the XNNPACK int8 executor
// does: it converts every layer's output to qs8, a float layer's too, and the graph output back to
// float. What differs is rounding only: the torch convolution sums dequantized products in float
// where the integer kernels sum exactly in int32, and add rounds in float where XNNPACK's qs8 add
// is fixed point; a value near a rounding tie can land one step apart. Measured on Fashion-MNIST
// (docs/int8.md), top-1 agrees within 0.1 point.
//
// QAT: batch norm is folded first (quantize_ptq's graph); the folded float weights are trained
// with Adam on cross-entropy (no augmentation, cosine learning rate), with the weights of every
// int8 conv/dwconv fake-quantized per output channel (torch::fake_quantize_per_channel_affine,
// scale max|w|/127 of the current weights, zero point 0, [-127, 127]) and of every int8 fc per
// tensor, and every layer's output fake-quantized as above. Both fake quantizations pass gradients
// straight through (STE) inside the range and zero them outside. Activation ranges: the calibrated
// min/max of quantize_ptq, re-calibrated after every epoch on the same calibration images (so the
// ranges follow the weights, and the last epoch's are what the written file gets: no EMA whose
// ranges would differ from the final quantize_ptq's). At the end quantize_ptq runs on the
// fine-tuned weights: its result is an ordinary int8 model.
//
// Contract: throws std::invalid_argument for bad options, ExecutorError for a graph, weights or
// quantized model that do not fit (as quantize_ptq / the executors do), DatasetError when the
// model does not fit the data, std::runtime_error when fine-tuning diverges. Deterministic under
// a seed at a fixed thread count (torch::set_num_threads is process-wide; set on every call).
#ifndef LAMDA_TRAIN_QAT_HPP
#define LAMDA_TRAIN_QAT_HPP

#if !defined(LAMDA_WITH_TORCH)
#error "lamda/train/qat.hpp needs LAMDA_WITH_TORCH (Debian's libtorch-dev; CMake: link lamda::torch)"
#else

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../core/ir.hpp"
#include "../core/quant.hpp"
#include "../data/dataset.hpp"
#include "../data/tensor.hpp"
#include "../data/weights.hpp"
#include "../exec/fold.hpp"
#include "../exec/reference_int8.hpp"
#include "torch_module.hpp"
#include "trainer.hpp"

namespace lamda {

namespace qat_detail {

inline bool listed(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// The int8 parameters of every layer's output as the integer executors use them (see above).
inline std::vector<ActivationQuant> output_params(const Graph& g, const QuantizedModel& m) {
    std::vector<ActivationQuant> p(g.layers.size());
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        const Layer& l = g.layers[i];
        const bool in_float = listed(m.float_layers, l.name);
        if (!in_float && int8_passthrough(l.op) && !l.inputs.empty()) {
            p[i] = p[static_cast<std::size_t>(l.inputs.front())];
        } else if (!in_float && l.op == OpKind::Sigmoid) {
            p[i] = sigmoid_output_quant();
        } else {
            const ActivationQuant* a = m.find_activation(l.name);
            if (!a) throw ExecutorError("layer '" + l.name + "' has no activation parameters");
            p[i] = *a;
        }
    }
    return p;
}

inline torch::Tensor fake_quant(const torch::Tensor& x, const ActivationQuant& p) {
    return torch::fake_quantize_per_tensor_affine(x, static_cast<double>(p.scale), p.zero_point, kQMin, kQMax);
}

// The per-layer output hook: fake quantization with params[i].
inline std::function<torch::Tensor(std::size_t, const torch::Tensor&)> output_hook(
    std::shared_ptr<const std::vector<ActivationQuant>> params) {
    return [params](std::size_t i, const torch::Tensor& y) { return fake_quant(y, (*params)[i]); };
}

}  // namespace qat_detail

// Float weights that make a TorchModel of `graph` (batch norms folded) compute what `m` computes
// before rounding: int8 layers' weights and biases dequantized, float layers' from
// `float_weights`. Throws ExecutorError naming a missing tensor.
inline Weights dequantized_weights(const Graph& graph, const QuantizedModel& m, const Weights& float_weights) {
    if (const std::optional<Error> e = validate_quantized_model(m))
        throw ExecutorError("quantized model: " + e->where.field + ": " + e->message);
    const std::vector<ActivationQuant> act = qat_detail::output_params(graph, m);
    Weights out;
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        const bool linear = l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d ||
                            l.op == OpKind::FullyConnected;
        if (!linear && l.op != OpKind::BatchNorm) continue;
        if (!linear || qat_detail::listed(m.float_layers, l.name)) {
            const std::string prefix = l.name + ".";
            for (auto it = float_weights.lower_bound(prefix);
                 it != float_weights.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
                out[it->first] = it->second;
            continue;
        }
        const QuantizedWeights* q = m.find_layer(l.name);
        if (!q) throw ExecutorError("layer '" + l.name + "' has no int8 weights");
        const std::size_t oc = static_cast<std::size_t>(q->weight_shape.front());
        const std::size_t per = oc ? q->weights.size() / oc : 0;
        WeightTensor w;
        w.shape = q->weight_shape;
        w.data.resize(q->weights.size());
        for (std::size_t o = 0; o < oc; ++o)
            for (std::size_t k = 0; k < per; ++k)
                w.data[o * per + k] = static_cast<float>(q->weights[o * per + k]) * q->weight_scale(o);
        out[l.name + ".weight"] = std::move(w);
        if (l.bias) {
            const float in_scale = act[static_cast<std::size_t>(l.inputs.front())].scale;
            WeightTensor b;
            b.shape = {static_cast<std::int64_t>(oc)};
            b.data.resize(oc);
            for (std::size_t o = 0; o < oc; ++o)
                b.data[o] = static_cast<float>(static_cast<double>(q->bias[o]) *
                                               static_cast<double>(bias_scale(in_scale, q->weight_scale(o))));
            out[l.name + ".bias"] = std::move(b);
        }
    }
    return out;
}

// A TorchModel of `graph` (batch norms folded) that computes `m` with fake quantization (see the
// top of this file). The model is in eval mode; it does not train (its weights are fixed by `m`).
inline std::unique_ptr<TorchModel> fake_quant_model(const Graph& graph, const QuantizedModel& m,
                                                    const Weights& float_weights) {
    auto model = std::make_unique<TorchModel>(graph);
    model->load_weights(dequantized_weights(graph, m, float_weights));
    TorchModel::Hooks hooks;
    hooks.output = qat_detail::output_hook(
        std::make_shared<const std::vector<ActivationQuant>>(qat_detail::output_params(graph, m)));
    model->set_hooks(std::move(hooks));
    model->eval();
    return model;
}

// Top-1 accuracy of `m` over the first `limit` images of `d` (all when 0), through libtorch with
// fake quantization, `threads` torch threads.
inline Accuracy fake_quant_accuracy(const Graph& graph, const QuantizedModel& m, const Weights& float_weights,
                                    const Dataset& d, std::size_t limit = 0, int threads = 1) {
    check_classifier(graph, d);
    torch::set_num_threads(std::max(1, threads));
    const std::unique_ptr<TorchModel> model = fake_quant_model(graph, m, float_weights);
    return torch_accuracy(*model, d, limit);
}

inline Accuracy fake_quant_accuracy(const PtqResult& q, const Dataset& d, std::size_t limit = 0, int threads = 1) {
    return fake_quant_accuracy(q.graph, q.model, q.float_weights, d, limit, threads);
}

// ---------------------------------------------------------------------------------------------
// Quantization-aware fine-tuning
// ---------------------------------------------------------------------------------------------

struct QatProgress {
    int epoch = 0;  // 1-based: the epoch just finished
    int epochs = 0;
    double loss = 0;     // mean training loss over the epoch (with fake quantization)
    double seconds = 0;  // since fine-tuning started
};

struct QatOptions {
    int epochs = 2;
    double lr = 1e-4;  // Adam; a tenth to a hundredth of training's: the weights start trained
    int batch_size = 128;
    std::size_t train_subset = 0;  // fine-tune on a seeded sample of this many images; 0: all
    std::uint64_t seed = 1;
    int threads = 1;
    PtqOptions ptq;  // the calibrations (each epoch and at the end)
    std::function<void(const QatProgress&)> progress;
};

struct QatResult {
    PtqResult ptq;                   // quantize_ptq of `weights`: the int8 model to write
    Weights weights;                 // the fine-tuned float weights; they fit ptq.graph
    std::vector<double> epoch_loss;  // mean training loss of each epoch
    std::int64_t train_images = 0;
    double seconds = 0;
};

namespace qat_detail {

inline void check_options(const QatOptions& o) {
    const auto bad = [](const std::string& what) { throw std::invalid_argument("QatOptions: " + what); };
    if (o.epochs < 1 || o.epochs > 1000) bad("epochs must be in 1..1000, got " + std::to_string(o.epochs));
    if (!(o.lr > 0 && o.lr < 1)) bad("learning rate must be in (0, 1), got " + std::to_string(o.lr));
    if (o.batch_size < 2 || o.batch_size > 65536)
        bad("batch size must be in 2..65536, got " + std::to_string(o.batch_size));
    if (o.threads < 1 || o.threads > 1024) bad("threads must be in 1..1024, got " + std::to_string(o.threads));
}

// Per-channel (conv, dwconv) or per-tensor (fc) symmetric fake quantization of a weight, scale
// max|w|/127 of the current values (not differentiated: STE through the rounding only).
inline torch::Tensor fake_quant_weight(const torch::Tensor& w, bool per_channel) {
    constexpr double tiny = 1e-30;
    if (!per_channel) {
        const double m = w.detach().abs().max().item<double>();
        const double s = m > 0 ? m / kWeightQMax : 1.0 / kWeightQMax;
        return torch::fake_quantize_per_tensor_affine(w, std::max(s, tiny), 0, -kWeightQMax, kWeightQMax);
    }
    const torch::Tensor m = w.detach().abs().reshape({w.size(0), -1}).amax(1);
    const torch::Tensor s =
        torch::where(m > 0, m / kWeightQMax, torch::full_like(m, 1.0 / kWeightQMax)).clamp_min(tiny).to(torch::kFloat32);
    const torch::Tensor zp = torch::zeros({w.size(0)}, torch::TensorOptions().dtype(torch::kInt32));
    return torch::fake_quantize_per_channel_affine(w, s, zp, 0, -kWeightQMax, kWeightQMax);
}

}  // namespace qat_detail

// Fine-tunes `weights` (fitting `graph`, or `graph` with batch norms folded) with fake
// quantization on `train`, calibrating on `calibration` (images of the graph's input shape; not
// the test set), and quantizes the result (see the top of this file).
inline QatResult quantization_aware_finetune(const Graph& graph, const Weights& weights, const Dataset& train_set,
                                             const std::vector<Tensor>& calibration, const QatOptions& options) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    qat_detail::check_options(options);
    check_classifier(graph, train_set);
    if (train_set.size() < 2) throw DatasetError("fine-tuning needs at least 2 images");
    torch::set_num_threads(options.threads);
    torch::manual_seed(options.seed);

    QatResult result;
    PtqResult q = quantize_ptq(graph, weights, calibration, options.ptq);
    const Graph g = q.graph;
    Weights folded = validate_weights(graph, weights).empty() ? fold_batchnorm(graph, weights).second : weights;

    const Dataset sampled = options.train_subset ? subset(train_set, options.train_subset, options.seed) : Dataset();
    const Dataset& train = options.train_subset ? sampled : train_set;

    TorchModel model(g);
    model.load_weights(folded);
    // Which layers run in int8 and their output parameters: from the latest calibration.
    auto params = std::make_shared<std::vector<ActivationQuant>>(qat_detail::output_params(g, q.model));
    auto int8_weights = std::make_shared<std::vector<char>>(g.layers.size(), 0);
    const auto refresh = [&](const PtqResult& p) {
        *params = qat_detail::output_params(g, p.model);
        for (std::size_t i = 0; i < g.layers.size(); ++i) (*int8_weights)[i] = p.model.find_layer(g.layers[i].name) != nullptr;
    };
    refresh(q);
    TorchModel::Hooks hooks;
    hooks.output = [params](std::size_t i, const torch::Tensor& y) { return qat_detail::fake_quant(y, (*params)[i]); };
    hooks.weight = [int8_weights, &g](std::size_t i, const torch::Tensor& w) {
        if (!(*int8_weights)[i]) return w;
        return qat_detail::fake_quant_weight(w, g.layers[i].op != OpKind::FullyConnected);
    };
    model.set_hooks(std::move(hooks));

    torch::optim::Adam optimizer(model.parameters(), torch::optim::AdamOptions(options.lr));
    const std::size_t n = train.size();
    const auto bs = static_cast<std::size_t>(options.batch_size);
    const std::size_t steps_per_epoch = train_detail::EpochBatches::per_epoch(n, bs);
    const double total_steps = static_cast<double>(steps_per_epoch) * options.epochs;
    for (int epoch = 0; epoch < options.epochs; ++epoch) {
        model.train();
        train_detail::EpochBatches batches(train, bs, options.seed, epoch);
        double loss_sum = 0;
        std::int64_t seen = 0;
        auto step = static_cast<std::int64_t>(steps_per_epoch) * epoch;
        torch::Tensor x, y;
        for (; batches.next(x, y); ++step) {
            const std::int64_t B = x.size(0);
            const double lr = train_detail::cosine_lr(options.lr, step, total_steps);
            for (auto& group : optimizer.param_groups())
                static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
            torch::Tensor loss = torch::nll_loss(train_detail::log_probs(g, model.forward(x)), y);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            const double l = loss.item<double>();
            if (!std::isfinite(l))
                throw std::runtime_error("quantization-aware fine-tuning diverged: the loss is " + std::to_string(l) +
                                         " in epoch " + std::to_string(epoch + 1) + "; try a lower learning rate");
            loss_sum += l * static_cast<double>(B);
            seen += B;
        }
        // Re-calibrate on the updated weights: the next epoch (and the file) use these ranges.
        q = quantize_ptq(g, model.export_weights(), calibration, options.ptq);
        refresh(q);
        QatProgress p;
        p.epoch = epoch + 1;
        p.epochs = options.epochs;
        p.loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
        p.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        result.epoch_loss.push_back(p.loss);
        if (options.progress) options.progress(p);
    }
    result.weights = model.export_weights();
    result.ptq = std::move(q);
    result.train_images = static_cast<std::int64_t>(n);
    result.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return result;
}

}  // namespace lamda

#endif  // defined(LAMDA_WITH_TORCH)
#endif  // LAMDA_TRAIN_QAT_HPP
