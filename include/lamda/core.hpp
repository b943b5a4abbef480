// lamda/core.hpp: the runtime-free core, for firmware and any project that only needs to read,
// check and analyse models: the IR, diagnostics and the one error model, limits and validation,
// the exact analysis (params, MACs, memory), the firmware arena's liveness plan, the DSL parser, printer and
// formatter, and the compile-time layer templates.
//
//   #include <lamda/core.hpp>
//   lamda::ParseResult r = lamda::parse_dsl(text, "model.lamda");
//   if (!r.ok()) { for (auto& d : r.diagnostics) puts(lamda::format_diagnostic(d).c_str()); }
//   lamda::ModelStats s = lamda::analyze(r.graph);
//
// Contract: compiles with -std=c++17 -fno-exceptions -fno-rtti; never throws (failures are
// values: ParseResult's diagnostics, lamda::Error); includes none of <thread> <filesystem>
// <fstream> <random> <iostream>; needs no third-party library. Everything else (executors, the
// latency model, the search, the LLM generator, training, export) is in lamda/lamda.hpp.
// single_include/lamda/lamda_core.hpp is this header and its parts in one file.
#ifndef LAMDA_CORE_HPP
#define LAMDA_CORE_HPP

#include "version.hpp"
#include "core/error.hpp"
#include "core/ir.hpp"
#include "core/diagnostics.hpp"
#include "core/analysis.hpp"
#include "core/arena_plan.hpp"
#include "core/quant.hpp"
#include "core/validate.hpp"
#include "core/rewrite.hpp"
#include "dsl/parser.hpp"
#include "dsl/format.hpp"
#include "dsl/layers.hpp"

#endif  // LAMDA_CORE_HPP
