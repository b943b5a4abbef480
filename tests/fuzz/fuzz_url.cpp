// libFuzzer target for server URLs (detail/url.hpp: the LLM base URL and the device agent URL):
// any bytes give the parts or a problem, never a crash; the parts of a good URL obey its rule.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <lamda/detail/url.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string url(reinterpret_cast<const char*>(data), size);
    lamda::detail::HttpUrl u;
    const std::string problem = lamda::detail::parse_http_url(url, u);
    if (problem.size() > 400) std::abort();  // bounded, whatever the URL's length
    if (!problem.empty()) return 0;
    if (u.scheme != "http" && u.scheme != "https") std::abort();
    if (u.port < 1 || u.port > 65535 || u.host.empty() || u.authority.empty()) std::abort();
    if (!u.prefix.empty() && (u.prefix.front() != '/' || u.prefix.back() == '/')) std::abort();
    return 0;
}
