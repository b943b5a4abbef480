// lamda/core/arena_plan.hpp: the liveness plan of one static activation arena, as the firmware
// export allocates it (deploy/firmware.hpp) and as the search's memory constraint counts it
// (core/analysis.hpp ModelStats::arena_bytes, task constraint max_activation_bytes).
//
//   lamda::ArenaPlan p = lamda::arena_plan(graph);        // shapes inferred (infer_shapes)
//   if (p.ok) use(p.arena_bytes, p.input_offset);          // else p.error says what and where
//   std::int64_t n = lamda::arena_bytes(graph, 1);        // int8: one byte per value
//
// Contract. Requires a graph whose shapes are inferred; anything else (no layers, a first layer that
// is not the input, a layer reading one that is not before it, a shape not inferred or over 2 GiB)
// gives ok == false and an error naming the layer. Never throws (but bad_alloc); runtime-free
// (-fno-exceptions -fno-rtti). The plan:
//   - every value that is not an alias (flatten and dropout share their input's bytes) gets a buffer
//     alive from its producer to its last reader (reads through aliases count for the root);
//   - the model input is a buffer in the arena too, alive from the start to its last reader (the
//     caller writes it there; `input_offset`), so its bytes are reused once it is dead;
//   - the last layer writes straight into the caller's output buffer (not in the arena), unless it
//     is an alias, whose root stays in the arena and is copied out;
//   - an elementwise op (activations, softmax, batchnorm, add, a same-size mul operand) writes into
//     an input buffer whose last reader it is (in place, as MCUNet's TinyEngine does);
//   - buffers are placed by TFLite Micro's GreedyMemoryPlanner rule: largest first (ties in layer
//     order), each at the lowest 16-byte-aligned offset that overlaps no already placed buffer alive
//     at the same time.
// RAM the generated code needs = arena_bytes + output_bytes. A batch norm that exec/fold.hpp folds
// into its producer runs in place in this plan, so planning the unfolded graph (as the search does)
// gives the folded export's arena or more, never less (tests/deploy/test_firmware.cpp checks the zoo).
#ifndef LAMDA_CORE_ARENA_PLAN_HPP
#define LAMDA_CORE_ARENA_PLAN_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../detail/checked.hpp"
#include "ir.hpp"

namespace lamda {

// Where a layer's value lives at run time.
enum class ValueLoc { Arena, Output };

struct ArenaBuffer {
    std::int64_t bytes = 0;   // rounded up to 16
    std::int64_t offset = 0;  // in the arena
    int first = 0, last = 0;  // layer indices: produced, last read (inclusive)
};

struct ArenaPlan {
    bool ok = false;
    std::string error;             // when !ok: what and where
    std::vector<ValueLoc> loc;     // per layer (an alias: its root's)
    std::vector<int> buffer;       // per layer: index into buffers (Arena), or -1 (Output)
    std::vector<int> alias_of;     // per layer: the layer whose bytes it shares (flatten, dropout), or itself
    std::vector<int> scratch;      // per layer: index into buffers of its scratch (ArenaOptions), or -1
    std::vector<ArenaBuffer> buffers;
    std::int64_t bytes_per_value = 4;
    std::int64_t arena_bytes = 0;
    std::int64_t input_offset = 0;  // where the caller writes the input, in the arena
    std::int64_t input_bytes = 0, output_bytes = 0;
    int in_place = 0;               // ops planned in place

    // Byte offset of layer i's scratch in the arena; -1 when it has none.
    std::int64_t scratch_offset(std::size_t i) const {
        return scratch[i] < 0 ? -1 : buffers[static_cast<std::size_t>(scratch[i])].offset;
    }
    // Byte offset of layer i's value in the arena; -1 when it is the caller's output.
    std::int64_t offset_of(std::size_t i) const {
        const int b = buffer[static_cast<std::size_t>(alias_of[i])];
        return b < 0 ? -1 : buffers[static_cast<std::size_t>(b)].offset;
    }
};

namespace arena_detail {

inline constexpr std::int64_t alignment = 16;
inline constexpr std::int64_t max_tensor_bytes = std::int64_t{1} << 31;  // 32-bit targets

inline bool tensor_bytes(const Shape& s, std::int64_t per_value, std::int64_t& bytes) noexcept {
    std::int64_t e = 0;
    if (!s.known() || !detail::checked_mul(s.h, s.w, e) || !detail::checked_mul(e, s.c, e) ||
        !detail::checked_mul(e, per_value, bytes) || bytes >= max_tensor_bytes)
        return false;
    return true;
}

inline std::int64_t align_up(std::int64_t v) noexcept {
    return (v + alignment - 1) / alignment * alignment;
}

// TFLite Micro's GreedyMemoryPlanner: buffers by size, largest first (ties in index order), each at
// the lowest aligned offset where it overlaps no already placed buffer that is alive at the same time.
inline std::int64_t place_greedy(std::vector<ArenaBuffer>& buffers) {
    std::vector<std::size_t> order(buffers.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return buffers[a].bytes > buffers[b].bytes;
    });
    std::vector<std::size_t> placed;
    std::vector<std::pair<std::int64_t, std::int64_t>> busy;  // [offset, end) of live ones
    std::int64_t high = 0;
    for (std::size_t idx : order) {
        ArenaBuffer& b = buffers[idx];
        busy.clear();
        for (std::size_t p : placed) {
            const ArenaBuffer& o = buffers[p];
            if (o.first <= b.last && b.first <= o.last) busy.emplace_back(o.offset, o.offset + o.bytes);
        }
        std::sort(busy.begin(), busy.end());
        std::int64_t offset = 0;
        for (const auto& r : busy) {
            if (r.first >= offset + b.bytes) break;
            offset = std::max(offset, align_up(r.second));
        }
        b.offset = offset;
        high = std::max(high, offset + b.bytes);
        placed.push_back(idx);
    }
    return high;
}

inline bool elementwise_in_place(OpKind op) noexcept {
    return op == OpKind::Relu || op == OpKind::Relu6 || op == OpKind::HardSwish ||
           op == OpKind::HardSigmoid || op == OpKind::Sigmoid || op == OpKind::Softmax ||
           op == OpKind::BatchNorm || op == OpKind::Add || op == OpKind::Mul;
}

inline bool check_structure(const Graph& graph, std::int64_t per_value, std::string& error) {
    if (graph.layers.empty()) return error = "the graph has no layers", false;
    if (graph.layers.front().op != OpKind::Input)
        return error = "the graph's first layer is not its input", false;
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        if (i > 0 && l.op == OpKind::Input)
            return error = "layer '" + l.name + "': a second input layer", false;
        if (i > 0 && l.inputs.empty()) return error = "layer '" + l.name + "' has no input", false;
        for (int in : l.inputs)
            if (in < 0 || static_cast<std::size_t>(in) >= i)
                return error = "layer '" + l.name + "' reads a layer that is not before it", false;
        std::int64_t b = 0;
        if (!tensor_bytes(l.shape, per_value, b))
            return error = std::string(op_name(l.op)) + " layer '" + l.name + "': shape " +
                           to_string(l.shape) +
                           " is not inferred or exceeds 2 GiB (run infer_shapes first)",
                   false;
    }
    return true;
}

// Per layer: the layer whose value it is (flatten and dropout: their input's; `dropout_only`: only
// dropout, as TFLite's converter removes it but keeps reshapes), and each root's last reader.
inline void roots_and_last_reads(const Graph& graph, bool dropout_only, std::vector<int>& root,
                                 std::vector<int>& last_read) {
    const std::size_t n = graph.layers.size();
    root.resize(n);
    last_read.assign(n, -1);
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = graph.layers[i];
        const bool alias = l.op == OpKind::Dropout || (!dropout_only && l.op == OpKind::Flatten);
        root[i] = alias ? root[static_cast<std::size_t>(l.inputs.front())] : static_cast<int>(i);
        for (int in : l.inputs) {
            const auto r = static_cast<std::size_t>(root[static_cast<std::size_t>(in)]);
            last_read[r] = std::max(last_read[r], static_cast<int>(i));
        }
    }
}

}  // namespace arena_detail

// What arena_plan plans for: bytes per tensor element (4: float32, 1: int8); the last layer's value
// in the arena too (an int8 model dequantizes it into the caller's float output at the end); per
// layer, scratch bytes alive only while that layer runs (the int8 firmware's float fallback), empty
// or one entry per layer.
struct ArenaOptions {
    std::int64_t bytes_per_value = 4;
    bool output_in_arena = false;
    std::vector<std::int64_t> scratch_bytes;
};

// The int8 firmware's options (deploy/firmware.hpp's firmware_source_int8, and the search's int8
// memory constraint, search/memory.hpp): a byte per value, the output in the arena, and for each
// layer that runs in float (`runs_in_float`, parallel to graph.layers) scratch for its inputs and
// its output as float, one after the other, 16-aligned; `scratch_at` receives those offsets
// (inputs, then output) per layer when given. A float mul that is not the last layer runs value by
// value on the int8 values: no scratch. Shapes must be inferred.
inline ArenaOptions int8_arena_options(const Graph& graph, const std::vector<bool>& runs_in_float,
                                       std::vector<std::vector<std::int64_t>>* scratch_at = nullptr) {
    const std::size_t n = graph.layers.size();
    ArenaOptions ao;
    ao.bytes_per_value = 1;
    ao.output_in_arena = true;
    ao.scratch_bytes.assign(n, 0);
    if (scratch_at) scratch_at->assign(n, {});
    for (std::size_t i = 0; i < n && i < runs_in_float.size(); ++i) {
        const Layer& l = graph.layers[i];
        if (!runs_in_float[i] || (l.op == OpKind::Mul && i + 1 < n)) continue;
        std::int64_t at = 0;
        for (int in : l.inputs) {
            if (scratch_at) (*scratch_at)[i].push_back(at);
            at += arena_detail::align_up(graph.layers[static_cast<std::size_t>(in)].shape.elements() * 4);
        }
        if (scratch_at) (*scratch_at)[i].push_back(at);
        ao.scratch_bytes[i] = at + l.shape.elements() * 4;
    }
    return ao;
}

// The plan (see the file comment). Never throws but bad_alloc.
inline ArenaPlan arena_plan(const Graph& graph, const ArenaOptions& options) {
    namespace ad = arena_detail;
    ArenaPlan plan;
    const std::int64_t bytes_per_value = options.bytes_per_value;
    plan.bytes_per_value = bytes_per_value;
    if (bytes_per_value < 1 || bytes_per_value > 8) {
        plan.error = "bytes per value must be 1 to 8, got " + std::to_string(bytes_per_value);
        return plan;
    }
    if (!ad::check_structure(graph, bytes_per_value, plan.error)) return plan;
    const std::size_t n = graph.layers.size();
    if (!options.scratch_bytes.empty() && options.scratch_bytes.size() != n) {
        plan.error = "scratch bytes given for " + std::to_string(options.scratch_bytes.size()) +
                     " layers, the graph has " + std::to_string(n);
        return plan;
    }
    std::vector<int> last_read;
    ad::roots_and_last_reads(graph, false, plan.alias_of, last_read);
    plan.loc.assign(n, ValueLoc::Arena);
    plan.buffer.assign(n, -1);
    ad::tensor_bytes(graph.layers.front().shape, bytes_per_value, plan.input_bytes);
    ad::tensor_bytes(graph.layers.back().shape, bytes_per_value, plan.output_bytes);
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = graph.layers[i];
        if (plan.alias_of[i] != static_cast<int>(i)) {
            const auto r = static_cast<std::size_t>(plan.alias_of[i]);
            plan.loc[i] = plan.loc[r];
            plan.buffer[i] = plan.buffer[r];
            continue;
        }
        if (i > 0 && i + 1 == n && !options.output_in_arena) {
            plan.loc[i] = ValueLoc::Output;
            continue;
        }
        std::int64_t bytes = 0;
        ad::tensor_bytes(l.shape, bytes_per_value, bytes);
        int reuse = -1;
        if (ad::elementwise_in_place(l.op)) {
            for (std::size_t k = 0; k < l.inputs.size() && reuse < 0; ++k) {
                const auto in = static_cast<std::size_t>(l.inputs[k]);
                const auto r = static_cast<std::size_t>(plan.alias_of[in]);
                if (plan.loc[r] != ValueLoc::Arena || last_read[r] != static_cast<int>(i) ||
                    graph.layers[in].shape.elements() != l.shape.elements())
                    continue;
                reuse = plan.buffer[r];
            }
        }
        if (reuse >= 0) {
            plan.buffer[i] = reuse;
            ++plan.in_place;
        } else {
            ArenaBuffer b;
            b.bytes = ad::align_up(bytes);
            b.first = b.last = static_cast<int>(i);
            plan.buffer[i] = static_cast<int>(plan.buffers.size());
            plan.buffers.push_back(b);
        }
        ArenaBuffer& b = plan.buffers[static_cast<std::size_t>(plan.buffer[i])];
        b.last = std::max(b.last, std::max(static_cast<int>(i), last_read[i]));
        // A graph that is only its input, or whose output aliases it: the value is copied out at the end.
        if (i == static_cast<std::size_t>(plan.alias_of[n - 1])) b.last = static_cast<int>(n);
    }
    // Scratch buffers after the value buffers (buffer indices of values stay as above).
    plan.scratch.assign(n, -1);
    for (std::size_t i = 0; i < options.scratch_bytes.size(); ++i) {
        const std::int64_t bytes = options.scratch_bytes[i];
        if (bytes <= 0) continue;
        if (bytes >= ad::max_tensor_bytes) {
            plan.error = "layer '" + graph.layers[i].name + "': " + std::to_string(bytes) +
                         " bytes of scratch exceed 2 GiB";
            return plan;
        }
        ArenaBuffer b;
        b.bytes = ad::align_up(bytes);
        b.first = b.last = static_cast<int>(i);
        plan.scratch[i] = static_cast<int>(plan.buffers.size());
        plan.buffers.push_back(b);
    }
    plan.arena_bytes = ad::place_greedy(plan.buffers);
    plan.input_offset = plan.buffers.front().offset;
    plan.ok = true;
    return plan;
}

inline ArenaPlan arena_plan(const Graph& graph, std::int64_t bytes_per_value = 4) {
    ArenaOptions o;
    o.bytes_per_value = bytes_per_value;
    return arena_plan(graph, o);
}

// Bytes of the arena arena_plan allocates; -1 when the graph cannot be planned. Never throws but bad_alloc.
inline std::int64_t arena_bytes(const Graph& graph, std::int64_t bytes_per_value = 4) {
    const ArenaPlan p = arena_plan(graph, bytes_per_value);
    return p.ok ? p.arena_bytes : -1;
}

// What TFLite Micro's greedy planner would need for the same network: every layer output a tensor
// of its own (flatten a tensor of its own, dropout removed by the converter), alive from its producer
// to its last reader, no in-place reuse, 16-byte alignment, the input in the arena alive from the
// start. With output_in_arena (what the TFLM interpreter does) the output is in the arena too, alive
// to the end; without, it is left to the caller as lamda leaves it, which compares the two planners
// under the same rules. -1 when the graph cannot be planned. Never throws but bad_alloc.
inline std::int64_t tflm_greedy_arena_bytes(const Graph& graph, bool output_in_arena = true,
                                            std::int64_t bytes_per_value = 4) {
    namespace ad = arena_detail;
    std::string error;
    if (bytes_per_value < 1 || bytes_per_value > 8 || !ad::check_structure(graph, bytes_per_value, error))
        return -1;
    const std::size_t n = graph.layers.size();
    std::vector<int> root, last_read;
    ad::roots_and_last_reads(graph, true, root, last_read);
    const auto out_root = static_cast<std::size_t>(root[n - 1]);
    std::vector<ArenaBuffer> buffers;
    for (std::size_t i = 0; i < n; ++i) {
        if (root[i] != static_cast<int>(i)) continue;
        if (!output_in_arena && i > 0 && i == out_root) continue;
        ArenaBuffer b;
        std::int64_t bytes = 0;
        ad::tensor_bytes(graph.layers[i].shape, bytes_per_value, bytes);
        b.bytes = ad::align_up(bytes);
        b.first = static_cast<int>(i);
        b.last = i == out_root ? static_cast<int>(n) : std::max(static_cast<int>(i), last_read[i]);
        buffers.push_back(b);
    }
    return ad::place_greedy(buffers);
}

}  // namespace lamda

#endif  // LAMDA_CORE_ARENA_PLAN_HPP
