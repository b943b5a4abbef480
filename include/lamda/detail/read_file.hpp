// lamda/detail/read_file.hpp: reading a whole text file with a bound, for the small files lamda
// reads whole (task files, latency profiles, journals).
//
//   std::string text;
//   switch (lamda::detail::read_file_bounded(path, std::size_t{1} << 20, text)) { ... }
//
// Contract: never reads more than `limit` + 1 bytes, whatever the file is (/dev/zero, a FIFO, a
// file that grows while read), so memory stays bounded by the limit; never throws itself (the
// standard library may throw std::bad_alloc). The caller turns the status into its own error.
#ifndef LAMDA_DETAIL_READ_FILE_HPP
#define LAMDA_DETAIL_READ_FILE_HPP

#include <cstddef>
#include <fstream>
#include <string>

namespace lamda::detail {

enum class ReadStatus { ok, cannot_open, read_error, too_large };

// Reads `path` into `out`; too_large when it holds more than `limit` bytes (`out` is then cleared).
inline ReadStatus read_file_bounded(const std::string& path, std::size_t limit, std::string& out) {
    out.clear();
    std::ifstream in(path, std::ios::binary);
    if (!in) return ReadStatus::cannot_open;
    char buffer[1 << 16];
    while (in) {
        const std::size_t room = limit + 1 - out.size();  // out.size() <= limit here
        in.read(buffer, static_cast<std::streamsize>(room < sizeof buffer ? room : sizeof buffer));
        out.append(buffer, static_cast<std::size_t>(in.gcount()));
        if (out.size() > limit) {
            out.clear();
            out.shrink_to_fit();
            return ReadStatus::too_large;
        }
    }
    if (in.bad()) return ReadStatus::read_error;
    return ReadStatus::ok;
}

}  // namespace lamda::detail

#endif  // LAMDA_DETAIL_READ_FILE_HPP
