// libFuzzer target for journals: any bytes give records or a JournalError naming the line, never
// a crash or a hang; every record read is then checked as --resume checks it
// (validate_resumed_record), which also may only throw JournalError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <lamda/search/journal.hpp>

namespace {
const lamda::Task& fuzz_task() {
    static const lamda::Task task = lamda::parse_task(
        R"({"name":"t","input":[8,8,1],"classes":4,"constraints":{"latency_ms":1,"max_params":100000},"objective":"capacity"})",
        "fuzz_task.json");
    return task;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    lamda::JournalContents c;
    try {
        c = lamda::parse_journal(text, "fuzz.jsonl");
    } catch (const lamda::JournalError&) {
        return 0;
    }
    if (c.complete_bytes > c.file_bytes) std::abort();
    for (std::size_t i = 0; i < c.records.size(); ++i) {
        if (c.records[i].index != static_cast<int>(i)) std::abort();
        try {
            lamda::validate_resumed_record(c.records[i], fuzz_task(), "fuzz.jsonl:" + std::to_string(i + 2));
        } catch (const lamda::JournalError&) {
        }
    }
    return 0;
}
