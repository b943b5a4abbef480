// libFuzzer target for latency profiles: any bytes give a profile or a ProfileError, never a
// crash, a hang or unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <lamda/latency/model.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        (void)lamda::parse_latency_profile(text, "fuzz.json");
    } catch (const lamda::Exception&) {
    }
    return 0;
}
