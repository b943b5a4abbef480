// lamda/llm/prompt.hpp: what the language model is told: the system prompt (the DSL reference,
// the op catalog, the output rules) and the device summary.
//
// Contract:
//   - llm_dsl_reference() is docs/dsl.md's exact text (a test checks it).
//   - Every example in the prompt parses.
// Requires LAMDA_WITH_LLM.
#ifndef LAMDA_LLM_PROMPT_HPP
#define LAMDA_LLM_PROMPT_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/prompt.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "../core/analysis.hpp"
#include "../dsl/parser.hpp"
#include "../exec/device.hpp"
#include "../latency/model.hpp"
#include "../search/designer.hpp"
#include "../search/task.hpp"
#include "client.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// What the model is told
// ---------------------------------------------------------------------------------------------

// docs/dsl.md, embedded so that an installed lamda needs no source tree. test_llm.cpp checks that
// it is the file's exact text; after editing docs/dsl.md, regenerate the lines below with
//   python3 -c "for l in open('docs/dsl.md').read().split('\n')[:-1]: print('    \"' + l.replace('\\\\','\\\\\\\\').replace('\"','\\\\\"') + '\\\\n\"')"
inline const char* llm_dsl_reference() {
    return
        "# The lamda DSL\n"
        "\n"
        "A lamda model is a text file (`.lamda`): one layer per line, read top to bottom.\n"
        "This page is also what the generator (an LLM) is shown, so it is short and exact.\n"
        "\n"
        "## Lines\n"
        "\n"
        "```\n"
        "# comment (from '#' to the end of the line; blank lines are ignored)\n"
        "model NAME                                 # optional, first non-comment line\n"
        "NAME: OP [INPUT, INPUT ...] [KEY=VALUE ...]\n"
        "```\n"
        "\n"
        "- `NAME` is the layer's name and the name of the value it produces: letters, digits and `_`,\n"
        "  starting with a letter or `_`, at most 64 characters, unique in the file. Weight tensors are named\n"
        "  after it (`NAME.weight`, `NAME.bias`). `NAME:` may be left out; the layer is then named\n"
        "  `OP_N` (N counts layers from 0), and the canonical form prints that name.\n"
        "- Inputs are names of earlier layers, separated by commas. **With no input, a layer takes the\n"
        "  output of the line above it** (a plain chain). Ops that combine values (`add`, `concat`, `mul`)\n"
        "  always name their inputs.\n"
        "- Attributes are `KEY=VALUE` with no spaces around `=`. Sizes that have a height and a width take\n"
        "  `N` (both) or `HxW`, e.g. `kernel=3`, `kernel=1x7`.\n"
        "- The first layer is the only `input` layer. Shapes are height x width x channels (NHWC, batch\n"
        "  implied). Every layer's output shape is inferred; you never write it except for `input`.\n"
        "\n"
        "## Example\n"
        "\n"
        "```\n"
        "model tiny_residual\n"
        "input: input shape=28x28x1\n"
        "stem: conv2d out=16 kernel=3 stride=2 act=relu      # 14x14x16\n"
        "b1_dw: dwconv kernel=3 act=relu6                     # 14x14x16\n"
        "b1_pw: conv2d out=16 kernel=1\n"
        "b1: add stem, b1_pw act=relu                         # residual\n"
        "se_pool: gap                                         # 1x1x16\n"
        "se_fc1: conv2d out=4 kernel=1 act=relu\n"
        "se_fc2: conv2d out=16 kernel=1 act=hardsigmoid\n"
        "se: mul b1, se_fc2                                   # squeeze-excitation\n"
        "pool: gap\n"
        "flat: flatten\n"
        "drop: dropout rate=0.2\n"
        "logits: fc out=10\n"
        "prob: softmax\n"
        "```\n"
        "\n"
        "## Ops\n"
        "\n"
        "| op | inputs | attributes (default) | output |\n"
        "|---|---|---|---|\n"
        "| `input` | none | `shape=HxWxC` (required) | HxWxC |\n"
        "| `conv2d` | 1 | `out` (required), `kernel` (required), `in` (optional check), `stride=1`, `padding=same`, `dilation=1`, `groups=1`, `bias=true`, `act=none` | Ho x Wo x out |\n"
        "| `dwconv` | 1 | `kernel` (required), `in` (optional check), `stride=1`, `padding=same`, `dilation=1`, `multiplier=1`, `bias=true`, `act=none` | Ho x Wo x C*multiplier |\n"
        "| `fc` | 1 (1x1xC) | `out` (required), `in` (optional check), `bias=true`, `act=none` | 1x1xout |\n"
        "| `batchnorm` | 1 | `eps=1e-05` | same |\n"
        "| `maxpool` | 1 | `kernel` (required), `stride=kernel`, `padding=valid`, `ceil=false` | Ho x Wo x C |\n"
        "| `avgpool` | 1 | `kernel` (required), `stride=kernel`, `padding=valid`, `ceil=false` | Ho x Wo x C |\n"
        "| `gap` | 1 | (global average pool) | 1x1xC |\n"
        "| `add` | 2 or more, same shape | `act=none` | same |\n"
        "| `concat` | 2 or more, same HxW | (joins channels, in input order) | H x W x sum(C) |\n"
        "| `mul` | 2: HxWxC and HxWxC or 1x1xC | (elementwise; a 1x1xC value is broadcast over H and W) | HxWxC |\n"
        "| `relu` `relu6` `hardswish` `hardsigmoid` `sigmoid` | 1 | | same |\n"
        "| `softmax` | 1 | (over channels) | same |\n"
        "| `flatten` | 1 | (H, W, C order) | 1x1x(H*W*C) |\n"
        "| `dropout` | 1 | `rate=0.5` (a no-op at inference) | same |\n"
        "\n"
        "- `act` is one of `none`, `relu`, `relu6`, `hardswish`, `hardsigmoid`, `sigmoid`: a fused activation.\n"
        "- `padding`: `same` (output = ceil(input / stride); an odd total pads the bottom and right one more),\n"
        "  `valid` (no padding), `N` (N on every side), `HxW` (H on top and bottom, W on left and right),\n"
        "  or `TxLxBxR` (top, left, bottom, right).\n"
        "- Output size on each axis: `floor((in + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1`;\n"
        "  with `ceil=true` (pools) the division rounds up, but a window never starts inside the trailing padding.\n"
        "- `in=C` on `conv2d`, `dwconv`, `fc` states the input channels you expect; a mismatch is an error.\n"
        "- `conv2d`: input and `out` channels must both divide by `groups`. `fc` needs a 1x1xC input: put\n"
        "  `gap` or `flatten` before it.\n"
        "- `bias`, `ceil`: `true` or `false`. `eps`, `rate`: decimal numbers (`rate` in [0, 1)).\n"
        "\n"
        "## Limits\n"
        "\n"
        "A file is at most 4 MiB and 10000 layers; a line at most 4096 characters. Channels are at most\n"
        "65536, height and width at most 16384, kernel at most 64, stride and dilation at most 64, a value\n"
        "at most 2^31 elements, a model at most 2^31 parameters. A file over a limit is an error, not a crash.\n"
        "\n"
        "## Errors\n"
        "\n"
        "Each error reads `FILE:LINE:COL: error: WHAT`, often followed by `hint: HOW TO FIX`, e.g.\n"
        "\n"
        "```\n"
        "model.lamda:7:1: error: expected 32 input channels from 'b3', got 16\n"
        "model.lamda:9:7: error: unknown op 'conv3d'\n"
        "  hint: did you mean 'conv2d'?\n"
        "```\n"
        "\n"
        "All independent errors in a file are reported. Fix every one and resubmit the whole model.\n"
        ;
}

// The op catalog and output rules that follow the DSL reference in the system message.
inline std::string llm_output_rules() {
    std::string ops;
    for (OpKind k : all_op_kinds) ops += (ops.empty() ? "" : ", ") + std::string(op_name(k));
    return "## Op catalog\n\n"
           "These ops exist, and no others: " + ops + ".\n"
           "Blocks that run fast on CPUs (XNNPACK, NHWC, float32), with their shapes for a 14x14x16 input:\n\n"
           "```lamda\n"
           "# MobileNetV2 inverted residual (expansion 4), with squeeze-excitation\n"
           "input: input shape=14x14x16\n"
           "b1_expand: conv2d out=64 kernel=1 act=relu6        # 14x14x64\n"
           "b1_dw: dwconv kernel=3 act=relu6                   # 14x14x64\n"
           "b1_se_pool: gap                                    # 1x1x64\n"
           "b1_se_fc1: conv2d out=16 kernel=1 act=relu\n"
           "b1_se_fc2: conv2d out=64 kernel=1 act=hardsigmoid\n"
           "b1_se: mul b1_dw, b1_se_fc2\n"
           "b1_project: conv2d out=16 kernel=1                 # 14x14x16\n"
           "b1: add input, b1_project\n"
           "# separable conv (MobileNetV1) with downsampling\n"
           "b2_dw: dwconv kernel=3 stride=2 act=relu           # 7x7x16\n"
           "b2_pw: conv2d out=32 kernel=1 act=relu             # 7x7x32\n"
           "# ResNet basic block\n"
           "b3_c1: conv2d out=32 kernel=3 act=relu\n"
           "b3_c2: conv2d out=32 kernel=3\n"
           "b3: add b2_pw, b3_c2 act=relu\n"
           "pool: gap\n"
           "logits: fc out=10\n"
           "```\n\n"
           "Cost: a conv2d costs H*W*k*k*Cin*Cout MACs; a 1x1 conv H*W*Cin*Cout; a dwconv only H*W*k*k*C. Downsample "
           "early (stride 2) to make every later layer cheaper. Latency is not MACs alone: each layer has a fixed "
           "cost, and depthwise layers do fewer MACs per microsecond than dense ones; the feedback tells you what "
           "each layer really costs on this device.\n\n"
           "## Output rules\n\n"
           "- Reply with one or more candidate models, each a complete model in its own ```lamda fenced block, "
           "from the `input` layer to the logits.\n"
           "- The `input` layer has exactly the task's shape, and the last layer outputs 1x1xCLASSES "
           "(e.g. `pool: gap` then `logits: fc out=CLASSES`).\n"
           "- Every model must differ from every earlier candidate. Layer names are unique within a model.\n"
           "- Leave `in=` out unless you are sure of the channel count.\n"
           "- Text outside the fenced blocks is ignored: keep it to a sentence.\n";
}

inline std::string llm_system_prompt() {
    return "You design small convolutional neural networks that must fit an edge device's latency budget. You "
           "write each network in the lamda DSL. lamda validates every candidate, predicts and measures its latency "
           "on the device, checks its size, and tells you the results; use them to propose better candidates.\n\n" +
           std::string(llm_dsl_reference()) + "\n" + llm_output_rules();
}

// The system prompt for a small context window (2048-4096 tokens): a short DSL reference (the
// line syntax, the op table in one line each, one example) and the output rules, ~600 tokens,
// so that a 2048-token window keeps room for the task, the history and a reply.
inline std::string llm_compact_system_prompt() {
    std::string ops;
    for (OpKind k : all_op_kinds) ops += (ops.empty() ? "" : ", ") + std::string(op_name(k));
    return "You design small CNNs for an edge device's latency budget, written in the lamda DSL. lamda checks each "
           "candidate, measures it and tells you the results.\n\n"
           "## lamda DSL (short)\n"
           "One layer per line: `NAME: OP [INPUT, INPUT] [KEY=VALUE ...]`; no input = the line above. Shapes are HxWxC. "
           "Sizes: `kernel=3` or `kernel=1x7` (never tuples). `#` starts a comment. Names: letters, digits, _.\n"
           "- input shape=HxWxC (first line)\n"
           "- conv2d out= kernel= [stride=1 padding=same groups=1 act=none]\n"
           "- dwconv kernel= [stride=1 multiplier=1 act=none]\n"
           "- fc out= (needs 1x1xC: gap or flatten before it)\n"
           "- maxpool/avgpool kernel= [stride=kernel]; gap; flatten; batchnorm; dropout rate=\n"
           "- add A, B [act=] (same shape); concat A, B (same HxW); mul A, B (B may be 1x1xC)\n"
           "- relu relu6 hardswish hardsigmoid sigmoid softmax; act= takes none|relu|relu6|hardswish|hardsigmoid|sigmoid\n"
           "All ops: " + ops + ".\n\n"
           "```lamda\n"
           "input: input shape=28x28x1\n"
           "stem: conv2d out=16 kernel=3 stride=2 act=relu\n"
           "b1_dw: dwconv kernel=3 act=relu6\n"
           "b1_pw: conv2d out=16 kernel=1\n"
           "b1: add stem, b1_pw act=relu\n"
           "pool: gap\n"
           "logits: fc out=10\n"
           "```\n\n"
           "Cost: conv2d H*W*k*k*Cin*Cout MACs; dwconv H*W*k*k*C. Downsample early.\n\n"
           "## Output rules\n"
           "- Each model complete, from `input` to the logits, in its own ```lamda block; ASCII only.\n"
           "- The input has the task's shape; the last layer outputs 1x1xCLASSES.\n"
           "- Every model differs from earlier candidates. Text outside blocks is ignored.\n";
}

// The channel tile of the target's kernels where it is wider than 8 (channel_step_for), as a
// line of advice; "" otherwise. Left out of the compact prompt (a small window has no room).
inline std::string llm_channel_tile_hint(const Task& task, const DeviceInfo& target) {
    const int tile = channel_step_for(target.xnnpack_isa, task.precision == TaskPrecision::Int8);
    if (tile <= 8) return {};
    const std::string t = std::to_string(tile);
    return "Its kernels work on " + t + " channels at a time: a width past a multiple of " + t +
           " costs as much as the next multiple (24 channels as much as 32), so prefer widths that are multiples of " + t +
           ".\n";
}

// The target device in a few lines: its CPU (describe_device() here, or what a profile's
// fingerprint says of another board; logical_cores 0: not known) and, with its latency model,
// what single layers cost there at the task's first feature-map size (so that the model knows
// e.g. how dear depthwise is).
inline std::string llm_device_summary(const Task& task, const DeviceInfo& d, const LatencyModel* model) {
    using llm_detail::num;
    std::string facts;  // what is known of it, comma-separated
    const auto fact = [&facts](const std::string& f) { facts += (facts.empty() ? "" : ", ") + f; };
    if (!d.architecture.empty()) fact(d.architecture);
    if (d.logical_cores > 0) fact(std::to_string(d.logical_cores) + " logical cores");
    if (!d.xnnpack_isa.empty()) fact("XNNPACK " + d.xnnpack_isa + " kernels");
    std::string s = "CPU: " + (d.cpu_model.empty() ? std::string("unknown") : d.cpu_model) +
                    (facts.empty() ? std::string() : " (" + facts + ")") + "; latency is the median of runs on " +
                    std::to_string(task.constraints.threads) + " thread(s).\n";
    if (!model) return s;
    const std::int64_t h = std::max<std::int64_t>(1, (task.input.h + 1) / 2);
    const std::int64_t w = std::max<std::int64_t>(1, (task.input.w + 1) / 2);
    const std::string in = "input: input shape=" + std::to_string(h) + "x" + std::to_string(w) + "x32\n";
    const std::pair<const char*, const char*> probes[] = {
        {"3x3 conv2d 32->32", "l: conv2d out=32 kernel=3 act=relu\n"},
        {"1x1 conv2d 32->64", "l: conv2d out=64 kernel=1 act=relu\n"},
        {"3x3 dwconv on 32 channels", "l: dwconv kernel=3 act=relu\n"},
        {"5x5 dwconv on 32 channels", "l: dwconv kernel=5 act=relu\n"},
        {"2x2 maxpool", "l: maxpool kernel=2\n"},
        {"add of two 32-channel maps", "a: conv2d out=32 kernel=1\nl: add input, a\n"},
    };
    std::string lines;
    for (const auto& [what, text] : probes) {
        const ParseResult r = parse_dsl(in + text, "probe");
        if (!r.ok()) continue;
        const LatencyPrediction p = model->predict(r.graph);
        const double ms = p.per_layer_ms.empty() ? 0.0 : p.per_layer_ms.back();
        const std::int64_t macs = analyze(r.graph).layers.back().macs;
        lines += "- " + std::string(what) + ": " + num(ms, 3) + " ms";
        if (macs > 0 && ms > 0) lines += " (" + num(ms / (double(macs) / 1e6), 3) + " ms per million MACs)";
        lines += "\n";
    }
    if (!lines.empty())
        s += "The device's latency model predicts these single layers on a " + std::to_string(h) + "x" + std::to_string(w) +
             "x32 feature map:\n" + lines;
    return s;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_PROMPT_HPP
