// lamda/latency/ridge.hpp: weighted ridge regression with standardised features, and lambda
// chosen by deterministic k-fold cross-validation (Eigen). The latency model fits one per
// operator kind.
//
//   lamda::RidgeModel m = lamda::fit_ridge_cv(X, y, {1e-6, 1e-4, 1e-2}, 5, &cv_rmse);
//   double y0 = m.predict(x0);   // throws std::invalid_argument / std::runtime_error on bad input
//
// Compiled only with LAMDA_WITH_LATENCY (Eigen, include path /usr/include/eigen3).
#ifndef LAMDA_LATENCY_RIDGE_HPP
#define LAMDA_LATENCY_RIDGE_HPP

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/latency/ridge.hpp needs LAMDA_WITH_LATENCY (Eigen and simdjson; CMake: link lamda::latency)"
#else

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <vector>

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Ridge regression
// ---------------------------------------------------------------------------------------------

// y ~ intercept + sum coef_j * (x_j - mean_j) / scale_j, with an L2 penalty `lambda` on coef
// (the intercept is not penalised).
struct RidgeModel {
    double intercept = 0;
    double lambda = 0;
    std::vector<double> mean, scale, coef;

    double predict(const double* x) const noexcept {
        double y = intercept;
        for (std::size_t j = 0; j < coef.size(); ++j) y += coef[j] * (x[j] - mean[j]) / scale[j];
        return y;
    }
};

// Fits ridge regression of y on the rows of X (optionally weighted).
inline RidgeModel fit_ridge(const Eigen::MatrixXd& X, const Eigen::VectorXd& y, double lambda,
                            const Eigen::VectorXd* weights = nullptr) {
    const Eigen::Index n = X.rows(), d = X.cols();
    if (n == 0) throw std::invalid_argument("fit_ridge: no samples");
    if (y.size() != n) throw std::invalid_argument("fit_ridge: X and y disagree in length");
    Eigen::VectorXd w = weights ? *weights : Eigen::VectorXd::Ones(n);
    const double wsum = w.sum();
    RidgeModel m;
    m.lambda = lambda;
    m.mean.assign(static_cast<std::size_t>(d), 0.0);
    m.scale.assign(static_cast<std::size_t>(d), 1.0);
    Eigen::MatrixXd Z(n, d);
    for (Eigen::Index j = 0; j < d; ++j) {
        const double mu = (X.col(j).array() * w.array()).sum() / wsum;
        const double var = ((X.col(j).array() - mu).square() * w.array()).sum() / wsum;
        const double sd = var > 1e-18 ? std::sqrt(var) : 1.0;
        m.mean[static_cast<std::size_t>(j)] = mu;
        m.scale[static_cast<std::size_t>(j)] = sd;
        Z.col(j) = (X.col(j).array() - mu) / sd;
    }
    const double ymu = (y.array() * w.array()).sum() / wsum;
    const Eigen::VectorXd yc = y.array() - ymu;
    const Eigen::MatrixXd Zw = Z.array().colwise() * w.array();
    Eigen::MatrixXd A = Z.transpose() * Zw;
    A.diagonal().array() += lambda * wsum;
    const Eigen::VectorXd b = Zw.transpose() * yc;
    const Eigen::VectorXd beta = A.ldlt().solve(b);
    m.coef.assign(beta.data(), beta.data() + d);
    // Weighted centring makes the intercept the weighted mean of y.
    m.intercept = ymu;
    for (double c : m.coef)
        if (!std::isfinite(c)) throw std::runtime_error("fit_ridge: the fit is not finite");
    return m;
}

// Picks lambda from `grid` by k-fold cross-validation (deterministic folds: sample i goes to fold
// i % k) and refits on everything. `cv_rmse` receives the chosen lambda's CV RMSE.
// With `weights`, residuals and the RMSE are weighted: sqrt(w_i) * (y_i - prediction_i).
inline RidgeModel fit_ridge_cv(const Eigen::MatrixXd& X, const Eigen::VectorXd& y,
                               const std::vector<double>& grid, int folds = 5,
                               double* cv_rmse = nullptr, Eigen::VectorXd* cv_residuals = nullptr,
                               const Eigen::VectorXd* weights = nullptr) {
    const Eigen::VectorXd w = weights ? *weights : Eigen::VectorXd::Ones(X.rows());
    const Eigen::Index n = X.rows();
    double best = std::numeric_limits<double>::infinity(), best_lambda = grid.empty() ? 1e-3 : grid[0];
    Eigen::VectorXd best_res = Eigen::VectorXd::Zero(n);
    if (n >= 2 * folds && grid.size() > 1) {
        for (double lambda : grid) {
            Eigen::VectorXd res(n);
            for (int f = 0; f < folds; ++f) {
                std::vector<Eigen::Index> tr, te;
                for (Eigen::Index i = 0; i < n; ++i) (i % folds == f ? te : tr).push_back(i);
                Eigen::MatrixXd Xt(static_cast<Eigen::Index>(tr.size()), X.cols());
                Eigen::VectorXd yt(static_cast<Eigen::Index>(tr.size()));
                Eigen::VectorXd wt(static_cast<Eigen::Index>(tr.size()));
                for (std::size_t k = 0; k < tr.size(); ++k) {
                    Xt.row(static_cast<Eigen::Index>(k)) = X.row(tr[k]);
                    yt(static_cast<Eigen::Index>(k)) = y(tr[k]);
                    wt(static_cast<Eigen::Index>(k)) = w(tr[k]);
                }
                const RidgeModel m = fit_ridge(Xt, yt, lambda, &wt);
                for (Eigen::Index i : te) {
                    const Eigen::VectorXd row = X.row(i).transpose();
                    res(i) = std::sqrt(w(i)) * (y(i) - m.predict(row.data()));
                }
            }
            const double rmse = std::sqrt(res.squaredNorm() / static_cast<double>(n));
            if (rmse < best) {
                best = rmse;
                best_lambda = lambda;
                best_res = res;
            }
        }
    }
    RidgeModel m = fit_ridge(X, y, best_lambda, &w);
    if (!std::isfinite(best)) {
        for (Eigen::Index i = 0; i < n; ++i) {
            const Eigen::VectorXd row = X.row(i).transpose();
            best_res(i) = std::sqrt(w(i)) * (y(i) - m.predict(row.data()));
        }
        best = std::sqrt(best_res.squaredNorm() / static_cast<double>(std::max<Eigen::Index>(n, 1)));
    }
    if (cv_rmse) *cv_rmse = best;
    if (cv_residuals) *cv_residuals = best_res;
    return m;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_LATENCY_RIDGE_HPP
