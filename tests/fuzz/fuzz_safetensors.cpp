// libFuzzer target for the safetensors reader: any bytes give tensors or a WeightsError, never a
// crash, a hang or memory beyond the data section; what parses must survive a write/read round
// trip with the same tensors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <lamda/data/weights.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    lamda::SafetensorsData parsed;
    try {
        parsed = lamda::parse_safetensors(bytes, "fuzz.safetensors");
    } catch (const lamda::WeightsError&) {
        return 0;
    }
    std::size_t floats = 0;
    for (const auto& kv : parsed.tensors) {
        if (static_cast<std::int64_t>(kv.second.data.size()) != kv.second.elements()) std::abort();
        floats += kv.second.data.size();
    }
    if (floats * 4 > size) std::abort();  // never more than the data section holds
    lamda::SafetensorsData again;
    try {
        again = lamda::parse_safetensors(lamda::to_safetensors(parsed.tensors, parsed.metadata), "again");
    } catch (const lamda::WeightsError&) {
        std::abort();  // what lamda writes, lamda reads
    }
    if (again.tensors.size() != parsed.tensors.size()) std::abort();
    for (const auto& kv : parsed.tensors)
        if (again.tensors.at(kv.first).shape != kv.second.shape) std::abort();
    return 0;
}
