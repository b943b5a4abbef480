// lamda/exec/pool_plan.hpp: how a maxpool/avgpool layer maps onto a framework's pool (PyTorch's:
// floor-mode output size, symmetric padding of at most half the kernel). Shared by the libtorch
// model (train/torch_module.hpp) and the PyTorch module lamda exports (deploy/export.hpp), so the two agree.
#ifndef LAMDA_EXEC_POOL_PLAN_HPP
#define LAMDA_EXEC_POOL_PLAN_HPP

#include <array>
#include <cstdint>

#include "../core/ir.hpp"

namespace lamda {

// Either the framework's own pool (`native`: symmetric padding within half the kernel, and
// floor-mode arithmetic giving the inferred size), or explicit padding/cropping to exactly the
// span the output windows cover followed by an unpadded pool.
struct PoolPlan {
    bool native = true;
    // left, right, top, bottom (torch's constant_pad_nd / F.pad order); native: the symmetric
    // padding the pool itself applies. A negative amount crops rows no window reads.
    std::array<std::int64_t, 4> pad{0, 0, 0, 0};
};

inline PoolPlan plan_pool(const Layer& l, const Shape& in) {
    PoolPlan p;
    const std::int64_t top = l.pads[0], left = l.pads[1], bottom = l.pads[2], right = l.pads[3];
    const bool symmetric = top == bottom && left == right && 2 * top <= l.kernel_h &&
                           2 * left <= l.kernel_w;
    const bool floor_fits =
        (in.h + 2 * top - l.kernel_h) / l.stride_h + 1 == l.shape.h &&
        (in.w + 2 * left - l.kernel_w) / l.stride_w + 1 == l.shape.w &&
        in.h + 2 * top >= l.kernel_h && in.w + 2 * left >= l.kernel_w;
    if (symmetric && floor_fits) {
        p.pad = {left, left, top, top};
        return p;
    }
    p.native = false;
    // The windows cover exactly (out-1)*stride + kernel rows starting at -top.
    const std::int64_t need_h = (l.shape.h - 1) * l.stride_h + l.kernel_h;
    const std::int64_t need_w = (l.shape.w - 1) * l.stride_w + l.kernel_w;
    p.pad = {left, need_w - in.w - left, top, need_h - in.h - top};
    return p;
}

}  // namespace lamda

#endif  // LAMDA_EXEC_POOL_PLAN_HPP
