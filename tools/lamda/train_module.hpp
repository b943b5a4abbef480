// The lamda tool's libtorch half, lamda-train.so, loaded only by the commands that train.
//
// Linking libtorch costs a process ~0.7 s before main() (its operator registry's static
// initialisers; measured on a 2-core x86-64): every `lamda check`, `fmt` or `run` paid it, and
// CI's several hundred lamda runs paid it each time. So tools/lamda/cmd_train.cpp, the only
// translation unit that sees libtorch, is a module of its own that `lamda train`, `generate`
// (when it trains) and `quantize --fake-quant/--qat-epochs` open on first use (dlopen), through
// the table of functions below; every other command starts without libtorch.
//
// Where it is looked for, in order: the file $LAMDA_TRAIN_MODULE names; lamda-train.so beside
// the lamda executable (a build tree); LAMDA_TRAIN_MODULE_RELDIR/lamda-train.so relative to the
// executable's directory (an installed lamda: the build system sets it to the path from the
// binary directory to LIBDIR/lamda, or to LIBDIR/lamda itself when either is absolute). A module
// from another lamda build is refused by its stamp.
#ifndef LAMDA_TOOLS_TRAIN_MODULE_HPP
#define LAMDA_TOOLS_TRAIN_MODULE_HPP

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <lamda/core/error.hpp>
#include <lamda/data/dataset.hpp>
#include <lamda/detail/hash.hpp>
#include <lamda/exception.hpp>
#include <lamda/exec/reference_int8.hpp>
#include <lamda/search/types.hpp>
#include <lamda/version.hpp>

#if defined(__linux__)
#include <dlfcn.h>
#include <unistd.h>
#endif

// The build systems set it from their install directories; this is their default layout.
#if !defined(LAMDA_TRAIN_MODULE_RELDIR)
#define LAMDA_TRAIN_MODULE_RELDIR "../lib/lamda"
#endif

namespace lamda_cli {

// `lamda train`'s options (cmd_train.hpp registers them; the module runs them).
struct TrainArgs {
    std::string model;
    std::string dataset;
    std::string out;
    std::string optimizer = "adam";
    int epochs = 0;  // 0: the mode's default
    double max_seconds = 0;  // --max-seconds: TrainOptions::max_seconds (0: none)
    int batch = 0;
    double lr = 0;
    double weight_decay = -1;
    double label_smoothing = -1;
    int shift = -1;
    bool no_flip = false;
    double erase = -1;  // --erase P: random erasing's probability; < 0: the mode's default
    bool no_cosine = false;
    bool nchw = false;  // --nchw: TrainOptions::channels_last off
    double val_fraction = 0.1;
    std::uint64_t seed = 1;
    int threads = 1;
    std::size_t subset = 0;
    long long batchnorm_images = -1;  // --batchnorm-images N; < 0: the mode's default
    double progress_s = -1;  // seconds between lines within an epoch; < 0: 1 on a terminal, 15 in a log
    bool proxy = false;
    bool json = false;
    std::string init;             // --init W: start from these weights (fine-tuning)
    std::string teacher;          // --teacher M: distil this trained model (with --teacher-weights)
    std::string teacher_weights;  // default: M with .safetensors
    double distill = 0.5;         // --distill: the teacher's share of the loss
    double distill_temperature = 4;
};

// What `lamda quantize --qat-epochs` fine-tuning returns.
struct QatRun {
    lamda::PtqResult ptq;  // quantize_ptq of the fine-tuned weights
    std::vector<double> epoch_loss;
    std::int64_t train_images = 0;
    double seconds = 0;
};

// The module's functions. Both sides are built from these headers by one build, and the stamp
// below must match: a table from another build is never called.
struct TrainModule {
    const char* version;      // lamda::version_string of the build that made the module
    std::uint64_t layout;     // train_module_layout() there
    // `lamda train`; returns the exit code.
    int (*run_train)(const TrainArgs& args);
    // A trainer on `dataset` (a name or directory) with train/trainer.hpp's proxy and full
    // defaults, `threads` threads and seed `seed`; `full_epochs` > 0 overrides the full training's
    // epoch count, `full_erase` >= 0 its random erasing probability. Throws lamda::DatasetError
    // when the dataset cannot be loaded.
    std::unique_ptr<lamda::Trainer> (*make_trainer)(const std::string& dataset, int threads, std::uint64_t seed,
                                                    int full_epochs, double full_erase);
    // Top-1 accuracy of `q` through libtorch with fake quantization, on the first `limit` images of `d`.
    lamda::Accuracy (*fake_quant_accuracy)(const lamda::PtqResult& q, const lamda::Dataset& d, std::size_t limit,
                                           int threads);
    // Quantization-aware fine-tuning of `weights` on `train` (progress on stderr).
    QatRun (*qat_finetune)(const lamda::Graph& graph, const lamda::Weights& weights, const lamda::Dataset& train,
                           const std::vector<lamda::Tensor>& calibration, const lamda::PtqOptions& ptq, int epochs,
                           double lr, std::size_t subset, std::uint64_t seed, int threads);
};

// The sizes of what crosses between the two sides: a header changed between the builds of the
// executable and of the module shows here even when the version string did not change.
inline std::uint64_t train_module_layout() {
    const std::uint64_t sizes[] = {sizeof(TrainModule),       sizeof(TrainArgs),      sizeof(QatRun),
                                   sizeof(lamda::PtqResult),  sizeof(lamda::PtqOptions), sizeof(lamda::Dataset),
                                   sizeof(lamda::Graph),      sizeof(lamda::Accuracy),
                                   // what the search's Trainer returns across the boundary
                                   sizeof(lamda::FinalTraining), sizeof(lamda::QuantizedAccuracy)};
    return lamda::detail::fnv1a(std::string_view(reinterpret_cast<const char*>(sizes), sizeof sizes));
}

// The module's one exported symbol.
inline constexpr const char* train_module_entry = "lamda_train_module_v1";
using TrainModuleEntry = const TrainModule* (*)();

namespace train_module_detail {

// The directory of the running executable, or "" where it cannot be found.
inline std::string executable_dir() {
#if defined(__linux__)
    std::vector<char> buf(4096);
    const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    if (n <= 0) return {};
    std::string path(buf.data(), static_cast<std::size_t>(n));
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
#else
    return {};
#endif
}

// Opens the module at `path`; returns its table, or null with `why` set.
inline const TrainModule* open_module(const std::string& path, std::string& why) {
#if defined(__linux__)
    if (::access(path.c_str(), F_OK) != 0) {
        why = path + ": not found";
        return nullptr;
    }
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* e = ::dlerror();
        why = e ? std::string(e) : path + ": dlopen failed";
        return nullptr;
    }
    void* symbol = ::dlsym(handle, train_module_entry);
    if (!symbol) {
        why = path + ": no " + std::string(train_module_entry) + " (not a lamda training module)";
        ::dlclose(handle);
        return nullptr;
    }
    TrainModuleEntry entry = nullptr;
    static_assert(sizeof entry == sizeof symbol, "a function pointer the size of dlsym's");
    std::memcpy(&entry, &symbol, sizeof entry);  // POSIX: dlsym's object pointer is the function
    const TrainModule* module = entry();
    if (!module || !module->version || std::strcmp(module->version, lamda::version_string) != 0 ||
        module->layout != train_module_layout()) {
        why = path + ": from another lamda build (" +
              (module && module->version ? std::string("version ") + module->version : std::string("no version")) +
              ", this lamda is " + lamda::version_string + "); reinstall lamda, or rebuild it";
        ::dlclose(handle);
        return nullptr;
    }
    return module;  // never closed: trainers it made live until the process ends
#else
    why = path + ": loading the training module is implemented for Linux only";
    return nullptr;
#endif
}

inline const TrainModule& load() {
    std::vector<std::string> paths;
    if (const char* env = std::getenv("LAMDA_TRAIN_MODULE"); env && *env) {
        paths.emplace_back(env);
    } else {
        const std::string dir = executable_dir();
        const std::string installed = LAMDA_TRAIN_MODULE_RELDIR;  // absolute where LIBDIR is
        if (!dir.empty()) paths.push_back(dir + "/lamda-train.so");
        if (!installed.empty() && installed.front() == '/') paths.push_back(installed + "/lamda-train.so");
        else if (!dir.empty()) paths.push_back(dir + "/" + installed + "/lamda-train.so");
    }
    std::string tried;
    for (const std::string& path : paths) {
        std::string why;
        if (const TrainModule* m = open_module(path, why)) return *m;
        tried += (tried.empty() ? "" : "; ") + why;
    }
    throw lamda::Exception(
        lamda::Error(lamda::ErrorKind::unsupported, lamda::Where{},
                     "this lamda trains through its libtorch module, lamda-train.so, which could not be loaded (" +
                         (tried.empty() ? std::string("no place to look for it") : tried) + ")",
                     "set LAMDA_TRAIN_MODULE to the file's path, or reinstall lamda"));
}

}  // namespace train_module_detail

// The module, opened on first use (thread-safe); throws lamda::Exception (unsupported) naming
// every place it looked when it cannot be loaded.
inline const TrainModule& train_module() {
    static const TrainModule& module = train_module_detail::load();
    return module;
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_TRAIN_MODULE_HPP
