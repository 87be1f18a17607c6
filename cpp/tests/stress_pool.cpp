// Concurrency stress of the Python-free core, for ThreadSanitizer and AddressSanitizer builds
// (cmake -DMIXLLM_BUILD_TESTS=ON -DMIXLLM_BUILD_PYTHON=OFF -DMIXLLM_SANITIZE=thread|address).
//
// Threads share one Pool: scorers call score() (batch and single, with terms), updaters call
// update() and update_batch() on fixed arms, one thread adds and removes a churn arm, one
// takes snapshots, clones and dense views, and one refactors. Afterwards the observation count
// of every fixed arm must equal the updates made to it (no lost updates), and a sequential
// replay of the same updates must give the same A and b up to summation order. With a
// discount < 1 (forgetting, pool.hpp) the order of one arm's observations matters, so each
// updater then owns its arms (k = t mod threads_per_role) and the replay keeps that order.
//
//   stress_pool [threads_per_role=2] [iterations=2000] [dim=17] [discount=1]
// exits 0 on success; a sanitizer report makes it exit non-zero on its own.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "mixllm/kernels.hpp"
#include "mixllm/pool.hpp"

using mixllm::Pool;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what.c_str());
        ++failures;
    }
}

std::vector<double> query(std::mt19937_64& rng, std::size_t d) {
    std::normal_distribution<double> n(0.0, 1.0);
    std::vector<double> x(d);
    double s = 0.0;
    for (auto& v : x) v = n(rng), s += v * v;
    for (auto& v : x) v /= std::sqrt(s);
    return x;
}

// Offline fit on a small full-information set (64 rows, seeded): every arm observes every row.
void fit_small(Pool& pool, const std::vector<std::string>& names, std::size_t d, std::size_t K) {
    std::mt19937_64 rng(1);
    const std::size_t n = 64;
    std::vector<double> Z, Y;
    for (std::size_t i = 0; i < n; ++i) {
        auto x = query(rng, d);
        Z.insert(Z.end(), x.begin(), x.end());
        for (std::size_t k = 0; k < K; ++k) Y.push_back(x[k % d]), Y.push_back(3.0);
    }
    pool.fit(names, std::vector<double>(K, 1.0), std::vector<double>(K, 2.0), 1.0, Z.data(), n,
             Y.data());
}

}  // namespace

int main(int argc, char** argv) {
    const int per_role = argc > 1 ? std::atoi(argv[1]) : 2;
    const int iters = argc > 2 ? std::atoi(argv[2]) : 2000;
    const std::size_t d = argc > 3 ? static_cast<std::size_t>(std::atoi(argv[3])) : 17;
    const double discount = argc > 4 ? std::atof(argv[4]) : 1.0;
    if (discount < 1.0 && static_cast<std::size_t>(per_role) > 4) {
        std::fprintf(stderr, "with a discount, at most 4 updaters (one arm each at least)\n");
        return 2;
    }
    const std::size_t T = 2, K = 4;
    const std::size_t refactor_every = 37, max_rank = 5;  // fold and refactor often
    Pool pool(d, T, refactor_every, max_rank);
    std::vector<std::string> names;
    for (std::size_t k = 0; k < K; ++k) names.push_back("llm" + std::to_string(k));
    fit_small(pool, names, d, K);  // the arms share one base
    pool.set_discount(discount, 1.0);
    struct Obs { std::size_t arm; std::vector<double> x, y; };
    std::vector<std::vector<Obs>> logs(per_role);
    std::atomic<bool> stop{false};
    std::atomic<long> decisions{0};
    std::vector<std::thread> threads;
    std::vector<std::string> errors;
    std::mutex err_mu;
    auto fail = [&](const std::string& e) { std::lock_guard l(err_mu); errors.push_back(e); };

    for (int t = 0; t < per_role; ++t)  // scorers
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(100 + t);
            while (!stop.load()) {
                const std::size_t B = 1 + rng() % 9;
                std::vector<double> X, tok(B, 50.0);
                for (std::size_t b = 0; b < B; ++b) {
                    auto x = query(rng, d);
                    X.insert(X.end(), x.begin(), x.end());
                }
                auto r = pool.score(X.data(), B, tok.data(), {0.01, 0.1, 0.5, 2.0}, B == 1);
                for (auto c : r.choice)
                    if (c < 0 || static_cast<std::size_t>(c) >= r.names.size()) fail("bad choice");
                for (double v : r.terms)
                    if (std::isnan(v)) fail("NaN term");
                auto p = pool.predict(X.data(), B);
                for (double v : p.bonus)
                    if (!std::isfinite(v)) fail("non-finite bonus");
                decisions += static_cast<long>(B);
            }
        });
    std::vector<std::thread> updaters;
    for (int t = 0; t < per_role; ++t)  // updaters on the fixed arms
        updaters.emplace_back([&, t] {
            std::mt19937_64 rng(200 + t);
            for (int i = 0; i < iters; ++i) {
                std::size_t k = rng() % K;
                if (discount < 1.0)  // each updater owns its arms (the order matters)
                    k = (k / per_role) * per_role + static_cast<std::size_t>(t) % per_role;
                if (k >= K) k = static_cast<std::size_t>(t) % per_role;
                auto x = query(rng, d);
                std::vector<double> y = {x[0], 2.0 + 0.001 * i};
                if (i % 50 == 49) {  // a small batch now and then
                    std::vector<double> X2 = x, Y2 = y;
                    auto x2 = query(rng, d);
                    X2.insert(X2.end(), x2.begin(), x2.end());
                    Y2.push_back(0.5), Y2.push_back(1.0);
                    pool.update_batch(names[k], X2.data(), Y2.data(), 2);
                    logs[t].push_back({k, x, y});
                    logs[t].push_back({k, x2, {0.5, 1.0}});
                } else {
                    // score first, so that the update reuses the cached whitening
                    double tok = 10.0;
                    pool.score(x.data(), 1, &tok, {}, false);
                    pool.update(names[k], x.data(), y.data(), 1.0);
                    logs[t].push_back({k, x, y});
                }
            }
        });
    threads.emplace_back([&] {  // membership churn
        std::mt19937_64 rng(300);
        std::vector<double> theta0(T * d, 0.1);
        int i = 0;
        while (!stop.load()) {
            pool.add_arm("churn", 2.0, theta0.data(), 0.5, 0.5);
            auto x = query(rng, d);
            std::vector<double> y = {1.0, 1.0};
            pool.update("churn", x.data(), y.data(), 0.5);
            pool.set_wait("churn", 0.1 * (i % 7));
            pool.set_prices("churn", 0.4, 0.6);
            pool.remove_arm("churn");
            try {
                pool.update("churn", x.data(), y.data(), 1.0);
                fail("update of a removed arm succeeded");
            } catch (const std::out_of_range&) {
            }
            ++i;
        }
    });
    threads.emplace_back([&] {  // readers of the whole state
        while (!stop.load()) {
            auto snap = pool.snapshot();
            auto copy = pool.clone();
            auto view = pool.arm(names[0]);
            auto th = pool.theta(names[1]);
            auto counts = pool.n_obs();
            if (copy->size() < K || view.A.size() != d * d || th.size() != T * d ||
                counts.size() < K || snap.arms.size() < K)
                fail("inconsistent read");
        }
    });
    threads.emplace_back([&] {  // maintenance
        while (!stop.load()) {
            pool.refactor(names[2]);
            pool.refactor_all();
            std::this_thread::yield();
        }
    });
    for (auto& th : updaters) th.join();
    stop = true;
    for (auto& th : threads) th.join();
    for (const auto& e : errors) check(false, e);

    // No lost updates: counts and sufficient statistics equal a sequential replay.
    Pool seq(d, T, refactor_every, max_rank);
    fit_small(seq, names, d, K);
    seq.set_discount(discount, 1.0);
    for (const auto& log : logs)
        for (const auto& o : log) seq.update(names[o.arm], o.x.data(), o.y.data(), 1.0);
    auto got = pool.n_obs(), want = seq.n_obs();
    check(got == want, "observation counts differ from the sequential replay");
    double worst = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
        auto a = pool.arm(names[k]), b = seq.arm(names[k]);
        for (std::size_t i = 0; i < d * d; ++i)
            worst = std::max(worst, std::abs(a.A[i] - b.A[i]) / (1.0 + std::abs(b.A[i])));
        for (std::size_t i = 0; i < T * d; ++i)
            worst = std::max(worst, std::abs(a.b[i] - b.b[i]) / (1.0 + std::abs(b.b[i])));
    }
    check(worst < 1e-9, "A or b differ from the sequential replay by " + std::to_string(worst));
    std::printf("backend=%s decisions=%ld updates=%d worst_rel_diff=%.3g failures=%d\n",
                mixllm::kernels().name, decisions.load(), per_role * iters, worst, failures);
    return failures == 0 ? 0 : 1;
}
