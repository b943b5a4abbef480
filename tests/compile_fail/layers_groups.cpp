// Must NOT compile: 6 input channels cannot be split into 4 groups.
// Expected diagnostic: "lamda: layer Conv2d: input channels must be divisible by groups"
#include "lamda/dsl/layers.hpp"

namespace L = lamda::layers;

using Net = L::Sequential<L::Input<8, 8, 6>,
                          L::Conv2d<8, 3, 1, L::Same, L::Act::Relu, 1, /*groups=*/4>>;

int main() { return static_cast<int>(Net::macs % 2); }
