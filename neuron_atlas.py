"""A neuron atlas: one page per unit joining every method's verdict, as a static site.

For the units of --blocks it reads (or, where they have not run, runs with their scripts' defaults)
network dissection, neuron statistics and clusters per k, linear explanations with their simulation
correlation, InterpScore and feature visualizations, under --outputs; a CLIP-Dissect result is read
from --clip_dissect. It writes --output_dir/index.html (every unit in a table that sorts and
filters), units/<block>_<unit>.html (feature visualization, top-activating images with the
activation map and the dissection mask, histogram, the verdicts side by side and whether they agree,
the most correlated units), units.json and manifest.json. Opens from file:// with no network.
"""
from __future__ import annotations

import time

from disentangle import cli
from disentangle.io import layout
from disentangle.pipeline.atlas import AtlasConfig, build, write_atlas


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n")[0])
    g = p.add_argument_group("model and units")
    cli.add(g, "model", default="tiny_densenet", help="registered model (see docs/models.md)")
    cli.add(g, "weights", default=None, help="weights file; default: the model's own source; 'random' for untrained")
    cli.add(g, "blocks", type=cli.names, default=None, help="comma-separated blocks (default: every block)")
    cli.add(g, "data", default="concepts",
            help="probe images of the atlas and the dissection: 'concepts' or a Broden folder (pixel labels)")
    cli.add(g, "images", type=cli.positive, default=None, help="probe images (default: the dissection's, 1200)")
    s = p.add_argument_group("stages")
    cli.add(s, "outputs", default=str(layout.OUTPUTS), help="root of the stages' artifacts")
    cli.add(s, "results", default="results", help="explain_neurons.py's result folder")
    cli.add(s, "ks", type=cli.names, default=("2", "3", "4", "5"), help="cluster counts shown (neuron_stats --k)")
    cli.add(s, "no_run", action="store_true", help="only read artifacts: a stage that has not run is left out")
    cli.add(s, "clip_dissect", default=None, help="a describe_neurons.py result folder or descriptions CSV")
    cli.add(s, "feature_steps", type=cli.positive, default=256, help="visualize_features --steps, if it runs")
    v = p.add_argument_group("pages")
    cli.add(v, "top_images", type=cli.positive, default=8, help="top-activating images per unit")
    cli.add(v, "related", type=int, default=5, help="most correlated units listed per unit")
    cli.add(p, "seed", type=int, default=0, help="seed of every stage that runs")
    cli.runtime_args(p, batch=64)
    cli.output_args(p, None, "site folder (default: outputs/atlas/<model>)", overwrite=False)
    return p


@cli.entrypoint
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        ks = tuple(int(k) for k in args.ks)
    except ValueError:
        raise cli.UserError(f"--ks takes comma-separated integers, got {','.join(args.ks)}") from None
    cfg = AtlasConfig(args.model, args.weights, args.blocks, args.outputs, args.results, args.data, args.images, ks,
                      args.top_images, args.related, not args.no_run, args.clip_dissect, args.feature_steps,
                      args.seed, cli.runtime(args))
    started = time.perf_counter()
    atlas = build(cfg)
    built = time.perf_counter()
    index = write_atlas(atlas, cfg, args.output_dir or layout.atlas_dir(args.model))
    units = sum(len(b.units) for b in atlas.blocks)
    print(f"atlas of {units} units ({', '.join(b.name for b in atlas.blocks)}): stages and probe pass "
          f"{built - started:.1f} s, site {time.perf_counter() - built:.1f} s")
    for note in atlas.notes:
        print(f"note: {note}")
    print(f"open {index.resolve().as_uri()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
