"""``python -m pipeline fuse --method NAME [--weights PATH] --vis VIS --ir IR --out OUT.png
[--raw-out RAW.npy] [--gray]``: fuse one registered pair.

For medical pairs ``--vis`` takes the MRI (structural) image and ``--ir`` the CT/PET/SPECT
(functional) one, as in MLFuse. A colour source is fused on its luma and the output recombined with
its chrominance (:mod:`pipeline.fusion.colour`) unless ``--gray``. ``--raw-out`` saves the method's
float output before conversion to 8 bits (``mlfuse``: the tanh output before min-max).
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fuse", help="fuse one infrared/visible (or CT-PET-SPECT/MRI) pair with a fusion method",
        description="Fuse one registered pair with a registered fusion method.")
    parser.add_argument("--method", required=True,
                        help="ir, vis, average, max, laplacian, vsm_wls, mlfuse (see the fusion registry)")
    parser.add_argument("--weights", default=None,
                        help="checkpoint of a network method: a path ('shared' = the copy in ../shared/weights); "
                             "mlfuse: a path, 'official' (default) or 'trained'")
    parser.add_argument("--vis", required=True, help="visible (or MRI) image")
    parser.add_argument("--ir", required=True, help="infrared (or CT/PET/SPECT) image")
    parser.add_argument("--out", required=True, help="output 8-bit image (PNG)")
    parser.add_argument("--raw-out", default=None, help="also save the float output as .npy")
    parser.add_argument("--gray", action="store_true", help="grey output even for colour sources")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (network methods)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from pipeline.errors import ConfigError
    from pipeline.fusion.registry import get_method
    from pipeline.fusion.stage import fuse_pair_raw, read_sources
    from pipeline.imageio import save_npy, write_image

    options = {}
    accepted = get_method(args.method).option_names
    if args.weights is not None:
        if "weights" not in accepted:
            raise ConfigError(f"--weights only applies to network methods, not {args.method!r}")
        options["weights"] = args.weights
    if "device" in accepted:
        options["device"] = args.device
    method = get_method(args.method, **options)
    ir, vis = read_sources(args.ir, args.vis)
    image, raw = fuse_pair_raw(method, ir, vis, gray=args.gray)
    write_image(args.out, image)
    if args.raw_out:
        save_npy(args.raw_out, np.asarray(raw))
    print(f"wrote {args.out} ({image.shape[1]}×{image.shape[0]}, {'colour' if image.ndim == 3 else 'grey'})"
          + (f" and {args.raw_out}" if args.raw_out else ""))
    return 0

