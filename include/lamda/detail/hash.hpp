// lamda/detail/hash.hpp: FNV-1a (64-bit) and a small string -> index map built on it.
// Contract: no exceptions thrown by lamda itself, no <unordered_map> (it is the costliest
// header of the core to compile); NameIndex holds at most 2^31 names and never fails a lookup
// on a hash collision (open addressing, linear probing, keys compared in full).
#ifndef LAMDA_DETAIL_HASH_HPP
#define LAMDA_DETAIL_HASH_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lamda::detail {

inline constexpr std::uint64_t fnv1a_offset = 14695981039346656037ull;
inline constexpr std::uint64_t fnv1a_prime = 1099511628211ull;

// FNV-1a over bytes, continuing from `h` (so several fields can be hashed in sequence).
inline std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = fnv1a_offset) noexcept {
    for (const char c : bytes) {
        h ^= static_cast<unsigned char>(c);
        h *= fnv1a_prime;
    }
    return h;
}

// Maps names to indices; the first insert of a name wins.
class NameIndex {
public:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    // The index stored for `name`, or npos.
    std::size_t find(std::string_view name) const noexcept {
        if (slots_.empty()) return npos;
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = static_cast<std::size_t>(fnv1a(name)) & mask;; i = (i + 1) & mask) {
            const Slot& s = slots_[i];
            if (s.value == npos) return npos;
            if (s.key == name) return s.value;
        }
    }

    // Stores name -> value unless name is already there; returns whether it was inserted.
    bool insert(std::string_view name, std::size_t value) {
        if ((count_ + 1) * 2 > slots_.size()) grow();
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = static_cast<std::size_t>(fnv1a(name)) & mask;; i = (i + 1) & mask) {
            Slot& s = slots_[i];
            if (s.value == npos) {
                s.key = std::string(name);
                s.value = value;
                ++count_;
                return true;
            }
            if (s.key == name) return false;
        }
    }

    std::size_t size() const noexcept { return count_; }

private:
    struct Slot {
        std::string key;
        std::size_t value = npos;
    };

    void grow() {
        std::vector<Slot> old;
        old.swap(slots_);
        slots_.resize(old.empty() ? 16 : old.size() * 2);
        count_ = 0;
        for (Slot& s : old)
            if (s.value != npos) insert(s.key, s.value);
    }

    std::vector<Slot> slots_;
    std::size_t count_ = 0;
};

}  // namespace lamda::detail

#endif  // LAMDA_DETAIL_HASH_HPP
