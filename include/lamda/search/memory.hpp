// lamda/search/memory.hpp: a candidate's memory on a microcontroller, counted as the firmware
// export allocates it (deploy/firmware.hpp, docs/firmware.md), for the task constraints
// max_activation_bytes (RAM) and max_weight_bytes (weights in flash).
//
//   lamda::FirmwareMemory m = lamda::firmware_memory(graph);   // shapes inferred
//   std::string why = lamda::over_memory(task.constraints, m);  // "" when it fits
//
// Contract: firmware_memory plans the graph as the export does: batch norm folded into its producer
// where exec/fold.hpp folds it, then core/arena_plan.hpp's liveness plan (float32). ram_bytes is what
// `lamda export --firmware` checks against --max-ram: the arena (the input inside) plus the caller's
// output buffer; so a candidate the search says fits max_activation_bytes exports under
// --max-ram max_activation_bytes. weight_bytes is the export's weight_bytes (4 bytes a parameter,
// and a batch norm that does not fold keeps its running mean too; --max-flash adds a code estimate).
// firmware_memory(graph, true) counts the int8 firmware (firmware_source_int8) the same way: a byte
// per value in an arena that holds the output too, float scratch for the layers without an int8
// kernel (exec/reference_int8.hpp's int8_unsupported_reason), a float output buffer; int8 weights, an
// int32 bias and a float requantization scale per output channel, 256-byte sigmoid tables, and the
// float layers' weights in float. (A layer that quantization moves to float because of its scales
// is not foreseen: rare, and it makes the arena larger by its scratch.) A graph that cannot be
// planned gives ok == false and the plan's error. Never throws but bad_alloc.
#ifndef LAMDA_SEARCH_MEMORY_HPP
#define LAMDA_SEARCH_MEMORY_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "../core/analysis.hpp"
#include "../core/arena_plan.hpp"
#include "../exec/fold.hpp"
#include "../exec/reference_int8.hpp"
#include "types.hpp"

namespace lamda {

struct FirmwareMemory {
    bool ok = false;
    std::string error;              // when !ok
    std::int64_t arena_bytes = -1;  // the static arena, the input inside
    std::int64_t output_bytes = -1; // the caller's output buffer
    std::int64_t ram_bytes = -1;    // arena_bytes + output_bytes
    std::int64_t weight_bytes = -1; // float32 weights after folding
};

inline FirmwareMemory firmware_memory(const Graph& graph, bool int8 = false) {
    FirmwareMemory m;
    const Graph folded = fold_batchnorm_graph(graph);
    const std::size_t n = folded.layers.size();
    std::vector<bool> runs_in_float(n, false);
    if (int8)
        for (std::size_t i = 0; i < n; ++i) runs_in_float[i] = !int8_unsupported_reason(folded.layers[i]).empty();
    const ArenaPlan plan = int8 ? arena_plan(folded, int8_arena_options(folded, runs_in_float)) : arena_plan(folded);
    if (!plan.ok) {
        m.error = plan.error;
        return m;
    }
    m.ok = true;
    m.arena_bytes = plan.arena_bytes;
    // The caller's output buffer is float in both (an int8 model dequantizes into it).
    m.output_bytes = int8 ? folded.output().shape.elements() * 4 : plan.output_bytes;
    m.ram_bytes = m.arena_bytes + m.output_bytes;
    // The export's weight bytes: the float parameters, plus the running mean of each batch norm
    // that did not fold (it runs as (x - mean) * scale + shift: three arrays for two parameters).
    const ModelStats stats = analyze(folded);
    m.weight_bytes = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = folded.layers[i];
        const LayerStats& s = stats.layers[i];
        const bool linear = l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d || l.op == OpKind::FullyConnected;
        if (int8 && !runs_in_float[i] && linear) {
            const std::int64_t out = l.shape.c, bias = l.bias ? out : 0;
            m.weight_bytes += (s.params - bias) + out * 4 + out * 4;  // int8 weights, int32 bias, float scale
        } else if (int8 && !runs_in_float[i] && l.op == OpKind::Sigmoid) {
            m.weight_bytes += 256;  // its lookup table
        } else {
            m.weight_bytes += s.weight_bytes;
            if (l.op == OpKind::BatchNorm) m.weight_bytes += l.shape.c * 4;
        }
    }
    return m;
}

// Why `m` is over the constraints' max_activation_bytes or max_weight_bytes (numbers included), or
// "" when it fits (or neither is set).
inline std::string over_memory(const Constraints& c, const FirmwareMemory& m, bool int8 = false) {
    if (c.max_activation_bytes <= 0 && c.max_weight_bytes <= 0) return "";
    if (!m.ok) return "the firmware memory plan failed: " + m.error;
    if (c.max_activation_bytes > 0 && m.ram_bytes > c.max_activation_bytes)
        return "needs " + std::to_string(m.ram_bytes) + " bytes of RAM (" + (int8 ? "int8 " : "") + "firmware arena " +
               std::to_string(m.arena_bytes) + ", the input inside, + output " +
               std::to_string(m.output_bytes) + "), over max_activation_bytes " +
               std::to_string(c.max_activation_bytes);
    if (c.max_weight_bytes > 0 && m.weight_bytes > c.max_weight_bytes)
        return "needs " + std::to_string(m.weight_bytes) + " bytes of weights in flash (" + (int8 ? "int8" : "float32") +
               ", batch norm folded), over max_weight_bytes " +
               std::to_string(c.max_weight_bytes);
    return "";
}

}  // namespace lamda

#endif  // LAMDA_SEARCH_MEMORY_HPP
