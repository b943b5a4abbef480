// lamda/lamda.hpp: the umbrella header. The dependency-free core (IR, DSL, analysis, layer
// templates, reference executor) needs only a C++17 compiler; parts that need a third-party
// library compile to nothing unless their macro is defined (LAMDA_WITH_XNNPACK, ...).
#ifndef LAMDA_LAMDA_HPP
#define LAMDA_LAMDA_HPP

// The dependency-free core first, so that the optional headers below, which include parts of it
// inside their own #if blocks, find it already there (and the single header holds it once).
#include "version.hpp"
#include "ir.hpp"
#include "diagnostics.hpp"
#include "analysis.hpp"
#include "validate.hpp"
#include "dsl.hpp"
#include "json.hpp"
#include "stats.hpp"
#include "device.hpp"
#include "layers.hpp"
#include "sample.hpp"
#include "tensor.hpp"
#include "weights.hpp"
#include "reference.hpp"
#include "fold.hpp"
#include "pool_plan.hpp"
#include "latency_fusion.hpp"
#include "search.hpp"
#include "design.hpp"
#include "proposers.hpp"

// Optional parts, each before any header that includes it inside an #if block (an include
// inlined under a condition is inlined again where it is next needed unconditionally).
#include "xnnpack.hpp"  // empty unless LAMDA_WITH_XNNPACK is defined
#include "bench.hpp"    // empty unless LAMDA_WITH_XNNPACK is defined
#include "export.hpp"    // lamda export: PyTorch module and firmware header sources
#include "dataset.hpp"  // .gz files need LAMDA_WITH_ZLIB, evaluate_accuracy LAMDA_WITH_XNNPACK
#include "json_read.hpp"  // empty unless LAMDA_WITH_LATENCY is defined (simdjson)
#include "latency.hpp"  // prediction only with LAMDA_WITH_LATENCY (Eigen, simdjson)
#include "train.hpp"    // empty unless LAMDA_WITH_TORCH is defined (libtorch)
#include "onnx_import.hpp"  // empty unless LAMDA_WITH_ONNX is defined (libonnx-dev)
#include "task.hpp"       // writing tasks; reading them needs LAMDA_WITH_LATENCY
#include "journal.hpp"    // writing lines; the reader and JournalWriter need LAMDA_WITH_LATENCY
#include "report.hpp"     // report.json and report.html (core)
#include "generate.hpp"   // the generation loop: LAMDA_WITH_LATENCY (measuring: LAMDA_WITH_XNNPACK)
#include "llm.hpp"        // empty unless LAMDA_WITH_LLM is defined (cpp-httplib, simdjson)
#include "agent.hpp"      // empty unless LAMDA_WITH_AGENT is defined (cpp-httplib, XNNPACK, simdjson)

#endif  // LAMDA_LAMDA_HPP
