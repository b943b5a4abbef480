// Must NOT compile: the two branches of an Add produce 16 and 32 channels.
// Expected diagnostic: "lamda: layer Add: branches produce different shapes ..."
#include "lamda/dsl/layers.hpp"

namespace L = lamda::layers;

using Net = L::Sequential<L::Input<28, 28, 3>, L::Conv2d<16, 3>,
                          L::Add<L::Sequential<L::Conv2d<16, 3>, L::BatchNorm>,
                                 L::Sequential<L::Conv2d<32, 1>, L::BatchNorm>>,
                          L::GlobalAvgPool, L::FullyConnected<10>>;

int main() { return static_cast<int>(Net::params % 2); }
