// Must NOT compile: a FullyConnected layer reads a 14x14x8 value.
// Expected diagnostic: "lamda: layer FullyConnected: input must be 1x1xC ..."
#include "lamda/dsl/layers.hpp"

namespace L = lamda::layers;

using Net = L::Sequential<L::Input<28, 28, 1>, L::Conv2d<8, 3, 2>, L::FullyConnected<10>>;

int main() { return static_cast<int>(Net::params % 2); }
