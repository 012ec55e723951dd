"""Train tiny_densenet on the concept world with the shipped model's recipe, into a new weights file.

The shipped weights (disentangle/weights/tiny_densenet.pt) are what every stage uses by default;
this reproduces their recipe. Another CPU or thread count rounds floats in another order and gives
another model (about 95 % held-out top-1 either way): pass it to any stage with --weights FILE.
Writes FILE and its manifest FILE.json (recipe, held-out accuracy, SHA-256, machine, versions).
"""
from __future__ import annotations

from pathlib import Path

import torch

from disentangle import cli
from disentangle.core import tiny
from disentangle.core.errors import UserError


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True, help="weights file to write (its manifest goes beside it as .json)")
    p.add_argument("--threads", type=cli.positive, default=None, help="CPU threads (default: torch's, one per core)")
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.output)
    if out.suffix == ".json":
        raise UserError(f"--output {out} would be overwritten by its own manifest; use a .pt name")
    if out.exists() or out.with_suffix(".json").exists():
        raise UserError(f"{out} or {out.with_suffix('.json').name} exists; choose a new file name")
    if out.resolve() == tiny.SHIPPED:
        raise UserError("the shipped weights are not retrained in place; choose another --output")
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    manifest = tiny.train(out)
    print(f"tiny_densenet: held-out top-1 {manifest['heldout_top1']:.1%} on {tiny.RECIPE['val_images']} "
          f"concept-world images, trained in {manifest['train_seconds']:.0f} s with {manifest['threads']} "
          f"threads -> {out} (sha256 {manifest['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
