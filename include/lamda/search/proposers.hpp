// lamda/search/proposers.hpp: where candidate networks come from. A Proposer hands the generation loop
// (search/loop.hpp) one DSL text at a time and sees every decided candidate's record. Two built-in
// proposers search search/designer.hpp's space and need no network:
//   - OfflineDesigner: starts from the zoo's small models and edits them the way an engineer
//     would, steered by the loop's feedback: over budget -> shrink the stage whose layers cost
//     most; well under budget -> grow where it is cheap; near the limit -> lateral moves.
//   - RandomProposer: uniform draws from the same space, the baseline the designer must beat.
// Both are deterministic functions of (seed, records so far), which is what lets `--resume`
// continue a search from its journal: each keeps its design in the record's note.
#ifndef LAMDA_SEARCH_PROPOSERS_HPP
#define LAMDA_SEARCH_PROPOSERS_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../core/analysis.hpp"
#include "../detail/hash.hpp"
#include "designer.hpp"
#include "../dsl/parser.hpp"
#include "sampler.hpp"
#include "types.hpp"

namespace lamda {

struct Proposal {
    std::string dsl;
    std::string note;  // what the proposer did, e.g. "shrink s1 width 48->32; design: ..."
    // Non-empty: the proposer tried and failed to produce a candidate (an LLM turn that got no
    // usable reply). The loop records it as a Failed candidate with this reason and goes on.
    std::string error = {};
};

class Proposer {
public:
    virtual ~Proposer() = default;
    virtual std::string name() const = 0;
    // The next candidate, or nothing when the proposer has nothing new to offer. `records` holds
    // every candidate decided so far, in order (those of a resumed journal included).
    virtual std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) = 0;
    // The same with candidates still being evaluated (a parallel search, search/parallel.hpp):
    // `pending` are screened (parsed, analysed, predicted) but not yet measured or trained, and
    // must not be proposed again. The default ignores them (the loop skips repeats); the
    // built-in proposers count them, so that N workers get N different designs.
    virtual std::optional<Proposal> propose_next(const Task& task, const std::vector<CandidateRecord>& records,
                                                 const std::vector<CandidateRecord>& pending) {
        (void)pending;
        return propose(task, records);
    }
    // Budget::max_total_seconds: the search says, once, what share (0..1] of a candidate's full
    // training the time it keeps for that training allows (1: all of it, or unknown). The default
    // ignores it; the adapting designer (search/adapt.hpp) follows candidates that train in time.
    virtual void set_final_training_fit(std::function<double(const CandidateRecord&)> fit) { (void)fit; }
};

// 16 hex digits of FNV-1a 64 over `text`: candidates are deduplicated by the hash of their
// canonical form (print_dsl), so formatting, comments and attribute order do not matter.
inline std::string text_hash(std::string_view text) {
    std::uint64_t h = detail::fnv1a(text);
    static const char* digits = "0123456789abcdef";
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 15];
    return out;
}

// The canonical form of a valid DSL text and its hash; false if it does not parse.
inline bool canonical_hash(std::string_view dsl, std::string& canonical, std::string& hash) {
    ParseResult r = parse_dsl(dsl, "<candidate>");
    if (!r.ok()) return false;
    canonical = print_dsl(r.graph);
    hash = text_hash(canonical);
    return true;
}

namespace proposer_detail {

inline constexpr std::string_view design_marker = "design: ";

// The design a record's note carries (what the built-in proposers write), if any.
inline std::optional<Design> design_of(const CandidateRecord& r) {
    const std::size_t at = r.note.find(design_marker);
    if (at == std::string::npos) return std::nullopt;
    Design d;
    if (!parse_design(std::string_view(r.note).substr(at + design_marker.size()), d).empty())
        return std::nullopt;
    return d;
}

// The hashes of the candidates decided so far and of those still being evaluated (a parallel
// search's pending ones): a proposer offers neither again.
inline std::set<std::string> seen_hashes(const std::vector<CandidateRecord>& records,
                                         const std::vector<CandidateRecord>& pending = {}) {
    std::set<std::string> seen;
    for (const auto& r : records) seen.insert(r.hash);
    for (const auto& r : pending) seen.insert(r.hash);
    return seen;
}

// A design's rendering for the task, if it parses and has not been seen.
inline std::optional<Proposal> fresh(const Design& design, const Task& task, const std::set<std::string>& seen,
                                     std::set<std::string>& tried, const std::string& what) {
    const Design d = task.precision == TaskPrecision::Int8 ? int8_design(design) : design;
    const std::string text = render_design(d, task.input, task.classes);
    std::string canonical, hash;
    if (!canonical_hash(text, canonical, hash)) return std::nullopt;
    if (seen.count(hash) || !tried.insert(hash).second) return std::nullopt;
    return Proposal{text, what + "; " + std::string(design_marker) + design_to_string(d)};
}

// How many times the task's max_params a proposal's parameters are (0 without a limit, or when
// it does not parse: the loop reports that). Counted before proposing, as an engineer would: the
// loop would reject an over-limit model unmeasured, and its slot in the budget would be spent.
inline double params_over_limit(const Proposal& p, const Task& task) {
    if (task.constraints.max_params <= 0) return 0;
    ParseResult r = parse_dsl(p.dsl, "<candidate>");
    if (!r.ok()) return 0;
    try {
        return double(analyze(r.graph).params) / double(task.constraints.max_params);
    } catch (const std::exception&) {
        return 0;
    }
}

// How far a record is from meeting the task's limits: the largest of latency/budget,
// params/limit and memory/limit (1 = exactly at a limit), or nothing when it was not analysed.
inline std::optional<double> violation(const CandidateRecord& r, const Task& task) {
    if (r.params < 0) return std::nullopt;
    const Constraints& c = task.constraints;
    double v = 0;
    if (c.max_params > 0) v = std::max(v, double(r.params) / double(c.max_params));
    if (c.max_activation_bytes > 0) v = std::max(v, double(r.peak_activation_bytes) / double(c.max_activation_bytes));
    if (c.latency_ms > 0) {
        const auto ms = judged_latency_ms(r);
        if (!ms) return std::nullopt;
        v = std::max(v, *ms / c.latency_ms);
    }
    return v;
}

// Share of the record's cost per stage (index -1: stem, stages.size(): head), from top_layers.
inline std::map<int, double> stage_costs(const CandidateRecord& r, std::size_t stage_count) {
    std::map<int, double> cost;
    for (const LayerCost& l : r.top_layers) {
        const int s = stage_of_layer(l.name, stage_count);
        if (s >= -1) cost[s] += l.share;
    }
    return cost;
}

}  // namespace proposer_detail

// Uniform draws from search/designer.hpp's space, rendered for the task; self-invalid draws (too many
// downsamplings for the input) and repeats are drawn again.
class RandomProposer : public Proposer {
public:
    explicit RandomProposer(std::uint64_t seed) : seed_(seed) {}
    std::string name() const override { return "random"; }
    std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) override {
        return propose_next(task, records, {});
    }
    // Pending candidates count as seen and advance the draw (records + pending = draws so far).
    std::optional<Proposal> propose_next(const Task& task, const std::vector<CandidateRecord>& records,
                                         const std::vector<CandidateRecord>& pending) override {
        std::set<std::string> seen = proposer_detail::seen_hashes(records, pending);
        const std::size_t drawn = records.size() + pending.size();
        std::set<std::string> tried;
        for (std::uint64_t attempt = 0; attempt < 1000; ++attempt) {
            std::mt19937_64 rng(sample_seed(seed_, drawn * 1000 + attempt));
            const Design d = random_design(rng);
            if (auto p = proposer_detail::fresh(d, task, seen, tried, "random draw")) return p;
        }
        return std::nullopt;
    }

private:
    std::uint64_t seed_;
};

// The built-in designer (see the top of this file).
class OfflineDesigner : public Proposer {
public:
    explicit OfflineDesigner(std::uint64_t seed, DesignBounds bounds = {}) : seed_(seed), bounds_(bounds) {}
    std::string name() const override { return "offline"; }

    std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) override {
        return propose_next(task, records, {});
    }
    // Pending candidates count as seen, as seeds already handed out, and advance the draw; only
    // finished records are parents (a pending one has no verdict to steer an edit by).
    std::optional<Proposal> propose_next(const Task& task, const std::vector<CandidateRecord>& records,
                                         const std::vector<CandidateRecord>& pending) override {
        using namespace proposer_detail;
        std::set<std::string> seen = seen_hashes(records, pending);
        const std::size_t drawn = records.size() + pending.size();
        std::set<std::string> tried;
        // The zoo's seeds first, each at the width the budget suggests once the first is known.
        const auto seeds = zoo_seed_designs();
        std::vector<std::pair<const CandidateRecord*, Design>> known;
        for (const auto& r : records)
            if (auto d = design_of(r)) known.emplace_back(&r, *d);
        std::size_t designs_out = known.size();
        for (const auto& r : pending)
            if (design_of(r)) ++designs_out;
        // A design over max_params is narrowed to fit (parameters grow about as width squared);
        // one that still does not fit is passed over, the first kept in case nothing else turns up.
        std::optional<Proposal> over;
        auto within_params = [&](const Design& design, const std::string& what) -> std::optional<Proposal> {
            std::optional<Proposal> p = fresh(design, task, seen, tried, what);
            if (!p) return p;
            const double ratio = params_over_limit(*p, task);
            if (ratio <= 1.0) return p;
            const double factor = std::clamp(std::sqrt(0.95 / ratio), 0.3, 0.97);
            std::optional<Proposal> narrowed = fresh(scale_width(design, factor, bounds_), task, seen, tried,
                                                     what + ", widths x" + std::to_string(factor).substr(0, 4) + " for max_params");
            if (narrowed && params_over_limit(*narrowed, task) <= 1.0) return narrowed;
            if (!over) over = std::move(p);
            return std::nullopt;
        };
        if (designs_out < seeds.size()) {
            const auto& [seed_name, seed_design] = seeds[designs_out];
            if (auto p = within_params(seed_design, "seed " + seed_name)) return p;
        }
        for (std::uint64_t attempt = 0; attempt < 400; ++attempt) {
            std::mt19937_64 rng(sample_seed(seed_, drawn * 1000 + attempt));
            if (known.empty()) {
                // Nothing of ours parsed yet (every seed was a repeat): start from a random design.
                if (auto p = within_params(random_design(rng, bounds_), "restart")) return p;
                continue;
            }
            const auto& [parent, design] = pick_parent(rng, known, task);
            std::string what;
            const Design child = edit(rng, *parent, design, task, what, attempt);
            if (auto p = within_params(child, what + " of #" + std::to_string(parent->index))) return p;
        }
        return over;
    }

private:
    using Known = std::vector<std::pair<const CandidateRecord*, Design>>;

    // Mostly the best feasible candidate; sometimes another of the best few, to keep exploring.
    // With nothing feasible yet, the candidate closest to the limits.
    const std::pair<const CandidateRecord*, Design>& pick_parent(std::mt19937_64& rng, const Known& known,
                                                                 const Task& task) const {
        using namespace sample_detail;
        std::vector<std::size_t> feasible;
        for (std::size_t i = 0; i < known.size(); ++i)
            if (known[i].first->verdict == Verdict::Feasible) feasible.push_back(i);
        if (!feasible.empty()) {
            std::stable_sort(feasible.begin(), feasible.end(), [&](std::size_t a, std::size_t b) {
                return objective_score(*known[a].first, task.objective) >
                       objective_score(*known[b].first, task.objective);
            });
            const int roll = uniform(rng, 0, 99);
            if (roll < 60 || feasible.size() == 1) return known[feasible[0]];
            if (roll < 90)
                return known[feasible[static_cast<std::size_t>(uniform(rng, 1, static_cast<int>(std::min<std::size_t>(4, feasible.size() - 1))))]];
        }
        // Closest to the limits among those that were analysed (or, early on, anything).
        std::vector<std::pair<double, std::size_t>> ranked;
        for (std::size_t i = 0; i < known.size(); ++i)
            if (auto v = proposer_detail::violation(*known[i].first, task)) ranked.emplace_back(std::abs(*v - 0.9), i);
        if (ranked.empty()) return known[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(known.size()) - 1))];
        std::stable_sort(ranked.begin(), ranked.end());
        const std::size_t top = std::min<std::size_t>(3, ranked.size());
        return known[ranked[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(top) - 1))].second];
    }

    // One engineer's edit of `d` given how its record fared.
    Design edit(std::mt19937_64& rng, const CandidateRecord& r, Design d, const Task& task, std::string& what,
                std::uint64_t attempt) const {
        using namespace sample_detail;
        const double v = proposer_detail::violation(r, task).value_or(1.0);
        const bool below_accuracy = r.verdict == Verdict::BelowAccuracy;
        const bool invalid = r.verdict == Verdict::Invalid || r.verdict == Verdict::Failed;
        // Far off the limit, or with slack to fill: resize every width so that the cost (roughly
        // quadratic in width) lands just under the limit, as an engineer sizing a net would.
        const bool resize = (v > 1.6 || (v < 0.45 && !below_accuracy)) ? attempt % 3 == 0
                            : (v < 0.93 || v > 1.0) && chance(rng, 30);
        if (!invalid && v > 0 && resize) {
            const double factor = std::clamp(std::sqrt(0.96 / v), 0.4, 2.0) *
                                  (1.0 + 0.04 * (uniform(rng, 0, 4) - 2) + 0.02 * double(attempt % 5));
            what = "scale widths x" + std::to_string(factor).substr(0, 4);
            return scale_width(d, factor, bounds_);
        }
        // The parameter limit binds while time is left: the same weights over more pixels buy
        // multiply-adds (the capacity a time budget pays for) without a parameter.
        const Constraints& c = task.constraints;
        const auto ms = judged_latency_ms(r);
        if (!invalid && v <= 1.0 && c.max_params > 0 && double(r.params) >= 0.85 * double(c.max_params) &&
            ms && c.latency_ms > 0 && *ms < 0.8 * c.latency_ms && chance(rng, 50)) {
            what = "resolution";
            if (more_resolution(rng, d, c.latency_ms / *ms, what)) return d;
        }
        const auto costs = proposer_detail::stage_costs(r, d.stages.size());
        if (v > 1.0 || invalid) {
            what = "shrink";
            shrink(rng, d, costs, what);
        } else if (v < 0.85 || below_accuracy) {
            what = "grow";
            grow(rng, d, costs, what);
        } else {
            what = "lateral";
            lateral(rng, d, what);
        }
        if (chance(rng, 25)) {  // a second, smaller change sometimes, to leave local optima
            what += " + lateral";
            lateral(rng, d, what);
        }
        return d;
    }

    // The stage to edit: drawn in proportion to its cost share (`expensive`) or its inverse.
    static int pick_stage(std::mt19937_64& rng, const Design& d, const std::map<int, double>& costs, bool expensive) {
        const int n = static_cast<int>(d.stages.size());
        std::vector<double> w(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) {
            const auto it = costs.find(i);
            const double share = it == costs.end() ? 0.02 : std::max(0.02, it->second);
            w[static_cast<std::size_t>(i)] = expensive ? share : 1.0 / share;
        }
        // Inverse-CDF by hand: std::discrete_distribution's draws differ between standard
        // libraries, and a search must replay identically wherever its journal is resumed.
        double total = 0;
        for (double x : w) total += x;
        double r = total * static_cast<double>(sample_detail::below(rng, 1u << 30)) / double(1u << 30);
        for (int i = 0; i < n; ++i) {
            r -= w[static_cast<std::size_t>(i)];
            if (r < 0) return i;
        }
        return n - 1;
    }

    void shrink(std::mt19937_64& rng, Design& d, const std::map<int, double>& costs, std::string& what) const {
        using namespace sample_detail;
        const auto stem_cost = costs.count(-1) ? costs.at(-1) : 0.0;
        const auto head_cost = costs.count(int(d.stages.size())) ? costs.at(int(d.stages.size())) : 0.0;
        if (stem_cost > 0.35 && chance(rng, 60)) {
            if (d.stem_stride == 1) {
                d.stem_stride = 2, what += " stem stride 1->2";
            } else {
                const int c = d.stem_channels;
                d.stem_channels = design_detail::round_channels(c * 0.7, bounds_);
                what += " stem width " + std::to_string(c) + "->" + std::to_string(d.stem_channels);
            }
            return;
        }
        if (head_cost > 0.3 && d.head_channels > 0 && chance(rng, 60)) {
            const int c = d.head_channels;
            d.head_channels = chance(rng, 30) ? 0 : design_detail::round_channels(c * 0.6, bounds_);
            what += " head " + std::to_string(c) + "->" + std::to_string(d.head_channels);
            return;
        }
        const int i = pick_stage(rng, d, costs, true);
        StageDesign& s = d.stages[static_cast<std::size_t>(i)];
        const std::string at = " s" + std::to_string(i);
        switch (uniform(rng, 0, 5)) {
        case 0:
        case 1: {
            const int c = s.channels;
            s.channels = design_detail::round_channels(c * 0.75, bounds_);
            what += at + " width " + std::to_string(c) + "->" + std::to_string(s.channels);
            return;
        }
        case 2:
            if (s.repeats > 1) {
                --s.repeats, what += at + " depth -1";
                return;
            }
            if (d.stages.size() > 1 && s.stride == 1) {
                d.stages.erase(d.stages.begin() + i), what += at + " removed";
                return;
            }
            break;
        case 3:
            if (s.kind == BlockKind::Inverted && s.expansion > 1) {
                s.expansion = std::max(1, s.expansion - (s.expansion > 3 ? 2 : 1));
                what += at + " expansion ->" + std::to_string(s.expansion);
                return;
            }
            break;
        case 4:
            if (s.kernel > 3) {
                s.kernel -= 2, what += at + " kernel ->" + std::to_string(s.kernel);
                return;
            }
            if (s.se) {
                s.se = false, what += at + " SE off";
                return;
            }
            break;
        default:
            // Downsample earlier: the stage's stride moves to the stage before, or the stem.
            if (s.stride == 1) {
                s.stride = 2, s.pool = false, what += at + " stride 2";
                return;
            }
            break;
        }
        const int c = s.channels;
        s.channels = design_detail::round_channels(c * 0.8, bounds_);
        what += at + " width " + std::to_string(c) + "->" + std::to_string(s.channels);
    }

    void grow(std::mt19937_64& rng, Design& d, const std::map<int, double>& costs, std::string& what) const {
        using namespace sample_detail;
        const int i = pick_stage(rng, d, costs, false);
        StageDesign& s = d.stages[static_cast<std::size_t>(i)];
        const std::string at = " s" + std::to_string(i);
        switch (uniform(rng, 0, 6)) {
        case 0:
        case 1: {
            const int c = s.channels;
            s.channels = design_detail::round_channels(c * 1.3 + 4, bounds_);
            what += at + " width " + std::to_string(c) + "->" + std::to_string(s.channels);
            return;
        }
        case 2:
            if (s.repeats < bounds_.max_repeats) {
                ++s.repeats, what += at + " depth +1";
                return;
            }
            break;
        case 3:
            if (s.kind == BlockKind::Inverted && s.expansion < bounds_.max_expansion) {
                ++s.expansion, what += at + " expansion ->" + std::to_string(s.expansion);
                return;
            }
            if (!s.se) {
                s.se = true, what += at + " SE on";
                return;
            }
            break;
        case 4:
            if (static_cast<int>(d.stages.size()) < bounds_.max_stages) {
                StageDesign extra = d.stages.back();
                extra.channels = design_detail::round_channels(extra.channels * 1.5, bounds_);
                extra.stride = 1, extra.pool = false, extra.repeats = 1;
                d.stages.push_back(extra);
                what += " new stage s" + std::to_string(d.stages.size() - 1);
                return;
            }
            break;
        case 5:
            if (d.head_channels == 0) {
                d.head_channels = design_detail::round_channels(d.stages.back().channels * 2, bounds_);
                what += " head 0->" + std::to_string(d.head_channels);
            } else {
                const int c = d.head_channels;
                d.head_channels = std::min(bounds_.max_head, design_detail::round_channels(c * 1.5, bounds_));
                what += " head " + std::to_string(c) + "->" + std::to_string(d.head_channels);
            }
            return;
        default:
            if (stride_later(d, i, what)) return;
            if (d.stem_stride == 2 && chance(rng, 50)) {
                d.stem_stride = 1, what += " stem stride 2->1";
                return;
            }
            break;
        }
        const int c = s.channels;
        s.channels = design_detail::round_channels(c * 1.25 + 4, bounds_);
        what += at + " width " + std::to_string(c) + "->" + std::to_string(s.channels);
    }

    // Stage i downsamples one stage later, when the next runs at stride 1: more resolution for it.
    static bool can_stride_later(const Design& d, int i) {
        const auto at = static_cast<std::size_t>(i);
        return at + 1 < d.stages.size() && d.stages[at].stride == 2 && d.stages[at + 1].stride == 1;
    }
    static bool stride_later(Design& d, int i, std::string& what) {
        if (!can_stride_later(d, i)) return false;
        const auto at = static_cast<std::size_t>(i);
        d.stages[at + 1].stride = 2;
        d.stages[at + 1].pool = d.stages[at].pool;
        d.stages[at].stride = 1, d.stages[at].pool = false;
        what += " s" + std::to_string(i) + " stride moved to s" + std::to_string(i + 1);
        return true;
    }

    // More pixels through the same weights: a downsampling moves one stage later, or, with none
    // to move, the stem keeps full resolution where the time left (`room`, budget over latency)
    // pays for four times the pixels everywhere. False when neither applies.
    static bool more_resolution(std::mt19937_64& rng, Design& d, double room, std::string& what) {
        std::vector<int> movable;
        for (int i = 0; i < static_cast<int>(d.stages.size()); ++i)
            if (can_stride_later(d, i)) movable.push_back(i);
        if (!movable.empty())
            return stride_later(d, movable[static_cast<std::size_t>(
                                           sample_detail::uniform(rng, 0, static_cast<int>(movable.size()) - 1))],
                                what);
        if (d.stem_stride != 2 || room < 3.5) return false;
        d.stem_stride = 1, what += " stem stride 2->1";
        return true;
    }

    // Changes that need not move cost much: block type, kernel, stride placement, SE, activation.
    void lateral(std::mt19937_64& rng, Design& d, std::string& what) const {
        using namespace sample_detail;
        const int i = uniform(rng, 0, static_cast<int>(d.stages.size()) - 1);
        StageDesign& s = d.stages[static_cast<std::size_t>(i)];
        const std::string at = " s" + std::to_string(i);
        switch (uniform(rng, 0, 6)) {
        case 0: {
            const BlockKind k = static_cast<BlockKind>(uniform(rng, 0, 3));
            if (k != s.kind) {
                s.kind = k;
                if (k == BlockKind::Inverted && s.expansion < 2) s.expansion = 3;
                what += at + " block ->" + std::string(block_kind_name(k));
                return;
            }
            break;
        }
        case 1: {
            const int old = s.kernel;
            s.kernel = s.kernel == 3 ? 5 : 3;
            what += at + " kernel " + std::to_string(old) + "->" + std::to_string(s.kernel);
            return;
        }
        case 2:
            s.se = !s.se, what += at + (s.se ? " SE on" : " SE off");
            return;
        case 3:
            if (s.stride == 2) {
                s.pool = !s.pool, what += at + (s.pool ? " stride->maxpool" : " maxpool->stride");
                return;
            }
            break;
        case 4: {
            const Activation acts[] = {Activation::Relu, Activation::Relu6, Activation::HardSwish};
            const Activation a = acts[uniform(rng, 0, 2)];
            if (a != d.act) {
                d.act = a, what += " act ->" + std::string(activation_name(a));
                return;
            }
            break;
        }
        case 5:
            if (fewer_wider(rng, d, what)) return;
            break;
        default:
            if (s.kind == BlockKind::Inverted) {
                s.expansion = std::clamp(s.expansion + (chance(rng, 50) ? 1 : -1), 1, bounds_.max_expansion);
                what += at + " expansion ->" + std::to_string(s.expansion);
                return;
            }
            break;
        }
        s.se = !s.se, what += at + (s.se ? " SE on" : " SE off");
    }

    // Fewer, wider layers at about the same cost: every operator costs a fixed overhead beside its
    // arithmetic, so a shallower, wider net holds more multiply-adds in the same time (random
    // search's best 0.05 ms model had one stage). A block goes from a repeated stage (which widens
    // x1.2), or a whole stage goes (its stride moves to a neighbour) and every width grows x1.15.
    bool fewer_wider(std::mt19937_64& rng, Design& d, std::string& what) const {
        using namespace sample_detail;
        std::vector<int> deep;
        for (int i = 0; i < static_cast<int>(d.stages.size()); ++i)
            if (d.stages[static_cast<std::size_t>(i)].repeats > 1) deep.push_back(i);
        if (!deep.empty() && chance(rng, 50)) {
            const int i = deep[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(deep.size()) - 1))];
            StageDesign& s = d.stages[static_cast<std::size_t>(i)];
            const int c = s.channels;
            --s.repeats;
            s.channels = design_detail::round_channels(c * 1.2, bounds_);
            what += " s" + std::to_string(i) + " depth -1, width " + std::to_string(c) + "->" + std::to_string(s.channels);
            return true;
        }
        const int n = static_cast<int>(d.stages.size());
        if (n < 2) return false;
        const int i = uniform(rng, 0, n - 1);
        const StageDesign gone = d.stages[static_cast<std::size_t>(i)];
        if (gone.stride == 2) {  // keep the resolution after it: a neighbour downsamples instead
            int j = -1;
            if (i + 1 < n && d.stages[static_cast<std::size_t>(i + 1)].stride == 1) j = i + 1;
            else if (i > 0 && d.stages[static_cast<std::size_t>(i - 1)].stride == 1) j = i - 1;
            if (j < 0) return false;
            d.stages[static_cast<std::size_t>(j)].stride = 2;
            d.stages[static_cast<std::size_t>(j)].pool = gone.pool;
        }
        d.stages.erase(d.stages.begin() + i);
        d = scale_width(d, 1.15, bounds_);
        what += " s" + std::to_string(i) + " removed, widths x1.15";
        return true;
    }

    std::uint64_t seed_;
    DesignBounds bounds_;
};

}  // namespace lamda

#endif  // LAMDA_SEARCH_PROPOSERS_HPP
