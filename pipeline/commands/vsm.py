"""``python -m pipeline vsm IMAGE --out MAP.npy [--png MAP.png]``: visual saliency map of one image.

The map follows :mod:`pipeline.vsm` (joint rule for colour images, so a colour file gives an H×W×3
map); ``--png`` also writes the 8-bit map ⌊255·V + 0.5⌋.
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "vsm", help="visual saliency map (VSM) of one image",
        description="Compute the VSM of Ma et al. (2017) of IMAGE as float64 .npy (and an 8-bit PNG).")
    parser.add_argument("image", help="input image (grey, or colour: joint rule over RGB)")
    parser.add_argument("--out", required=True, help="output .npy (float64 in [0, 1])")
    parser.add_argument("--png", default=None, help="also write the 8-bit map (round half up)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pipeline.imageio import save_npy, write_image
    from pipeline.vsm import to_uint8, vsm_file

    vsm_map = vsm_file(args.image)
    save_npy(args.out, vsm_map)
    if args.png:
        write_image(args.png, to_uint8(vsm_map))
    print(f"wrote {args.out} {tuple(vsm_map.shape)}" + (f" and {args.png}" if args.png else ""))
    return 0
