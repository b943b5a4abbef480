// lamda/lamda.hpp: the umbrella header, a facade over the pipeline's folders (docs/architecture.md):
//   core/    IR, the error model, diagnostics, limits, validation, analysis   (lamda/core.hpp)
//   dsl/     the DSL parser and printer, compile-time layer templates        (lamda/core.hpp)
//   data/    tensors, weight files (safetensors), datasets (IDX, npy)
//   exec/    the lowering plan, reference and XNNPACK executors, bench, fold, device
//   latency/ the latency model (features, ridge fit, profile file) and its profiler
//   search/  task, journal, proposers, designer, sampler, the loop, the report
//   llm/     the LLM generator
//   train/   libtorch training, fake quantization and quantization-aware fine-tuning
//   deploy/  ONNX import, PyTorch, Linux-header and microcontroller-firmware export
//   agent/   the on-device measurement agent and its client
//   detail/  small shared helpers (hash, JSON writing and reading, statistics)
// Contract: the core needs only a C++17 compiler; each optional part is included here only when
// its feature macro is defined (LAMDA_WITH_XNNPACK, LAMDA_WITH_LATENCY, LAMDA_WITH_TORCH,
// LAMDA_WITH_ONNX, LAMDA_WITH_LLM, LAMDA_WITH_AGENT), and including one of those headers
// directly without its macro is an #error that names the macro.
#ifndef LAMDA_LAMDA_HPP
#define LAMDA_LAMDA_HPP

// The dependency-free parts first, so that the optional headers below, which include parts of it
// inside their own #if blocks, find it already there (and the single header holds it once).
#include "core.hpp"
#include "exception.hpp"
#include "dsl/file.hpp"
#include "detail/json_write.hpp"
#include "detail/stats.hpp"
#include "exec/device.hpp"
#include "search/sampler.hpp"
#include "data/tensor.hpp"
#include "data/weights.hpp"
#include "exec/reference.hpp"
#include "exec/fold.hpp"
#include "exec/pool_plan.hpp"
#include "exec/plan.hpp"
#include "search/types.hpp"
#include "search/designer.hpp"
#include "search/proposers.hpp"
#include "search/inherit.hpp"
#include "llm/grammar.hpp"     // the DSL as a GBNF grammar and a JSON schema (no feature needed)

// Optional parts, each before any header that includes it inside an #if block (an include
// inlined under a condition is inlined again where it is next needed unconditionally).
#if defined(LAMDA_WITH_XNNPACK)
#include "exec/xnnpack.hpp"
#include "exec/bench.hpp"
#endif
#include "deploy/export.hpp"  // PyTorch module and Linux header sources (the header's run() needs XNNPACK)
#include "deploy/firmware.hpp"  // dependency-free C99 firmware for microcontrollers
#include "data/dataset.hpp"   // .gz files need LAMDA_WITH_ZLIB, evaluate_accuracy LAMDA_WITH_XNNPACK
#if defined(LAMDA_WITH_LATENCY)
#include "detail/json_read.hpp"
#include "latency/model.hpp"
#endif
#if defined(LAMDA_WITH_TORCH)
#include "train/trainer.hpp"
#include "train/qat.hpp"
#endif
#if defined(LAMDA_WITH_ONNX)
#include "deploy/onnx_import.hpp"
#endif
#include "search/task.hpp"     // writing tasks; reading them needs LAMDA_WITH_LATENCY
#include "search/journal.hpp"  // writing lines; the reader and JournalWriter need LAMDA_WITH_LATENCY
#include "search/report.hpp"   // report.json and report.html
#if defined(LAMDA_WITH_LATENCY)
#include "search/loop.hpp"     // measuring needs LAMDA_WITH_XNNPACK too
#include "search/generate.hpp" // the whole search in one call (what `lamda generate` runs)
#include "search/parallel.hpp" // several candidates in flight (--workers N; the MPI runner's wire format)
#endif
#if defined(LAMDA_WITH_MPI) && defined(LAMDA_WITH_LATENCY)
#include "search/mpi.hpp"      // mpirun -n N: rank 0 searches, the other ranks evaluate
#endif
#if defined(LAMDA_WITH_LATENCY) && defined(LAMDA_WITH_XNNPACK)
#include "latency/profiler.hpp"
#endif
#if defined(LAMDA_WITH_LLM)
#include "llm/llm.hpp"
#endif
#if defined(LAMDA_WITH_AGENT)
#include "agent/agent.hpp"
#endif

#endif  // LAMDA_LAMDA_HPP
