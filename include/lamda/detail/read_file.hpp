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
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace lamda::detail {

enum class ReadStatus { ok, cannot_open, read_error, too_large };

// Reads `path` into `out`; too_large when it holds more than `limit` bytes (`out` is then cleared).
inline ReadStatus read_file_bounded(const std::string& path, std::size_t limit, std::string& out) {
    out.clear();
    std::ifstream in(path, std::ios::binary);
    if (!in) return ReadStatus::cannot_open;
    // A regular file states its size: one over the limit is refused before reading a byte.
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) {
        const std::uintmax_t size = std::filesystem::file_size(path, ec);
        if (!ec && size > limit) return ReadStatus::too_large;
        if (!ec) out.reserve(static_cast<std::size_t>(size) + 1);
    }
    char buffer[1 << 16];
    while (in) {
        const std::size_t room = limit + 1 - out.size();  // out.size() <= limit here
        in.read(buffer, static_cast<std::streamsize>(room < sizeof buffer ? room : sizeof buffer));
        const auto got = static_cast<std::size_t>(in.gcount());
        // Grown by doubling while that stays under half the limit, then straight to limit + 1
        // (the standard library would double past it): a device or pipe (/dev/zero) costs at
        // most about 1.5 times the limit while it is read, not twice.
        if (out.capacity() < out.size() + got) {
            std::size_t want = out.capacity() * 2 > out.size() + got ? out.capacity() * 2 : out.size() + got;
            if (want > (limit + 1) / 2) want = limit + 1;
            out.reserve(want);
        }
        out.append(buffer, got);
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
