// libFuzzer target for the safetensors reader: any bytes give tensors or a WeightsError, never a
// crash, a hang or memory beyond the data section; what parses must survive a write/read round
// trip with the same tensors (F32, I8 and I32). A file that says it is int8 is also checked as a
// quantized model of a small fixed graph (read_quantized): a WeightsError or a valid model.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <lamda/data/weights.hpp>
#include <lamda/dsl/file.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    lamda::SafetensorsData parsed;
    try {
        parsed = lamda::parse_safetensors(bytes, "fuzz.safetensors");
    } catch (const lamda::WeightsError&) {
        return 0;
    }
    std::size_t stored_bytes = 0;
    for (const auto& kv : parsed.tensors) {
        const lamda::WeightTensor& t = kv.second;
        if (static_cast<std::int64_t>(t.stored()) != t.elements()) std::abort();
        stored_bytes += t.stored() * (t.dtype == lamda::WeightDType::I8 ? 1 : 4);
    }
    if (stored_bytes > size) std::abort();  // never more than the data section holds
    lamda::SafetensorsData again;
    try {
        again = lamda::parse_safetensors(lamda::to_safetensors(parsed.tensors, parsed.metadata), "again");
    } catch (const lamda::WeightsError&) {
        std::abort();  // what lamda writes, lamda reads
    }
    if (again.tensors.size() != parsed.tensors.size()) std::abort();
    for (const auto& kv : parsed.tensors) {
        const lamda::WeightTensor& b = again.tensors.at(kv.first);
        if (b.shape != kv.second.shape || b.dtype != kv.second.dtype || b.i8 != kv.second.i8 ||
            b.i32 != kv.second.i32)
            std::abort();
    }
    if (lamda::is_quantized(parsed)) {
        static const lamda::Graph graph = lamda::parse_dsl_or_throw(
            "model f\nx: input shape=4x4x1\nc: conv2d out=2 kernel=3 act=relu\np: gap\no: fc out=3\n",
            "fuzz.lamda");
        try {
            lamda::Weights float_weights;
            const lamda::QuantizedModel m = lamda::read_quantized(graph, parsed, "fuzz", float_weights);
            if (lamda::validate_quantized_model(m)) std::abort();  // accepted means valid
        } catch (const lamda::WeightsError&) {
        }
    }
    return 0;
}
