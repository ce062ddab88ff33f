"""scipy.stats densities on traced values, with scipy's signatures (docs/linalg.md).

scipy.stats converts its arguments with np.asarray, which a traced value refuses, so
objectives written with densities call these instead:

    from fastad import stats
    stats.norm.logpdf(x, loc, scale)      # == scipy.stats.norm.logpdf on plain values

Each method is a composition of fastad ops (gammaln, xlogy, log_ndtr, cholesky, ...), so
it differentiates in every mode; on plain (untraced) arguments it calls scipy itself.
Supported: norm (logpdf, pdf, cdf, logcdf), t (logpdf, pdf, cdf, sf), gamma (logpdf, pdf,
cdf, sf, logcdf, logsf),
beta (logpdf, pdf, cdf, sf), poisson (logpmf, pmf, cdf with a plain k), dirichlet (logpdf, pdf),
multivariate_normal (logpdf, pdf).
"""
import math

import numpy as np

from fastad import special as sp

__all__ = ["norm", "t", "gamma", "beta", "poisson", "dirichlet", "multivariate_normal"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _scipy(dist):
    import scipy.stats
    return getattr(scipy.stats, dist)


class _Dist:
    """One distribution: each method either composes fastad ops (traced arguments) or
    forwards to scipy.stats.<name> (plain arguments)."""
    name = ""

    def _plain(self, method, *args, **kw):
        return getattr(_scipy(self.name), method)(*args, **kw)

    def pdf(self, *args, **kw):
        if not sp.traced(*args, *kw.values()):
            return self._plain("pdf", *args, **kw)
        return np.exp(self.logpdf(*args, **kw))


class _Norm(_Dist):
    name = "norm"

    def logpdf(self, x, loc=0.0, scale=1.0):
        """scipy.stats.norm.logpdf: -z^2/2 - log(scale) - log sqrt(2 pi), z = (x-loc)/scale."""
        if not sp.traced(x, loc, scale):
            return self._plain("logpdf", x, loc, scale)
        z = (x - loc) / scale
        return -0.5 * z * z - np.log(scale) - _LOG_SQRT_2PI

    def cdf(self, x, loc=0.0, scale=1.0):
        """scipy.stats.norm.cdf: ndtr((x - loc) / scale)."""
        if not sp.traced(x, loc, scale):
            return self._plain("cdf", x, loc, scale)
        return sp.ndtr((x - loc) / scale)

    def logcdf(self, x, loc=0.0, scale=1.0):
        """scipy.stats.norm.logcdf: log_ndtr((x - loc) / scale), accurate in the far tail."""
        if not sp.traced(x, loc, scale):
            return self._plain("logcdf", x, loc, scale)
        return sp.log_ndtr((x - loc) / scale)


class _T(_Dist):
    name = "t"

    def logpdf(self, x, df, loc=0.0, scale=1.0):
        """scipy.stats.t.logpdf (Student's t with df degrees of freedom)."""
        if not sp.traced(x, df, loc, scale):
            return self._plain("logpdf", x, df, loc, scale)
        z = (x - loc) / scale
        return (sp.gammaln(0.5 * (df + 1.0)) - sp.gammaln(0.5 * df)
                - 0.5 * np.log(df * math.pi) - np.log(scale)
                - 0.5 * (df + 1.0) * np.log1p(z * z / df))

    @staticmethod
    def _lower(z, df):
        """The cdf at z <= 0: I_u(df/2, df/2) with u = (z + s) / (2 s), s = sqrt(z^2 + df),
        written as df / (2 s (s - z)) so the lower tail keeps its digits.  The argument u is
        smooth in z (the usual I_{df/(df+z^2)}(df/2, 1/2) form has a square-root kink at 0,
        where its derivative would be 0 * inf)."""
        s = np.sqrt(z * z + df)
        return sp.betainc(0.5 * df, 0.5 * df, df / (2.0 * s * (s - z)))

    def cdf(self, x, df, loc=0.0, scale=1.0):
        """scipy.stats.t.cdf through the incomplete beta function: the lower tail formed
        directly for x < loc, the upper one as the complement."""
        if not sp.traced(x, df, loc, scale):
            return self._plain("cdf", x, df, loc, scale)
        z = (x - loc) / scale
        neg = z < 0.0
        lo = self._lower(np.where(neg, z, -z), df)
        return np.where(neg, lo, 1.0 - lo)

    def sf(self, x, df, loc=0.0, scale=1.0):
        """scipy.stats.t.sf: cdf(-x), the upper tail formed directly."""
        if not sp.traced(x, df, loc, scale):
            return self._plain("sf", x, df, loc, scale)
        return self.cdf(-((x - loc) / scale), df)


class _Gamma(_Dist):
    name = "gamma"

    def logpdf(self, x, a, loc=0.0, scale=1.0):
        """scipy.stats.gamma.logpdf: (a-1) log z - z - gammaln(a) - log(scale)."""
        if not sp.traced(x, a, loc, scale):
            return self._plain("logpdf", x, a, loc, scale)
        z = (x - loc) / scale
        return sp.xlogy(a - 1.0, z) - z - sp.gammaln(a) - np.log(scale)

    def _z(self, x, loc, scale):
        return np.maximum((x - loc) / scale, 0.0)     # scipy: cdf 0, sf 1 below loc

    def cdf(self, x, a, loc=0.0, scale=1.0):
        """scipy.stats.gamma.cdf: gammainc(a, (x - loc) / scale)."""
        if not sp.traced(x, a, loc, scale):
            return self._plain("cdf", x, a, loc, scale)
        return sp.gammainc(a, self._z(x, loc, scale))

    def sf(self, x, a, loc=0.0, scale=1.0):
        """scipy.stats.gamma.sf: gammaincc(a, (x - loc) / scale)."""
        if not sp.traced(x, a, loc, scale):
            return self._plain("sf", x, a, loc, scale)
        return sp.gammaincc(a, self._z(x, loc, scale))

    def logcdf(self, x, a, loc=0.0, scale=1.0):
        """scipy.stats.gamma.logcdf: log of cdf (no tail-specific series)."""
        if not sp.traced(x, a, loc, scale):
            return self._plain("logcdf", x, a, loc, scale)
        return np.log(self.cdf(x, a, loc, scale))

    def logsf(self, x, a, loc=0.0, scale=1.0):
        """scipy.stats.gamma.logsf: log of sf (Q keeps its relative accuracy in the upper
        tail, the continued fraction computes it directly)."""
        if not sp.traced(x, a, loc, scale):
            return self._plain("logsf", x, a, loc, scale)
        return np.log(self.sf(x, a, loc, scale))


class _Beta(_Dist):
    name = "beta"

    def logpdf(self, x, a, b, loc=0.0, scale=1.0):
        """scipy.stats.beta.logpdf: (a-1) log z + (b-1) log(1-z) - betaln(a, b) - log(scale)."""
        if not sp.traced(x, a, b, loc, scale):
            return self._plain("logpdf", x, a, b, loc, scale)
        z = (x - loc) / scale
        return sp.xlogy(a - 1.0, z) + sp.xlog1py(b - 1.0, -z) - sp.betaln(a, b) - np.log(scale)

    def cdf(self, x, a, b, loc=0.0, scale=1.0):
        """scipy.stats.beta.cdf: betainc(a, b, z), z = (x - loc) / scale clipped to [0, 1]
        (scipy: 0 below the support, 1 above)."""
        if not sp.traced(x, a, b, loc, scale):
            return self._plain("cdf", x, a, b, loc, scale)
        return sp.betainc(a, b, np.clip((x - loc) / scale, 0.0, 1.0))

    def sf(self, x, a, b, loc=0.0, scale=1.0):
        """scipy.stats.beta.sf: betaincc(a, b, z), the upper tail without cancellation."""
        if not sp.traced(x, a, b, loc, scale):
            return self._plain("sf", x, a, b, loc, scale)
        return sp.betaincc(a, b, np.clip((x - loc) / scale, 0.0, 1.0))


class _Poisson(_Dist):
    name = "poisson"

    def logpmf(self, k, mu, loc=0):
        """scipy.stats.poisson.logpmf: k log mu - mu - gammaln(k + 1) (k integer counts)."""
        if not sp.traced(k, mu, loc):
            return self._plain("logpmf", k, mu, loc)
        k = k - loc
        return sp.xlogy(k, mu) - mu - sp.gammaln(k + 1.0)

    def pmf(self, k, mu, loc=0):
        if not sp.traced(k, mu, loc):
            return self._plain("pmf", k, mu, loc)
        return np.exp(self.logpmf(k, mu, loc))

    def cdf(self, k, mu, loc=0):
        """scipy.stats.poisson.cdf for a plain integer k: the sum of the pmf over 0..k."""
        if not sp.traced(k, mu, loc):
            return self._plain("cdf", k, mu, loc)
        if sp.traced(k, loc) or np.ndim(k) or np.ndim(loc):
            raise TypeError("fastad: stats.poisson.cdf needs k and loc as plain scalars "
                            "(the sum runs over 0..k); only mu may be traced")
        kk = math.floor(k - loc)
        if kk < 0:
            return 0.0 * mu
        j = np.arange(kk + 1.0)
        if np.ndim(mu):
            j = j.reshape((-1,) + (1,) * np.ndim(mu))
        return np.sum(np.exp(sp.xlogy(j, mu) - mu - sp.gammaln(j + 1.0)), axis=0)


class _Dirichlet(_Dist):
    name = "dirichlet"

    def logpdf(self, x, alpha):
        """scipy.stats.dirichlet.logpdf: x has the K components on its first axis."""
        if not sp.traced(x, alpha):
            return self._plain("logpdf", x, alpha)
        if np.ndim(x) > 1:
            alpha = np.reshape(alpha, (-1,) + (1,) * (np.ndim(x) - 1))
        lnb = np.sum(sp.gammaln(alpha)) - sp.gammaln(np.sum(alpha))
        return np.sum(sp.xlogy(alpha - 1.0, x), axis=0) - lnb


class _MultivariateNormal(_Dist):
    name = "multivariate_normal"

    def logpdf(self, x, mean=None, cov=1, allow_singular=False):
        """scipy.stats.multivariate_normal.logpdf through a Cholesky factor of cov:
        -(k log 2 pi + 2 sum log diag L + |L^-1 (x - mean)|^2) / 2.  x is (k,) or (n, k)."""
        if not sp.traced(x, mean, cov):
            return self._plain("logpdf", x, mean, cov, allow_singular=allow_singular)
        from fastad import linalg
        k = np.shape(x)[-1]
        cov = np.asarray(cov, dtype=float) if not sp.traced(cov) else cov
        if np.ndim(cov) < 2:
            cov = cov * np.eye(k)
        d = x - (0.0 if mean is None else mean)
        L = np.linalg.cholesky(cov)
        z = linalg.solve_triangular(L, d.T if np.ndim(d) > 1 else d, lower=True)
        maha = np.sum(z * z, axis=0)
        logdet = 2.0 * np.sum(np.log(np.diagonal(L)))
        return -0.5 * (k * math.log(2.0 * math.pi) + logdet + maha)


norm, t, gamma, beta = _Norm(), _T(), _Gamma(), _Beta()
poisson, dirichlet, multivariate_normal = _Poisson(), _Dirichlet(), _MultivariateNormal()
