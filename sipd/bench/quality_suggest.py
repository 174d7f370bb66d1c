"""Does labeling where `sipctl suggest` points help more than labeling at random?

The experiment of `sipctl bench quality --suggest`, on the instant model (the
one the labeling loop retrains after each edit):

1. start: `--suggest-start` clicks per class on every train image (the sparse
   protocol's sampling, another seed), the instant model trained on them and
   scored on the test images;
2. suggested: `sipctl suggest` on that model over the train images gives R
   regions; the simulated analyst clicks `--suggest-clicks` pure pixels (3x3
   of one class, as in the protocol) inside each region, labeled with the
   truth; the instant model is retrained on start + these and scored;
3. random: the same number of new clicks at pure pixels drawn uniformly over
   the train images; retrained and scored.

Both arms add exactly the same number of clicks; only where they go differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sipd.bench.quality_data import Click, Dataset, pure_pixels, sample_clicks

# Seed offset of the start clicks: not the main protocol's clicks.
_START_SEED = 7001


def pure_mask(truth: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is one class (any class)."""
    out = np.zeros(truth.shape, bool)
    for value in np.unique(truth):
        if value != 0:
            out |= pure_pixels(truth, int(value))
    return out


def region_clicks(
    truth: np.ndarray, row: int, col: int, size: int, per_region: int, rng: np.random.Generator
) -> list[Click]:
    """Up to `per_region` train clicks at pure pixels inside one square region."""
    window = pure_mask(truth[row : row + size, col : col + size])
    rows, cols = np.nonzero(window)
    take = rng.choice(rows.size, size=min(per_region, rows.size), replace=False)
    return [Click(row + int(rows[i]), col + int(cols[i]),
                  int(truth[row + rows[i], col + cols[i]]), "train") for i in take]  # fmt: skip


def random_clicks(
    ds: Dataset, n: int, rng: np.random.Generator
) -> dict[str, list[Click]]:
    """`n` train clicks at pure pixels drawn uniformly over all train images."""
    items = ds.side("train")
    pixels = [np.nonzero(pure_mask(item.truth)) for item in items]
    starts = np.concatenate([[0], np.cumsum([rows.size for rows, _ in pixels])])
    picks = rng.choice(int(starts[-1]), size=min(n, int(starts[-1])), replace=False)
    out: dict[str, list[Click]] = {item.name: [] for item in items}
    for pick in np.sort(picks):
        k = int(np.searchsorted(starts, pick, side="right") - 1)
        rows, cols = pixels[k]
        r, c = int(rows[pick - starts[k]]), int(cols[pick - starts[k]])
        out[items[k].name].append(Click(r, c, int(items[k].truth[r, c]), "train"))
    return out


def run_suggest_experiment(
    daemon: Any,
    ds: Dataset,
    *,
    start: int,
    regions: int,
    per_region: int,
    size: int,
    seed: int,
    train_and_score: Callable[[str, dict[str, list[Click]]], dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The three arms; `train_and_score(project, clicks)` trains the instant model in a
    new project on those clicks and returns its summary (overall_accuracy, ...)."""
    train = ds.side("train")
    regions = regions or 2 * len(train)
    base = {item.name: sample_clicks(item.truth, start, seed=seed + _START_SEED,
                                     image_index=item.index) for item in train}  # fmt: skip
    say(f"suggest: start with {sum(map(len, base.values()))} clicks; instant model ...")
    first = train_and_score("suggest0", base)
    geo = daemon.sipctl("suggest", "suggest0", "--n", str(regions), "--size", str(size))
    rng = np.random.default_rng([seed, 7919])
    truth = {item.name: item.truth for item in train}
    added: dict[str, list[Click]] = {item.name: [] for item in train}
    for feature in geo["features"]:
        p = feature["properties"]
        added[p["scene"]] += region_clicks(truth[p["scene"]], int(p["row"]), int(p["col"]),
                                           int(p["size"]), per_region, rng)  # fmt: skip
    n_added = sum(map(len, added.values()))
    say(f"suggest: {len(geo['features'])} regions, {n_added} clicks added there; retraining ...")
    suggested = train_and_score("suggested", {k: base[k] + added[k] for k in base})
    chance = random_clicks(ds, n_added, np.random.default_rng([seed, 104729]))
    say(f"suggest: the same {n_added} clicks at random; retraining ...")
    randomly = train_and_score("random", {k: base[k] + chance[k] for k in base})
    row = {
        "start_clicks": sum(map(len, base.values())),
        "regions": len(geo["features"]),
        "region_size": size,
        "added_clicks": n_added,
        "start": _brief(first),
        "suggested": _brief(suggested),
        "random": _brief(randomly),
    }
    row["gain_suggested"] = round(row["suggested"]["overall_accuracy"]
                                  - row["start"]["overall_accuracy"], 4)  # fmt: skip
    row["gain_random"] = round(row["random"]["overall_accuracy"]
                               - row["start"]["overall_accuracy"], 4)  # fmt: skip
    return row


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("overall_accuracy", "kappa", "mean_iou", "train_seconds")}


def markdown_rows(row: dict[str, Any]) -> list[str]:
    """The README table of the experiment."""
    lines = [
        f"Where to click next (instant model; {row['start_clicks']} start clicks, then "
        f"{row['added_clicks']} more in {row['regions']} suggested {row['region_size']} px "
        "regions, or as many at random):",
        "",
        "| clicks | OA | kappa | mIoU | OA gain |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, gain in (("start", None), ("suggested", row["gain_suggested"]),
                       ("random", row["gain_random"])):  # fmt: skip
        s = row[name]
        lines.append(f"| {name} | {s['overall_accuracy']:.4f} | {s['kappa']:.4f} | "
                     f"{s['mean_iou']:.4f} | {'' if gain is None else f'{gain:+.4f}'} |")
    return lines
