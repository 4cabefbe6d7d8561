"""How many reference standard deviations one statistic needs to carry a `derived` verdict:
Simes over 3 statistics, Holm over 2 teachers, the last look's weight 0.7, alpha 0.01, on the
t prediction test with n references (t_{n-1} quantile times sqrt(1 + 1/n))."""
from scipy import stats

for n in (5, 8, 12, 20):
    t = stats.t.isf(0.01 / 2 * 0.7 / 3, n - 1)
    print(f"{n} references: t {t:.2f}, reference sd {t * (1 + 1 / n) ** 0.5:.2f}")
