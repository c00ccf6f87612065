"""What a demo scene contains: background (sky, skyline, road, curbs, markings, bumps) and objects
standing on the ground plane. See :mod:`pipeline.demo_scene` for the scene model and rendering.

Object sizes are fractions of the image height/width scaled by the depth ``t`` of the object's foot
row (0 at the horizon, 1 at the bottom). Infrared values are absolute levels (``ir``) for warm or
structural things and offsets from the background (``ir_add``) for cold things.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.demo_scene import CAR_COLOURS, CLOTHES, SEG, Scene, stripes

_SKY_DAY, _SKY_HORIZON = np.array((110, 160, 225), np.float32), np.array((200, 212, 228), np.float32)
_BUILDINGS = ((150, 90, 70), (160, 160, 165), (200, 185, 150), (120, 110, 100))
_ROAD = (98, 98, 102)
_WHITE, _YELLOW, _BLACK = (236, 236, 230), (232, 198, 40), (30, 30, 32)
_LAMP_POLE = (40, 60, 150)   # painted blue pole
#: infrared offset of cold painted things (cones, curbs, car stops, bumps, lamps): a faint trace only,
#: so their evidence is in the visible image (the demo's visible-only classes)
_FAINT = 2.0


# ------------------------------------------------------------------------------------ background


def draw_background(s: Scene, msrs: bool) -> None:
    """Sky, skyline, ground, road with curbs and lane markings; MSRS scenes may get a speed bump."""
    rng, h, w, hz = s.rng, s.height, s.width, s.horizon
    ramp = np.linspace(0.0, 1.0, hz, dtype=np.float32)[:, None, None]
    s.albedo[:hz] = _SKY_DAY * (1 - ramp) + _SKY_HORIZON * ramp
    s.ir[:hz] = 28.0 - s.cool / 2
    grass = rng.random() < 0.4
    s.albedo[hz:] = s.jitter((70, 115, 55) if grass else (150, 140, 128), 12)
    s.ir[hz:] = (74.0 if grass else 86.0) - s.cool
    _skyline(s)
    s.vx = w * rng.uniform(0.35, 0.65)
    s.road_l, s.road_r = w * rng.uniform(-0.15, 0.15), w * rng.uniform(0.85, 1.15)
    s.poly([(s.vx - 1, hz), (s.vx + 1, hz), (s.road_r, h), (s.road_l, h)],
           ir=96.0 - s.cool + rng.uniform(-5, 5), vis=s.jitter(_ROAD, 10))
    curb = w * rng.uniform(0.05, 0.09)
    curb_colour = s.jitter((188, 188, 178), 10) if rng.random() < 0.6 else None
    for edge, sign in ((s.road_l, -1), (s.road_r, 1)):
        pts = [(s.vx, hz), (edge, h), (edge + sign * curb, h)]
        s.poly(pts, ir_add=_FAINT, vis=curb_colour if curb_colour is not None else _YELLOW,
               seg=SEG["curve"])
        if curb_colour is None:   # yellow/black painted curb
            s.pattern(pts, lambda shape: stripes(shape, 0, max(3, h // 24), "y"), _BLACK)
    _lane_markings(s)
    if msrs and rng.random() < 0.35:
        _bump(s)
    for _ in range(rng.integers(0, 3) if not s.night else 0):   # cast shadows, visible only
        y1 = hz + (h - hz) * rng.uniform(0.1, 0.7)
        x1 = w * rng.uniform(-0.2, 0.8)
        s.shade_poly([(x1, y1), (x1 + w * rng.uniform(0.2, 0.5), y1),
                      (x1 + w * rng.uniform(0.3, 0.7), h), (x1 - w * 0.1, h)], rng.uniform(0.4, 0.6))


def _skyline(s: Scene) -> None:
    rng, hz, w = s.rng, s.horizon, s.width
    x = -rng.uniform(0, 20)
    while x < w:
        bw = rng.uniform(0.12, 0.3) * w
        if rng.random() < 0.3:   # a tree
            r = bw * 0.3
            cy = hz - rng.uniform(0.25, 0.55) * hz
            s.rect(x + bw / 2 - 2, cy, x + bw / 2 + 2, hz + 2, ir=80.0 - s.cool, vis=(80, 60, 40))
            s.circle(x + bw / 2, cy, r, ir=62.0 - s.cool, vis=s.jitter((60, 110, 50), 15))
        else:
            top = hz - rng.uniform(0.2, 0.75) * hz
            s.rect(x, top, x + bw, hz + 2, ir=72.0 - s.cool / 2 + rng.uniform(-6, 6),
                   vis=s.jitter(_BUILDINGS[rng.integers(len(_BUILDINGS))], 15))
            _windows(s, int(x), int(top), int(x + bw), hz)
        x += bw + rng.uniform(0, 0.08) * w


def _windows(s: Scene, x1: int, y1: int, x2: int, y2: int) -> None:
    """A grid of windows; at night a random subset is lit (emissive and slightly warm)."""
    rng = s.rng
    x1, y1, x2 = max(x1, 0), max(y1 + 3, 0), min(x2, s.width)
    if x2 - x1 < 6 or y2 - y1 < 6:
        return
    px, py = int(rng.integers(7, 12)), int(rng.integers(8, 13))
    yy, xx = np.mgrid[0:y2 - y1, 0:x2 - x1]
    grid = ((xx % px) >= 2) & ((xx % px) < px - 2) & ((yy % py) >= 2) & ((yy % py) < py - 3)
    s.albedo[y1:y2, x1:x2][grid] = (55, 70, 92)
    s.ir_add[y1:y2, x1:x2][grid] = -3.0
    if s.night:
        lit = rng.random((yy.max() // py + 1, xx.max() // px + 1)) < 0.3
        lit_px = grid & lit[yy // py, xx // px]
        s.emit[y1:y2, x1:x2][lit_px] = (150, 125, 70)
        s.ir_add[y1:y2, x1:x2][lit_px] = 6.0


def _lane_markings(s: Scene) -> None:
    """Dashed centre line and optional solid edge lines: paint, nearly invisible in infrared."""
    rng, h, hz = s.rng, s.height, s.horizon
    colour = _WHITE if rng.random() < 0.7 else _YELLOW
    mid = (s.road_l + s.road_r) / 2

    def strip(centre_bottom, t0, t1, width):
        ys = [hz + (h - hz) * t for t in (t0, t1)]
        xs = [s.vx + (centre_bottom - s.vx) * t for t in (t0, t1)]
        ws = [0.5 + width * t for t in (t0, t1)]
        s.poly([(xs[0] - ws[0], ys[0]), (xs[0] + ws[0], ys[0]), (xs[1] + ws[1], ys[1]),
                (xs[1] - ws[1], ys[1])], ir_add=2.0, vis=colour)

    t, phase = 0.08, rng.uniform(0.0, 1.0)
    while t < 1.0:
        length = 0.06 + 0.2 * t
        strip(mid, t + phase * length, min(1.0, t + (phase + 0.5) * length), 3.0)
        t += length
    if rng.random() < 0.6:
        inset = 0.06 * (s.road_r - s.road_l)
        for edge in (s.road_l + inset, s.road_r - inset):
            strip(edge, 0.05, 1.0, 1.6)


def _bump(s: Scene) -> None:
    """A striped speed bump across the road (MSRS ``bump``): paint-coloured, faint in infrared."""
    t = s.rng.uniform(0.35, 0.85)
    y = s.horizon + (s.height - s.horizon) * t
    thick = 4 + 12 * t
    (l1, r1), (l2, r2) = s.road_edges(y - thick), s.road_edges(y)
    pts = [(l1, y - thick), (r1, y - thick), (r2, y), (l2, y)]
    s.poly(pts, ir_add=_FAINT, vis=_BLACK, seg=SEG["bump"])
    s.pattern(pts, lambda shape: stripes(shape, 0, int(6 + 10 * t)), _YELLOW)


# ------------------------------------------------------------------------------------ objects


def _person(s, x, yf, size, obj, view):
    hgt = size[1]
    rng = s.rng
    camo = rng.random() < s.camo   # clothes close to the surroundings: hard to see in visible
    below = s.albedo[int(np.clip(yf - 0.5 * hgt, 0, s.height - 1)), int(np.clip(x, 0, s.width - 1))]
    top = s.jitter(below, 6) if camo else s.jitter(CLOTHES[rng.integers(len(CLOTHES))])
    legs = s.jitter((40, 40, 55), 15) if not camo else top
    warm = rng.uniform(-8, 8)
    ids = dict(seg=SEG["person"], inst=obj)
    hip, shoulder, stride = yf - 0.48 * hgt, yf - 0.80 * hgt, rng.uniform(-0.08, 0.08) * hgt
    for side in (-1, 1):
        lx = x + side * 0.08 * hgt
        s.poly([(lx - 0.06 * hgt, hip), (lx + 0.06 * hgt, hip), (lx + side * stride + 0.05 * hgt, yf),
                (lx + side * stride - 0.05 * hgt, yf)], ir=196 + warm, vis=legs, **ids)
        s.line((x + side * 0.17 * hgt, shoulder + 0.03 * hgt), (x + side * 0.2 * hgt, yf - 0.5 * hgt),
               0.07 * hgt, ir=205 + warm, vis=top, **ids)
    s.poly([(x - 0.18 * hgt, shoulder), (x + 0.18 * hgt, shoulder), (x + 0.14 * hgt, hip),
            (x - 0.14 * hgt, hip)], ir=212 + warm, vis=top, **ids)
    r = 0.085 * hgt
    skin = top if camo else s.jitter((205, 165, 135), 20)   # camouflaged: hooded
    s.circle(x, shoulder - 0.9 * r, r, ir=234 + warm / 2, vis=skin, **ids)


def _car(s, x, yf, size, obj, view):
    cw, ch = size
    rng = s.rng
    body = s.jitter(CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 12)
    ids = dict(seg=SEG["car"], inst=obj)
    glass, tyre = dict(ir=60 - s.cool, vis=(45, 55, 70)), dict(ir=165, vis=(22, 22, 24))
    if view == "rear":
        s.rect(x - 0.45 * cw, yf - 0.16 * ch, x - 0.29 * cw, yf, **tyre, **ids)
        s.rect(x + 0.29 * cw, yf - 0.16 * ch, x + 0.45 * cw, yf, **tyre, **ids)
        s.rect(x - cw / 2, yf - 0.58 * ch, x + cw / 2, yf - 0.12 * ch, ir=118 - s.cool / 3, vis=body, **ids)
        s.rect(x - 0.4 * cw, yf - 0.24 * ch, x + 0.4 * cw, yf - 0.12 * ch, ir=205, vis=(40, 40, 42), **ids)
        s.poly([(x - 0.45 * cw, yf - 0.58 * ch), (x + 0.45 * cw, yf - 0.58 * ch),
                (x + 0.34 * cw, yf - ch), (x - 0.34 * cw, yf - ch)], ir=110 - s.cool / 3, vis=body, **ids)
        s.poly([(x - 0.38 * cw, yf - 0.62 * ch), (x + 0.38 * cw, yf - 0.62 * ch),
                (x + 0.3 * cw, yf - 0.93 * ch), (x - 0.3 * cw, yf - 0.93 * ch)], **glass, **ids)
        for side in (-1, 1):
            s.rect(x + side * 0.47 * cw - 0.06 * cw, yf - 0.52 * ch, x + side * 0.47 * cw + 0.06 * cw,
                   yf - 0.42 * ch, vis=(200, 25, 25), emit=(255, 50, 40), **ids)
        return
    front = 1 if rng.random() < 0.5 else -1
    s.rect(x - cw / 2, yf - 0.72 * ch, x + cw / 2, yf - 0.2 * ch, ir=115 - s.cool / 3, vis=body, **ids)
    s.rect(x + front * 0.5 * cw, yf - 0.72 * ch, x + front * 0.2 * cw, yf - 0.2 * ch, ir=200,
           vis=body, **ids)   # warm engine bay
    s.poly([(x - 0.3 * cw, yf - 0.72 * ch), (x + 0.3 * cw, yf - 0.72 * ch),
            (x + 0.2 * cw, yf - ch), (x - 0.2 * cw, yf - ch)], ir=108 - s.cool / 3, vis=body, **ids)
    s.poly([(x - 0.24 * cw, yf - 0.74 * ch), (x + 0.24 * cw, yf - 0.74 * ch),
            (x + 0.17 * cw, yf - 0.95 * ch), (x - 0.17 * cw, yf - 0.95 * ch)], **glass, **ids)
    for side in (-1, 1):
        s.circle(x + side * 0.3 * cw, yf - 0.2 * ch, 0.2 * ch, **tyre, **ids)
    s.rect(x + front * 0.5 * cw, yf - 0.6 * ch, x + front * 0.44 * cw, yf - 0.48 * ch,
           vis=(235, 235, 220), emit=(255, 250, 220), **ids)


def _bike(s, x, yf, size, obj, view):
    bw = size[0]
    r = 0.22 * bw
    ids = dict(seg=SEG["bike"], inst=obj)
    frame = s.jitter(CLOTHES[s.rng.integers(len(CLOTHES))], 10)
    rear, front, crank = (x - 0.28 * bw, yf - r), (x + 0.28 * bw, yf - r), (x - 0.02 * bw, yf - r)
    seat, handle = (x - 0.12 * bw, yf - r - 0.42 * bw), (x + 0.2 * bw, yf - r - 0.48 * bw)
    for hub in (rear, front):
        s.circle(*hub, r, thickness=max(2, int(0.07 * bw)), ir_add=7.0, vis=(25, 25, 25), **ids)
    for p, q in ((rear, crank), (crank, seat), (seat, rear), (crank, handle), (seat, handle),
                 (handle, front)):
        s.line(p, q, max(2.0, 0.05 * bw), ir_add=6.0, vis=frame, **ids)


def _lamp(s, x, yf, size, obj, view):
    bw, ph = size
    toward = 1 if x < s.vx else -1   # arm reaches over the road
    pole_x, pw = x - toward * (bw / 2 - 1), max(3.0, 0.07 * ph)
    ids = dict(seg=SEG["unlabelled"], inst=obj)
    pole = s.jitter(_LAMP_POLE, 10)
    s.rect(pole_x - pw / 2, yf - ph, pole_x + pw / 2, yf, ir_add=_FAINT, vis=pole, **ids)
    arm_end = pole_x + toward * (bw - 2)
    s.line((pole_x, yf - ph + 2), (arm_end, yf - ph + 2), max(2.0, 0.05 * ph), ir_add=_FAINT,
           vis=pole, **ids)
    head = (arm_end - 0.3 * ph * toward, yf - ph + 1, arm_end, yf - ph + max(6.0, 0.12 * ph))
    s.rect(min(head[0], head[2]), head[1], max(head[0], head[2]), head[3],
           ir_add=_FAINT, vis=(240, 225, 90), emit=(255, 240, 190), **ids)
    s.lamps.append((arm_end, yf, 0.35 * ph))


def _cone(s, x, yf, size, obj, view):
    ch = size[1]
    ids = dict(seg=SEG["color_cone"], inst=obj)
    orange = s.jitter((245, 110, 25), 10)
    s.rect(x - 0.38 * ch, yf - 0.1 * ch, x + 0.38 * ch, yf, ir_add=-_FAINT, vis=orange, **ids)
    tri = [(x - 0.3 * ch, yf - 0.1 * ch), (x + 0.3 * ch, yf - 0.1 * ch), (x + 0.04 * ch, yf - ch),
           (x - 0.04 * ch, yf - ch)]
    s.poly(tri, ir_add=-_FAINT, vis=orange, **ids)
    band = [(x - 0.19 * ch, yf - 0.45 * ch), (x + 0.19 * ch, yf - 0.45 * ch),
            (x + 0.14 * ch, yf - 0.62 * ch), (x - 0.14 * ch, yf - 0.62 * ch)]
    s.poly(band, vis=_WHITE)


def _car_stop(s, x, yf, size, obj, view):
    bw, bh = size
    colour = _YELLOW if s.rng.random() < 0.5 else s.jitter((175, 175, 170), 8)
    s.rect(x - bw / 2, yf - bh, x + bw / 2, yf, ir_add=_FAINT, vis=colour, seg=SEG["car_stop"], inst=obj)


def _guardrail(s, x, yf, size, obj, view):
    bw, bh = size
    ids = dict(ir_add=9.0, vis=(205, 205, 210), seg=SEG["guardrail"], inst=obj)
    bar = max(2.0, 0.22 * bh)
    s.rect(x - bw / 2, yf - bh, x + bw / 2, yf - bh + bar, **ids)
    s.rect(x - bw / 2, yf - 0.5 * bh, x + bw / 2, yf - 0.5 * bh + bar, **ids)
    posts = max(2, int(bw // max(6.0, 1.2 * bh)))
    for px in np.linspace(x - bw / 2 + 1, x + bw / 2 - 2, posts):
        s.rect(px - bar / 2, yf - bh, px + bar / 2, yf, **ids)


@dataclass(frozen=True)
class Kind:
    """How one kind of object is drawn and placed."""

    draw: Callable                  # draw(scene, x, foot_y, (box w, box h), instance id, view)
    size: Callable                  # size(t, height, width) -> (box width, box height)
    where: str                      # road | side (beside the road) | any
    tmin: float                     # smallest depth of its foot row
    label: str                      # the labelled kind (person, car, bike, lamp, cone, ...)
    view: str = ""


KINDS = {
    "person": Kind(_person, lambda t, h, w: (0.45 * h * (0.15 + 0.3 * t), h * (0.15 + 0.3 * t)), "any", 0.1,
                   "person"),
    "car_rear": Kind(_car, lambda t, h, w: (w * (0.16 + 0.28 * t), 0.75 * w * (0.16 + 0.28 * t)), "road", 0.1,
                     "car", "rear"),
    "car_side": Kind(_car, lambda t, h, w: (w * (0.24 + 0.34 * t), 0.42 * w * (0.24 + 0.34 * t)), "road", 0.1,
                     "car", "side"),
    "bike": Kind(_bike, lambda t, h, w: (h * (0.18 + 0.22 * t), 0.72 * h * (0.18 + 0.22 * t)), "any", 0.15,
                 "bike"),
    "lamp": Kind(_lamp, lambda t, h, w: (0.3 * h * (0.34 + 0.36 * t), h * (0.34 + 0.36 * t)), "side", 0.2,
                 "lamp"),
    "cone": Kind(_cone, lambda t, h, w: (0.76 * h * (0.16 + 0.2 * t), h * (0.16 + 0.2 * t)), "any", 0.15,
                 "cone"),
    "car_stop": Kind(_car_stop, lambda t, h, w: (h * (0.3 + 0.3 * t), max(8.0, 0.3 * h * (0.3 + 0.3 * t))),
                     "side", 0.4, "car_stop"),
    "guardrail": Kind(_guardrail, lambda t, h, w: (w * (0.2 + 0.2 * t), h * (0.05 + 0.08 * t)), "side", 0.1,
                      "guardrail"),
}


def place_objects(s: Scene, counts: dict[str, int], labelled: set[str]) -> None:
    """Place up to ``counts[kind]`` objects on the ground without heavy overlap, then draw them back
    to front. Kinds in ``labelled`` get an instance id (a box); others are unlabelled clutter."""
    rng, h, w, hz = s.rng, s.height, s.width, s.horizon
    placed = []
    for kind, count in counts.items():
        spec = KINDS[kind]
        where = spec.where
        for _ in range(count):
            for _attempt in range(25):
                t = rng.uniform(spec.tmin, 1.0)
                yf = hz + (h - hz) * t
                bw, bh = spec.size(t, h, w)
                left, right = s.road_edges(yf)
                if where == "road":
                    lo, hi = left + bw / 2, right - bw / 2
                elif where == "side":
                    lo, hi = ((bw / 2, left - bw / 2) if rng.random() < 0.5 else (right + bw / 2, w - bw / 2))
                else:
                    lo, hi = bw / 2, w - bw / 2
                if hi <= lo or yf - bh < 1:
                    continue
                x = rng.uniform(lo, hi)
                if s.free((x - bw / 2, yf - bh, x + bw / 2, yf)):
                    placed.append((yf, kind, x, (bw, bh)))
                    break
    for yf, kind, x, size in sorted(placed, key=lambda p: p[0]):
        spec = KINDS[kind]
        obj = s.new_object(spec.label).inst if spec.label in labelled else 0
        spec.draw(s, x, yf, size, obj, spec.view)
