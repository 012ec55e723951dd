"""Sorting the flat ImageNet (ILSVRC2012) validation set into one folder per class (WordNet id).

Two ground-truth formats are read:
- the official devkit: ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per image, in
  file-name order) with ``meta.mat`` (ILSVRC2012_ID -> WNID);
- Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` whose first word is the WNID).
Folder names sorted alphabetically give the standard 0..999 class order of torchvision's weights.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from ..core.errors import UserError


def val_labels(ground_truth: str | Path, meta: str | Path | None = None) -> dict[str, str]:
    """File name (``ILSVRC2012_val_00000001.JPEG``) -> WNID."""
    ground_truth = Path(ground_truth)
    if not ground_truth.is_file():
        raise UserError(f"ground-truth file {ground_truth} not found")
    if ground_truth.suffix == ".csv":
        with open(ground_truth, newline="") as f:
            return {f"{row['ImageId']}.JPEG": row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    if meta is None or not Path(meta).is_file():
        raise UserError("the devkit's ground-truth .txt needs --meta PATH/TO/meta.mat (from the same devkit)")
    from scipy.io import loadmat
    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    wnid_of = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"])}
    ids = [int(line) for line in ground_truth.read_text().split()]
    try:
        return {f"ILSVRC2012_val_{n:08d}.JPEG": wnid_of[i] for n, i in enumerate(ids, start=1)}
    except KeyError as e:
        raise UserError(f"class id {e.args[0]} of {ground_truth} is not in {meta}") from None


def sort_into_folders(val_dir: str | Path, labels: dict[str, str], copy_to: str | Path | None = None) -> int:
    """Move (or copy to ``copy_to``) every listed image into ``<dir>/<wnid>/``; returns the count.

    Files already sorted are left alone, so an interrupted run can simply be repeated.
    """
    val_dir = Path(val_dir)
    if not val_dir.is_dir():
        raise UserError(f"validation folder {val_dir} not found")
    dest_root = Path(copy_to) if copy_to else val_dir
    done = 0
    for name, wnid in labels.items():
        src, dest = val_dir / name, dest_root / wnid / name
        if dest.exists():
            done += 1
            continue
        if not src.exists():
            raise UserError(f"{src} is listed in the ground truth but missing")
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copy2 if copy_to else shutil.move)(src, dest)
        done += 1
    return done
