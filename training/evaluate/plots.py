"""The PCA plot of a bundle's embeddings (matplotlib, a `train` dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from logclust.cluster.labeler import Labeler
from training import data as data_mod


def pca_plot(lab: Labeler, ls: data_mod.LogSet, out: Path) -> None:
    """Android embeddings on their first two principal axes, the 12 commonest templates coloured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert ls.templates is not None
    emb = lab.embed(ls.content)
    x = emb - emb.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    tmpl = np.asarray(ls.templates)
    names, counts = np.unique(tmpl, return_counts=True)
    top = list(names[np.argsort(-counts)][:12])
    fig, ax = plt.subplots(figsize=(7, 6))
    rest = ~np.isin(tmpl, top)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=4, c="lightgrey", label="other templates")
    cmap = plt.get_cmap("tab20")
    for i, t in enumerate(top):
        m = tmpl == t
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(i), label=f"{t} ({int(m.sum())})")
    ax.set_title("Android (held out): logclust embeddings, PCA, coloured by template")
    ax.legend(fontsize=6, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
