"""How many reference standard deviations one statistic needs to carry a `derived` verdict on
the t prediction test with n references (t_{n-1} quantile times sqrt(1 + 1/n)).

    python benchmarks/research/needed_sd.py

Current scan (session 8): the sharpened ratio's weight 0.8 in the weighted Simes rule, Holm
over m teachers, the last look's weight 0.95, alpha 0.01. Earlier scans (sessions 2-7): Simes
over 3 statistics (weight 1/3 at best), Holm over 2 teachers, last look 0.7.
"""
from scipy import stats


def needed(n: int, teachers: int, weight: float, look: float, alpha: float = 0.01) -> float:
    p = alpha / teachers * weight * look
    return float(stats.t.isf(p, n - 1) * (1 + 1 / n) ** 0.5)


print("current: weight 0.8, last look 0.95")
for n, m in ((3, 2), (5, 2), (7, 2), (8, 3), (12, 3), (20, 3)):
    print(f"  {n} references, {m} teachers: {needed(n, m, 0.8, 0.95):.2f} reference sd")
print("sessions 2-7: Simes over 3 (1/3), last look 0.7, 2 teachers")
for n in (5, 8, 12, 20):
    print(f"  {n} references: {needed(n, 2, 1 / 3, 0.7):.2f} reference sd")
