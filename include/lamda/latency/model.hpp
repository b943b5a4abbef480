// lamda/latency/model.hpp: the empirical latency model of a device, all of it: operators and their
// features (latency/features.hpp, from the executor's own operator plan, exec/plan.hpp), ridge
// fit (latency/ridge.hpp), the per-kind model with its calibration and accuracy figures
// (latency/predictor.hpp), and the profile file carrying samples, fit and a device fingerprint
// (latency/profile_file.hpp).
//
//   lamda::LatencyProfile p = lamda::read_latency_profile("PROFILE.json");  // throws ProfileError
//   if (auto w = lamda::fingerprint_warning(p.fingerprint, lamda::current_fingerprint(1)); !w.empty())
//       std::cerr << w << '\n';
//   lamda::LatencyPrediction r = p.model.predict(graph);   // r.total_ms, r.per_layer_ms
//
// Compiled only with LAMDA_WITH_LATENCY defined (needs Eigen, include path /usr/include/eigen3,
// and simdjson, link -lsimdjson). Prediction needs nothing else; measuring (latency/profiler.hpp)
// also needs LAMDA_WITH_XNNPACK.
#ifndef LAMDA_LATENCY_MODEL_HPP
#define LAMDA_LATENCY_MODEL_HPP

#include "../exception.hpp"
#include "../exec/plan.hpp"

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/latency/model.hpp needs LAMDA_WITH_LATENCY (Eigen and simdjson; CMake: link lamda::latency)"
#else

#include "features.hpp"
#include "ridge.hpp"
#include "predictor.hpp"
#include "profile_file.hpp"

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_LATENCY_MODEL_HPP
