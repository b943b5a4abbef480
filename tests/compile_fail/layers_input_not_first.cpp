// Must NOT compile: an Input in the middle of a model.
// Expected diagnostic: "lamda: layer Input must come first ..."
#include "lamda/dsl/layers.hpp"

namespace L = lamda::layers;

using Net = L::Sequential<L::Input<8, 8, 3>, L::Conv2d<8, 3>, L::Input<8, 8, 8>, L::Relu>;

int main() { return static_cast<int>(Net::params % 2); }
