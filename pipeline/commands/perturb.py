"""``python -m pipeline perturb --ir IR --vis VIS --family F --level K --out-dir DIR``: apply one
perturbation level (``params.yaml`` ``perturb.families``) to one pair for inspection.

Writes ``DIR/<stem>_ir.png`` and ``DIR/<stem>_vis.png`` (the perturbed pair; an unchanged modality
is written as read) and prints what was applied. ``--list`` prints the configured families and
levels. The perturbation is the stage's own: same seed, same pixels (``--dataset`` and ``--name``
give the image identity the stage uses; default: the file stem, no dataset).
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "perturb", help="apply one perturbation family/level to an infrared/visible pair",
        description="Apply one configured perturbation level to one pair and write the result.")
    parser.add_argument("--ir", help="infrared image")
    parser.add_argument("--vis", help="visible image")
    parser.add_argument("--family", help="family name under perturb.families")
    parser.add_argument("--level", type=int, help="severity level (0 = clean)")
    parser.add_argument("--out-dir", default=".", help="folder for <stem>_ir.png and <stem>_vis.png")
    parser.add_argument("--seed", type=int, default=None, help="default: perturb.seed")
    parser.add_argument("--dataset", default="", help="dataset name used in the stage's seeding")
    parser.add_argument("--name", default=None, help="image name used in the seeding (default: file stem)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--list", action="store_true", help="list the configured families and levels")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from pipeline.config import load_params
    from pipeline.errors import ConfigError
    from pipeline.fusion.stage import read_sources
    from pipeline.imageio import write_image
    from pipeline.perturb.families import apply_level, get_family, parse_families
    from pipeline.perturb.stage import perturb_settings

    settings = perturb_settings(load_params(args.params))
    families = parse_families(settings)
    if args.list:
        for name, family in families.items():
            for level in range(family.n_levels + 1):
                print(f"{name} {level}: {family.label(level)}")
        return 0
    for flag in ("ir", "vis", "family", "level"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag} is required (or use --list)")
    family = get_family(families, args.family, "--family")
    ir, vis = read_sources(args.ir, args.vis)
    stem = args.name or Path(args.vis).stem
    seed = settings["seed"] if args.seed is None else args.seed
    out_ir, out_vis = apply_level(family, args.level, ir, vis, seed=seed, dataset=args.dataset, name=stem)
    out = Path(args.out_dir)
    write_image(out / f"{stem}_ir.png", out_ir)
    write_image(out / f"{stem}_vis.png", out_vis)
    print(f"{args.family} level {args.level} ({family.label(args.level)}), seed {seed}: wrote "
          f"{out / f'{stem}_ir.png'} and {out / f'{stem}_vis.png'}")
    return 0
