// Copies of the whole state: clone (bases shared), snapshot (bases numbered, what persistence
// writes) and the checked restore from one.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mixllm/arm.hpp"
#include "mixllm/kernels.hpp"
#include "mixllm/linalg.hpp"

namespace mixllm {

std::unique_ptr<Pool> Pool::clone() const {
    wait_folds();
    auto p = std::make_unique<Pool>(dim_, n_targets_, refactor_every_, max_rank_);
    p->set_float32(float32());
    p->set_exact_bonus(exact_bonus());
    p->set_background_folds(background_folds());
    std::shared_lock lock(mu_);
    p->discount_ = discount_, p->prior_ = prior_;
    for (const auto& a : arms_) {
        p->arms_.push_back(std::make_unique<ArmState>(*a));
        p->arms_.back()->fold_ticket = 0;  // the original's fold does not install in the copy
    }
    p->reference_ = reference_;
    p->version_ = version_;
    return p;
}

Snapshot Pool::snapshot() const {
    wait_folds();
    std::shared_lock lock(mu_);
    Snapshot out;
    out.discount = discount_, out.prior = prior_;
    std::vector<const Base*> seen;
    for (const auto& a : arms_) {
        std::size_t i = 0;
        while (i < seen.size() && seen[i] != a->base.get()) ++i;
        if (i == seen.size()) {
            seen.push_back(a->base.get());
            out.bases.push_back(*a->base);
        }
        out.arm_base.push_back(i);
        out.arms.push_back(*a);
        out.arms.back().base.reset();
        out.arms.back().fold_ticket = 0;
    }
    if (reference_) {
        std::size_t i = 0;
        while (i < seen.size() && seen[i] != reference_.get()) ++i;
        if (i == seen.size()) out.bases.push_back(*reference_);
        out.reference = i;
    }
    return out;
}

std::unique_ptr<Pool> Pool::from_snapshot(std::size_t dim, std::size_t n_targets,
                                          std::size_t refactor_every, std::size_t max_rank,
                                          Snapshot s) {
    auto p = std::make_unique<Pool>(dim, n_targets, refactor_every, max_rank);
    const std::size_t d = dim, T = n_targets;
    auto bad = [](const std::string& what) { throw std::invalid_argument("snapshot: " + what); };
    try {
        p->set_discount(s.discount, s.prior);
    } catch (const std::invalid_argument& e) {
        bad(e.what());
    }
    std::vector<std::shared_ptr<const Base>> bases;
    for (Base& b : s.bases) {
        if (b.scalar > 0.0) {
            if (!b.A.empty() || !b.R.empty()) bad("a scalar base holds matrices");
        } else if (b.A.size() != d * d || b.R.size() != packed_row(d)) {
            bad("base matrices of the wrong size");
        }
        b.id = arm::next_base_id();
        b.P.assign(b.scalar > 0.0 ? 0 : panel_size(d), 0.0);
        b.P32.assign(b.P.size(), 0.0f);
        if (b.scalar <= 0.0) {
            pack_panels(b.R.data(), b.P.data(), d);
            panels_to_f32(b.P.data(), b.P32.data(), d);
        }
        bases.push_back(std::make_shared<const Base>(std::move(b)));
    }
    if (s.arm_base.size() != s.arms.size()) bad("one base index per arm");
    for (std::size_t k = 0; k < s.arms.size(); ++k) {
        ArmState& a = s.arms[k];
        const std::size_t r = a.rank;
        if (s.arm_base[k] >= bases.size()) bad("base index out of range");
        if (r > p->rank_cap() || a.U.size() != r * d || a.W.size() != r * d ||
            a.Cinv.size() != r * r || a.b.size() != T * d || a.beta.size() != T * d ||
            a.omega.size() != r * T)
            bad("arrays of '" + a.name + "' have the wrong size");
        // The scale of a forgetting arm (pool.hpp); files without one hold 1.
        if (!(a.scale > 0.0) || !std::isfinite(a.scale)) bad("scale of '" + a.name + "'");
        for (const auto& other : p->arms_)
            if (other->name == a.name) bad("duplicate LLM '" + a.name + "'");
        a.base = bases[s.arm_base[k]];
        a.fold_ticket = 0;
        // theta as saved (it carries the rounding of its recursive steps), else exactly.
        if (a.theta.size() != T * d ||
            !std::all_of(a.theta.begin(), a.theta.end(), [](double v) { return std::isfinite(v); }))
            a.theta = arm::theta(a, d, T);
        arm::correction_rows(a, d);  // derived from W, the same bits as when appended
        p->arms_.push_back(std::make_unique<ArmState>(std::move(a)));
    }
    // The reference base: the saved one, else the one most arms share (the offline fit's,
    // while it lasts). Saved floors are kept (they were certified against it); an arm without
    // one (older files) is certified again (derived state).
    if (s.reference != Snapshot::kNoReference) {
        if (s.reference >= bases.size()) bad("reference base index out of range");
        p->reference_ = bases[s.reference];
    } else if (!bases.empty()) {
        std::vector<std::size_t> users(bases.size(), 0);
        for (std::size_t k = 0; k < s.arm_base.size(); ++k) ++users[s.arm_base[k]];
        const auto most = std::max_element(users.begin(), users.end()) - users.begin();
        p->reference_ = bases[static_cast<std::size_t>(most)];
    }
    for (auto& a : p->arms_) {
        const bool saved = s.reference != Snapshot::kNoReference && a->floor > 0.0 &&
                           std::isfinite(a->floor);
        if (saved) a->floor_ref = p->reference_->id;
        else p->certify(*a);
        // Likewise the ceiling (saved with its last certified value, or certified now).
        const bool ceil_saved = s.reference != Snapshot::kNoReference && a->ceil > 0.0 &&
                                std::isfinite(a->ceil) && a->ceil_cert > 0.0 &&
                                std::isfinite(a->ceil_cert);
        if (ceil_saved) a->ceil_ref = p->reference_->id;
        else a->ceil = 0.0;
        p->receil(*a);
    }
    p->version_ = arm::next_version();
    return p;
}

}  // namespace mixllm
