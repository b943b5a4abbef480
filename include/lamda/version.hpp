// lamda/version.hpp: the library version, recorded in profiles and reports.
#ifndef LAMDA_VERSION_HPP
#define LAMDA_VERSION_HPP

#define LAMDA_VERSION_MAJOR 0
#define LAMDA_VERSION_MINOR 1
#define LAMDA_VERSION_PATCH 0

namespace lamda {
inline constexpr const char* version_string = "0.1.0";
}  // namespace lamda

#endif  // LAMDA_VERSION_HPP
