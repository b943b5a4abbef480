// libFuzzer target for task files: any bytes give a Task or a TaskError, never a crash or a hang;
// a task that parses survives the write/read round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <lamda/search/task.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    lamda::Task task;
    try {
        task = lamda::parse_task(text, "fuzz.json");
    } catch (const lamda::Exception&) {
        return 0;
    }
    try {
        const lamda::Task again = lamda::parse_task(lamda::task_json(task), "again.json");
        if (lamda::task_json(again) != lamda::task_json(task)) std::abort();
    } catch (const lamda::Exception&) {
        std::abort();  // what lamda writes, lamda reads
    }
    return 0;
}
