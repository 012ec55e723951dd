"""The figure of simulate_correlation.py: each method's test correlations as a box plot."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import pandas as pd

from ..io.schema import CORRELATION_COLUMNS
from .plots import save_png


def correlation_boxplot(frame: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """One box (with its mean) per method of a correlations.csv table, in the table's order."""
    method, _, _, corr = CORRELATION_COLUMNS
    methods = list(frame[method].drop_duplicates())
    fig, ax = plt.subplots(figsize=(1.8 * len(methods) + 2, 3.2))
    ax.boxplot([frame[frame[method] == m][corr] for m in methods], showmeans=True)
    ax.set_xticks(range(1, len(methods) + 1), methods, fontsize=8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel(corr)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
