// lamda/detail/url.hpp: an http(s) URL of a server lamda talks to, split into its parts: the one
// rule for the LLM client's base URL (llm/client.hpp) and the device agent client's URL
// (agent/agent.hpp). Core (C++17 only); whether https is available is the caller's check (it
// depends on cpp-httplib's OpenSSL support).
//
//   lamda::detail::HttpUrl u;
//   if (std::string e = lamda::detail::parse_http_url("http://[::1]:8080/v1/", u); !e.empty())
//       throw MyError("'" + url + "': " + e);  // u.host "::1", u.port 8080, u.prefix "/v1"
//
// Accepted: SCHEME://HOST[:PORT][/PREFIX] with SCHEME http or https (any case), HOST a name, an
// IPv4 address or a bracketed IPv6 address, PORT 1..65535 (default 80 or 443), and no user
// info, query or fragment. Trailing slashes of the prefix are dropped.
#ifndef LAMDA_DETAIL_URL_HPP
#define LAMDA_DETAIL_URL_HPP

#include <cctype>
#include <cstddef>
#include <string>

namespace lamda::detail {

struct HttpUrl {
    std::string scheme;     // "http" or "https", lower case
    std::string authority;  // HOST[:PORT] as written
    std::string host;       // without an IPv6 address's brackets
    int port = 0;           // the URL's, else the scheme's (80, 443)
    std::string prefix;     // "" or "/v1" (no trailing slash)
};

// Fills `u` from `url`; returns "" when the URL is good, else what is wrong with it (for a message
// that names the URL first).
inline std::string parse_http_url(const std::string& url, HttpUrl& u) {
    u = HttpUrl{};
    const std::size_t colon = url.find("://");
    if (colon == std::string::npos) return "not a URL (expected http://HOST:PORT or https://HOST:PORT)";
    for (std::size_t i = 0; i < colon; ++i) u.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(url[i])));
    if (u.scheme != "http" && u.scheme != "https") return "the scheme must be http or https";
    const std::string rest = url.substr(colon + 3);
    const std::size_t slash = rest.find('/');
    u.authority = rest.substr(0, slash);
    if (u.authority.empty() || u.authority.find_first_of(" @?#") != std::string::npos)
        return "expected a host (and port) after " + u.scheme + "://";
    // HOST[:PORT] or [IPv6][:PORT]; a port, when there is a colon, is a number in 1..65535.
    std::size_t host_end = u.authority.rfind(':');
    if (u.authority.front() == '[') {
        const std::size_t close = u.authority.find(']');
        if (close == std::string::npos || close == 1 ||
            (close + 1 < u.authority.size() && u.authority[close + 1] != ':'))
            return "expected [IPv6 address]:PORT after " + u.scheme + "://";
        host_end = close + 1 < u.authority.size() ? close + 1 : std::string::npos;
    }
    u.port = u.scheme == "https" ? 443 : 80;
    if (host_end != std::string::npos) {
        const std::string port = u.authority.substr(host_end + 1);
        const bool digits = !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos;
        const long value = digits ? std::stol(port) : 0;
        if (host_end == 0 || value < 1 || value > 65535)
            return "expected HOST:PORT with a port in 1..65535 after " + u.scheme + "://, got '" +
                   (u.authority.size() > 200 ? u.authority.substr(0, 200) + "..." : u.authority) + "'";
        u.port = static_cast<int>(value);
    }
    u.host = u.authority.substr(0, host_end);
    if (u.host.size() >= 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
    if (slash != std::string::npos) u.prefix = rest.substr(slash);
    while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
    if (u.prefix.find_first_of("?# ") != std::string::npos) return "a server URL takes no query or fragment";
    return {};
}

}  // namespace lamda::detail

#endif  // LAMDA_DETAIL_URL_HPP
