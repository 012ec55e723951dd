"""Export concept-world images as an ImageFolder tree (PNG, lossless) with their concept labels.

  python data/export_concepts.py data/concepts_val --n 1200
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from disentangle import cli  # noqa: E402
from disentangle.data.concepts import DEFAULT_SIZE, SPLITS, export_imagefolder  # noqa: E402


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("root", help="output folder")
    p.add_argument("--n", type=int, default=1200, help="number of images (class = index mod 12)")
    p.add_argument("--split", default="val", choices=sorted(SPLITS), help="which split to render")
    p.add_argument("--seed", type=int, default=0, help="concept-world seed")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image side in pixels (divisible by 14)")
    args = p.parse_args(argv)
    export_imagefolder(args.root, args.split, args.n, args.seed, args.size)
    print(f"{args.n} images in {args.root}/ (labels in segmentation.npz)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
