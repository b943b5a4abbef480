// libFuzzer target for ONNX import: any bytes give a model or an OnnxImportError (a lamda::Exception),
// never a crash, a protobuf CHECK, a hang or unbounded memory; a model that imports checks.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <lamda/deploy/onnx_import.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > (std::size_t{1} << 20)) return 0;
    onnx::ModelProto model;
    if (!model.ParseFromArray(data, static_cast<int>(size))) return 0;
    try {
        const lamda::OnnxImport m = lamda::import_onnx(model, "fuzz");
        if (m.graph.layers.empty()) std::abort();
        if (!lamda::validate_weights(m.graph, m.weights).empty()) std::abort();
    } catch (const lamda::Exception&) {
    }
    return 0;
}
