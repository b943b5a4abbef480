// lamda/data/tensor.hpp: a run-time activation tensor (NHWC float32, batch 1) and the executors' error.
#ifndef LAMDA_DATA_TENSOR_HPP
#define LAMDA_DATA_TENSOR_HPP

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "../exception.hpp"
#include "../core/ir.hpp"

namespace lamda {

// One value: height x width x channels, stored in NHWC order (channels fastest), batch 1.
struct Tensor {
    Shape shape;
    std::vector<float> data;  // shape.elements() values

    Tensor() = default;
    explicit Tensor(const Shape& s, float fill = 0.0f)
        : shape(s), data(static_cast<std::size_t>(s.known() ? s.elements() : 0), fill) {}

    float& at(std::int64_t y, std::int64_t x, std::int64_t c) {
        return data[static_cast<std::size_t>((y * shape.w + x) * shape.c + c)];
    }
    float at(std::int64_t y, std::int64_t x, std::int64_t c) const {
        return data[static_cast<std::size_t>((y * shape.w + x) * shape.c + c)];
    }
};

// Thrown by the executors (reference and XNNPACK) when a graph, its weights or an input cannot be
// run; the message names the layer (and tensor) concerned.
class ExecutorError : public Exception {
public:
    using Exception::Exception;
};

}  // namespace lamda

#endif  // LAMDA_DATA_TENSOR_HPP
