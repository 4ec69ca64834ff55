"""The report's pictures, drawn with matplotlib (Agg, no display): each returns PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` directly, not pyplot, so no global
state or GUI backend is involved and the functions are safe to call from any thread.
"""

from __future__ import annotations

import io

import numpy as np

RED, BLUE, GREY = "#c62828", "#1e5ac8", "#9e9e9e"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def tradeoff_png(curve: list[dict], chosen: dict | None, title: str) -> bytes:
    """Top-1 against average MAdds over all thresholds; ``chosen`` marked in red. 720x460."""
    fig = _figure(7.2, 4.6)
    ax = fig.add_subplot()
    pts = sorted((c["avg_madds"] / 1e6, c["accuracy"] * 100) for c in curve)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=BLUE, lw=2, marker=".", ms=3,
            label="thresholds")
    if chosen is not None:
        label = ("never exit" if chosen["threshold"] is None
                 else f"threshold {chosen['threshold']:.4f}")
        ax.plot(chosen["avg_madds"] / 1e6, chosen["accuracy"] * 100, "o", ms=11, mfc="none",
                mec=RED, mew=2.5, label=f"{label}: {chosen['accuracy']:.1%} top-1, "
                                        f"{chosen['avg_madds'] / 1e6:.2f}M MAdds")
    ax.set_xlabel("average MAdds per frame (M)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _mosaic(spec, images: list, cell: int, gap: int) -> tuple[np.ndarray, list]:
    """All thumbnails on one canvas (one row per basis, a wider gap between classes), and
    (x, y, text) for each class's caption."""
    from PIL import Image

    per_class = max(len(p) for b in spec.bases for p in b.thumbnails)
    classes = max(len(b.classes) for b in spec.bases)
    width = classes * (per_class * (cell + gap) + 3 * gap)
    height = len(spec.bases) * (cell + 4 * gap)
    canvas = np.full((height, width, 3), 255, np.uint8)
    captions = []
    for r, basis in enumerate(spec.bases):
        y = r * (cell + 4 * gap) + 3 * gap
        for c, (cls, pics) in enumerate(zip(basis.classes, basis.thumbnails)):
            x0 = c * (per_class * (cell + gap) + 3 * gap)
            captions.append((x0, y - 2, f"'{cls['name']}'  mean {cls['mean_coefficient']:.2f}"))
            for n, i in enumerate(pics):
                im = images[i].convert("RGB")
                resample = Image.NEAREST if im.width < cell else Image.BILINEAR
                x = x0 + n * (cell + gap)
                canvas[y:y + cell, x:x + cell] = np.asarray(im.resize((cell, cell), resample))
    return canvas, captions


def specialization_png(spec, images: list) -> bytes:
    """One row per basis: its top classes, each with thumbnails of its images (paper Fig. 3).
    Drawn as one mosaic in one axes, so it stays fast for many bases."""
    cell, gap = 48, 4
    canvas, captions = _mosaic(spec, images, cell, gap)
    h, w = canvas.shape[:2]
    fig = _figure(w / 100 + 1.2, h / 100 + 0.6)
    ax = fig.add_subplot()
    ax.imshow(canvas, interpolation="nearest")
    for x, y, text in captions:
        ax.text(x, y, text, fontsize=7, va="bottom")
    ax.set_yticks([r * (cell + 4 * gap) + 3 * gap + cell / 2 for r in range(len(spec.bases))],
                  [f"basis {b.basis}" for b in spec.bases], fontsize=8)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{spec.block}: classes with the highest mean coefficient per basis", fontsize=10)
    return _png(fig)


def _heat(ax, data, limits, title, blocks, cmap="viridis"):
    """A block x basis heat map; the numbers themselves are in report.json."""
    im = ax.imshow(data, vmin=limits[0], vmax=limits[1], cmap=cmap, aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_yticks(range(len(blocks)), blocks, fontsize=7)
    ax.set_xticks(range(data.shape[1]), [str(k) for k in range(data.shape[1])], fontsize=7)
    ax.set_xlabel("basis", fontsize=8)
    return im


def similar_png(sim) -> bytes:
    """Per-layer mean coefficients, one heat map per class, one colour scale (paper Fig. 4)."""
    data = [np.asarray(sim.mean_coefficients[c]) for c in sim.classes]
    vmax = max(float(d.max()) for d in data)
    fig = _figure(2.6 * len(data) + 1.0, 0.32 * len(sim.blocks) + 1.6)
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    for ax, name, d in zip(axes, sim.classes, data):
        im = _heat(ax, d, (0.0, vmax), f"class '{name}'", sim.blocks)
    fig.colorbar(im, ax=list(axes), label="mean coefficient", shrink=0.9)
    return _png(fig)


def health_png(health) -> bytes:
    """Left: per-layer entropy against log K. Right: how often each basis is the largest."""
    fig = _figure(10.0, 0.32 * len(health.blocks) + 2.2)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    y = np.arange(len(health.blocks))
    left.barh(y - 0.2, health.mean_entropy, 0.4, color=BLUE, label="mean per-image entropy")
    left.barh(y + 0.2, health.usage_entropy, 0.4, color=GREY, label="entropy of the mean")
    left.axvline(health.max_entropy, color=RED, ls="--", label="log K (uniform)")
    left.set_yticks(y, health.blocks, fontsize=7)
    left.invert_yaxis()
    left.set_xlim(0, health.max_entropy * 1.6)
    left.set_xlabel("nats", fontsize=8)
    left.legend(fontsize=7, loc="lower right")
    left.set_title("coefficient entropy per layer", fontsize=9)
    freq = np.asarray(health.largest_frequency)
    im = _heat(right, freq, (0.0, 1.0), "share of images where the basis is the largest",
               health.blocks, cmap="magma")
    for u in health.unused:
        right.plot(u["basis"], health.blocks.index(u["block"]), "x", color=RED, ms=10, mew=2)
    fig.colorbar(im, ax=right, shrink=0.9)
    return _png(fig)


def exit_per_class_png(per_class: dict, threshold) -> bytes:
    fig = _figure(7.2, 3.0)
    ax = fig.add_subplot()
    names = list(per_class)
    ax.bar(range(len(names)), [per_class[n] * 100 for n in names], color=BLUE)
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=90 if len(names) > 20 else 0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("early exits (%)")
    label = "never exit" if threshold is None else f"threshold {threshold:.4f}"
    ax.set_title(f"exit rate per class at the manifest's {label}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def cost_png(stages: dict, latency: dict | None) -> bytes:
    """MAdds and parameters per stage from the cost model (stage name ->
    :class:`~basisnet_deploy.artifacts.manifest.StageCost`); p50 latency per stage from bench."""
    panels = 3 if latency else 2
    fig = _figure(3.4 * panels, 2.8)
    axes = fig.subplots(1, panels)
    names = list(stages)
    for ax, key, title in zip(axes, ("madds", "params"), ("MAdds (M)", "parameters (M)")):
        ax.barh(names, [getattr(stages[n], key) / 1e6 for n in names], color=BLUE)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
    if latency:
        lat = list(latency)
        axes[2].barh(lat, [latency[n] for n in lat], color=RED)
        axes[2].invert_yaxis()
        axes[2].set_title("p50 latency (ms), bench", fontsize=9)
    return _png(fig)
