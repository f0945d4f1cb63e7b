"""Figures used by the demo and the chapters (matplotlib, no screen needed)."""
from __future__ import annotations


def plot_loss(history, path=None, title="training loss", ylabel="loss"):
    """Raw and smoothed loss against step; saved to ``path`` when given.  Returns the figure."""
    import matplotlib
    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.loss, color="0.75", lw=0.8, label="per batch")
    ax.plot(history.smoothed(), color="C0", lw=2, label="moving average")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
