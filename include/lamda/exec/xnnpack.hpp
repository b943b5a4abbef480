// lamda/exec/xnnpack.hpp: runs a lamda graph on the CPU with XNNPACK (Debian's libxnnpack-dev,
// 2022-02 snapshot) and times it per layer. Compiled only with LAMDA_WITH_XNNPACK defined; link
// with -lXNNPACK -lpthreadpool -lpthread.
//
//   lamda::XnnExecutor exec(graph, weights, {/*threads=*/1});   // throws lamda::ExecutorError
//   std::copy(image.begin(), image.end(), exec.input());        // NHWC float32, batch 1
//   exec.run();
//   const float* y = exec.output();  lamda::Shape s = exec.output_shape();
//   std::vector<double> ms = exec.run_timed_per_op();           // parallel to graph.layers
//
// How it works: it runs the operator plan of exec/plan.hpp (plan_ops), the one lowering the latency
// model predicts from: the XNNPACK operator(s) of each planned op (operator API: create once,
// setup once with pointers into buffers allocated at construction, run many times), in order;
// run() runs them all, run_timed_per_op() times each. Activation buffers follow the plan's
// buffers (plan_buffers): one arena, a buffer reused once its value's last reader has run
// (XnnOptions::keep_intermediates keeps one per layer). The operator API is what XNNPACK's own
// subgraph runtime runs underneath, and it lets concat be a strided copy (this XNNPACK has no
// concatenate node).
//   conv2d            convolution2d_nhwc_f32 (weights transposed OIHW -> OHWI)
//   dwconv            convolution2d_nhwc_f32 with groups=C (XNNPACK picks its depthwise kernels)
//   fc                fully_connected_nc_f32
//   batchnorm         folded into the conv2d/dwconv/fc before it when that layer has no other
//                     reader and no fused activation; otherwise a 1x1 depthwise convolution
//   relu, relu6, hardsigmoid, hardswish, sigmoid layers   fused into the conv/dwconv/fc/
//                     batchnorm/add before them (as if written act=...) when they are its only
//                     reader and it has no act; otherwise a separate operator (clamp_nc_f32, ...)
//   act=relu/relu6    the output clamp of conv/dwconv/fc/add
//   act=hardsigmoid   on conv/dwconv/fc/batchnorm: folded into weights and bias (w/6, (b+3)/6) with
//                     clamp [0,1]; elsewhere add_nd(x, 3) clamped to [0,6], then multiply_nd by 1/6
//   hardswish, sigmoid, act=hardswish/sigmoid   hardswish_nc_f32 / sigmoid_nc_f32 (in place)
//   maxpool, avgpool  max/average_pooling2d_nhwc_f32; ceil=true becomes extra bottom/right padding.
//                     A 1x1 kernel (which XNNPACK rejects) is a strided copy done by a plain loop.
//   gap               global_average_pooling_nwc_f32
//   add (N inputs)    N-1 add_nd_f32, accumulating into the output
//   concat            one copy_nc_x32 per input, writing a channel slice of the output
//   mul               multiply_nd_f32 (broadcasts a 1x1xC operand)
//   softmax           softmax_nc_f32 over channels
//   flatten, dropout  no operator: the output aliases the input buffer
//
// int8 (XnnOptions::int8): the same plan, every value stored as qs8 (per-tensor scale and zero
// point) in the same buffers, a byte per element. Scales come from one fp32 run of the plan
// (op_ranges: each planned op's output min/max over XnnOptions::calibration, or the timing input
// when none is given: synthetic scales for timing). input() and output() stay float: a convert
// operator quantizes the input and dequantizes the output.
//   conv2d, dwconv, batchnorm  convolution2d_nhwc_qc8: per-output-channel symmetric weight
//                     scales (max |w| / 127, after folding the batchnorm), int32 bias
//   fc                fully_connected_nc_qs8 (one weight scale: qs8 has no per-channel scales)
//   act=relu/relu6/hardsigmoid   the int8 output clamp, as in fp32
//   add, mul, gap     add_nd_qs8, multiply_nd_qs8, global_average_pooling_nwc_qs8
//   maxpool, relu/relu6 layers   max_pooling2d_nhwc_s8, clamp_nc_s8 (the input's quantization)
//   sigmoid           sigmoid_nc_qs8 (output scale 1/256, zero point -128)
//   hardswish, hardsigmoid layer, avgpool, concat, softmax, and any op whose int8 parameters
//                     XNNPACK refuses: no int8 kernel in this snapshot, so they run in float
//                     between convert_nc_qs8_f32 and convert_nc_f32_qs8 (runs_in_float(i))
#ifndef LAMDA_EXEC_XNNPACK_HPP
#define LAMDA_EXEC_XNNPACK_HPP

#if !defined(LAMDA_WITH_XNNPACK)
#error "lamda/exec/xnnpack.hpp needs LAMDA_WITH_XNNPACK (Debian's libxnnpack-dev; CMake: link lamda::xnnpack)"
#else

#include <xnnpack.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#include <pthreadpool.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../core/analysis.hpp"
#include "../core/ir.hpp"
#include "../core/quant.hpp"
#include "plan.hpp"
#include "dw_avx512.hpp"
#include "pw_avx512.hpp"
#include "wino_avx512.hpp"
#include "qc8_vnni.hpp"
#include "reference.hpp"
#include "reference_int8.hpp"
#include "../data/tensor.hpp"
#include "../data/weights.hpp"

namespace lamda {

struct XnnOptions {
    // 1..1024; 1 runs on the calling thread. More threads than free cores is much slower, not
    // faster (pthreadpool's workers spin): measured 9 ms -> 880 ms with 4 threads on 2 busy cores.
    int threads = 1;
    // Refuse to build a model whose buffers and weights together exceed this (0: no limit), so a
    // huge candidate is a clear error instead of an out-of-memory kill.
    std::int64_t max_memory_bytes = std::int64_t{4} << 30;
    // Give every layer its own buffer, so layer_output(i) holds each layer's result after a run
    // (tests compare them). Off, a buffer is reused once the last reader of its value has run:
    // less memory and a smaller working set (mobilenet_v2 at 1 thread: 8.5 -> 7.5 ms).
    bool keep_intermediates = false;
    // Run in int8: qs8 activations (per-tensor scale and zero point), conv2d/dwconv/batchnorm as
    // qc8 convolutions (per-channel symmetric weight scales), fc as qs8 (one weight scale), add,
    // mul, gap, maxpool, relu/relu6 clamps and sigmoid in int8; layers with no int8 kernel in
    // this XNNPACK (hardswish, hardsigmoid, avgpool, concat, softmax) run in float between
    // convert operators (runs_in_float). input() and output() stay float.
    bool int8 = false;
    // int8: the inputs whose fp32 activation ranges (min/max over them, op by op) set each
    // value's scale and zero point. Empty: one run on fill_timing_input's data, i.e. synthetic
    // scales, right for timing, not for accuracy.
    std::vector<Tensor> calibration{};
    // int8 with a quantized model (`lamda quantize`, exec/reference_int8.hpp's quantize_ptq):
    // its int8 weights, scales and zero points instead of calibrating; the graph must be the
    // model's (batch norms folded), the executor's `weights` the F32 tensors of its float layers,
    // and the layers it lists as float run in float. Then every int8 value is the integer
    // reference's (run_reference_int8), bit for bit on x86 (tests/exec/test_xnnpack_int8.cpp).
    // Read during construction only.
    const QuantizedModel* quantized = nullptr;
    // int8: 1x1, stride-1, ungrouped convolutions run on lamda's own AVX-512 VNNI kernel
    // (exec/qc8_vnni.hpp: the same values, 3 to 7 times XNNPACK's speed there) where the CPU has
    // VNNI; false keeps XNNPACK's qc8 convolution for them (to compare). On by default in
    // optimised builds only (qc8_vnni::built_optimized: at -O0 the kernel is the slower one).
    bool int8_vnni = qc8_vnni::built_optimized;
    // fp32 depthwise convolutions with one filter per channel run on lamda's own AVX-512 kernel
    // where the CPU has AVX-512F and the kernel is the faster (dw_avx512::preferred: larger than
    // 3x3, stride 1, or up to 64 channels; 0.3-0.9x XNNPACK's time there); false keeps XNNPACK's
    // convolution for them all (to compare). On by default in optimised builds only.
    bool depthwise_avx512 = dw_avx512::built_optimized;
    // fp32 pointwise convolutions (1x1, stride 1, no padding, one group) run on lamda's own
    // AVX-512 kernel where the CPU has AVX-512F and the kernel is the faster
    // (pw_avx512::preferred: more than 16 output channels; 0.77-0.90x XNNPACK's time there);
    // false keeps XNNPACK's convolution for them (to compare). On by default in optimised builds.
    bool pointwise_avx512 = detail::built_optimized;
    // fp32 3x3 stride-1 convolutions (one group, no dilation) run on lamda's own Winograd
    // F(2x2, 3x3) kernel where the CPU has AVX-512F and the kernel is the faster
    // (wino_avx512::preferred: 16 or more inputs, more than 16 outputs; 0.39-0.74x XNNPACK's time
    // there); false keeps XNNPACK's convolution for them (to compare). On by default in optimised
    // builds.
    bool winograd_avx512 = detail::built_optimized;
};

// The quantization of an int8 value: real = scale * (q - zero_point).
struct XnnQuant {
    float scale = 1.0f;
    int zero_point = 0;
};

// The asymmetric int8 quantization covering [lo, hi] (widened to hold 0, at least 1e-3 wide).
inline XnnQuant quant_of_range(float lo, float hi) {
    const double l = std::min(0.0, static_cast<double>(lo));
    const double h = std::max(0.0, static_cast<double>(hi));
    const double range = std::max(h - l, 1e-3);
    XnnQuant q;
    q.scale = static_cast<float>(range / 255.0);
    const double zp = std::round(-128.0 - l / static_cast<double>(q.scale));
    q.zero_point = static_cast<int>(std::min(127.0, std::max(-128.0, zp)));
    return q;
}

inline std::int8_t quantize_value(double v, const XnnQuant& q) {
    const double r = std::round(v / static_cast<double>(q.scale)) + q.zero_point;
    return static_cast<std::int8_t>(std::min(127.0, std::max(-128.0, r)));
}

// Bytes the executor allocates for a graph at most: one buffer per layer output plus the
// weights (with buffer reuse it allocates less).
inline std::int64_t executor_memory_bytes(const Graph& graph) {
    std::int64_t bytes = 0;
    for (const Layer& layer : graph.layers) bytes += layer.shape.elements() * 4;
    return bytes + analyze(graph).weight_bytes;
}

namespace detail {
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

inline std::size_t round_up(std::size_t n, std::size_t multiple) noexcept {
    return (n + multiple - 1) / multiple * multiple;
}

// A block of at least `size` bytes aligned to `alignment`, freed with std::free. One of 2 MiB
// or more (packed weights of big layers, the executor's activation arena) is whole 2 MiB pages,
// marked for transparent huge pages where Linux offers them (madvise mode): a 5 MB classifier
// read once per inference otherwise takes a TLB miss every 4 KiB.
inline void* allocate_block(std::size_t alignment, std::size_t size) noexcept {
    void* p = nullptr;
    if (size >= huge_page_bytes) {
        size = round_up(size, huge_page_bytes);
        if (posix_memalign(&p, huge_page_bytes, size) != 0) return nullptr;
#ifdef __linux__
        ::madvise(p, size, MADV_HUGEPAGE);
#endif
        return p;
    }
    if (posix_memalign(&p, std::max(alignment, sizeof(void*)), size) != 0) return nullptr;
    return p;
}

// XNNPACK's allocator, with its aligned blocks from allocate_block.
inline void* xnn_allocate(void*, std::size_t size) { return std::malloc(size); }
inline void* xnn_reallocate(void*, void* p, std::size_t size) { return std::realloc(p, size); }
inline void xnn_deallocate(void*, void* p) { std::free(p); }
inline void* xnn_aligned_allocate(void*, std::size_t alignment, std::size_t size) {
    return allocate_block(alignment, size);
}
inline void xnn_aligned_deallocate(void*, void* p) { std::free(p); }

// Element e of the fixed timing input (fill_timing_input).
inline float timing_value(std::int64_t e) noexcept {
    return static_cast<float>((e * 7919) % 1000) / 1000.0f - 0.5f;
}
inline xnn_allocator xnn_huge_page_allocator{nullptr, xnn_allocate, xnn_reallocate,
                                             xnn_deallocate, xnn_aligned_allocate,
                                             xnn_aligned_deallocate};
}  // namespace detail

inline std::string xnn_status_name(xnn_status s) {
    switch (s) {
    case xnn_status_success: return "success";
    case xnn_status_uninitialized: return "uninitialized";
    case xnn_status_invalid_parameter: return "invalid parameter";
    case xnn_status_invalid_state: return "invalid state";
    case xnn_status_unsupported_parameter: return "unsupported parameter";
    case xnn_status_unsupported_hardware: return "unsupported hardware";
    case xnn_status_out_of_memory: return "out of memory";
    }
    return "unknown status " + std::to_string(static_cast<int>(s));
}

// How each layer was lowered (for reports and debugging).
enum class XnnLowering {
    Operators,  // the layer runs its own XNNPACK operator(s)
    Fused,      // done by an earlier layer's operator(s): folded batchnorm, fused activation
    Alias,      // no work: output aliases the input (input, flatten, dropout)
    Loop,       // a plain loop (1x1 pools)
    Kernel,     // lamda's own kernel: exec/dw_avx512.hpp (fp32 depthwise), exec/pw_avx512.hpp (fp32 1x1),
                // exec/wino_avx512.hpp (fp32 3x3), exec/qc8_vnni.hpp (int8 1x1)
};

class XnnExecutor {
public:
    XnnExecutor(const Graph& graph, const Weights& weights, XnnOptions options = {})
        : impl_(std::make_unique<Impl>()) {
        if (options.threads < 1 || options.threads > 1024)
            throw std::invalid_argument("XnnExecutor: threads must be in 1..1024, got " +
                                        std::to_string(options.threads));
        detail::check_runnable(graph);
        if (options.max_memory_bytes > 0) {
            const std::int64_t needed = executor_memory_bytes(graph);
            if (needed > options.max_memory_bytes)
                throw ExecutorError("the model needs " + std::to_string(needed >> 20) +
                                    " MiB of buffers and weights, more than the limit of " +
                                    std::to_string(options.max_memory_bytes >> 20) + " MiB");
        }
        if (options.quantized) {
            if (const std::optional<Error> e = validate_quantized_model(*options.quantized))
                throw ExecutorError("quantized model: " + e->where.field + ": " + e->message);
            detail::check_int8_params(graph, *options.quantized);
        } else {
            detail::check_weights(graph, weights);
        }
        const xnn_status init = xnn_initialize(&detail::xnn_huge_page_allocator);
        if (init != xnn_status_success)
            throw ExecutorError("XNNPACK: xnn_initialize failed: " + xnn_status_name(init));
        impl_->threads = options.threads;
        impl_->int8_vnni = options.int8_vnni;
        impl_->depthwise_avx512 = options.depthwise_avx512;
        impl_->pointwise_avx512 = options.pointwise_avx512;
        impl_->winograd_avx512 = options.winograd_avx512;
        if (options.threads > 1) {
            impl_->pool = pthreadpool_create(static_cast<std::size_t>(options.threads));
            if (!impl_->pool)
                throw ExecutorError("XNNPACK: cannot create a pool of " +
                                    std::to_string(options.threads) + " threads");
        }
        if (options.quantized) {
            build_int8(graph, weights, options.keep_intermediates, {}, options.quantized);
            return;
        }
        if (!options.int8) {
            build(graph, weights, options.keep_intermediates);
            return;
        }
        // Calibrate: the fp32 executor runs the same plan, and each planned op's output range
        // sets the scale of the int8 value it writes.
        std::vector<std::pair<float, float>> ranges;
        {
            XnnOptions fp = options;
            fp.int8 = false;
            fp.keep_intermediates = false;
            fp.calibration.clear();
            XnnExecutor calibrator(graph, weights, fp);
            ranges = calibrator.op_ranges(options.calibration);
        }
        build_int8(graph, weights, options.keep_intermediates, ranges);
    }

    XnnExecutor(const XnnExecutor&) = delete;
    XnnExecutor& operator=(const XnnExecutor&) = delete;
    XnnExecutor(XnnExecutor&&) noexcept = default;
    XnnExecutor& operator=(XnnExecutor&&) noexcept = default;
    ~XnnExecutor() = default;

    float* input() noexcept { return impl_->input_ptr; }
    Shape input_shape() const noexcept { return impl_->shapes.front(); }
    const float* output() const noexcept { return impl_->output_ptr; }
    Shape output_shape() const noexcept { return impl_->shapes.back(); }
    int threads() const noexcept { return impl_->threads; }

    // Layer i's output after a run, or nullptr where it was fused into a later layer's buffer.
    // Unless built with keep_intermediates, only the input and output stay valid after a run:
    // other layers' buffers are reused.
    const float* layer_output(std::size_t i) const noexcept {
        return i < impl_->ptr.size() ? impl_->ptr[i] : nullptr;
    }
    XnnLowering lowering(std::size_t i) const { return impl_->lowering.at(i); }
    // Whether the executor runs in int8 (XnnOptions::int8).
    bool int8() const noexcept { return impl_->int8; }
    // int8: how many convolutions run on lamda's VNNI kernel (XnnOptions::int8_vnni).
    int int8_vnni_layers() const noexcept { return impl_->vnni_layers; }
    // fp32: how many depthwise convolutions run on lamda's AVX-512 kernel (XnnOptions::depthwise_avx512).
    int depthwise_avx512_layers() const noexcept { return impl_->depthwise_layers; }
    // fp32: how many pointwise convolutions run on lamda's AVX-512 kernel (XnnOptions::pointwise_avx512).
    int pointwise_avx512_layers() const noexcept { return impl_->pointwise_layers; }
    // fp32: how many 3x3 convolutions run on lamda's Winograd kernel (XnnOptions::winograd_avx512).
    int winograd_avx512_layers() const noexcept { return impl_->winograd_layers; }
    // int8: layer i's int8 output and its quantization after a run (nullptr where fused or not
    // kept, as layer_output); whether layer i runs in float between converts.
    const std::int8_t* layer_output_int8(std::size_t i) const noexcept {
        return i < impl_->qptr.size() ? impl_->qptr[i] : nullptr;
    }
    XnnQuant layer_quant(std::size_t i) const { return impl_->quant.at(i); }
    bool runs_in_float(std::size_t i) const noexcept {
        return i < impl_->in_float.size() && impl_->in_float[i] != 0;
    }
    // The fp32 output range of every planned op (plan_ops order) over `inputs` (empty: the
    // timing input), each op's output read right after it ran: the calibration of the int8 path.
    std::vector<std::pair<float, float>> op_ranges(const std::vector<Tensor>& inputs) {
        if (impl_->int8) throw ExecutorError("op_ranges: an fp32 executor is needed");
        const OpPlan& plan = impl_->plan;
        const float inf = std::numeric_limits<float>::infinity();
        std::vector<std::pair<float, float>> r(plan.ops.size(), {inf, -inf});
        auto one_run = [&] {
            std::size_t s = 0;
            for (std::size_t k = 0; k < plan.ops.size(); ++k) {
                while (s < impl_->steps.size() &&
                       impl_->steps[s].plan_op == static_cast<int>(k))
                    run_step(impl_->steps[s++]);
                const auto v = static_cast<std::size_t>(plan.ops[k].output);
                const float* p = impl_->ptr[v];
                if (!p) continue;
                const std::int64_t n = impl_->shapes[v].elements();
                for (std::int64_t e = 0; e < n; ++e) {
                    if (!std::isfinite(p[e]))
                        throw ExecutorError("calibration: layer " + std::to_string(v) +
                                            " gives a value that is not finite");
                    r[k].first = std::min(r[k].first, p[e]);
                    r[k].second = std::max(r[k].second, p[e]);
                }
            }
        };
        if (inputs.empty()) {
            const std::int64_t n = input_shape().elements();
            for (std::int64_t e = 0; e < n; ++e) input()[e] = detail::timing_value(e);
            one_run();
        }
        for (const Tensor& t : inputs) {
            if (t.shape != input_shape() ||
                static_cast<std::int64_t>(t.data.size()) != input_shape().elements())
                throw ExecutorError("calibration input has shape " + to_string(t.shape) +
                                    ", the graph expects " + to_string(input_shape()));
            std::copy(t.data.begin(), t.data.end(), input());
            one_run();
        }
        for (auto& [lo, hi] : r)
            if (lo > hi) lo = hi = 0.0f;
        return r;
    }
    // Bytes of activation buffers allocated (weights not included).
    std::int64_t buffer_bytes() const noexcept { return impl_->buffer_bytes; }
    // Number of XNNPACK operators (and loops) run per inference.
    std::size_t step_count() const noexcept { return impl_->steps.size(); }

    void run() {
        for (Step& s : impl_->steps) run_step(s);
    }

    // Runs once and returns milliseconds per layer, parallel to graph.layers; a fused or aliased
    // layer reads 0 (its cost is in the layer it was fused into).
    std::vector<double> run_timed_per_op() {
        std::vector<double> ms(impl_->ptr.size(), 0.0);
        for (Step& s : impl_->steps) {
            const auto t0 = std::chrono::steady_clock::now();
            run_step(s);
            const auto t1 = std::chrono::steady_clock::now();
            ms[static_cast<std::size_t>(s.layer)] +=
                std::chrono::duration<double, std::milli>(t1 - t0).count();
        }
        return ms;
    }

    // Convenience: copies `in` (shape must match) into the input buffer, runs, returns the output.
    Tensor run(const Tensor& in) {
        if (in.shape != input_shape() ||
            static_cast<std::int64_t>(in.data.size()) != input_shape().elements())
            throw ExecutorError("input has shape " + to_string(in.shape) + ", the graph expects " +
                                to_string(input_shape()));
        std::copy(in.data.begin(), in.data.end(), input());
        run();
        Tensor out(output_shape());
        std::copy(output(), output() + out.data.size(), out.data.begin());
        return out;
    }

private:
    // Vector loads that straddle cache lines are slower: buffers start on a 64-byte boundary.
    static constexpr std::size_t kBufferAlignment = 64;
    struct FreeBlock {
        void operator()(void* p) const noexcept { std::free(p); }
    };
    struct Step {
        int layer = 0;
        int plan_op = -1;  // index into the plan's ops
        xnn_operator_t op = nullptr;
        std::function<void()> loop;  // when op is null
    };
    struct Impl {
        pthreadpool_t pool = nullptr;
        int threads = 1;
        std::unique_ptr<float, FreeBlock> arena;  // every activation buffer
        std::int64_t buffer_bytes = 0;            // the buffers' bytes (without alignment)
        std::vector<float*> ptr;  // per layer; nullptr when fused away
        std::vector<Shape> shapes;
        std::vector<XnnLowering> lowering;
        std::vector<Step> steps;
        OpPlan plan;              // what was built
        int current_op = -1;      // the planned op being built
        float* input_ptr = nullptr;
        const float* output_ptr = nullptr;
        // int8 only: the int8 values (one arena, laid out as the fp32 buffers), their
        // quantization, the float input and output, and the float buffers of layers run in float.
        bool int8 = false;
        std::unique_ptr<std::int8_t, FreeBlock> qarena;
        std::unique_ptr<float, FreeBlock> float_in, float_out;
        std::vector<std::unique_ptr<float, FreeBlock>> scratch;
        std::vector<std::int8_t*> qptr;
        std::vector<XnnQuant> quant;
        std::vector<char> in_float;
        bool int8_vnni = qc8_vnni::built_optimized;  // XnnOptions::int8_vnni
        int vnni_layers = 0;    // convolutions on exec/qc8_vnni.hpp's kernel
        bool depthwise_avx512 = dw_avx512::built_optimized;  // XnnOptions::depthwise_avx512
        int depthwise_layers = 0;  // depthwise convolutions on exec/dw_avx512.hpp's kernel
        bool pointwise_avx512 = detail::built_optimized;  // XnnOptions::pointwise_avx512
        int pointwise_layers = 0;  // pointwise convolutions on exec/pw_avx512.hpp's kernel
        bool winograd_avx512 = detail::built_optimized;  // XnnOptions::winograd_avx512
        int winograd_layers = 0;  // 3x3 convolutions on exec/wino_avx512.hpp's kernel
        // Scalars read by add_nd/multiply_nd at run time (padded: XNNPACK may read past the end).
        float three[8] = {3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f};
        float sixth[8] = {1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6,
                          1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6};

        Impl() = default;
        Impl(const Impl&) = delete;
        Impl& operator=(const Impl&) = delete;
        ~Impl() {
            for (Step& s : steps)
                if (s.op) xnn_delete_operator(s.op);
            if (pool) pthreadpool_destroy(pool);
        }
    };
    std::unique_ptr<Impl> impl_;

    void run_step(Step& s) {
        if (s.op) {
            const xnn_status st = xnn_run_operator(s.op, impl_->pool);
            if (st != xnn_status_success)
                throw ExecutorError("XNNPACK: running layer " + std::to_string(s.layer) +
                                    " failed: " + xnn_status_name(st));
        } else {
            s.loop();
        }
    }

    // ---- construction helpers ----

    static std::string where(const Layer& l) {
        return std::string(op_name(l.op)) + " layer '" + l.name + "'";
    }

    static void check(xnn_status st, const Layer& l, const char* fn) {
        if (st != xnn_status_success)
            throw ExecutorError("XNNPACK: " + where(l) + ": " + fn + " failed: " +
                                xnn_status_name(st));
    }

    // Adds an operator step for layer `index`; takes ownership at once so a later failure frees it.
    void add_op(int index, xnn_operator_t op) {
        Step s;
        s.layer = index;
        s.plan_op = impl_->current_op;
        s.op = op;
        impl_->steps.push_back(std::move(s));
    }

    static std::pair<float, float> clamp_of(Activation a) {
        constexpr float inf = std::numeric_limits<float>::infinity();
        if (a == Activation::Relu) return {0.0f, inf};
        if (a == Activation::Relu6) return {0.0f, 6.0f};
        if (a == Activation::HardSigmoid) return {0.0f, 1.0f};  // after folding the affine part
        return {-inf, inf};
    }

    // Unary elementwise steps, input -> output (may be the same buffer): relu, relu6, hardswish,
    // sigmoid, hardsigmoid. `a == None` adds nothing.
    void add_activation(int index, const Layer& l, Activation a, const float* in, float* out,
                        const Shape& s) {
        if (a == Activation::None) return;
        const auto C = static_cast<std::size_t>(s.c);
        const auto pixels = static_cast<std::size_t>(s.h * s.w);
        xnn_operator_t op = nullptr;
        switch (a) {
        case Activation::Relu:
        case Activation::Relu6: {
            const auto [lo, hi] = clamp_of(a);
            check(xnn_create_clamp_nc_f32(C, C, C, lo, hi, 0, &op), l, "xnn_create_clamp_nc_f32");
            add_op(index, op);
            check(xnn_setup_clamp_nc_f32(op, pixels, in, out, impl_->pool), l,
                  "xnn_setup_clamp_nc_f32");
            return;
        }
        case Activation::HardSwish:
            check(xnn_create_hardswish_nc_f32(C, C, C, 0, &op), l, "xnn_create_hardswish_nc_f32");
            add_op(index, op);
            check(xnn_setup_hardswish_nc_f32(op, pixels, in, out, impl_->pool), l,
                  "xnn_setup_hardswish_nc_f32");
            return;
        case Activation::Sigmoid:
            check(xnn_create_sigmoid_nc_f32(C, C, C, 0, &op), l, "xnn_create_sigmoid_nc_f32");
            add_op(index, op);
            check(xnn_setup_sigmoid_nc_f32(op, pixels, in, out, impl_->pool), l,
                  "xnn_setup_sigmoid_nc_f32");
            return;
        case Activation::HardSigmoid: {
            // relu6(x + 3) / 6
            const std::size_t dims[1] = {static_cast<std::size_t>(s.elements())};
            const std::size_t one[1] = {1};
            check(xnn_create_add_nd_f32(0.0f, 6.0f, 0, &op), l, "xnn_create_add_nd_f32");
            add_op(index, op);
            check(xnn_setup_add_nd_f32(op, 1, dims, 1, one, in, impl_->three, out, impl_->pool),
                  l, "xnn_setup_add_nd_f32");
            op = nullptr;
            const float inf = std::numeric_limits<float>::infinity();
            check(xnn_create_multiply_nd_f32(-inf, inf, 0, &op), l, "xnn_create_multiply_nd_f32");
            add_op(index, op);
            check(xnn_setup_multiply_nd_f32(op, 1, dims, 1, one, out, impl_->sixth, out,
                                            impl_->pool),
                  l, "xnn_setup_multiply_nd_f32");
            return;
        }
        case Activation::None: return;
        }
    }

    // Assigns impl_->ptr from the plan's buffers (plan_buffers, exec/plan.hpp): one buffer per
    // materialised value, reused once its last reader has run unless keep_intermediates.
    void allocate_buffers(const Graph& g, const BufferPlan& bp) {
        const std::size_t n = g.layers.size();
        // One arena for all buffers, each on a cache line (allocate_block puts a large arena on
        // huge pages: early layers of a 224x224 net stream megabytes).
        std::vector<std::size_t> offset;
        std::size_t total = 0;
        for (std::int64_t floats : bp.slot_floats) {
            offset.push_back(total);
            total += detail::round_up(static_cast<std::size_t>(floats) * sizeof(float), kBufferAlignment);
        }
        auto* arena = static_cast<float*>(detail::allocate_block(kBufferAlignment, total));
        if (!arena) throw std::bad_alloc();
        impl_->arena.reset(arena);
        std::fill(arena, arena + total / sizeof(float), 0.0f);  // a fresh output is defined
        std::vector<float*> slot_ptr;
        for (std::size_t off : offset) slot_ptr.push_back(arena + off / sizeof(float));
        for (std::size_t i = 0; i < n; ++i) {
            const int v = bp.value_of[i];
            if (v < 0) continue;
            // Layer i's own output lives in its value's buffer (for a fused chain, at the tail).
            impl_->ptr[i] = slot_ptr[static_cast<std::size_t>(bp.slot_of[static_cast<std::size_t>(v)])];
        }
        impl_->buffer_bytes = bp.total_floats() * static_cast<std::int64_t>(sizeof(float));
    }

    // Runs the operator plan (plan_ops, exec/plan.hpp): the one lowering the latency model
    // predicts from. Each planned op becomes its XNNPACK operator(s) or a loop.
    void build(const Graph& g, const Weights& w, bool keep_intermediates) {
        const std::size_t n = g.layers.size();
        impl_->ptr.assign(n, nullptr);
        impl_->shapes.resize(n);
        impl_->lowering.assign(n, XnnLowering::Operators);
        for (std::size_t i = 0; i < n; ++i) impl_->shapes[i] = g.layers[i].shape;

        // XNNPACK kernels may read up to XNN_EXTRA_BYTES past the end of an input.
        const OpPlan plan = plan_ops(g, !keep_intermediates, XNN_EXTRA_BYTES / sizeof(float) + 4);
        allocate_buffers(g, plan.buffers);
        for (std::size_t j = 0; j < n; ++j)
            if (plan.fusion.absorbed_by[j] >= 0) impl_->lowering[j] = XnnLowering::Fused;

        for (std::size_t k = 0; k < plan.ops.size(); ++k) {
            const PlannedOp& op = plan.ops[k];
            impl_->current_op = static_cast<int>(k);
            const auto i = static_cast<std::size_t>(op.layer);
            if (op.kind == PlannedKind::Alias) {
                if (plan.buffers.value_of[i] >= 0) impl_->lowering[i] = XnnLowering::Alias;
                continue;
            }
            std::vector<const float*> in;
            for (int v : op.inputs) in.push_back(impl_->ptr[static_cast<std::size_t>(v)]);
            build_op_f32(g, w, op, in, impl_->ptr[static_cast<std::size_t>(op.output)]);
        }
        impl_->plan = plan;
        impl_->input_ptr = impl_->ptr.front();
        impl_->output_ptr = impl_->ptr.back();
    }

    // The XNNPACK fp32 operator(s) of one planned op (not Alias), reading `in` (parallel to
    // op.inputs) and writing `out`.
    void build_op_f32(const Graph& g, const Weights& w, const PlannedOp& op,
                      const std::vector<const float*>& in, float* out) {
        const auto i = static_cast<std::size_t>(op.layer);
        const Layer& l = g.layers[i];
        const int idx = op.layer;
        auto in_ptr = [&](std::size_t k) -> const float* { return in[k]; };
        auto in_shape = [&](std::size_t k) -> const Shape& {
            return g.layers[static_cast<std::size_t>(op.inputs[k])].shape;
        };
        {
            switch (op.kind) {
            case PlannedKind::Alias: break;
            case PlannedKind::Conv:
            case PlannedKind::DepthwiseConv:
            case PlannedKind::FullyConnected:
            case PlannedKind::ChannelAffine:
                build_affine(g, w, idx, op.folded_bn, op.act, in_ptr(0), out);
                break;
            case PlannedKind::MaxPool:
            case PlannedKind::AvgPool:
            case PlannedKind::StridedCopy:
                build_pool(idx, l, op.kind == PlannedKind::StridedCopy, in_shape(0), in_ptr(0), out);
                break;
            case PlannedKind::GlobalAvgPool: {
                const Shape s = in_shape(0);
                const auto C = static_cast<std::size_t>(s.c);
                const float inf = std::numeric_limits<float>::infinity();
                xnn_operator_t xop = nullptr;
                check(xnn_create_global_average_pooling_nwc_f32(C, C, C, -inf, inf, 0, &xop), l,
                      "xnn_create_global_average_pooling_nwc_f32");
                add_op(idx, xop);
                check(xnn_setup_global_average_pooling_nwc_f32(
                          xop, 1, static_cast<std::size_t>(s.h * s.w), in_ptr(0), out, impl_->pool),
                      l, "xnn_setup_global_average_pooling_nwc_f32");
                break;
            }
            case PlannedKind::Add: {
                const std::size_t dims[1] = {static_cast<std::size_t>(l.shape.elements())};
                const std::size_t k_last = op.inputs.size() - 1;
                for (std::size_t k = 1; k <= k_last; ++k) {
                    const auto [lo, hi] = clamp_of(k == k_last ? op.act : Activation::None);
                    xnn_operator_t xop = nullptr;
                    check(xnn_create_add_nd_f32(lo, hi, 0, &xop), l, "xnn_create_add_nd_f32");
                    add_op(idx, xop);
                    const float* a_in = k == 1 ? in_ptr(0) : out;
                    check(xnn_setup_add_nd_f32(xop, 1, dims, 1, dims, a_in, in_ptr(k), out,
                                               impl_->pool),
                          l, "xnn_setup_add_nd_f32");
                }
                break;
            }
            case PlannedKind::Concat: {
                const auto pixels = static_cast<std::size_t>(l.shape.h * l.shape.w);
                const auto total = static_cast<std::size_t>(l.shape.c);
                std::size_t offset = 0;
                for (std::size_t k = 0; k < op.inputs.size(); ++k) {
                    const auto c = static_cast<std::size_t>(in_shape(k).c);
                    xnn_operator_t xop = nullptr;
                    check(xnn_create_copy_nc_x32(c, c, total, 0, &xop), l, "xnn_create_copy_nc_x32");
                    add_op(idx, xop);
                    check(xnn_setup_copy_nc_x32(xop, pixels, in_ptr(k), out + offset, impl_->pool),
                          l, "xnn_setup_copy_nc_x32");
                    offset += c;
                }
                break;
            }
            case PlannedKind::Mul: {
                const Shape a = in_shape(0), b = in_shape(1);
                const std::size_t da[3] = {static_cast<std::size_t>(a.h),
                                           static_cast<std::size_t>(a.w),
                                           static_cast<std::size_t>(a.c)};
                const std::size_t db[3] = {static_cast<std::size_t>(b.h),
                                           static_cast<std::size_t>(b.w),
                                           static_cast<std::size_t>(b.c)};
                const float inf = std::numeric_limits<float>::infinity();
                xnn_operator_t xop = nullptr;
                check(xnn_create_multiply_nd_f32(-inf, inf, 0, &xop), l, "xnn_create_multiply_nd_f32");
                add_op(idx, xop);
                check(xnn_setup_multiply_nd_f32(xop, 3, da, 3, db, in_ptr(0), in_ptr(1), out,
                                                impl_->pool),
                      l, "xnn_setup_multiply_nd_f32");
                break;
            }
            case PlannedKind::Clamp:
            case PlannedKind::HardSwish:
            case PlannedKind::Sigmoid:
            case PlannedKind::HardSigmoid:
                add_activation(idx, l, op.act, in_ptr(0), out,
                               g.layers[static_cast<std::size_t>(op.output)].shape);
                break;
            case PlannedKind::Softmax: {
                const auto C = static_cast<std::size_t>(l.shape.c);
                xnn_operator_t xop = nullptr;
                check(xnn_create_softmax_nc_f32(C, C, C, 0, &xop), l, "xnn_create_softmax_nc_f32");
                add_op(idx, xop);
                check(xnn_setup_softmax_nc_f32(xop, static_cast<std::size_t>(l.shape.h * l.shape.w),
                                               in_ptr(0), out, impl_->pool),
                      l, "xnn_setup_softmax_nc_f32");
                break;
            }
            }
        }
    }

    // The weights of a conv2d, dwconv, fc, or standalone batchnorm (as a 1x1 depthwise
    // convolution) in XNNPACK's layout, with an optional batchnorm folded in and hardsigmoid's
    // affine part folded in; and the convolution's geometry.
    struct AffineSpec {
        std::vector<float> kernel;   // one row of per_out values per output channel
        std::vector<double> bias;    // per output channel
        bool has_bias = false;
        std::size_t per_out = 0, oc = 0;
        bool fc = false;
        std::size_t ic = 0;          // fc: input features
        Shape is;                    // input shape
        std::uint32_t groups = 0, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
        std::size_t gic = 0, goc = 0;
        std::array<int, 4> pads{0, 0, 0, 0};
    };

    static AffineSpec prepare_affine(const Graph& g, const Weights& w, int idx, int bn, Activation a) {
        const Layer& l = g.layers[static_cast<std::size_t>(idx)];
        AffineSpec sp;
        const Shape is = g.layers[static_cast<std::size_t>(l.inputs[0])].shape;
        sp.is = is;
        const Layer& last = bn >= 0 ? g.layers[static_cast<std::size_t>(bn)] : l;
        const Shape os = last.shape;
        const auto oc = static_cast<std::size_t>(l.op == OpKind::FullyConnected ? l.out_channels : os.c);
        sp.oc = oc;

        // Weights in XNNPACK's layout, one row of `per_out` values per output channel.
        std::vector<float>& kernel = sp.kernel;
        std::vector<double>& bias = sp.bias;
        bias.assign(oc, 0.0);
        bool& has_bias = sp.has_bias;
        std::size_t& per_out = sp.per_out;
        auto bn_params = [&](const Layer& b, std::vector<double>& scale, std::vector<double>& shift) {
            const auto& gamma = w.at(b.name + ".weight").data;
            const auto& beta = w.at(b.name + ".bias").data;
            const auto& mean = w.at(b.name + ".running_mean").data;
            const auto& var = w.at(b.name + ".running_var").data;
            scale.resize(gamma.size());
            shift.resize(gamma.size());
            for (std::size_t c = 0; c < gamma.size(); ++c) {
                scale[c] = gamma[c] / std::sqrt(static_cast<double>(var[c]) + b.eps);
                shift[c] = beta[c] - mean[c] * scale[c];
            }
        };
        if (l.op == OpKind::BatchNorm) {
            std::vector<double> scale, shift;
            bn_params(l, scale, shift);
            per_out = 1;
            kernel.assign(scale.begin(), scale.end());
            bias = shift;
            has_bias = true;
        } else {
            const WeightTensor& wt = w.at(l.name + ".weight");
            if (l.bias) {
                const auto& b = w.at(l.name + ".bias").data;
                bias.assign(b.begin(), b.end());
                has_bias = true;
            }
            if (l.op == OpKind::Conv2d) {
                // OIHW -> OHWI
                const auto cig = static_cast<std::size_t>(is.c / l.groups);
                const auto kh = static_cast<std::size_t>(l.kernel_h);
                const auto kw = static_cast<std::size_t>(l.kernel_w);
                per_out = kh * kw * cig;
                kernel.resize(oc * per_out);
                for (std::size_t o = 0; o < oc; ++o)
                    for (std::size_t ic = 0; ic < cig; ++ic)
                        for (std::size_t y = 0; y < kh; ++y)
                            for (std::size_t x = 0; x < kw; ++x)
                                kernel[((o * kh + y) * kw + x) * cig + ic] =
                                    wt.data[((o * cig + ic) * kh + y) * kw + x];
            } else {
                // dwconv [C*m][1][kh][kw] and fc [out][in] are already XNNPACK's layout.
                kernel = wt.data;
                per_out = kernel.size() / oc;
            }
            if (bn >= 0) {
                std::vector<double> scale, shift;
                bn_params(last, scale, shift);
                for (std::size_t o = 0; o < oc; ++o) {
                    for (std::size_t k = 0; k < per_out; ++k)
                        kernel[o * per_out + k] =
                            static_cast<float>(kernel[o * per_out + k] * scale[o]);
                    bias[o] = bias[o] * scale[o] + shift[o];
                }
                has_bias = true;
            }
        }
        if (a == Activation::HardSigmoid) {
            // relu6(y + 3) / 6 = clamp(y/6 + 1/2, 0, 1): scale the affine map, clamp to [0, 1].
            for (float& k : kernel) k = static_cast<float>(k / 6.0);
            for (double& b : bias) b = (b + 3.0) / 6.0;
            has_bias = true;
        }
        if (l.op == OpKind::FullyConnected) {
            sp.fc = true;
            sp.ic = static_cast<std::size_t>(is.elements());
            return sp;
        }
        if (l.op == OpKind::BatchNorm) {
            sp.groups = static_cast<std::uint32_t>(is.c);
            sp.gic = sp.goc = 1;
        } else {
            sp.kh = static_cast<std::uint32_t>(l.kernel_h);
            sp.kw = static_cast<std::uint32_t>(l.kernel_w);
            sp.sh = static_cast<std::uint32_t>(l.stride_h);
            sp.sw = static_cast<std::uint32_t>(l.stride_w);
            sp.dh = static_cast<std::uint32_t>(l.dilation_h);
            sp.dw = static_cast<std::uint32_t>(l.dilation_w);
            sp.pads = l.pads;
            if (l.op == OpKind::Conv2d) {
                sp.groups = static_cast<std::uint32_t>(l.groups);
                sp.gic = static_cast<std::size_t>(is.c / l.groups);
                sp.goc = static_cast<std::size_t>(l.out_channels / l.groups);
            } else {
                sp.groups = static_cast<std::uint32_t>(is.c);
                sp.gic = 1;
                sp.goc = static_cast<std::size_t>(l.multiplier);
            }
        }
        for (int p : sp.pads)
            if (p < 0) throw ExecutorError("XNNPACK: " + where(l) + ": negative padding");
        return sp;
    }

    // conv2d, dwconv, fc, or a standalone batchnorm (as a 1x1 depthwise convolution), with an
    // optional batchnorm folded in and an activation fused into it (relu, relu6, hardsigmoid).
    void build_affine(const Graph& g, const Weights& w, int idx, int bn, Activation a,
                      const float* in, float* out) {
        const Layer& l = g.layers[static_cast<std::size_t>(idx)];
        const AffineSpec sp = prepare_affine(g, w, idx, bn, a);
        std::vector<float> bias_f(sp.bias.begin(), sp.bias.end());
        const float* bias_ptr = sp.has_bias ? bias_f.data() : nullptr;
        const auto [lo, hi] = clamp_of(a);  // the plan fuses only relu, relu6, hardsigmoid
        const std::size_t oc = sp.oc;

        xnn_operator_t op = nullptr;
        if (sp.fc) {
            const std::size_t ic = sp.ic;
            check(xnn_create_fully_connected_nc_f32(ic, oc, ic, oc, sp.kernel.data(), bias_ptr, lo,
                                                    hi, 0, &op),
                  l, "xnn_create_fully_connected_nc_f32");
            add_op(idx, op);
            check(xnn_setup_fully_connected_nc_f32(op, 1, in, out, impl_->pool), l,
                  "xnn_setup_fully_connected_nc_f32");
        } else {
            const Shape is = sp.is;
            // XNNPACK validates the parameters in every case (the same refusals with or without
            // lamda's depthwise kernel); a multiplier-1 dwconv then runs on that kernel.
            check(xnn_create_convolution2d_nhwc_f32(
                      static_cast<std::uint32_t>(sp.pads[0]), static_cast<std::uint32_t>(sp.pads[3]),
                      static_cast<std::uint32_t>(sp.pads[2]), static_cast<std::uint32_t>(sp.pads[1]),
                      sp.kh, sp.kw, sp.sh, sp.sw, sp.dh, sp.dw, sp.groups, sp.gic, sp.goc,
                      static_cast<std::size_t>(is.c), oc, sp.kernel.data(), bias_ptr, lo, hi, 0, &op),
                  l, "xnn_create_convolution2d_nhwc_f32");
            if (l.op == OpKind::DepthwiseConv2d && sp.goc == 1 && impl_->depthwise_avx512 && dw_avx512::available() &&
                sp.kh <= static_cast<std::uint32_t>(DepthwiseF32::kMaxFilterRows) &&
                dw_avx512::preferred(static_cast<int>(sp.is.c), static_cast<int>(sp.kh), static_cast<int>(sp.kw),
                                     static_cast<int>(sp.sw))) {
                xnn_delete_operator(op);
                add_depthwise(idx, l, sp, bias_ptr, lo, hi, in, out);
                return;
            }
            if (l.op == OpKind::Conv2d && impl_->pointwise_avx512 && pw_avx512::available() &&
                pw_avx512::takes(static_cast<int>(sp.kh), static_cast<int>(sp.kw), static_cast<int>(sp.sh),
                                 static_cast<int>(sp.sw), sp.pads != std::array<int, 4>{0, 0, 0, 0},
                                 static_cast<int>(sp.groups), static_cast<int>(oc))) {
                xnn_delete_operator(op);
                add_pointwise(idx, sp, bias_ptr, lo, hi, in, out);
                return;
            }
            if (l.op == OpKind::Conv2d && impl_->winograd_avx512 && wino_avx512::available() &&
                wino_avx512::takes(static_cast<int>(sp.kh), static_cast<int>(sp.kw), static_cast<int>(sp.sh),
                                   static_cast<int>(sp.sw), static_cast<int>(sp.dh), static_cast<int>(sp.dw),
                                   static_cast<int>(sp.groups), static_cast<int>(sp.gic), static_cast<int>(oc))) {
                xnn_delete_operator(op);
                add_winograd(idx, l, sp, bias_ptr, lo, hi, in, out);
                return;
            }
            add_op(idx, op);
            check(xnn_setup_convolution2d_nhwc_f32(op, 1, static_cast<std::size_t>(is.h),
                                                   static_cast<std::size_t>(is.w), in, out,
                                                   impl_->pool),
                  l, "xnn_setup_convolution2d_nhwc_f32");
        }
    }

    // unit(0) .. unit(units - 1) over the thread pool, or in order on this thread where there is no
    // pool or one unit: how lamda's own kernels' steps split their independent pieces of work.
    template <class Unit>
    static void run_units(pthreadpool_t pool, std::size_t units, const Unit& unit) {
        if (!pool || units < 2) {
            for (std::size_t i = 0; i < units; ++i) unit(i);
            return;
        }
        pthreadpool_parallelize_1d(
            pool, [](void* context, std::size_t i) { (*static_cast<const Unit*>(context))(i); },
            const_cast<void*>(static_cast<const void*>(&unit)), units, 0);
    }

    // A multiplier-1 depthwise convolution on exec/dw_avx512.hpp's kernel, its output rows split
    // over the thread pool.
    void add_depthwise(int idx, const Layer& l, const AffineSpec& sp, const float* bias, float lo, float hi,
                       const float* in, float* out) {
        DepthwiseGeometry geo;
        geo.channels = static_cast<int>(sp.is.c);
        geo.in_h = static_cast<int>(sp.is.h);
        geo.in_w = static_cast<int>(sp.is.w);
        geo.kh = static_cast<int>(sp.kh);
        geo.kw = static_cast<int>(sp.kw);
        geo.sh = static_cast<int>(sp.sh);
        geo.sw = static_cast<int>(sp.sw);
        geo.dh = static_cast<int>(sp.dh);
        geo.dw = static_cast<int>(sp.dw);
        for (std::size_t k = 0; k < 4; ++k) geo.pads[k] = static_cast<int>(sp.pads[k]);
        if (geo.out_h() != l.shape.h || geo.out_w() != l.shape.w)
            throw ExecutorError("XNNPACK: " + where(l) + ": the depthwise kernel gives " + std::to_string(geo.out_h()) +
                                "x" + std::to_string(geo.out_w()) + ", not the inferred " + to_string(l.shape));
        auto dw = std::make_shared<const DepthwiseF32>(geo, sp.kernel.data(), bias, lo, hi);
        impl_->lowering[static_cast<std::size_t>(idx)] = XnnLowering::Kernel;
        Step s;
        s.layer = idx;
        s.plan_op = impl_->current_op;
        s.loop = [dw, in, out, pool = impl_->pool] {
            run_units(pool, static_cast<std::size_t>(dw->output_rows()), [&](std::size_t y) {
                dw->run_rows(in, out, static_cast<int>(y), static_cast<int>(y) + 1);
            });
        };
        impl_->steps.push_back(std::move(s));
        ++impl_->depthwise_layers;
    }

    // A pointwise convolution on exec/pw_avx512.hpp's kernel: panels of output channels by chunks
    // of pixels over the thread pool.
    void add_pointwise(int idx, const AffineSpec& sp, const float* bias, float lo, float hi, const float* in,
                       float* out) {
        auto pw = std::make_shared<const PointwiseF32>(static_cast<int>(sp.gic), static_cast<int>(sp.oc),
                                                       sp.kernel.data(), bias, lo, hi);
        const auto pixels = static_cast<std::size_t>(sp.is.h * sp.is.w);
        impl_->lowering[static_cast<std::size_t>(idx)] = XnnLowering::Kernel;
        Step s;
        s.layer = idx;
        s.plan_op = impl_->current_op;
        s.loop = [pw, in, out, pixels, pool = impl_->pool] {
            // Panel-major, like run(): a thread's run of units reuses one panel's weights.
            const std::size_t chunks = PointwiseF32::chunks(pixels);
            run_units(pool, static_cast<std::size_t>(pw->panels()) * chunks, [&](std::size_t unit) {
                pw->run_unit(in, out, pixels, static_cast<int>(unit / chunks), unit % chunks);
            });
        };
        impl_->steps.push_back(std::move(s));
        ++impl_->pointwise_layers;
    }

    // A 3x3 stride-1 convolution on exec/wino_avx512.hpp's kernel: blocks of output tiles (split
    // by output channels where there are fewer blocks than threads) over the thread pool.
    void add_winograd(int idx, const Layer& l, const AffineSpec& sp, const float* bias, float lo, float hi,
                      const float* in, float* out) {
        WinogradGeometry geo;
        geo.in_channels = static_cast<int>(sp.gic);
        geo.out_channels = static_cast<int>(sp.oc);
        geo.in_h = static_cast<int>(sp.is.h);
        geo.in_w = static_cast<int>(sp.is.w);
        geo.pad_top = static_cast<int>(sp.pads[0]);
        geo.pad_left = static_cast<int>(sp.pads[1]);
        geo.out_h = static_cast<int>(l.shape.h);
        geo.out_w = static_cast<int>(l.shape.w);
        if (geo.out_h != geo.in_h + geo.pad_top + static_cast<int>(sp.pads[2]) - 2 ||
            geo.out_w != geo.in_w + geo.pad_left + static_cast<int>(sp.pads[3]) - 2)
            throw ExecutorError("XNNPACK: " + where(l) + ": a 3x3 stride-1 convolution of " + to_string(sp.is) +
                                " cannot give the inferred " + to_string(l.shape));
        auto conv = std::make_shared<const Winograd3x3F32>(geo, sp.kernel.data(), bias, lo, hi);
        const std::size_t threads = impl_->pool ? pthreadpool_get_threads_count(impl_->pool) : 1;
        // Blocks of 60 tiles. Fewer blocks than threads (a small map): split each block's output
        // channels into groups of panels, so that each thread streams only its share of the
        // transformed filters (with a single panel, the tiles into smaller blocks instead).
        std::size_t block_tiles = wino_avx512::kBlockTiles;
        int groups = 1;
        if (const std::size_t whole = conv->blocks(block_tiles); whole < threads) {
            if (conv->panels() > 1)
                groups = static_cast<int>(
                    std::min<std::size_t>(static_cast<std::size_t>(conv->panels()), (threads + whole - 1) / whole));
            else
                block_tiles = std::max<std::size_t>(1, (conv->tiles() + threads - 1) / threads);
        }
        const std::size_t blocks = conv->blocks(block_tiles);
        impl_->lowering[static_cast<std::size_t>(idx)] = XnnLowering::Kernel;
        Step s;
        s.layer = idx;
        s.plan_op = impl_->current_op;
        s.loop = [conv, in, out, block_tiles, blocks, groups, pool = impl_->pool] {
            const auto g = static_cast<std::size_t>(groups);
            run_units(pool, blocks * g, [&](std::size_t unit) {
                conv->run_unit(in, out, unit / g, block_tiles, static_cast<int>(unit % g), groups);
            });
        };
        impl_->steps.push_back(std::move(s));
        ++impl_->winograd_layers;
    }

    // A pool's padding (top, left, bottom, right) for XNNPACK's floor division, checked.
    static std::array<std::int64_t, 4> pool_padding(const Layer& l, const Shape& is) {
        const Shape os = l.shape;
        std::array<std::int64_t, 4> p{l.pads[0], l.pads[1], l.pads[2], l.pads[3]};
        // A window lying entirely in the padding has no defined value in XNNPACK.
        if (l.kernel_h <= p[0] || l.kernel_w <= p[1] ||
            (os.h - 1) * l.stride_h - p[0] >= is.h || (os.w - 1) * l.stride_w - p[1] >= is.w)
            throw ExecutorError("XNNPACK: " + where(l) +
                                ": a pooling window lies entirely in the padding");
        // ceil=true (or any excess): pad the bottom/right so that floor division gives os.
        p[2] = std::max<std::int64_t>(p[2], (os.h - 1) * l.stride_h + l.kernel_h - is.h - p[0]);
        p[3] = std::max<std::int64_t>(p[3], (os.w - 1) * l.stride_w + l.kernel_w - is.w - p[1]);
        const std::int64_t xh = (is.h + p[0] + p[2] - l.kernel_h) / l.stride_h + 1;
        const std::int64_t xw = (is.w + p[1] + p[3] - l.kernel_w) / l.stride_w + 1;
        if (xh != os.h || xw != os.w)
            throw ExecutorError("XNNPACK: " + where(l) + ": padding " + std::to_string(p[0]) + "," +
                                std::to_string(p[1]) + "," + std::to_string(p[2]) + "," +
                                std::to_string(p[3]) + " gives " + std::to_string(xh) + "x" +
                                std::to_string(xw) + ", not the inferred " + to_string(os));
        return p;
    }

    void build_pool(int idx, const Layer& l, bool strided_copy, const Shape& is, const float* in,
                    float* out) {
        const Shape os = l.shape;
        const std::array<std::int64_t, 4> p = pool_padding(l, is);
        const auto C = static_cast<std::size_t>(is.c);
        if (strided_copy) {
            // XNNPACK rejects 1x1 pooling; it is a strided subsample (every window in bounds).
            impl_->lowering[static_cast<std::size_t>(idx)] = XnnLowering::Loop;
            Step s;
            s.layer = idx;
            s.plan_op = impl_->current_op;
            const std::int64_t sh = l.stride_h, sw = l.stride_w, pt = p[0], pl = p[1];
            s.loop = [in, out, is, os, sh, sw, pt, pl] {
                for (std::int64_t y = 0; y < os.h; ++y)
                    for (std::int64_t x = 0; x < os.w; ++x) {
                        const std::int64_t iy = y * sh - pt, ix = x * sw - pl;
                        std::copy(in + (iy * is.w + ix) * is.c, in + (iy * is.w + ix + 1) * is.c,
                                  out + (y * os.w + x) * os.c);
                    }
            };
            impl_->steps.push_back(std::move(s));
            return;
        }
        const float inf = std::numeric_limits<float>::infinity();
        xnn_operator_t op = nullptr;
        const auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
        if (l.op == OpKind::MaxPool) {
            check(xnn_create_max_pooling2d_nhwc_f32(u(p[0]), u(p[3]), u(p[2]), u(p[1]),
                                                    u(l.kernel_h), u(l.kernel_w), u(l.stride_h),
                                                    u(l.stride_w), 1, 1, C, C, C, -inf, inf, 0, &op),
                  l, "xnn_create_max_pooling2d_nhwc_f32");
            add_op(idx, op);
            check(xnn_setup_max_pooling2d_nhwc_f32(op, 1, static_cast<std::size_t>(is.h),
                                                   static_cast<std::size_t>(is.w), in, out,
                                                   impl_->pool),
                  l, "xnn_setup_max_pooling2d_nhwc_f32");
        } else {
            check(xnn_create_average_pooling2d_nhwc_f32(u(p[0]), u(p[3]), u(p[2]), u(p[1]),
                                                        u(l.kernel_h), u(l.kernel_w),
                                                        u(l.stride_h), u(l.stride_w), C, C, C,
                                                        -inf, inf, 0, &op),
                  l, "xnn_create_average_pooling2d_nhwc_f32");
            add_op(idx, op);
            check(xnn_setup_average_pooling2d_nhwc_f32(op, 1, static_cast<std::size_t>(is.h),
                                                       static_cast<std::size_t>(is.w), in, out,
                                                       impl_->pool),
                  l, "xnn_setup_average_pooling2d_nhwc_f32");
        }
    }

    // ---- the int8 path ----

    float* new_scratch(std::int64_t floats) {
        const std::size_t bytes = detail::round_up(
            static_cast<std::size_t>(floats) * sizeof(float) + XNN_EXTRA_BYTES, kBufferAlignment);
        auto* p = static_cast<float*>(detail::allocate_block(kBufferAlignment, bytes));
        if (!p) throw std::bad_alloc();
        std::fill(p, p + bytes / sizeof(float), 0.0f);
        impl_->scratch.emplace_back(p);
        return p;
    }

    // XNNPACK refused an int8 operator's parameters (e.g. a requantization scale out of its
    // range): the op runs in float instead. Other failures throw.
    static bool int8_ok(xnn_status st, const Layer& l, const char* fn) {
        if (st == xnn_status_success) return true;
        if (st == xnn_status_invalid_parameter || st == xnn_status_unsupported_parameter ||
            st == xnn_status_unsupported_hardware)
            return false;
        check(st, l, fn);
        return false;
    }

    void drop_steps_from(std::size_t mark) {
        while (impl_->steps.size() > mark) {
            if (impl_->steps.back().op) xnn_delete_operator(impl_->steps.back().op);
            impl_->steps.pop_back();
        }
    }

    // The int8 bounds of an output clamp (relu, relu6, hardsigmoid folded) under `q`.
    static std::pair<std::int8_t, std::int8_t> qclamp_of(Activation a, const XnnQuant& q) {
        const auto [lo, hi] = clamp_of(a);
        const auto [qlo, qhi] = clamp_bounds(ActivationQuant{q.scale, q.zero_point}, lo, hi);
        return {static_cast<std::int8_t>(qlo), static_cast<std::int8_t>(qhi)};
    }

    void add_convert_f32_qs8(int idx, const Layer& l, const Shape& s, const float* in,
                             std::int8_t* out, const XnnQuant& q) {
        // Rows of W*C values (a per-pixel row of 3 channels would cost a call per pixel).
        const auto C = static_cast<std::size_t>(s.w * s.c);
        xnn_operator_t xop = nullptr;
        check(xnn_create_convert_nc_f32_qs8(C, C, C, q.scale, static_cast<std::int8_t>(q.zero_point),
                                            -128, 127, 0, &xop),
              l, "xnn_create_convert_nc_f32_qs8");
        add_op(idx, xop);
        check(xnn_setup_convert_nc_f32_qs8(xop, static_cast<std::size_t>(s.h), in, out,
                                           impl_->pool),
              l, "xnn_setup_convert_nc_f32_qs8");
    }

    void add_convert_qs8_f32(int idx, const Layer& l, const Shape& s, const std::int8_t* in,
                             float* out, const XnnQuant& q) {
        const auto C = static_cast<std::size_t>(s.w * s.c);
        xnn_operator_t xop = nullptr;
        check(xnn_create_convert_nc_qs8_f32(C, C, C, q.scale, static_cast<std::int8_t>(q.zero_point),
                                            0, &xop),
              l, "xnn_create_convert_nc_qs8_f32");
        add_op(idx, xop);
        check(xnn_setup_convert_nc_qs8_f32(xop, static_cast<std::size_t>(s.h), in, out,
                                           impl_->pool),
              l, "xnn_setup_convert_nc_qs8_f32");
    }

    // Builds the plan in int8; `ranges` (from op_ranges) give each planned op's output range.
    void build_int8(const Graph& g, const Weights& w, bool keep_intermediates,
                    const std::vector<std::pair<float, float>>& ranges,
                    const QuantizedModel* model = nullptr) {
        const std::size_t n = g.layers.size();
        impl_->int8 = true;
        impl_->ptr.assign(n, nullptr);
        impl_->qptr.assign(n, nullptr);
        impl_->quant.assign(n, XnnQuant{});
        impl_->in_float.assign(n, 0);
        impl_->shapes.resize(n);
        impl_->lowering.assign(n, XnnLowering::Operators);
        for (std::size_t i = 0; i < n; ++i) impl_->shapes[i] = g.layers[i].shape;
        const OpPlan plan = plan_ops(g, !keep_intermediates, XNN_EXTRA_BYTES / sizeof(float) + 4);
        if (!model && ranges.size() != plan.ops.size())
            throw ExecutorError("int8: " + std::to_string(ranges.size()) +
                                " calibrated ranges for " + std::to_string(plan.ops.size()) +
                                " planned operators");
        for (std::size_t j = 0; j < n; ++j)
            if (plan.fusion.absorbed_by[j] >= 0) impl_->lowering[j] = XnnLowering::Fused;

        // The int8 buffers: the fp32 plan's buffers, one byte per element.
        std::vector<std::size_t> offset;
        std::size_t total = 0;
        for (std::int64_t elems : plan.buffers.slot_floats) {
            offset.push_back(total);
            total += detail::round_up(static_cast<std::size_t>(elems), kBufferAlignment);
        }
        auto* arena = static_cast<std::int8_t*>(detail::allocate_block(kBufferAlignment, total));
        if (!arena) throw std::bad_alloc();
        impl_->qarena.reset(arena);
        std::fill(arena, arena + total, std::int8_t{0});
        for (std::size_t i = 0; i < n; ++i) {
            const int v = plan.buffers.value_of[i];
            if (v < 0) continue;
            impl_->qptr[i] =
                arena + offset[static_cast<std::size_t>(plan.buffers.slot_of[static_cast<std::size_t>(v)])];
        }
        impl_->buffer_bytes = static_cast<std::int64_t>(total);
        impl_->input_ptr = new_scratch(g.layers.front().shape.elements());
        float* out_f = new_scratch(g.layers.back().shape.elements());
        impl_->output_ptr = out_f;

        for (std::size_t k = 0; k < plan.ops.size(); ++k) {
            const PlannedOp& op = plan.ops[k];
            impl_->current_op = static_cast<int>(k);
            const auto i = static_cast<std::size_t>(op.layer);
            const Layer& l = g.layers[i];
            XnnQuant out_q;
            if (model) {
                // The value this op writes: its layer's own output when an activation of its own
                // follows in place (D's conv before a float hardswish), else the fused tail's.
                const bool then_in_place = k + 1 < plan.ops.size() && plan.ops[k + 1].in_place() &&
                                           plan.ops[k + 1].output == op.output;
                const std::string& name =
                    g.layers[then_in_place ? i : static_cast<std::size_t>(op.output)].name;
                const ActivationQuant* a = model->find_activation(name);
                if (!a) throw ExecutorError("layer '" + name + "' has no activation parameters");
                out_q = XnnQuant{a->scale, a->zero_point};
            } else {
                out_q = quant_of_range(ranges[k].first, ranges[k].second);
            }
            if (op.kind == PlannedKind::Alias) {
                if (l.op == OpKind::Input) {
                    impl_->quant[i] = out_q;
                    add_convert_f32_qs8(op.layer, l, l.shape, impl_->input_ptr, impl_->qptr[i], out_q);
                } else if (plan.buffers.value_of[i] >= 0) {
                    impl_->lowering[i] = XnnLowering::Alias;
                    impl_->quant[i] = impl_->quant[static_cast<std::size_t>(op.inputs[0])];
                }
                continue;
            }
            const std::size_t mark = impl_->steps.size();
            const bool listed_float =
                model && std::find(model->float_layers.begin(), model->float_layers.end(),
                                   l.name) != model->float_layers.end();
            if (listed_float || !build_op_int8(g, w, op, out_q, model)) {
                drop_steps_from(mark);
                // A quantized model holds only int8 weights for its int8 layers: no float way out.
                if (model && !listed_float && model->find_layer(l.name))
                    throw ExecutorError("XNNPACK: " + where(l) +
                                        ": XNNPACK refused this layer's int8 parameters (scales or "
                                        "bounds), and the quantized model has no float weights for it");
                // A float layer's own activation op after it stays in float with it (no
                // rounding to int8 in between), as the integer reference computes it.
                const PlannedOp* then = nullptr;
                if (listed_float && k + 1 < plan.ops.size() && plan.ops[k + 1].layer == op.layer &&
                    plan.ops[k + 1].in_place() && plan.ops[k + 1].output == op.output) {
                    then = &plan.ops[++k];
                    impl_->current_op = static_cast<int>(k);
                    const std::string& name = g.layers[static_cast<std::size_t>(then->output)].name;
                    const ActivationQuant* a = model->find_activation(name);
                    if (!a) throw ExecutorError("layer '" + name + "' has no activation parameters");
                    out_q = XnnQuant{a->scale, a->zero_point};
                }
                build_op_in_float(g, w, op, out_q, then);
            }
        }
        const std::size_t last = n - 1;
        add_convert_qs8_f32(static_cast<int>(last), g.layers[last], g.layers[last].shape,
                            impl_->qptr[last], out_f, impl_->quant[last]);
        impl_->plan = plan;
    }

    // An op with no int8 kernel (or whose int8 parameters XNNPACK refused): its inputs converted
    // to float, its fp32 operator(s), its output converted back to int8 with `out_q`.
    void build_op_in_float(const Graph& g, const Weights& w, const PlannedOp& op,
                           const XnnQuant& out_q, const PlannedOp* then = nullptr) {
        const Layer& l = g.layers[static_cast<std::size_t>(op.layer)];
        impl_->in_float[static_cast<std::size_t>(op.layer)] = 1;
        std::vector<const float*> in;
        std::vector<std::pair<int, float*>> converted;
        for (int v : op.inputs) {
            float* f = nullptr;
            for (const auto& [id, p] : converted)
                if (id == v) f = p;
            if (!f) {
                const Shape& s = g.layers[static_cast<std::size_t>(v)].shape;
                f = new_scratch(s.elements());
                add_convert_qs8_f32(op.layer, l, s, impl_->qptr[static_cast<std::size_t>(v)], f,
                                    impl_->quant[static_cast<std::size_t>(v)]);
                converted.emplace_back(v, f);
            }
            in.push_back(f);
        }
        const Shape& os = g.layers[static_cast<std::size_t>(op.output)].shape;
        float* out = op.in_place() ? const_cast<float*>(in[0]) : new_scratch(os.elements());
        build_op_f32(g, w, op, in, out);
        if (then) build_op_f32(g, w, *then, {out}, out);
        add_convert_f32_qs8(op.layer, l, os, out, impl_->qptr[static_cast<std::size_t>(op.output)],
                            out_q);
        impl_->quant[static_cast<std::size_t>(op.output)] = out_q;
    }

    // The geometry of a qc8 convolution, as xnn_create_convolution2d_nhwc_qc8 takes it.
    struct Qc8Geometry {
        std::uint32_t pad_top, pad_right, pad_bottom, pad_left, kh, kw, sh, sw, dh, dw, groups;
        std::size_t gic, goc, in_stride, out_stride;
    };

    // A qc8 convolution (OHWI int8 kernel, int32 bias, per-channel weight scales `ks`) from in0
    // to out; false when XNNPACK refuses its parameters. XNNPACK validates it in every case (the
    // same refusals with or without VNNI); a 1x1, stride-1, ungrouped one then runs on lamda's
    // VNNI kernel where the CPU has it (exec/qc8_vnni.hpp: the same arithmetic).
    bool add_conv_qc8(int idx, const Layer& l, const Qc8Geometry& c, const Shape& is, const XnnQuant& in_q,
                      const float* ks, const std::int8_t* kernel, const std::int32_t* bias, const XnnQuant& out_q,
                      std::int8_t qlo, std::int8_t qhi, const std::int8_t* in0, std::int8_t* out) {
        xnn_operator_t xop = nullptr;
        if (!int8_ok(xnn_create_convolution2d_nhwc_qc8(
                         c.pad_top, c.pad_right, c.pad_bottom, c.pad_left, c.kh, c.kw, c.sh, c.sw, c.dh, c.dw,
                         c.groups, c.gic, c.goc, c.in_stride, c.out_stride, static_cast<std::int8_t>(in_q.zero_point),
                         in_q.scale, ks, kernel, bias, static_cast<std::int8_t>(out_q.zero_point), out_q.scale, qlo,
                         qhi, 0, &xop),
                     l, "xnn_create_convolution2d_nhwc_qc8"))
            return false;
        const bool pointwise = c.kh == 1 && c.kw == 1 && c.sh == 1 && c.sw == 1 && c.pad_top == 0 &&
                               c.pad_right == 0 && c.pad_bottom == 0 && c.pad_left == 0 && c.groups == 1 &&
                               c.in_stride == c.gic && c.out_stride == c.goc;
        if (pointwise && impl_->int8_vnni && qc8_vnni::available()) {
            xnn_delete_operator(xop);
            std::vector<float> scales(c.goc);
            for (std::size_t o = 0; o < c.goc; ++o) scales[o] = conv_requant_scale(in_q.scale, ks[o], out_q.scale);
            auto conv = std::make_shared<const Qc8Pointwise>(c.gic, c.goc, in_q.zero_point, kernel, bias,
                                                             scales.data(), out_q.zero_point, qlo, qhi);
            const auto pixels = static_cast<std::size_t>(is.h * is.w);
            auto prepared = std::make_shared<std::vector<std::uint8_t>>(conv->prepared_bytes(pixels));
            Step s;
            s.layer = idx;
            s.plan_op = impl_->current_op;
            s.loop = [conv, prepared, in0, out, pixels, pool = impl_->pool] {
                conv->prepare_input(in0, pixels, prepared->data());
                const std::size_t tile = qc8_vnni::kTilePixels;
                run_units(pool, (pixels + tile - 1) / tile, [&](std::size_t i) {
                    conv->run_range(prepared->data(), out, i * tile, std::min(pixels, (i + 1) * tile));
                });
            };
            impl_->steps.push_back(std::move(s));
            impl_->lowering[static_cast<std::size_t>(idx)] = XnnLowering::Kernel;
            ++impl_->vnni_layers;
            return true;
        }
        add_op(idx, xop);
        check(xnn_setup_convolution2d_nhwc_qc8(xop, 1, static_cast<std::size_t>(is.h), static_cast<std::size_t>(is.w),
                                               in0, out, impl_->pool),
              l, "xnn_setup_convolution2d_nhwc_qc8");
        return true;
    }

    // conv2d / dwconv / fc from a quantized model's int8 weights, scales and bias (PyTorch's
    // layouts: OIHW conv weights become OHWI), clamped as the plan's fused act says.
    bool build_affine_quantized(const Graph& g, const PlannedOp& op, const XnnQuant& in_q,
                                const XnnQuant& out_q, const QuantizedModel& model) {
        const auto i = static_cast<std::size_t>(op.layer);
        const Layer& l = g.layers[i];
        const QuantizedWeights* qw = model.find_layer(l.name);
        if (!qw || op.folded_bn >= 0 || l.op == OpKind::BatchNorm) return false;
        const Activation a = op.act;
        if (a != Activation::None && a != Activation::Relu && a != Activation::Relu6) return false;
        const Shape is = g.layers[static_cast<std::size_t>(l.inputs[0])].shape;
        const auto oc = static_cast<std::size_t>(l.op == OpKind::FullyConnected ? l.out_channels : l.shape.c);
        const std::size_t per = oc ? qw->weights.size() / oc : 0;
        if (per * oc != qw->weights.size() || qw->bias.size() != oc)
            throw ExecutorError("XNNPACK: " + where(l) + ": quantized weights do not fit the layer");
        std::vector<std::int8_t> kernel = qw->weights;
        if (l.op == OpKind::Conv2d) {
            const auto cig = static_cast<std::size_t>(is.c / l.groups);
            const auto kh = static_cast<std::size_t>(l.kernel_h), kw = static_cast<std::size_t>(l.kernel_w);
            for (std::size_t o = 0; o < oc; ++o)
                for (std::size_t ic = 0; ic < cig; ++ic)
                    for (std::size_t y = 0; y < kh; ++y)
                        for (std::size_t x = 0; x < kw; ++x)
                            kernel[((o * kh + y) * kw + x) * cig + ic] =
                                qw->weights[((o * cig + ic) * kh + y) * kw + x];
        }
        std::vector<float> ks(oc);
        for (std::size_t o = 0; o < oc; ++o) ks[o] = qw->weight_scale(o);
        const ActivationQuant oq{out_q.scale, out_q.zero_point};
        const auto [lo32, hi32] = clamp_bounds(oq, clamp_of(a).first, clamp_of(a).second);
        const auto qlo = static_cast<std::int8_t>(lo32), qhi = static_cast<std::int8_t>(hi32);
        const auto zp = [](const XnnQuant& q) { return static_cast<std::int8_t>(q.zero_point); };
        const std::int8_t* in0 = impl_->qptr[static_cast<std::size_t>(op.inputs[0])];
        std::int8_t* out = impl_->qptr[static_cast<std::size_t>(op.output)];
        xnn_operator_t xop = nullptr;
        if (l.op == OpKind::FullyConnected) {
            const auto ic = static_cast<std::size_t>(is.elements());
            if (qw->weight_scales.size() != 1) return false;  // qs8 fc: one scale
            if (!int8_ok(xnn_create_fully_connected_nc_qs8(ic, oc, ic, oc, zp(in_q), in_q.scale, ks[0],
                                                           kernel.data(), qw->bias.data(), zp(out_q),
                                                           out_q.scale, qlo, qhi, 0, &xop),
                         l, "xnn_create_fully_connected_nc_qs8"))
                return false;
            add_op(op.layer, xop);
            check(xnn_setup_fully_connected_nc_qs8(xop, 1, in0, out, impl_->pool), l,
                  "xnn_setup_fully_connected_nc_qs8");
        } else {
            const bool dw = l.op == OpKind::DepthwiseConv2d;
            const auto groups = static_cast<std::uint32_t>(dw ? is.c : l.groups);
            const std::size_t gic = dw ? 1 : static_cast<std::size_t>(is.c / l.groups);
            const std::size_t goc = dw ? static_cast<std::size_t>(l.multiplier)
                                       : static_cast<std::size_t>(l.out_channels / l.groups);
            for (int pad : l.pads)
                if (pad < 0) throw ExecutorError("XNNPACK: " + where(l) + ": negative padding");
            const auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
            const Qc8Geometry geo{u(l.pads[0]), u(l.pads[3]), u(l.pads[2]), u(l.pads[1]), u(l.kernel_h),
                                  u(l.kernel_w), u(l.stride_h), u(l.stride_w), u(l.dilation_h), u(l.dilation_w),
                                  groups, gic, goc, static_cast<std::size_t>(is.c), oc};
            if (!add_conv_qc8(op.layer, l, geo, is, in_q, ks.data(), kernel.data(), qw->bias.data(), out_q, qlo, qhi,
                              in0, out))
                return false;
        }
        impl_->quant[static_cast<std::size_t>(op.output)] = out_q;
        return true;
    }

    // The int8 operator(s) of one planned op; false when there is none (or XNNPACK refused the
    // parameters), leaving steps added since to the caller to drop.
    bool build_op_int8(const Graph& g, const Weights& w, const PlannedOp& op, const XnnQuant& out_q,
                       const QuantizedModel* model) {
        const auto i = static_cast<std::size_t>(op.layer);
        const Layer& l = g.layers[i];
        const int idx = op.layer;
        const auto vin = [&](std::size_t k) { return static_cast<std::size_t>(op.inputs[k]); };
        std::int8_t* out = impl_->qptr[static_cast<std::size_t>(op.output)];
        XnnQuant& out_quant = impl_->quant[static_cast<std::size_t>(op.output)];
        const XnnQuant in_q = op.inputs.empty() ? XnnQuant{} : impl_->quant[vin(0)];
        const std::int8_t* in0 = op.inputs.empty() ? nullptr : impl_->qptr[vin(0)];
        const Shape is = op.inputs.empty() ? Shape{} : g.layers[vin(0)].shape;
        const auto zp = [](const XnnQuant& q) { return static_cast<std::int8_t>(q.zero_point); };
        // A relu or relu6 whose int8 bounds meet (a calibrated range that ends at or below 0: a
        // dead relu) makes every output that one value. XNNPACK refuses min == max, and float is
        // no way out for a quantized model (no float weights), so the op is the constant, as the
        // integer reference computes it (a clamp to [lo, lo]).
        if (op.act == Activation::Relu || op.act == Activation::Relu6) {
            const XnnQuant q = op.kind == PlannedKind::Clamp ? in_q : out_q;
            const auto [qlo, qhi] = qclamp_of(op.act, q);
            if (qlo >= qhi) {
                const std::int64_t n = g.layers[static_cast<std::size_t>(op.output)].shape.elements();
                Step s;
                s.layer = idx;
                s.plan_op = impl_->current_op;
                const std::int8_t value = qlo;
                s.loop = [out, n, value] { std::fill(out, out + n, value); };
                impl_->steps.push_back(std::move(s));
                out_quant = q;
                return true;
            }
        }
        xnn_operator_t xop = nullptr;
        switch (op.kind) {
        case PlannedKind::Conv:
        case PlannedKind::DepthwiseConv:
        case PlannedKind::FullyConnected:
        case PlannedKind::ChannelAffine: {
            if (model) return build_affine_quantized(g, op, in_q, out_q, *model);
            const AffineSpec sp = prepare_affine(g, w, idx, op.folded_bn, op.act);
            const std::size_t oc = sp.oc, per = sp.per_out;
            // Per-channel symmetric weight scales (one for fc: qs8 has no per-channel scales).
            std::vector<float> ks(oc, 0.0f);
            float all = 0.0f;
            for (std::size_t o = 0; o < oc; ++o)
                for (std::size_t e = 0; e < per; ++e)
                    ks[o] = std::max(ks[o], std::fabs(sp.kernel[o * per + e]));
            for (float m : ks) all = std::max(all, m);
            if (sp.fc) std::fill(ks.begin(), ks.end(), all);
            for (float& s : ks) {
                s = s > 0.0f ? s / 127.0f : 1.0f;
                // XNNPACK needs the requantization scale in_scale * s / out_scale >= 2^-32.
                s = std::max(s, out_q.scale / in_q.scale * 1e-9f);
            }
            std::vector<std::int8_t> qk(sp.kernel.size());
            for (std::size_t o = 0; o < oc; ++o)
                for (std::size_t e = 0; e < per; ++e)
                    qk[o * per + e] = quantize_value(sp.kernel[o * per + e], XnnQuant{ks[o], 0});
            std::vector<std::int32_t> qb(oc, 0);
            for (std::size_t o = 0; o < oc; ++o) {
                const double b = std::round(sp.bias[o] / (static_cast<double>(in_q.scale) * ks[o]));
                qb[o] = static_cast<std::int32_t>(std::min(2147483647.0, std::max(-2147483648.0, b)));
            }
            const auto [qlo, qhi] = qclamp_of(op.act, out_q);
            if (sp.fc) {
                if (!int8_ok(xnn_create_fully_connected_nc_qs8(
                                 sp.ic, oc, sp.ic, oc, zp(in_q), in_q.scale, ks[0], qk.data(),
                                 qb.data(), zp(out_q), out_q.scale, qlo, qhi, 0, &xop),
                             l, "xnn_create_fully_connected_nc_qs8"))
                    return false;
                add_op(idx, xop);
                check(xnn_setup_fully_connected_nc_qs8(xop, 1, in0, out, impl_->pool), l,
                      "xnn_setup_fully_connected_nc_qs8");
            } else {
                const auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
                const Qc8Geometry geo{u(sp.pads[0]), u(sp.pads[3]), u(sp.pads[2]), u(sp.pads[1]), sp.kh, sp.kw,
                                      sp.sh, sp.sw, sp.dh, sp.dw, sp.groups, sp.gic, sp.goc,
                                      static_cast<std::size_t>(sp.is.c), oc};
                if (!add_conv_qc8(idx, l, geo, sp.is, in_q, ks.data(), qk.data(), qb.data(), out_q, qlo, qhi, in0,
                                  out))
                    return false;
            }
            out_quant = out_q;
            return true;
        }
        case PlannedKind::Add: {
            const std::size_t dims[1] = {static_cast<std::size_t>(l.shape.elements())};
            const std::size_t k_last = op.inputs.size() - 1;
            // A partial sum of 3+ inputs is written with the quantization covering the sum of
            // its inputs' ranges (the calibrated range is the final, activated one).
            auto lo_of = [](const XnnQuant& q) { return q.scale * (-128.0 - q.zero_point); };
            auto hi_of = [](const XnnQuant& q) { return q.scale * (127.0 - q.zero_point); };
            double sum_lo = lo_of(in_q), sum_hi = hi_of(in_q);
            XnnQuant a_q = in_q;
            for (std::size_t k = 1; k <= k_last; ++k) {
                const XnnQuant b_q = impl_->quant[vin(k)];
                sum_lo += lo_of(b_q);
                sum_hi += hi_of(b_q);
                const XnnQuant s_q = k == k_last ? out_q
                                                 : quant_of_range(static_cast<float>(sum_lo),
                                                                  static_cast<float>(sum_hi));
                const auto [qlo, qhi] =
                    k == k_last ? qclamp_of(op.act, out_q) : qclamp_of(Activation::None, s_q);
                xop = nullptr;
                if (!int8_ok(xnn_create_add_nd_qs8(zp(a_q), a_q.scale, zp(b_q), b_q.scale, zp(s_q),
                                                   s_q.scale, qlo, qhi, 0, &xop),
                             l, "xnn_create_add_nd_qs8"))
                    return false;
                a_q = s_q;
                add_op(idx, xop);
                check(xnn_setup_add_nd_qs8(xop, 1, dims, 1, dims, k == 1 ? in0 : out,
                                           impl_->qptr[vin(k)], out, impl_->pool),
                      l, "xnn_setup_add_nd_qs8");
            }
            out_quant = out_q;
            return true;
        }
        case PlannedKind::Mul: {
            const Shape a = is, b = g.layers[vin(1)].shape;
            const std::size_t da[3] = {static_cast<std::size_t>(a.h), static_cast<std::size_t>(a.w),
                                       static_cast<std::size_t>(a.c)};
            const std::size_t db[3] = {static_cast<std::size_t>(b.h), static_cast<std::size_t>(b.w),
                                       static_cast<std::size_t>(b.c)};
            const XnnQuant b_q = impl_->quant[vin(1)];
            if (!int8_ok(xnn_create_multiply_nd_qs8(zp(in_q), in_q.scale, zp(b_q), b_q.scale,
                                                    zp(out_q), out_q.scale, -128, 127, 0, &xop),
                         l, "xnn_create_multiply_nd_qs8"))
                return false;
            add_op(idx, xop);
            check(xnn_setup_multiply_nd_qs8(xop, 3, da, 3, db, in0, impl_->qptr[vin(1)], out,
                                            impl_->pool),
                  l, "xnn_setup_multiply_nd_qs8");
            out_quant = out_q;
            return true;
        }
        case PlannedKind::MaxPool: {
            // Max commutes with the (monotonic) quantization: the output keeps the input's.
            const std::array<std::int64_t, 4> p = pool_padding(l, is);
            const auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
            const auto C = static_cast<std::size_t>(is.c);
            if (!int8_ok(xnn_create_max_pooling2d_nhwc_s8(u(p[0]), u(p[3]), u(p[2]), u(p[1]),
                                                          u(l.kernel_h), u(l.kernel_w),
                                                          u(l.stride_h), u(l.stride_w), 1, 1, C, C,
                                                          C, -128, 127, 0, &xop),
                         l, "xnn_create_max_pooling2d_nhwc_s8"))
                return false;
            add_op(idx, xop);
            check(xnn_setup_max_pooling2d_nhwc_s8(xop, 1, static_cast<std::size_t>(is.h),
                                                  static_cast<std::size_t>(is.w), in0, out,
                                                  impl_->pool),
                  l, "xnn_setup_max_pooling2d_nhwc_s8");
            out_quant = in_q;
            return true;
        }
        case PlannedKind::StridedCopy: {
            const std::array<std::int64_t, 4> p = pool_padding(l, is);
            impl_->lowering[i] = XnnLowering::Loop;
            Step s;
            s.layer = idx;
            s.plan_op = impl_->current_op;
            const Shape os = l.shape;
            const std::int64_t sh = l.stride_h, sw = l.stride_w, pt = p[0], pl = p[1];
            s.loop = [in0, out, is, os, sh, sw, pt, pl] {
                for (std::int64_t y = 0; y < os.h; ++y)
                    for (std::int64_t x = 0; x < os.w; ++x) {
                        const std::int64_t iy = y * sh - pt, ix = x * sw - pl;
                        std::copy(in0 + (iy * is.w + ix) * is.c, in0 + (iy * is.w + ix + 1) * is.c,
                                  out + (y * os.w + x) * os.c);
                    }
            };
            impl_->steps.push_back(std::move(s));
            out_quant = in_q;
            return true;
        }
        case PlannedKind::GlobalAvgPool: {
            const auto C = static_cast<std::size_t>(is.c);
            if (!int8_ok(xnn_create_global_average_pooling_nwc_qs8(C, C, C, zp(in_q), in_q.scale,
                                                                   zp(out_q), out_q.scale, -128,
                                                                   127, 0, &xop),
                         l, "xnn_create_global_average_pooling_nwc_qs8"))
                return false;
            add_op(idx, xop);
            check(xnn_setup_global_average_pooling_nwc_qs8(
                      xop, 1, static_cast<std::size_t>(is.h * is.w), in0, out, impl_->pool),
                  l, "xnn_setup_global_average_pooling_nwc_qs8");
            out_quant = out_q;
            return true;
        }
        case PlannedKind::Clamp: {
            // relu / relu6 on the input's quantization (kept).
            const auto C = static_cast<std::size_t>(is.c);
            const auto [qlo, qhi] = qclamp_of(op.act, in_q);
            if (!int8_ok(xnn_create_clamp_nc_s8(C, C, C, qlo, qhi, 0, &xop), l,
                         "xnn_create_clamp_nc_s8"))
                return false;
            add_op(idx, xop);
            check(xnn_setup_clamp_nc_s8(xop, static_cast<std::size_t>(is.h * is.w), in0, out,
                                        impl_->pool),
                  l, "xnn_setup_clamp_nc_s8");
            out_quant = in_q;
            return true;
        }
        case PlannedKind::Sigmoid: {
            // XNNPACK's int8 sigmoid writes [0, 1) with scale 1/256, zero point -128.
            const auto C = static_cast<std::size_t>(is.c);
            const XnnQuant sq{1.0f / 256.0f, -128};
            if (!int8_ok(xnn_create_sigmoid_nc_qs8(C, C, C, zp(in_q), in_q.scale, zp(sq), sq.scale,
                                                   -128, 127, 0, &xop),
                         l, "xnn_create_sigmoid_nc_qs8"))
                return false;
            add_op(idx, xop);
            check(xnn_setup_sigmoid_nc_qs8(xop, static_cast<std::size_t>(is.h * is.w), in0, out,
                                           impl_->pool),
                  l, "xnn_setup_sigmoid_nc_qs8");
            out_quant = sq;
            return true;
        }
        case PlannedKind::Alias:
        case PlannedKind::HardSwish:
        case PlannedKind::HardSigmoid:
        case PlannedKind::Concat:
        case PlannedKind::AvgPool:
        case PlannedKind::Softmax: return false;
        }
        return false;
    }
};

// A fixed, non-trivial input for timing runs: latency must not depend on denormals or zeros,
// and every measurement (bench, profile, evaluation) should see the same data.
inline void fill_timing_input(XnnExecutor& executor) {
    float* input = executor.input();
    const std::int64_t n = executor.input_shape().elements();
    for (std::int64_t i = 0; i < n; ++i) input[i] = detail::timing_value(i);
}

}  // namespace lamda

#endif  // defined(LAMDA_WITH_XNNPACK)

#endif  // LAMDA_EXEC_XNNPACK_HPP
