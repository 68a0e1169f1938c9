"""Is memorization a Poisson point process in training order? (Pythia's Q-Q figure, eda.ipynb.)

Counts of memorized sequences in consecutive bins of `bin_size` (512 in the paper) training
sequences are compared with Poisson(mean count): Q-Q data, a chi-square goodness-of-fit test over
count categories pooled to expected >= 5, and the dispersion index test (var/mean; clustering in
training order inflates it). Rate against position in training (deciles, binomial standard
errors, a least-squares trend and a chi-square test of homogeneity) tests "position barely
matters". `memorization_report` writes the summary, a table and the figures for a suite.

Every statistic degrades to None with a `reason` instead of raising: zero memorized sequences or
fewer than two bins are ordinary outcomes for tiny models and early checkpoints.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import stats

from pythia_repro.analysis.memorization import read_scores
from pythia_repro.atomic import atomic_file, write_json, write_text

BIN_SIZE = 512
DECILES = 10


def bin_counts(memorized: np.ndarray, bin_size: int = BIN_SIZE) -> np.ndarray:
    """Memorized count per consecutive bin of `bin_size` sequences; a final partial bin is dropped."""
    mem = np.asarray(memorized, dtype=bool)
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    n_bins = len(mem) // bin_size
    return mem[: n_bins * bin_size].reshape(n_bins, bin_size).sum(axis=1).astype(np.int64)


def _none(reason: str, **extra) -> dict:
    return {"statistic": None, "p_value": None, "reason": reason, **extra}


def qq_data(counts: np.ndarray) -> dict:
    """Observed sorted counts vs Poisson(mean) quantiles at plotting positions (i - 0.5) / n."""
    counts = np.sort(np.asarray(counts))
    n = len(counts)
    if n == 0:
        return {"observed": [], "theoretical": [], "mean": None, "reason": "no complete bin"}
    mean = float(counts.mean())
    positions = (np.arange(1, n + 1) - 0.5) / n
    theoretical = stats.poisson(mean).ppf(positions) if mean > 0 else np.zeros(n)
    return {"observed": counts.tolist(), "theoretical": theoretical.tolist(), "mean": mean}


def chi_square_gof(counts: np.ndarray, min_expected: float = 5.0) -> dict:
    """Pearson chi-square of the count histogram against Poisson(mean), one parameter estimated.

    Categories 0, 1, ... are pooled from both tails (the last one open-ended) until each expects at
    least `min_expected` bins, so the chi-square approximation holds.
    """
    counts = np.asarray(counts)
    n = len(counts)
    if n < 2:
        return _none("fewer than 2 bins", bins=n)
    mean = float(counts.mean())
    if mean == 0:
        return _none("no memorized sequences", bins=n)
    dist = stats.poisson(mean)
    top = int(max(counts.max(), dist.ppf(1 - 1e-9)))
    expected = dist.pmf(np.arange(top + 1)) * n
    expected[-1] += dist.sf(top) * n  # open-ended last category
    observed = np.bincount(counts, minlength=top + 1)[: top + 1].astype(float)
    edges = _pool(expected, min_expected)
    obs = np.array([observed[a:b].sum() for a, b in edges])
    exp = np.array([expected[a:b].sum() for a, b in edges])
    dof = len(edges) - 2  # categories - 1 - one estimated parameter
    if dof < 1:
        return _none(f"{len(edges)} categories after pooling to expected >= {min_expected}", bins=n, mean=mean)
    stat = float(((obs - exp) ** 2 / exp).sum())
    return {"statistic": stat, "p_value": float(stats.chi2.sf(stat, dof)), "dof": dof, "bins": n, "mean": mean,
            "categories": [[a, b - 1] for a, b in edges]}


def _pool(expected: np.ndarray, min_expected: float) -> list[tuple[int, int]]:
    """[start, stop) category ranges with every range's expectation >= min_expected (when possible)."""
    edges: list[list[int]] = []
    acc, start = 0.0, 0
    for i, e in enumerate(expected):
        acc += e
        if acc >= min_expected:
            edges.append([start, i + 1])
            acc, start = 0.0, i + 1
    if start < len(expected):  # leftover tail joins the last range
        if edges:
            edges[-1][1] = len(expected)
        else:
            edges.append([start, len(expected)])
    return [(a, b) for a, b in edges]


def dispersion_test(counts: np.ndarray) -> dict:
    """Index of dispersion: (n-1) var / mean ~ chi2(n-1) under Poisson; two-sided p-value."""
    counts = np.asarray(counts, dtype=float)
    n = len(counts)
    if n < 2:
        return _none("fewer than 2 bins", bins=n, dispersion=None)
    mean = counts.mean()
    if mean == 0:
        return _none("no memorized sequences", bins=n, dispersion=None)
    var = counts.var(ddof=1)
    stat = (n - 1) * var / mean
    p = 2 * min(stats.chi2.sf(stat, n - 1), stats.chi2.cdf(stat, n - 1))
    return {"statistic": float(stat), "p_value": float(min(p, 1.0)), "dof": n - 1, "bins": n,
            "dispersion": float(var / mean), "mean": float(mean), "variance": float(var)}


def rate_by_position(memorized: np.ndarray, groups: int = DECILES) -> dict:
    """Memorized rate per position group (deciles of training order) with binomial standard errors,
    a least-squares slope of memorized vs relative position (rate change over the whole run), and a
    chi-square test of homogeneity of the groups' rates."""
    mem = np.asarray(memorized, dtype=bool)
    n = len(mem)
    if n < groups:
        return {"groups": [], "slope": None, "slope_stderr": None, "homogeneity": _none(f"fewer than {groups} "
                                                                                          "sequences")}
    bounds = [n * g // groups for g in range(groups + 1)]
    rows = []
    for g in range(groups):
        part = mem[bounds[g] : bounds[g + 1]]
        rate = float(part.mean())
        rows.append({"group": g, "start": bounds[g], "stop": bounds[g + 1], "sequences": len(part),
                     "memorized": int(part.sum()), "rate": rate,
                     "stderr": math.sqrt(rate * (1 - rate) / len(part))})
    x = (np.arange(n) + 0.5) / n
    if mem.all() or not mem.any():
        slope, stderr = 0.0, 0.0
        homogeneity = _none("all sequences memorized" if mem.all() else "no memorized sequences")
    else:
        fit = stats.linregress(x, mem.astype(float))
        slope, stderr = float(fit.slope), float(fit.stderr)
        table = np.array([[r["memorized"], r["sequences"] - r["memorized"]] for r in rows])
        chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
        homogeneity = {"statistic": float(chi2), "p_value": float(p), "dof": int(dof)}
    return {"groups": rows, "slope": slope, "slope_stderr": stderr, "homogeneity": homogeneity}


def poisson_analysis(memorized: np.ndarray, bin_size: int = BIN_SIZE) -> dict:
    """Everything for one model: counts per bin, Q-Q data, chi-square and dispersion tests, position trend."""
    mem = np.asarray(memorized, dtype=bool)
    counts = bin_counts(mem, bin_size)
    return {
        "sequences": len(mem), "memorized": int(mem.sum()), "rate": float(mem.mean()) if len(mem) else None,
        "bin_size": bin_size, "bins": len(counts), "counts": counts.tolist(),
        "qq": qq_data(counts), "chi_square": chi_square_gof(counts), "dispersion": dispersion_test(counts),
        "position": rate_by_position(mem),
    }


# ----- report -------------------------------------------------------------------------------------


def _save_png(fig, path: Path) -> None:
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def _fmt_p(test: dict) -> str:
    return "n/a" if test["p_value"] is None else f"{test['p_value']:.3g}"


def memorization_report(
    score_files: Mapping[str, str | Path],
    meta: Mapping[str, Mapping],
    out_dir: str | Path,
    bin_size: int = BIN_SIZE,
    planted: Mapping[str, np.ndarray] | None = None,
    suite: str = "suite",
) -> dict:
    """Poisson analysis of each model's scores file; writes summary.json, memorization.csv, qq.png,
    rate_vs_position.png and (with `planted`: {model: bool per row in index order}) planted.png.

    `meta[model]` gives at least `size` and `data` ("standard" / "deduped"), for the comparison table.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    models: dict[str, dict] = {}
    for name, path in score_files.items():
        t = read_scores(path)
        mem = t.column("memorized").to_numpy(zero_copy_only=False)
        entry = {"scores": str(path), **dict(meta.get(name, {})), **poisson_analysis(mem, bin_size)}
        if planted is not None and name in planted:
            flags = np.asarray(planted[name], dtype=bool)
            if len(flags) != len(mem):
                raise ValueError(f"{path}: {len(mem)} rows but {len(flags)} planted flags for {name}")
            entry["planted"] = {
                part: {"sequences": int(sel.sum()), "memorized": int(mem[sel].sum()),
                       "rate": float(mem[sel].mean()) if sel.any() else None}
                for part, sel in (("planted", flags), ("other", ~flags))
            }
        models[name] = entry

    rows = []
    for name, e in models.items():
        row = {"model": name, "size": e.get("size"), "data": e.get("data"), "sequences": e["sequences"],
               "memorized": e["memorized"], "rate": e["rate"], "bins": e["bins"],
               "chi2_p": e["chi_square"]["p_value"], "dispersion": e["dispersion"]["dispersion"],
               "dispersion_p": e["dispersion"]["p_value"], "position_slope": e["position"]["slope"],
               "position_slope_stderr": e["position"]["slope_stderr"]}
        if "planted" in e:
            row.update(planted_rate=e["planted"]["planted"]["rate"], other_rate=e["planted"]["other"]["rate"])
        rows.append(row)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "memorization.csv", buf.getvalue())

    # Standard vs deduplicated per size.
    by_size: dict[str, dict] = {}
    for name, e in models.items():
        if e.get("size") is not None and e.get("data") is not None:
            by_size.setdefault(str(e["size"]), {})[str(e["data"])] = {"model": name, "rate": e["rate"],
                                                                      "memorized": e["memorized"]}
    summary = {"suite": suite, "bin_size": bin_size, "models": models, "standard_vs_deduped": by_size,
               "figures": ["qq.png", "rate_vs_position.png"] + (["planted.png"] if planted else [])}

    names = list(models)
    cols = min(len(names), 4) or 1
    nrows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        e = models[name]
        qq = e["qq"]
        if qq["observed"]:
            ax.scatter(qq["theoretical"], qq["observed"], s=12, alpha=0.6, label="bins")
            hi = max(max(qq["observed"]), max(qq["theoretical"]), 1)
            ax.plot([0, hi], [0, hi], color="k", lw=1, label="y = x")
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no complete bin", ha="center", transform=ax.transAxes)
        ax.set_title(f"{name}\nchi2 p={_fmt_p(e['chi_square'])}, disp={_fmt_disp(e)}", fontsize=8)
        ax.set_xlabel(f"Poisson({_fmt_mean(qq)}) quantile (memorized / {bin_size} seqs)", fontsize=7)
        ax.set_ylabel(f"observed count (memorized / {bin_size} seqs)", fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{suite}: memorized sequences per {bin_size} in training order vs Poisson", fontsize=10, y=1.04)
    _save_png(fig, out / "qq.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name in names:
        groups = models[name]["position"]["groups"]
        if groups:
            x = [100 * (g["start"] + g["stop"]) / 2 / models[name]["sequences"] for g in groups]
            ax.errorbar(x, [100 * g["rate"] for g in groups], yerr=[100 * g["stderr"] for g in groups],
                        marker="o", ms=3, capsize=2, label=name)
    ax.set_xlabel("position in training (% of scored sequences, decile midpoints)")
    ax.set_ylabel("memorized rate (%, ± 1 binomial s.e.)")
    ax.set_title(f"{suite}: memorization vs position in training")
    ax.legend(fontsize=7)
    _save_png(fig, out / "rate_vs_position.png")
    plt.close(fig)

    if planted:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        shown = [n for n in names if "planted" in models[n]]
        x = np.arange(len(shown))
        for off, part, color in ((-0.2, "planted", "tab:red"), (0.2, "other", "tab:blue")):
            rates = [100 * (models[n]["planted"][part]["rate"] or 0.0) for n in shown]
            ax.bar(x + off, rates, width=0.4, color=color, label=f"{part} sequences")
        ax.set_xticks(x, [f"{n}\n({models[n].get('data', '?')})" for n in shown], fontsize=7, rotation=20, ha="right")
        ax.set_ylabel("memorized rate (%)")
        ax.set_title(f"{suite}: planted repeats vs other sequences")
        ax.legend(fontsize=7)
        _save_png(fig, out / "planted.png")
        plt.close(fig)

    write_json(out / "summary.json", summary)
    return summary


def _fmt_mean(qq: dict) -> str:
    return "n/a" if qq["mean"] is None else f"{qq['mean']:.2f}"


def _fmt_disp(e: dict) -> str:
    d = e["dispersion"]["dispersion"]
    return "n/a" if d is None else f"{d:.2f}"
