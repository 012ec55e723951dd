"""Sort the flat ImageNet validation images into one folder per class, as --data imagenet expects.

  python data/subfolders.py --val_dir data/ILSVRC2012_img_val \
      --ground_truth ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt \
      --meta ILSVRC2012_devkit_t12/data/meta.mat
  python data/subfolders.py --val_dir data/ILSVRC2012_img_val --ground_truth LOC_val_solution.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from disentangle import cli  # noqa: E402
from disentangle.data.imagenet import sort_into_folders, val_labels  # noqa: E402


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--val_dir", default="data/ILSVRC2012_img_val", help="folder holding the 50,000 flat JPEGs")
    p.add_argument("--ground_truth", required=True,
                   help="devkit ILSVRC2012_validation_ground_truth.txt or Kaggle LOC_val_solution.csv")
    p.add_argument("--meta", default=None, help="devkit meta.mat (needed with the .txt ground truth)")
    p.add_argument("--copy_to", default=None, help="copy into this folder instead of moving in place")
    args = p.parse_args(argv)
    n = sort_into_folders(args.val_dir, val_labels(args.ground_truth, args.meta), args.copy_to)
    print(f"{n} images in class folders under {args.copy_to or args.val_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
