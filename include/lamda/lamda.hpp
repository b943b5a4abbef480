// lamda/lamda.hpp: the umbrella header. The dependency-free core (IR, DSL, analysis, layer
// templates, reference executor) needs only a C++17 compiler; parts that need a third-party
// library compile to nothing unless their macro is defined (LAMDA_WITH_XNNPACK, ...).
#ifndef LAMDA_LAMDA_HPP
#define LAMDA_LAMDA_HPP

#include "version.hpp"
#include "ir.hpp"
#include "diagnostics.hpp"
#include "analysis.hpp"
#include "validate.hpp"
#include "dsl.hpp"
#include "json.hpp"
#include "layers.hpp"
#include "sample.hpp"
#include "latency.hpp"  // prediction only with LAMDA_WITH_LATENCY (Eigen, simdjson)
#include "device.hpp"
#include "stats.hpp"
#include "bench.hpp"  // empty unless LAMDA_WITH_XNNPACK is defined
#include "tensor.hpp"
#include "weights.hpp"
#include "reference.hpp"
#include "xnnpack.hpp"  // empty unless LAMDA_WITH_XNNPACK is defined

#endif  // LAMDA_LAMDA_HPP
