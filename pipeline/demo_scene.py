"""Procedural street scenes seen by a registered infrared/visible camera pair (the demo data's model).

A scene is drawn once into shared layers and then *rendered* twice, once per modality:

* **Geometry** (both modalities): a horizon at 33-45 % of the height; sky; a skyline of buildings
  and trees; a road in perspective towards a vanishing point, with curbs (MSRS ``curve``) and
  sidewalks beside it. Objects stand on the ground plane and scale linearly with their foot row
  (nearer = lower = larger), drawn back to front with bounded overlap so every labelled object stays
  mostly visible: people, cars (rear or side view), bicycles, street lamps, traffic cones, car stops,
  guardrails and speed bumps. Every labelled object is at least ~20 px tall at the default size.
* **Infrared** (thermal emission): cold sky, buildings and ground at ambient level with a smooth
  low-frequency variation, a little blur and weak sensor noise -- no texture, no paint. People are
  the warmest things (head > body > legs); cars have a warm engine/exhaust side and warm tyres with
  cold windows. *Cold* objects (cones, bumps, curbs, car stops, guardrails, bicycles, lamps, lane
  paint) are painted as a small *offset* from whatever lies beneath them, so they are faint. At night the ambient scene cools while people stay warm.
* **Visible** (reflected light, RGB): surface colours (paint, clothing, car colours, lane markings,
  striped bumps, orange cones, window grids) times an illumination map plus fine multiplicative
  texture. By day: soft illumination changes and cast shadows; a share ``Scene.camo`` of people
  wear clothes the colour of what lies behind them. By night: ambient light drops to 10-20 %, pools of lamp light, emissive
  headlights / tail lights / lit windows / lamp bulbs with glow, and strong sensor noise, so
  unlit people are nearly invisible.

Consequently an infrared-only model misses cold objects and markings, a visible-only model misses
people at night and in shadow, and a good fusion of the two sees both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SEG = {name: i for i, name in enumerate(("unlabelled", "car", "person", "bike", "curve", "car_stop",
                                          "guardrail", "color_cone", "bump"))}
CAR_COLOURS = ((180, 30, 30), (30, 60, 160), (225, 225, 225), (25, 25, 28), (150, 152, 158),
               (220, 190, 40), (40, 110, 60))
CLOTHES = ((200, 40, 40), (40, 70, 170), (230, 230, 220), (60, 60, 60), (240, 170, 40),
           (90, 140, 60), (140, 60, 130))


@dataclass
class DemoObject:
    """A labelled object: its kind (``person``, ``car``, ``bike``, ``lamp`` ...) and instance id."""

    kind: str
    inst: int
    box: tuple[int, int, int, int] | None = None   # x1, y1, x2, y2 (pixel edges) after drawing


@dataclass
class Scene:
    """Drawing layers of one scene. ``ir`` holds absolute temperatures, ``ir_add`` offsets of cold
    objects from what lies beneath, ``albedo`` visible surface colour, ``emit`` visible light
    sources, ``shade`` cast shadows (visible only), ``label`` MSRS class ids, ``inst`` instance ids."""

    rng: np.random.Generator
    height: int
    width: int
    night: bool
    camo: float = 0.3          # share of people dressed like their surroundings (hard to see in visible)
    label: np.ndarray = field(init=False)
    inst: np.ndarray = field(init=False)
    ir: np.ndarray = field(init=False)
    ir_add: np.ndarray = field(init=False)
    albedo: np.ndarray = field(init=False)
    emit: np.ndarray = field(init=False)
    shade: np.ndarray = field(init=False)
    objects: list[DemoObject] = field(default_factory=list)
    lamps: list[tuple[float, float, float]] = field(default_factory=list)
    placed: list[tuple[float, float, float, float]] = field(default_factory=list)

    def __post_init__(self):
        h, w = self.height, self.width
        self.label = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.ir = np.zeros((h, w), np.float32)
        self.ir_add = np.zeros((h, w), np.float32)
        self.albedo = np.zeros((h, w, 3), np.float32)
        self.emit = np.zeros((h, w, 3), np.float32)
        self.shade = np.ones((h, w), np.float32)
        self.horizon = int(h * self.rng.uniform(0.33, 0.45))
        self.cool = 22.0 if self.night else 0.0
        self.vx, self.road_l, self.road_r = w / 2, 0.0, float(w)   # set by the background

    # ---------------------------------------------------------------- primitives

    def paint(self, draw, ir=None, ir_add=None, vis=None, seg=None, inst=None, emit=None):
        """Apply one shape (``draw(array, value)``) to the layers: ``ir`` absolute (clears any cold
        offset beneath), ``ir_add`` a cold offset, ``vis`` colour, ``seg`` class id, ``inst`` id."""
        if ir is not None:
            draw(self.ir, float(ir))
            draw(self.ir_add, 0.0)
        if ir_add is not None:
            draw(self.ir_add, float(ir_add))
        if vis is not None:
            draw(self.albedo, tuple(float(c) for c in vis))
        if emit is not None and self.night:
            draw(self.emit, tuple(float(c) for c in emit))
        if seg is not None:
            draw(self.label, int(seg))
        if inst is not None:
            draw(self.inst, int(inst))

    def poly(self, points, **values):
        pts = [np.round(np.asarray(points, np.float64)).astype(np.int32)]
        self.paint(lambda a, c: cv2.fillPoly(a, pts, c), **values)

    def rect(self, x1, y1, x2, y2, **values):
        self.poly([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], **values)

    def circle(self, x, y, r, thickness=-1, **values):
        centre, radius = (int(round(x)), int(round(y))), max(1, int(round(r)))
        self.paint(lambda a, c: cv2.circle(a, centre, radius, c, thickness), **values)

    def line(self, p, q, thickness, **values):
        p, q = tuple(int(round(v)) for v in p), tuple(int(round(v)) for v in q)
        self.paint(lambda a, c: cv2.line(a, p, q, c, max(1, int(round(thickness)))), **values)

    def pattern(self, points, mask_fn, vis):
        """Paint visible colour ``vis`` where the polygon and ``mask_fn(shape)`` (a boolean
        pattern over the polygon's bounding box) both hold; for stripes and window grids."""
        pts = np.round(np.asarray(points, np.float64)).astype(np.int32)
        x1, y1 = np.maximum(pts.min(axis=0), 0)
        x2, y2 = np.minimum(pts.max(axis=0) + 1, (self.width, self.height))
        if x2 <= x1 or y2 <= y1:
            return
        inside = np.zeros((y2 - y1, x2 - x1), np.uint8)
        cv2.fillPoly(inside, [pts - (x1, y1)], 1)
        region = self.albedo[y1:y2, x1:x2]
        region[(inside > 0) & mask_fn(inside.shape)] = vis

    def shade_poly(self, points, factor: float):
        """A cast shadow: the visible illumination inside the polygon is scaled by ``factor``."""
        pts = [np.round(np.asarray(points, np.float64)).astype(np.int32)]
        cv2.fillPoly(self.shade, pts, float(factor))

    def jitter(self, colour, amount=18):
        return np.clip(np.asarray(colour, np.float32) + self.rng.uniform(-amount, amount, 3), 0, 255)

    # ---------------------------------------------------------------- ground plane

    def depth(self, y: float) -> float:
        """0 at the horizon, 1 at the bottom row."""
        return float(np.clip((y - self.horizon) / (self.height - self.horizon), 0.0, 1.0))

    def road_edges(self, y: float) -> tuple[float, float]:
        t = self.depth(y)
        return (self.vx + (self.road_l - self.vx) * t, self.vx + (self.road_r - self.vx) * t)

    def free(self, box, max_overlap=0.2) -> bool:
        """True (and reserve the box) when it overlaps every placed box by at most ``max_overlap``
        of the smaller one."""
        x1, y1, x2, y2 = box
        for a1, b1, a2, b2 in self.placed:
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            smaller = min((x2 - x1) * (y2 - y1), (a2 - a1) * (b2 - b1))
            if inter > max_overlap * smaller:
                return False
        self.placed.append(box)
        return True

    def new_object(self, kind: str) -> DemoObject:
        obj = DemoObject(kind, len(self.objects) + 1)
        self.objects.append(obj)
        return obj


def low_frequency(rng: np.random.Generator, height: int, width: int, cells: int = 6) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a coarse normal grid upsampled bicubically."""
    grid = rng.standard_normal((cells, cells + 2)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * 0.6


def stripes(shape: tuple[int, int], x0: int, period: int, along: str = "x") -> np.ndarray:
    """Boolean pattern of alternating stripes ``period`` pixels wide, for painted markings."""
    h, w = shape
    coords = np.arange(w if along == "x" else h) - x0
    band = (coords // max(1, period)) % 2 == 0
    return np.broadcast_to(band[None, :] if along == "x" else band[:, None], shape)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Turn the scene layers into ``(infrared H×W uint8, visible H×W×3 uint8 RGB)``."""
    rng, h, w = scene.rng, scene.height, scene.width
    ir = scene.ir + scene.ir_add + 7.0 * low_frequency(rng, h, w)
    ir = cv2.GaussianBlur(ir, (0, 0), 0.9) + 1.6 * rng.standard_normal((h, w), np.float32)

    texture = 1.0 + 0.07 * rng.standard_normal((h, w, 1), np.float32)
    if scene.night:
        light = np.full((h, w), rng.uniform(0.10, 0.20), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for x, y, radius in scene.lamps:   # pools of light on the ground under each lamp
            light += 0.75 * np.exp(-((xx - x) ** 2 / (2 * (1.2 * radius) ** 2)
                                     + (yy - y) ** 2 / (2 * radius ** 2)))
        glow = cv2.GaussianBlur(scene.emit, (0, 0), 3.0)
        vis = scene.albedo * texture * light[:, :, None] + scene.emit + 1.6 * glow
        vis += rng.uniform(5.0, 8.0) * rng.standard_normal((h, w, 3), np.float32)
    else:
        light = (1.0 + 0.12 * low_frequency(rng, h, w)) * scene.shade
        vis = scene.albedo * texture * light[:, :, None]
        vis += 2.0 * rng.standard_normal((h, w, 3), np.float32)
    to_u8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return to_u8(ir), to_u8(vis)


def object_boxes(scene: Scene, min_visible: int = 30) -> list[DemoObject]:
    """Boxes (pixel edges) of the visible extent of every labelled object; objects with fewer than
    ``min_visible`` visible pixels are dropped."""
    kept = []
    for obj in scene.objects:
        mask = scene.inst == obj.inst
        if int(mask.sum()) < min_visible:
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        obj.box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        kept.append(obj)
    return kept
