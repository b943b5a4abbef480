// The trainer (train/trainer.hpp) on small synthetic datasets, so that it runs in seconds: every op of the
// catalog trains, the exported (batch-norm-folded) weights give XNNPACK the accuracy libtorch
// measured, training is deterministic under a seed, and the generation loop's TorchTrainer works.
// Built into lamda_torch_tests (libtorch headers compile slowly: torch code stays in few files).
#include <doctest/doctest.h>

#if defined(LAMDA_WITH_TORCH)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lamda/train/trainer.hpp"  // first: it must compile on its own with libtorch too

#include "lamda/train/qat.hpp"

#include "lamda/data/dataset.hpp"
#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/exec/fold.hpp"
#include "lamda/exec/reference_int8.hpp"
#include "lamda/data/weights.hpp"

#include "../executor_test_support.hpp"

#include <unistd.h>  // getpid

using lamda::Dataset;
using lamda::Graph;
using lamda::TrainOptions;

namespace {

using lamda_test::graph_of;

// `n` images of `shape` in `classes` classes: class k is a bright 3x3 square around the k-th of
// `classes` positions spread over the image (jittered by a pixel), on uniform noise. Learnable
// by a tiny network in a few epochs.
Dataset synthetic(std::size_t n, lamda::Shape shape, int classes, std::uint64_t seed) {
    Dataset d;
    d.shape = shape;
    d.classes = classes;
    lamda::detail::SplitMix64 rng{seed};
    const auto per = static_cast<std::size_t>(shape.elements());
    d.images.resize(n * per);
    for (std::size_t i = 0; i < n; ++i) {
        const int k = static_cast<int>(rng.next() % static_cast<std::uint64_t>(classes));
        d.labels.push_back(k);
        float* img = d.images.data() + i * per;
        for (std::size_t j = 0; j < per; ++j) img[j] = rng.uniform(0.0f, 0.4f);
        const std::int64_t cols = 2, rows = (classes + 1) / 2;
        const std::int64_t cy = (2 * (k / cols) + 1) * shape.h / (2 * rows) + static_cast<std::int64_t>(rng.next() % 3) - 1;
        const std::int64_t cx = (2 * (k % cols) + 1) * shape.w / (2 * cols) + static_cast<std::int64_t>(rng.next() % 3) - 1;
        for (std::int64_t y = cy - 1; y <= cy + 1; ++y)
            for (std::int64_t x = cx - 1; x <= cx + 1; ++x)
                if (y >= 0 && y < shape.h && x >= 0 && x < shape.w)
                    for (std::int64_t c = 0; c < shape.c; ++c)
                        img[(y * shape.w + x) * shape.c + c] = 1.0f - 0.2f * static_cast<float>(c);
    }
    return d;
}

TrainOptions quick(int epochs) {
    TrainOptions o;
    o.epochs = epochs;
    o.batch_size = 16;
    o.lr = 1e-2;
    o.seed = 3;
    return o;
}

// Two tiny models that together hold every op of the catalog.
const char* const every_op_models[] = {
    "model chain\n"
    "input: input shape=8x8x2\n"
    "c1: conv2d out=6 kernel=3 bias=false\n"
    "bn: batchnorm\n"
    "r: relu\n"
    "mp: maxpool kernel=2\n"
    "dw: dwconv kernel=3 multiplier=2\n"
    "r6: relu6\n"
    "ap: avgpool kernel=2\n"
    "fl: flatten\n"
    "dr: dropout rate=0.1\n"
    "fc: fc out=4\n",
    "model branches\n"
    "input: input shape=8x8x2\n"
    "stem: conv2d out=6 kernel=3 stride=2 act=relu\n"
    "a: conv2d out=6 kernel=1\n"
    "hs: hardswish\n"
    "s: add stem, hs act=relu\n"
    "g: gap\n"
    "e1: conv2d out=6 kernel=1\n"
    "hsig: hardsigmoid\n"
    "m: mul s, hsig\n"
    "b2: conv2d out=3 kernel=1\n"
    "sg: sigmoid\n"
    "cat: concat m, sg\n"
    "p: flatten\n"
    "logits: fc out=4\n"
    "prob: softmax\n",
};

}  // namespace

#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 33) && !defined(__SANITIZE_ADDRESS__)
TEST_CASE("train: keep_freed_memory_for_training keeps a freed block of megabytes in the process") {
    REQUIRE(lamda::keep_freed_memory_for_training());
    // Over glibc's first mmap threshold (128 KiB), and over the largest it can be set to (32 MiB).
    for (const std::size_t size : {std::size_t{8} << 20, std::size_t{48} << 20}) {
        INFO("block of " << (size >> 20) << " MiB");
        void* block = std::malloc(size);
        REQUIRE(block != nullptr);
        static_cast<volatile char*>(block)[size - 1] = 1;
        CHECK(mallinfo2().hblkhd < size);  // not a mapping of its own
        std::free(block);
        // On the heap's free list for the next step's tensors, not unmapped.
        CHECK(mallinfo2().fordblks >= size);
    }
}
#endif

TEST_CASE("train: every op of the catalog trains (gradients flow, the loss falls)") {
    const Dataset train = synthetic(192, {8, 8, 2}, 4, 1), val = synthetic(64, {8, 8, 2}, 4, 2);
    std::set<lamda::OpKind> covered;
    for (const char* text : every_op_models) {
        const Graph g = graph_of(text);
        INFO("model " << g.name);
        for (const lamda::Layer& l : g.layers) covered.insert(l.op);

        // One backward pass reaches every parameter.
        torch::manual_seed(1);
        lamda::TorchModel model(g);
        model.train();
        std::vector<float> buf(16 * 128);
        std::copy(train.images.begin(), train.images.begin() + 16 * 128, buf.begin());
        const torch::Tensor x = torch::from_blob(buf.data(), {16, 8, 8, 2}).permute({0, 3, 1, 2});
        const torch::Tensor y = torch::arange(16, torch::kInt64).remainder(4);
        const torch::Tensor out = model.forward(x).reshape({16, -1});
        const torch::Tensor logp = g.output().op == lamda::OpKind::Softmax ? torch::log(out) : torch::log_softmax(out, 1);
        torch::nll_loss(logp, y).backward();
        for (const auto& p : model.named_parameters()) {
            INFO("parameter " << p.key());
            REQUIRE(p.value().grad().defined());
            const double norm = p.value().grad().norm().item<double>();
            CHECK(std::isfinite(norm));
            CHECK(norm > 0);
        }

        const lamda::TrainResult r = lamda::train_model(g, train, val, nullptr, quick(6));
        REQUIRE(r.epoch_loss.size() == 6);
        INFO("epoch losses " << r.epoch_loss.front() << " ... " << r.epoch_loss.back());
        CHECK(r.epoch_loss.back() < 0.8 * r.epoch_loss.front());
        CHECK(r.val_accuracy > 0.5);  // 4 classes: 0.25 by chance
        CHECK(r.train_images == 192);
        CHECK(r.val_images == 64);
        CHECK(lamda::validate_weights(r.graph, r.weights).empty());
        for (const lamda::Layer& l : r.graph.layers) CHECK(l.name != "bn");  // folded
    }
    for (lamda::OpKind op : lamda::all_op_kinds) {
        INFO("op " << lamda::op_name(op));
        CHECK(covered.count(op) == 1);
    }
}

TEST_CASE("train: XNNPACK on the exported weights agrees with libtorch's accuracy") {
    const Graph g = graph_of(
        "model small\n"
        "input: input shape=12x12x1\n"
        "c1: conv2d out=8 kernel=3 bias=false\n"
        "bn1: batchnorm\n"
        "r1: relu\n"
        "p1: maxpool kernel=2\n"
        "c2: conv2d out=8 kernel=3\n"
        "bn2: batchnorm\n"
        "r2: relu\n"
        "g: gap\n"
        "fc: fc out=6\n");
    const Dataset train = synthetic(480, {12, 12, 1}, 6, 11), val = synthetic(100, {12, 12, 1}, 6, 12);
    const Dataset test = synthetic(1000, {12, 12, 1}, 6, 13);
    TrainOptions o = quick(2);
    o.shift = 1;
    o.flip = true;
    o.label_smoothing = 0.1;
    const lamda::TrainResult r = lamda::train_model(g, train, val, &test, o);
    REQUIRE(r.test_accuracy.has_value());
    CHECK(r.test_images == 1000);
    CHECK(*r.test_accuracy > 0.3);  // it learned something (chance: 1/6)
    CHECK(r.graph.layers.size() == g.layers.size() - 2);  // both batchnorms folded

    // libtorch on the folded graph and weights: the same figure.
    lamda::TorchModel folded(r.graph);
    folded.load_weights(r.weights);
    const lamda::Accuracy torch_folded = lamda::torch_accuracy(folded, test);
    CHECK(std::fabs(torch_folded.accuracy - *r.test_accuracy) <= 0.001);
#if defined(LAMDA_WITH_XNNPACK)
    // XNNPACK, given the model as written and the weights as saved (folded).
    const lamda::Accuracy xnn = lamda::evaluate_accuracy(g, r.weights, test);
    INFO("libtorch " << *r.test_accuracy << ", XNNPACK " << xnn.accuracy);
    CHECK(xnn.n == 1000);
    CHECK(std::fabs(xnn.accuracy - *r.test_accuracy) <= 0.001);  // within 0.1 points
#endif
}

TEST_CASE("train: deterministic under a seed") {
    const Graph g = graph_of(every_op_models[0]);
    const Dataset train = synthetic(96, {8, 8, 2}, 4, 21), val = synthetic(32, {8, 8, 2}, 4, 22);
    TrainOptions o = quick(2);
    o.shift = 1;
    o.flip = true;
    o.erase = 0.5;
    const lamda::TrainResult a = lamda::train_model(g, train, val, nullptr, o);
    const lamda::TrainResult b = lamda::train_model(g, train, val, nullptr, o);
    CHECK(a.weights.size() == b.weights.size());
    for (const auto& kv : a.weights) {
        INFO("tensor " << kv.first);
        CHECK(kv.second.data == b.weights.at(kv.first).data);
    }
    CHECK(a.val_accuracy == b.val_accuracy);
    CHECK(a.epoch_loss == b.epoch_loss);
    o.seed = 4;
    const lamda::TrainResult c = lamda::train_model(g, train, val, nullptr, o);
    CHECK(c.weights.at("c1.weight").data != a.weights.at("c1.weight").data);
}

// The bounding box of the values of `img` (C x H x W) that differ from `before`; false when none do.
bool changed_box(const float* img, const float* before, std::int64_t C, std::int64_t H, std::int64_t W,
                 std::int64_t& y0, std::int64_t& x0, std::int64_t& y1, std::int64_t& x1) {
    y0 = H, x0 = W, y1 = -1, x1 = -1;
    for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t y = 0; y < H; ++y)
            for (std::int64_t x = 0; x < W; ++x)
                if (img[(c * H + y) * W + x] != before[(c * H + y) * W + x]) {
                    y0 = std::min(y0, y), x0 = std::min(x0, x), y1 = std::max(y1, y), x1 = std::max(x1, x);
                }
    return y1 >= 0;
}

TEST_CASE("train: random erasing fills one rectangle of 2-40% of the image with noise, on every channel") {
    const std::int64_t C = 2, H = 28, W = 20;
    const std::vector<float> before(static_cast<std::size_t>(C * H * W), -1.0f);  // outside the noise's [0, 1]
    lamda::detail::SplitMix64 rng{7};
    std::set<std::pair<std::int64_t, std::int64_t>> sizes;
    double smallest = 1, largest = 0;
    for (int draw = 0; draw < 2000; ++draw) {
        std::vector<float> img = before;
        lamda::train_detail::RandomErasing::apply(img.data(), C, H, W, rng);
        std::int64_t y0, x0, y1, x1;
        REQUIRE(changed_box(img.data(), before.data(), C, H, W, y0, x0, y1, x1));  // 10 tries: one fits
        // Every value inside the bounding box of the changes is noise in [0, 1] (the image held -1),
        // on both channels: the changes are one filled rectangle.
        for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t y = y0; y <= y1; ++y)
                for (std::int64_t x = x0; x <= x1; ++x) {
                    const float v = img[static_cast<std::size_t>((c * H + y) * W + x)];
                    REQUIRE((v >= 0.0f && v < 1.0f));
                }
        const std::int64_t h = y1 - y0 + 1, w = x1 - x0 + 1;
        sizes.insert({h, w});
        const double share = static_cast<double>(h * w) / static_cast<double>(H * W);
        smallest = std::min(smallest, share), largest = std::max(largest, share);
        // Rounding each side to whole pixels moves the area by up to about a side's length.
        CHECK(share >= 0.02 - static_cast<double>(h + w) / static_cast<double>(H * W));
        CHECK(share <= 0.4 + static_cast<double>(h + w + 1) / static_cast<double>(H * W));
    }
    CHECK(smallest < 0.05);
    CHECK(largest > 0.3);
    CHECK(sizes.size() > 50);  // shapes vary: tall, wide, square

    // In a batch: with probability 1 every image is erased, with 0.5 about half.
    Dataset d = synthetic(400, {H, W, C}, 4, 5);
    const auto batch_values = [&](double erase, int shift) {
        lamda::train_detail::EpochBatches batches(d, 400, 9, 1, shift, shift > 0, erase);
        torch::Tensor x, y;
        REQUIRE(batches.next(x, y));
        const float* p = x.data_ptr<float>();
        return std::vector<float>(p, p + x.numel());
    };
    // Images erased against the same batch without erasing: one rectangle each, the rest as it was
    // (erasing comes after the shift and the flip, and draws after them within a batch: a batch of
    // the whole dataset has the same shifts with and without it).
    const auto erased_images = [&](const std::vector<float>& erased, const std::vector<float>& plain) {
        int n = 0;
        const std::size_t per = static_cast<std::size_t>(C * H * W);
        for (std::size_t k = 0; k < 400; ++k) {
            std::int64_t y0, x0, y1, x1;
            if (!changed_box(erased.data() + k * per, plain.data() + k * per, C, H, W, y0, x0, y1, x1)) continue;
            ++n;
            int kept_inside = 0;  // the changes fill their bounding box: a rectangle on every channel
            for (std::int64_t c = 0; c < C; ++c)
                for (std::int64_t y = y0; y <= y1; ++y)
                    for (std::int64_t x = x0; x <= x1; ++x) {
                        const std::size_t at = k * per + static_cast<std::size_t>((c * H + y) * W + x);
                        kept_inside += erased[at] == plain[at] ? 1 : 0;
                    }
            CHECK(kept_inside == 0);
        }
        return n;
    };
    const std::vector<float> plain = batch_values(0, 0), shifted = batch_values(0, 2);
    CHECK(shifted != plain);
    CHECK(erased_images(batch_values(1, 0), plain) == 400);
    CHECK(erased_images(batch_values(1, 2), shifted) == 400);
    const int half = erased_images(batch_values(0.5, 2), shifted);
    CHECK(half > 150);
    CHECK(half < 250);

    TrainOptions o = quick(1);
    o.erase = 1.5;
    CHECK_THROWS_WITH_AS(lamda::train_model(graph_of(every_op_models[0]), d, d, nullptr, o),
                         doctest::Contains("erase probability must be in [0, 1]"), std::invalid_argument);
}

TEST_CASE("train: batch norm's statistics are set afresh from the trained weights at the end") {
    // A 1x1 convolution of one channel: the batch norm after it sees w_c * x + b_c, whose batch
    // mean and (unbiased) variance follow from the input's. After one epoch of four steps the
    // running averages (momentum 0.1) are far from them; the recalibration's plain average over
    // the same four batches is them.
    const Graph g = graph_of("model bn_stats\n"
                             "input: input shape=8x8x1\n"
                             "c: conv2d out=3 kernel=1\n"
                             "bn: batchnorm\n"
                             "g: gap\n"
                             "fc: fc out=4\n");
    const Dataset train = synthetic(64, {8, 8, 1}, 4, 31), val = synthetic(32, {8, 8, 1}, 4, 32);
    TrainOptions o = quick(1);
    o.batchnorm_images = 64;  // every image, in 4 batches of 16
    const lamda::TrainResult r = lamda::train_model(g, train, val, nullptr, o);
    const std::vector<std::size_t> order = lamda::seeded_permutation(train.size(), o.seed);
    const std::size_t per = 64, batch = 16;
    double mean = 0, var = 0;  // of the input: over all pixels; per batch, averaged
    for (std::size_t b0 = 0; b0 < train.size(); b0 += batch) {
        double s = 0, s2 = 0;
        for (std::size_t k = b0; k < b0 + batch; ++k)
            for (std::size_t j = 0; j < per; ++j) {
                const double x = train.images[order[k] * per + j];
                s += x;
                s2 += x * x;
            }
        const double n = static_cast<double>(batch * per);
        mean += s / n / 4;
        var += (s2 - s * s / n) / (n - 1) / 4;
    }
    for (std::size_t c = 0; c < 3; ++c) {
        INFO("channel " << c);
        const double w = r.trained.at("c.weight").data[c], b = r.trained.at("c.bias").data[c];
        CHECK(r.trained.at("bn.running_mean").data[c] == doctest::Approx(w * mean + b).epsilon(1e-4));
        CHECK(r.trained.at("bn.running_var").data[c] == doctest::Approx(w * w * var).epsilon(1e-3));
    }
    // Each epoch's validation sees the statistics set afresh too, and leaves training as it was:
    // the last epoch's figure is the end's, and the trained weights are those of a training that
    // did not validate.
    o.epochs = 2;
    o.validate_each_epoch = true;
    std::vector<double> epoch_val;
    o.progress = [&](const lamda::TrainProgress& p) { epoch_val.push_back(p.val_accuracy.value_or(-1)); };
    const lamda::TrainResult validated = lamda::train_model(g, train, val, nullptr, o);
    o.validate_each_epoch = false;
    o.progress = nullptr;
    const lamda::TrainResult plain = lamda::train_model(g, train, val, nullptr, o);
    REQUIRE(epoch_val.size() == 2);
    CHECK(epoch_val[1] == validated.val_accuracy);
    CHECK(validated.trained.at("c.weight").data == plain.trained.at("c.weight").data);
    CHECK(validated.trained.at("bn.running_var").data == plain.trained.at("bn.running_var").data);
    o.epochs = 1;

    // Without it the statistics are training's running averages: a third of the way from 0 and 1.
    o.batchnorm_images = 0;
    const lamda::TrainResult kept = lamda::train_model(g, train, val, nullptr, o);
    std::size_t far = 0;  // the channel whose mean is farthest from 0
    double far_mean = 0;
    for (std::size_t c = 0; c < 3; ++c) {
        const double m = kept.trained.at("c.weight").data[c] * mean + kept.trained.at("c.bias").data[c];
        if (std::abs(m) > std::abs(far_mean)) far = c, far_mean = m;
    }
    CHECK(std::abs(kept.trained.at("bn.running_mean").data[far] - far_mean) > 0.3 * std::abs(far_mean));
}

TEST_CASE("train: evaluation batches keep the largest activation under 16 MiB") {
    // 104 x 14 x 14 floats are 81,536 bytes an image: 205 images fit 16 MiB.
    CHECK(lamda::train_detail::evaluation_batch(graph_of("input: input shape=28x28x1\n"
                                                         "c: conv2d out=104 kernel=2 stride=2\n"
                                                         "p: gap\nfc: fc out=10\n")) == 205);
    CHECK(lamda::train_detail::evaluation_batch(graph_of("input: input shape=28x28x1\n"
                                                         "p: gap\nfc: fc out=10\n")) == 500);
    CHECK(lamda::train_detail::evaluation_batch(graph_of("input: input shape=224x224x3\n"
                                                         "c: conv2d out=512 kernel=3\n"
                                                         "p: gap\nfc: fc out=10\n")) == 16);
}

TEST_CASE("train: options, progress, subsets and mismatches") {
    const Graph g = graph_of(every_op_models[0]);
    lamda::DatasetSplits data;
    data.name = "synthetic";
    data.train = synthetic(200, {8, 8, 2}, 4, 31);
    data.test = synthetic(50, {8, 8, 2}, 4, 32);
    TrainOptions o = quick(2);
    o.optimizer = lamda::OptimizerKind::Sgd;
    o.lr = 0.05;
    o.cosine = false;
    o.train_subset = 100;
    o.validation_fraction = 0.2;
    o.validate_each_epoch = true;
    std::vector<lamda::TrainProgress> seen;
    o.progress = [&](const lamda::TrainProgress& p) { seen.push_back(p); };
    const lamda::TrainResult r = lamda::train_model(g, data, o);
    CHECK(r.train_images == 100);
    CHECK(r.val_images == 40);
    CHECK(r.test_images == 50);
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].epoch == 2);
    CHECK(seen[1].epochs == 2);
    CHECK(seen[1].val_accuracy.has_value());
    CHECK(seen[1].lr == doctest::Approx(0.05));

    o.epochs = 0;
    CHECK_THROWS_AS(lamda::train_model(g, data, o), std::invalid_argument);
    o.epochs = 1;
    data.train.shape = {4, 32, 2};  // same size, another shape
    CHECK_THROWS_WITH_AS(lamda::train_model(g, data, o),
                         doctest::Contains("the model's input is 8x8x2 but the dataset's images are 4x32x2"),
                         lamda::DatasetError);
    data.train.shape = {8, 8, 2};
    data.train.classes = 7;
    CHECK_THROWS_WITH_AS(lamda::train_model(g, data, o), doctest::Contains("needs 1x1x7"),
                         lamda::DatasetError);
}

TEST_CASE("train: TorchTrainer, the generation loop's trainer") {
    lamda::DatasetSplits data;
    data.name = "synthetic";
    data.train = synthetic(300, {8, 8, 2}, 4, 41);
    data.test = synthetic(80, {8, 8, 2}, 4, 42);
    TrainOptions proxy = quick(1), full = quick(3);
    proxy.train_subset = 120;
    lamda::TorchTrainer trainer(data, proxy, full);
    lamda::Trainer& t = trainer;
    const Graph g = graph_of(every_op_models[0]);
    const double acc = t.proxy_accuracy(g);
    CHECK(acc >= 0.0);
    CHECK(acc <= 1.0);
    REQUIRE(trainer.last_result().has_value());
    CHECK(trainer.last_result()->train_images == 120);
    CHECK(trainer.last_result()->val_images == 30);
    CHECK(t.proxy_accuracy(g) == acc);  // the same candidate ranks the same

    const std::string path = (std::filesystem::temp_directory_path() /
                              ("lamda_train_test_" + std::to_string(::getpid()) + ".safetensors"))
                                 .string();
    const lamda::FinalTraining f = t.train_final(g, path);
    CHECK(f.epochs == 3);
    CHECK(f.test_accuracy > 0.25);
    CHECK(f.train_seconds > 0);
    // The recipe report.json records is the full options' (not the proxy's).
    REQUIRE(f.recipe.has_value());
    CHECK(f.recipe->optimizer == "adam");
    CHECK(f.recipe->lr == full.lr);
    CHECK(f.recipe->batch_size == full.batch_size);
    CHECK(f.recipe->erase == full.erase);
    CHECK(f.recipe->seed == full.seed);
    CHECK(!f.recipe->from_inherited_weights);
    CHECK(f.recipe->batchnorm_images == trainer.last_result()->batchnorm_images);
    const lamda::Weights saved = lamda::read_safetensors(path);
    CHECK(lamda::validate_weights(lamda::fold_batchnorm_graph(g), saved).empty());
    std::filesystem::remove(path);

    // Budget::max_total_seconds: a limit no epoch fits still trains one (and says 3 were asked);
    // the estimate scales the proxy's 120 images x 1 epoch to 270 x 3 at the same batch size.
    t.set_final_time_limit(1e-3);
    const lamda::FinalTraining cut = t.train_final(g, path);
    std::filesystem::remove(path);
    CHECK(cut.epochs == 1);
    CHECK(cut.epochs_asked == 3);
    t.set_final_time_limit(0);
    CHECK(t.train_final(g, path).epochs == 3);
    std::filesystem::remove(path);
    CHECK(t.final_seconds_per_proxy_second() == doctest::Approx(270.0 * 3 / 120.0));

    data.test = Dataset();
    CHECK_THROWS_WITH_AS(lamda::TorchTrainer{data}, doctest::Contains("has no test set"),
                         lamda::DatasetError);
}

TEST_CASE("train: every run validates on the same images, whatever its seed") {
    // Weights trained under one seed must not be judged on images they learned under another (an
    // adapted start model, docs/adapt.md). Image i holds i; the images of the validation split
    // are labelled 0, the rest 1, so a model that always answers 0 scores 100% on that split only.
    lamda::DatasetSplits data;
    data.name = "synthetic";
    data.train.shape = {2, 2, 1};
    data.train.classes = 2;
    for (int i = 0; i < 300; ++i) {
        for (int k = 0; k < 4; ++k) data.train.images.push_back(static_cast<float>(i) / 300.0f);
        data.train.labels.push_back(1);
    }
    data.test = data.train;
    const Dataset held = lamda::validation_split(data.train).second;
    for (std::size_t k = 0; k < held.size(); ++k)
        data.train.labels[static_cast<std::size_t>(std::lround(held.images[k * 4] * 300.0f))] = 0;
    const Graph g = graph_of("input: input shape=2x2x1\npool: gap\nlogits: fc out=2\n");
    lamda::Weights w;
    w["logits.weight"] = lamda::WeightTensor{{2, 1}, {0.0f, 0.0f}};
    w["logits.bias"] = lamda::WeightTensor{{2}, {1.0f, 0.0f}};
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("lamda_split_test_" + std::to_string(::getpid()) + ".safetensors"))
                                 .string();
    lamda::write_safetensors(path, w);
    for (std::uint64_t seed : {1, 2, 7}) {
        TrainOptions full = quick(1);
        full.seed = seed;
        lamda::TorchTrainer trainer(data, quick(1), full);
        CHECK_MESSAGE(trainer.weights_accuracy(g, path) == 1.0, "seed " << seed);
    }
    std::filesystem::remove(path);
}

TEST_CASE("train: max_seconds plans the steps that fit, the schedule spanning them") {
    using lamda::train_detail::steps_that_fit;
    using lamda::train_detail::steps_replanned;
    // 10 steps an epoch, 1 s each.
    CHECK(steps_that_fit(250, 10, 0, 0, 1) == 250);     // no limit
    CHECK(steps_that_fit(250, 10, 1000, 0, 1) == 250);  // all fit
    CHECK(steps_that_fit(250, 10, 100, 5, 1) == 93);    // 100 - 5 - 2: the evaluation's fifth of an epoch kept
    CHECK(steps_that_fit(250, 10, 93, 0, 1) == 90);     // 91: a last epoch of one step is left out
    CHECK(steps_that_fit(95, 10, 1000, 0, 1) == 95);    // all asked, whatever the last epoch's length
    CHECK(steps_that_fit(250, 10, 10, 5, 1) == 10);     // none fits: one epoch all the same
    CHECK(steps_that_fit(3, 10, 1e9, 0, 1e-9) == 3);    // an epoch is more than was asked
    // After an epoch: 10 of 40 planned steps done (100 asked).
    CHECK(steps_replanned(40, 10, 100, 10, 20, 1) == 28);   // slower: the 18 that still fit
    CHECK(steps_replanned(40, 10, 100, 10, 1, 1) == 10);    // none fits: stop now
    CHECK(steps_replanned(40, 10, 100, 10, 100, 1) == 98);  // faster: (100 - 2.2) / 1.1 more
    CHECK(steps_replanned(40, 10, 100, 10, 33, 1) == 40);   // 31 fit, but not at the margin: as planned
    CHECK(steps_replanned(40, 40, 100, 10, 100, 1) == 100);  // the plan ended with the epoch: more all the same
    CHECK(steps_replanned(40, 40, 100, 10, 3, 1) == 40);    // or not
    CHECK(steps_replanned(40, 10, 100, 10, 13, 1) == 20);   // slower, 11 fit: a last epoch of one step left out
    CHECK(steps_replanned(40, 10, 100, 10, 2.5, 1) == 10);  // slower, 0 fit
    CHECK(lamda::final_image_cost(32, 32) == doctest::Approx(1.0));
    CHECK(lamda::final_image_cost(32, 128) < 1.0);      // bigger batches: fewer steps' overhead per image

    const Graph g = graph_of(every_op_models[0]);
    lamda::DatasetSplits data;
    data.name = "synthetic";
    data.train = synthetic(200, {8, 8, 2}, 4, 61);
    TrainOptions o = quick(4);
    o.max_seconds = 1e-3;
    std::vector<lamda::TrainProgress> seen;
    o.progress = [&](const lamda::TrainProgress& p) { seen.push_back(p); };
    const lamda::TrainResult r = lamda::train_model(g, data, o);
    CHECK(r.epochs == 1);
    CHECK(r.epochs_asked == 4);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].epochs == 1);
    CHECK(seen[0].lr < 0.2 * o.lr);  // the cosine schedule reached its end within the one epoch
    o.max_seconds = 0;
    CHECK(lamda::train_model(g, data, o).epochs == 4);

    // The warm-up is left out of the pace: a first step 3 s slower than the rest (libtorch's first
    // steps are slower) must not size the epochs as if every step were (it gave 1 of 4 here).
    TrainOptions warm = quick(4);
    warm.max_seconds = 7;
    int steps = 0;
    warm.between_steps = [&steps] {
        if (steps++ == 0) std::this_thread::sleep_for(std::chrono::seconds(3));
    };
    CHECK(lamda::train_model(g, data, warm).epochs == 4);

    // Epochs faster than the first steps promised add epochs: four steps of 0.5 s among the timed
    // ones size 12-step epochs at 6 s, 2 of 4 in 14 s; the first epoch then takes about 2 s, and
    // all 4 fit (it gave 2 before epochs were planned again on their own pace).
    TrainOptions slow_probe = quick(4);
    slow_probe.max_seconds = 14;
    steps = 0;
    slow_probe.between_steps = [&steps] {
        if (++steps >= 2 && steps <= 5) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    };
    std::vector<lamda::TrainProgress> planned;
    slow_probe.progress = [&](const lamda::TrainProgress& p) { planned.push_back(p); };
    const lamda::TrainResult stretched = lamda::train_model(g, data, slow_probe);
    CHECK(stretched.epochs == 4);
    REQUIRE(planned.size() == 4);
    CHECK(planned[0].epochs == 4);            // re-planned at the end of the first epoch
    CHECK(planned[3].lr < 0.05 * slow_probe.lr);  // and the schedule still ends near 0
    CHECK(stretched.epochs_trained == 4);

    // Steps of 0.2 s, 12 an epoch: 22 fit in 5 s (an evaluation's 0.48 s kept), so the second
    // epoch stops part-way, the schedule ending at its last step; whole epochs left 2.4 s unused.
    TrainOptions even = quick(4);
    even.max_seconds = 5;
    even.between_steps = [] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); };
    std::vector<lamda::TrainProgress> partial;
    even.progress = [&](const lamda::TrainProgress& p) { partial.push_back(p); };
    const lamda::TrainResult cut = lamda::train_model(g, data, even);
    CHECK(cut.epochs == 2);
    CHECK(cut.epochs_trained > 1);
    CHECK(cut.epochs_trained < 2);
    REQUIRE(partial.size() == 2);
    CHECK(partial[1].lr < 0.05 * even.lr);
    o.max_seconds = -1;
    CHECK_THROWS_AS(lamda::train_model(g, data, o), std::invalid_argument);
}


namespace {

// The same images with every label k replaced by (k + 1) mod classes: a teacher trained on these
// disagrees with the true labels everywhere, so what a student learns shows whom it followed.
Dataset shifted_labels(Dataset d) {
    for (int& k : d.labels) k = (k + 1) % d.classes;
    return d;
}

const char* const distill_student = "input: input shape=8x8x2\nc: conv2d out=8 kernel=3 act=relu\n"
                                    "p: maxpool kernel=2\nf: flatten\nlogits: fc out=4\n";

}  // namespace

TEST_CASE("train: distillation follows the teacher, not only the labels") {
    const Dataset train = synthetic(400, {8, 8, 2}, 4, 51), val = synthetic(100, {8, 8, 2}, 4, 52);
    // The teacher: another architecture (a softmax output too), trained on the shifted labels.
    const Graph teacher = graph_of("input: input shape=8x8x2\nc: conv2d out=12 kernel=3 bias=false\nbn: batchnorm\n"
                                   "r: relu\np: avgpool kernel=2\nf: flatten\nfc: fc out=4\nprob: softmax\n");
    const lamda::TrainResult taught = lamda::train_model(teacher, shifted_labels(train), shifted_labels(val), nullptr, quick(4));
    REQUIRE(taught.val_accuracy > 0.8);

    const Graph student = graph_of(distill_student);
    const lamda::TrainResult plain = lamda::train_model(student, train, val, nullptr, quick(3));
    CHECK(plain.val_accuracy > 0.8);

    // All of the loss from the teacher: the student learns the shifted classes from the true labels' images.
    TrainOptions o = quick(3);
    auto d = std::make_shared<lamda::Distillation>();
    d->teacher = taught.graph;  // batch norm folded, as a start model's weights usually are
    d->teacher_weights = taught.weights;
    d->weight = 1.0;
    d->temperature = 2.0;
    o.distill = d;
    const lamda::TrainResult followed = lamda::train_model(student, train, shifted_labels(val), nullptr, o);
    CHECK(followed.val_accuracy > 0.7);
    // A small share: the labels still decide (and the loss is not the labels' alone).
    d->weight = 0.1;
    d->temperature = 1.0;
    const lamda::TrainResult mixed = lamda::train_model(student, train, val, nullptr, o);
    CHECK(mixed.val_accuracy > 0.7);
    CHECK(mixed.epoch_loss != plain.epoch_loss);

    SUBCASE("refusals name what differs") {
        d->weight = 0;
        CHECK_THROWS_WITH_AS(lamda::train_model(student, train, val, nullptr, o),
                             doctest::Contains("distillation weight must be in (0, 1]"), std::invalid_argument);
        d->weight = 0.5;
        d->temperature = -1;
        CHECK_THROWS_WITH_AS(lamda::train_model(student, train, val, nullptr, o),
                             doctest::Contains("distillation temperature"), std::invalid_argument);
        d->temperature = 4;
        d->teacher = graph_of("input: input shape=8x8x2\ng: gap\nf: fc out=5\n");
        d->teacher_weights = lamda::random_weights(d->teacher, 1);
        CHECK_THROWS_WITH_AS(lamda::train_model(student, train, val, nullptr, o),
                             doctest::Contains("the distillation teacher's output 'f' is 1x1x5 but the model's is 1x1x4"),
                             lamda::DatasetError);
        d->teacher = graph_of("input: input shape=8x8x1\ng: gap\nf: fc out=4\n");
        d->teacher_weights = lamda::random_weights(d->teacher, 1);
        CHECK_THROWS_WITH_AS(lamda::train_model(student, train, val, nullptr, o),
                             doctest::Contains("the distillation teacher's input is 8x8x1"), lamda::DatasetError);
        d->teacher = taught.graph;
        d->teacher_weights = lamda::random_weights(student, 1);  // the student's tensors, not the teacher's
        CHECK_THROWS_AS(lamda::train_model(student, train, val, nullptr, o), lamda::ExecutorError);
    }

    SUBCASE("TorchTrainer: the final trainings distil from a weights file") {
        lamda::DatasetSplits data;
        data.name = "synthetic";
        data.train = train;
        data.test = shifted_labels(val);  // test accuracy measures agreement with the teacher
        lamda::TorchTrainer trainer(data, quick(1), quick(3));
        lamda::Trainer& t = trainer;
        const auto dir = std::filesystem::temp_directory_path();
        const std::string tag = std::to_string(::getpid());
        const std::string teacher_path = (dir / ("lamda_distill_teacher_" + tag + ".safetensors")).string();
        const std::string out_path = (dir / ("lamda_distill_student_" + tag + ".safetensors")).string();
        lamda::write_safetensors(teacher_path, taught.weights);
        CHECK_THROWS_WITH_AS(t.set_distillation(taught.graph, teacher_path, 1.5, 4), doctest::Contains("distillation weight"),
                             std::invalid_argument);
        CHECK_THROWS_AS(t.set_distillation(student, teacher_path, 1.0, 2.0), lamda::ExecutorError);
        const double before = t.train_final(student, out_path).test_accuracy;
        t.set_distillation(taught.graph, teacher_path, 1.0, 2.0);
        const double after = t.train_final(student, out_path).test_accuracy;
        std::filesystem::remove(teacher_path);
        std::filesystem::remove(out_path);
        CHECK(before < 0.3);
        CHECK(after > 0.7);
    }
}

// ---------------------------------------------------------------------------------------------
// train/qat.hpp: fake quantization in libtorch, quantization-aware fine-tuning
// ---------------------------------------------------------------------------------------------

namespace {

std::vector<lamda::Tensor> calibration_of(const Dataset& d, std::size_t n) {
    std::vector<lamda::Tensor> out;
    for (std::size_t i = 0; i < n && i < d.size(); ++i) {
        lamda::Tensor t(d.shape);
        d.copy_image(i, t.data.data());
        out.push_back(std::move(t));
    }
    return out;
}

// A small classifier with a folded batch norm, pass-through ops (maxpool, relu6, flatten), an
// add, a gap, an int8 sigmoid and a float layer (avgpool) between int8 ones.
const char* const qat_model =
    "model q\n"
    "input: input shape=12x12x1\n"
    "c1: conv2d out=8 kernel=3 bias=false\n"
    "bn1: batchnorm\n"
    "r1: relu6\n"
    "p1: maxpool kernel=2\n"
    "c2: conv2d out=8 kernel=3 act=relu\n"
    "ap: avgpool kernel=3 stride=1 padding=same\n"
    "c3: conv2d out=8 kernel=1\n"
    "s: add c2, c3\n"
    "sg: sigmoid\n"
    "g: gap\n"
    "fl: flatten\n"
    "fc: fc out=6\n";

}  // namespace

TEST_CASE("qat: libtorch fake quantization computes the int8 executors' values and accuracy") {
    const Graph g = graph_of(qat_model);
    const Dataset train = synthetic(480, {12, 12, 1}, 6, 21), val = synthetic(100, {12, 12, 1}, 6, 22);
    const Dataset test = synthetic(2000, {12, 12, 1}, 6, 23);
    const lamda::TrainResult r = lamda::train_model(g, train, val, nullptr, quick(2));
    const lamda::PtqResult q = lamda::quantize_ptq(g, r.trained, calibration_of(train, 200));
    REQUIRE(q.folded == std::vector<std::string>{"bn1"});
    REQUIRE(q.model.float_layers == std::vector<std::string>{"ap"});

    // Value by value against the integer reference: every layer's fake-quantized output is on the
    // int8 grid of that layer's parameters and within one step of the integer value (rounding of
    // float sums near ties), for a few images.
    const std::unique_ptr<lamda::TorchModel> fq = lamda::fake_quant_model(q.graph, q.model, q.float_weights);
    torch::NoGradGuard no_grad;
    double worst_steps = 0;
    for (std::size_t i = 0; i < 5; ++i) {
        lamda::Tensor img(test.shape);
        test.copy_image(i, img.data.data());
        const lamda::Int8Run ref = lamda::run_reference_int8(q.graph, q.model, q.float_weights, img);
        const std::vector<torch::Tensor> all = fq->forward_all(lamda::to_torch(img));
        for (std::size_t k = 0; k < q.graph.layers.size(); ++k) {
            const lamda::Tensor t = lamda::from_torch(all[k]);
            const lamda::Int8Value& v = ref.values[k];
            REQUIRE(t.data.size() == v.q.size());
            for (std::size_t j = 0; j < v.q.size(); ++j) {
                const double steps = std::fabs(static_cast<double>(t.data[j]) - lamda::dequantize(v.q[j], v.params)) /
                                     static_cast<double>(v.params.scale);
                worst_steps = std::max(worst_steps, steps);
            }
        }
    }
    INFO("largest difference: " << worst_steps << " steps");
    CHECK(worst_steps <= 1.001);
    MESSAGE("fake quant vs integer reference: at most " << worst_steps << " steps");

    // Accuracy: the same figure as the integer executors within 0.1 point.
    const lamda::Accuracy a = lamda::fake_quant_accuracy(q, test);
    CHECK(a.n == 2000);
    CHECK(a.accuracy > 0.3);  // it learned something (chance: 1/6)
    std::int64_t ref_correct = 0;
    for (std::size_t i = 0; i < test.size(); ++i) {
        lamda::Tensor img(test.shape);
        test.copy_image(i, img.data.data());
        const lamda::Int8Run ref = lamda::run_reference_int8(q.graph, q.model, q.float_weights, img);
        ref_correct += lamda::argmax(ref.output.data.data(), test.classes) == test.labels[i];
    }
    INFO("fake quant " << a.correct << ", integer reference " << ref_correct << " of 2000");
    CHECK(std::llabs(a.correct - ref_correct) <= 2);  // 0.1 point of 2000
#if defined(LAMDA_WITH_XNNPACK)
    const lamda::Accuracy xnn = lamda::evaluate_accuracy_int8(q.graph, q.model, q.float_weights, test);
    INFO("XNNPACK int8 " << xnn.correct);
    CHECK(std::llabs(a.correct - xnn.correct) <= 2);
#endif
}

TEST_CASE("qat: fine-tuning from a PTQ result writes an int8 file the executors read") {
    const Graph g = graph_of(qat_model);
    const Dataset train = synthetic(480, {12, 12, 1}, 6, 21), val = synthetic(100, {12, 12, 1}, 6, 22);
    const Dataset test = synthetic(500, {12, 12, 1}, 6, 33);
    const lamda::TrainResult r = lamda::train_model(g, train, val, nullptr, quick(3));
    INFO("fp32 validation accuracy " << r.val_accuracy);
    const std::vector<lamda::Tensor> calib = calibration_of(train, 100);
    const lamda::PtqResult before = lamda::quantize_ptq(g, r.trained, calib);
    const lamda::Accuracy acc_before = lamda::fake_quant_accuracy(before, test);

    lamda::QatOptions o;
    o.epochs = 2;
    o.lr = 1e-3;
    o.batch_size = 32;
    o.seed = 5;
    std::vector<int> reported;
    o.progress = [&reported](const lamda::QatProgress& p) {
        reported.push_back(p.epoch);
        CHECK(p.epochs == 2);
        CHECK(std::isfinite(p.loss));
    };
    const lamda::QatResult q = lamda::quantization_aware_finetune(g, r.trained, train, calib, o);
    CHECK(reported == std::vector<int>{1, 2});
    REQUIRE(q.epoch_loss.size() == 2);
    CHECK(q.train_images == 480);
    CHECK(q.ptq.graph.layers.size() == g.layers.size() - 1);  // bn1 folded
    // The float weights moved, and fit the folded graph.
    CHECK(lamda::validate_weights(q.ptq.graph, q.weights).empty());
    CHECK(q.weights.at("c2.weight").data != lamda::fold_batchnorm(g, r.trained).second.at("c2.weight").data);

    // Written and read back as any `lamda quantize` file.
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("lamda_qat_" + std::to_string(getpid()) + ".safetensors");
    const auto [tensors, meta] = lamda::quantized_to_weights(q.ptq.model, q.ptq.float_weights);
    lamda::write_safetensors(path.string(), tensors, meta);
    const lamda::ModelWeights m = lamda::read_model_weights(g, path.string());
    std::filesystem::remove(path);
    CHECK(m.int8);
    CHECK(m.quantized.float_layers == q.ptq.model.float_layers);
    const lamda::Accuracy after = lamda::fake_quant_accuracy(m.graph, m.quantized, m.weights, test);
    INFO("int8 before QAT " << acc_before.accuracy << ", after " << after.accuracy);
    CHECK(after.accuracy > 0.3);
    CHECK(after.accuracy >= acc_before.accuracy - 0.05);  // fine-tuning did not wreck it
#if defined(LAMDA_WITH_XNNPACK)
    const lamda::Accuracy xnn = lamda::evaluate_accuracy_int8(m.graph, m.quantized, m.weights, test);
    CHECK(std::llabs(xnn.correct - after.correct) <= 1);
#endif

    // The same seed and threads: the same weights.
    const lamda::QatResult again = lamda::quantization_aware_finetune(g, r.trained, train, calib, o);
    CHECK(again.weights.at("fc.weight").data == q.weights.at("fc.weight").data);
}

TEST_CASE("qat: bad options and mismatches are refused with a clear message") {
    const Graph g = graph_of(qat_model);
    const Dataset train = synthetic(40, {12, 12, 1}, 6, 41);
    const std::vector<lamda::Tensor> calib = calibration_of(train, 4);
    lamda::TorchModel init(g);
    const lamda::Weights w = init.export_weights();
    const auto refused = [&](lamda::QatOptions o, const char* what) {
        CHECK_THROWS_WITH_AS(lamda::quantization_aware_finetune(g, w, train, calib, o), doctest::Contains(what),
                             std::invalid_argument);
    };
    lamda::QatOptions o;
    o.epochs = -1;
    refused(o, "epochs must be in 1..1000, got -1");
    o.epochs = 0;
    refused(o, "epochs must be in 1..1000, got 0");
    o = {};
    o.lr = 0;
    refused(o, "learning rate");
    o = {};
    o.lr = std::nan("");
    refused(o, "learning rate");
    o = {};
    o.batch_size = 1;
    refused(o, "batch size");
    o = {};
    o.threads = 0;
    refused(o, "threads");
    // No calibration images, a dataset of another shape.
    CHECK_THROWS_WITH_AS(lamda::quantization_aware_finetune(g, w, train, {}, lamda::QatOptions{}),
                         doctest::Contains("calibration"), lamda::ExecutorError);
    const Dataset other = synthetic(40, {8, 8, 1}, 6, 42);
    CHECK_THROWS_AS(lamda::quantization_aware_finetune(g, w, other, calib, lamda::QatOptions{}), lamda::DatasetError);
    // A quantized model missing a layer's parameters.
    lamda::PtqResult q = lamda::quantize_ptq(g, w, calib);
    q.model.activations.erase(q.model.activations.begin() + 4);  // c2
    CHECK_THROWS_WITH_AS(lamda::fake_quant_model(q.graph, q.model, q.float_weights), doctest::Contains("activation"),
                         lamda::ExecutorError);
}

#if defined(LAMDA_WITH_XNNPACK)
TEST_CASE("qat: on Fashion-MNIST the firmware example's fake quantization equals XNNPACK int8") {
    // The committed, trained firmware example (residual add, squeeze-excitation with a hardsigmoid
    // conv and a mul in float); skipped without Debian's dataset-fashion-mnist.
    if (!std::filesystem::exists(std::string(lamda::fashion_mnist_dir))) {
        MESSAGE("skipped: no Fashion-MNIST in " << lamda::fashion_mnist_dir);
        return;
    }
    const std::string dir = std::string(LAMDA_SOURCE_DIR) + "/examples/firmware/";
    const lamda::ParseResult parsed = lamda::parse_dsl_file(dir + "model.lamda");
    REQUIRE(parsed.ok());
    const lamda::DatasetSplits data = lamda::load_dataset("fashion-mnist");
    const lamda::PtqResult q =
        lamda::quantize_ptq(parsed.graph, lamda::read_safetensors(dir + "model.safetensors"), calibration_of(data.train, 200));
    CHECK(q.model.float_layers == std::vector<std::string>{"se_fc2", "se"});
    const std::size_t n = 3000;
    const lamda::Accuracy fq = lamda::fake_quant_accuracy(q, data.test, n);
    const lamda::Accuracy xnn = lamda::evaluate_accuracy_int8(q.graph, q.model, q.float_weights, data.test, 1, n);
    INFO("fake quant " << fq.correct << ", XNNPACK int8 " << xnn.correct << " of " << n);
    CHECK(fq.n == 3000);
    CHECK(fq.accuracy > 0.65);  // trained (73% on the whole test set)
    CHECK(std::llabs(fq.correct - xnn.correct) <= 3);  // within 0.1 point
}
#endif

#endif  // defined(LAMDA_WITH_TORCH)
