// Must NOT compile: a valid 5x5 convolution of a 4x4 input has no output.
// Expected diagnostic: "lamda: layer Conv2d: the kernel (with dilation) is larger than ..."
#include "lamda/dsl/layers.hpp"

namespace L = lamda::layers;

using Net = L::Sequential<L::Input<4, 4, 3>, L::Conv2d<8, 5, 1, L::Valid>, L::GlobalAvgPool>;

int main() { return static_cast<int>(Net::params % 2); }
