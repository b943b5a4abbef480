// lamda/detail/json_write.hpp: a small JSON writer for machine-readable CLI output and reports.
// Reading JSON (profiles, task files, LLM replies) goes through simdjson instead.
#ifndef LAMDA_DETAIL_JSON_WRITE_HPP
#define LAMDA_DETAIL_JSON_WRITE_HPP

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lamda {

// Appends `s` as a JSON string literal (quotes included), escaping what JSON requires.
inline void append_json_string(std::string& out, std::string_view s) {
    static const char* hex = "0123456789abcdef";
    out += '"';
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 15];
            } else {
                out += ch;
            }
        }
    }
    out += '"';
}

// Streaming writer: the caller opens and closes objects and arrays; commas are automatic.
class JsonWriter {
public:
    JsonWriter& begin_object() { return open('{'); }
    JsonWriter& end_object() { return close('}'); }
    JsonWriter& begin_array() { return open('['); }
    JsonWriter& end_array() { return close(']'); }

    JsonWriter& key(std::string_view k) {
        separate();
        append_json_string(out_, k);
        out_ += ':';
        after_key_ = true;
        return *this;
    }
    JsonWriter& value(std::string_view s) {
        separate();
        append_json_string(out_, s);
        return *this;
    }
    JsonWriter& value(const char* s) { return value(std::string_view(s)); }
    JsonWriter& value(bool b) {
        separate();
        out_ += b ? "true" : "false";
        return *this;
    }
    JsonWriter& value(std::int64_t v) {
        separate();
        out_ += std::to_string(v);
        return *this;
    }
    JsonWriter& value(int v) { return value(static_cast<std::int64_t>(v)); }
    JsonWriter& value(std::uint64_t v) {
        separate();
        out_ += std::to_string(v);
        return *this;
    }
    // Non-finite numbers have no JSON form; they are written as null.
    JsonWriter& value(double v) {
        separate();
        if (!std::isfinite(v)) {
            out_ += "null";
        } else {
            char buffer[64];
            const auto r = std::to_chars(buffer, buffer + sizeof buffer, v);
            out_.append(buffer, r.ptr);
        }
        return *this;
    }
    JsonWriter& null() {
        separate();
        out_ += "null";
        return *this;
    }
    // An absent value is written as null.
    JsonWriter& value(const std::optional<double>& v) { return v ? value(*v) : null(); }
    template <typename T>
    JsonWriter& field(std::string_view k, const T& v) {
        key(k);
        return value(v);
    }

    const std::string& str() const noexcept { return out_; }

private:
    std::string out_;
    std::vector<bool> has_items_;  // per open container
    bool after_key_ = false;

    void separate() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (!has_items_.empty()) {
            if (has_items_.back()) out_ += ',';
            has_items_.back() = true;
        }
    }
    JsonWriter& open(char c) {
        separate();
        out_ += c;
        has_items_.push_back(false);
        return *this;
    }
    JsonWriter& close(char c) {
        out_ += c;
        if (!has_items_.empty()) has_items_.pop_back();
        return *this;
    }
};

}  // namespace lamda

#endif  // LAMDA_DETAIL_JSON_WRITE_HPP
