"""Procedural "toy world" scenes: the small, fully known world that the tiny
models are trained on and that every quality test measures against.

A scene is a background plus one or more flat shapes, each with a colour and
a texture. Geometry lives in normalised coordinates, so the same scene renders
at any resolution (64 px for the toy CLIP, 256 px for a Text2LIVE test), and
every object's exact coverage mask comes with the picture.

Pure NumPy (the caption templates are Text2LIVE's, imported from the engine);
deterministic for a given ``numpy.random.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Captions use Text2LIVE's own prompt templates (one list, the engine's): the
# toy CLIP sees them in training so that Text2LIVE's templated prompts mean
# what the bare text means.
from ..engine.text2live.settings import TEMPLATES

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.97, 0.52, 0.08),
    "yellow": (0.96, 0.88, 0.12),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.12, 0.25, 0.90),
    "purple": (0.55, 0.15, 0.75),
    "white": (0.97, 0.97, 0.97),
}
SHAPES = ("circle", "square", "triangle", "star")
TEXTURES = ("plain", "striped", "dotted", "checkered")
BACKGROUNDS = ("grass", "sand", "sky", "water")


@dataclass(frozen=True)
class ToyObject:
    shape: str
    colour: str
    texture: str
    cx: float  # centre, fraction of width
    cy: float  # centre, fraction of height
    size: float  # half-extent, fraction of the shorter side
    angle: float = 0.0  # radians


@dataclass(frozen=True)
class ToyScene:
    background: str
    objects: tuple[ToyObject, ...] = field(default_factory=tuple)
    seed: int = 0  # drives background noise, so a scene re-renders identically


def random_object(rng: np.random.Generator, size_range=(0.14, 0.28), **fixed) -> ToyObject:
    """A random object; keyword arguments pin any attribute."""
    attrs = dict(
        shape=str(rng.choice(SHAPES)),
        colour=str(rng.choice(list(COLOURS))),
        texture=str(rng.choice(TEXTURES)),
        size=float(rng.uniform(*size_range)),
        angle=float(rng.uniform(-0.25, 0.25)),
    )
    attrs.update(fixed)
    margin = attrs["size"] + 0.04
    attrs.setdefault("cx", float(rng.uniform(margin, 1 - margin)))
    attrs.setdefault("cy", float(rng.uniform(margin, 1 - margin)))
    return ToyObject(**attrs)


def random_scene(rng: np.random.Generator, n_objects: int = 1, distinct: bool = True,
                 size_range=(0.14, 0.28), **background) -> ToyScene:
    """A scene with ``n_objects`` non-overlapping objects.

    ``distinct`` makes objects differ in both colour and shape, so a word for
    one object never also describes the other (what relevancy tests need).
    """
    bg = background.get("background") or str(rng.choice(BACKGROUNDS))
    if n_objects > 1:  # two large objects cannot both fit
        size_range = (size_range[0], min(size_range[1], 0.21))
    for _ in range(100):
        objects: list[ToyObject] = []
        for _ in range(50):
            if len(objects) == n_objects:
                break
            obj = random_object(rng, size_range=size_range)
            if distinct and any(o.colour == obj.colour or o.shape == obj.shape for o in objects):
                continue
            if any(np.hypot(o.cx - obj.cx, o.cy - obj.cy) < (o.size + obj.size) * 1.2 for o in objects):
                continue
            objects.append(obj)
        if len(objects) == n_objects:
            break
    else:
        raise RuntimeError("could not place non-overlapping objects; use smaller sizes")
    return ToyScene(bg, tuple(objects), seed=int(rng.integers(2**31)))


# --------------------------------------------------------------------------- rendering

def _grid(height: int, width: int, supersample: int):
    """Pixel-sample coordinates in units of the shorter side, shape (H*s, W*s)."""
    s = supersample
    ys = (np.arange(height * s) + 0.5) / (height * s)
    xs = (np.arange(width * s) + 0.5) / (width * s)
    short = min(height, width)
    return np.meshgrid(xs * width / short, ys * height / short, indexing="xy")


def _polygon_inside(x, y, verts):
    """Even-odd point-in-polygon test, vectorised over pixels."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (y - y1) / (y2 - y1 + 1e-12) + x1
        inside ^= crosses & (x < xint)
    return inside


def _shape_vertices(shape: str):
    """Unit-size outline (half-extent 1) of the polygonal shapes."""
    if shape == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float) * 0.88
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(angles), np.sin(angles) + 0.2], 1) * 1.1
    if shape == "star":
        k = np.arange(10)
        radius = np.where(k % 2 == 0, 1.15, 0.5)
        angles = -np.pi / 2 + k * np.pi / 5
        return np.stack([radius * np.cos(angles), radius * np.sin(angles) + 0.1], 1)
    raise ValueError(f"unknown shape {shape!r}; allowed: {SHAPES}")


def _object_local(obj: ToyObject, x, y, aspect_x: float, aspect_y: float):
    """Sample coordinates in the object's rotated unit frame."""
    u = (x - obj.cx * aspect_x) / obj.size
    v = (y - obj.cy * aspect_y) / obj.size
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    return c * u + s * v, -s * u + c * v


def _coverage(obj: ToyObject, x, y, aspect_x, aspect_y):
    u, v = _object_local(obj, x, y, aspect_x, aspect_y)
    if obj.shape == "circle":
        return u * u + v * v <= 1.0
    return _polygon_inside(u, v, _shape_vertices(obj.shape))


def _texture(obj: ToyObject, x, y, aspect_x, aspect_y):
    """1 where the texture's dark pattern is, else 0 (in the object's frame)."""
    u, v = _object_local(obj, x, y, aspect_x, aspect_y)
    if obj.texture == "plain":
        return np.zeros_like(u)
    if obj.texture == "striped":
        return (np.floor((u + v) * 2.2) % 2).astype(float)
    if obj.texture == "dotted":
        fu, fv = (u * 2.5) % 1 - 0.5, (v * 2.5) % 1 - 0.5
        return (fu * fu + fv * fv < 0.09).astype(float)
    if obj.texture == "checkered":
        return ((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2).astype(float)
    raise ValueError(f"unknown texture {obj.texture!r}; allowed: {TEXTURES}")


def _value_noise(rng, height, width, cells):
    """Smooth noise in [0,1]: bilinear upsampling of a coarse random grid."""
    gh, gw = max(2, height // cells + 2), max(2, width // cells + 2)
    grid = rng.random((gh, gw))
    ys = np.linspace(0, gh - 1.001, height)
    xs = np.linspace(0, gw - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def render_background(name: str, height: int, width: int, seed: int) -> np.ndarray:
    """Background picture (H, W, 3) float32 in [0,1], sRGB."""
    rng = np.random.default_rng(seed)
    fine = _value_noise(rng, height, width, max(1, height // 16))
    coarse = _value_noise(rng, height, width, max(2, height // 3))
    rows = np.linspace(0, 1, height)[:, None]
    if name == "grass":
        base = np.array([0.22, 0.52, 0.16])
        img = base * (0.7 + 0.45 * fine[..., None]) + 0.05 * (coarse[..., None] - 0.5)
    elif name == "sand":
        base = np.array([0.86, 0.76, 0.52])
        img = base * (0.88 + 0.18 * fine[..., None])
    elif name == "sky":
        top, bottom = np.array([0.35, 0.6, 0.95]), np.array([0.7, 0.85, 1.0])
        img = top * (1 - rows[..., None]) + bottom * rows[..., None]
        clouds = np.clip((coarse - 0.6) * 3.0, 0, 1)[..., None]
        img = img * (1 - clouds) + clouds * 0.97
    elif name == "water":
        base = np.array([0.05, 0.22, 0.42])
        ripples = 0.5 + 0.5 * np.sin(rows * 40 + 6 * coarse)
        img = base * (0.8 + 0.35 * ripples[..., None] * fine[..., None] + 0.2 * fine[..., None])
    else:
        raise ValueError(f"unknown background {name!r}; allowed: {BACKGROUNDS}")
    return np.clip(img, 0, 1).astype(np.float32)


def render_scene(scene: ToyScene, height: int = 64, width: int | None = None,
                 supersample: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Render a scene.

    Returns ``image`` (H, W, 3) float32 sRGB in [0,1] and ``masks``
    (n_objects, H, W) float32 coverage in [0,1] (anti-aliased, later objects
    occlude earlier ones).
    """
    width = width or height
    s = supersample
    x, y = _grid(height, width, s)
    short = min(height, width)
    ax, ay = width / short, height / short
    bg = render_background(scene.background, height * s, width * s, scene.seed)
    img = bg.astype(np.float64)
    covers = []
    for obj in scene.objects:
        inside = _coverage(obj, x, y, ax, ay)
        colour = np.array(COLOURS[obj.colour])
        dark = _texture(obj, x, y, ax, ay)[..., None]
        fill = colour * (1 - 0.55 * dark)
        img = np.where(inside[..., None], fill, img)
        for prev in covers:
            prev &= ~inside
        covers.append(inside)
    img = img.reshape(height, s, width, s, 3).mean((1, 3))
    masks = np.stack([c.reshape(height, s, width, s).mean((1, 3)) for c in covers]) \
        if covers else np.zeros((0, height, width))
    return img.astype(np.float32), masks.astype(np.float32)


def with_object(scene: ToyScene, index: int, **changes) -> ToyScene:
    """The same scene with one object's attributes changed (e.g. colour)."""
    objects = list(scene.objects)
    objects[index] = replace(objects[index], **changes)
    return replace(scene, objects=tuple(objects))


# --------------------------------------------------------------------------- captions

def describe(obj: ToyObject, colour=True, shape=True, texture=True) -> str:
    words = []
    if texture and obj.texture != "plain":
        words.append(obj.texture)
    if colour:
        words.append(obj.colour)
    words.append(obj.shape if shape else "shape")
    return " ".join(words)


def random_caption(scene: ToyScene, rng: np.random.Generator) -> str:
    """A caption of random detail: partial descriptions ("a red shape", "a
    circle") teach single words; full ones teach their combinations."""
    objs = list(scene.objects)
    kind = rng.random()
    if not objs or kind < 0.06:
        text = f"{scene.background}"
    else:
        rng.shuffle(objs)
        mentioned = objs[: 1 + int(len(objs) > 1 and rng.random() < 0.45)]
        parts = []
        for obj in mentioned:
            r = rng.random()
            if r < 0.30:
                parts.append(describe(obj))
            elif r < 0.50:
                parts.append(describe(obj, texture=False))
            elif r < 0.65:
                parts.append(describe(obj, shape=False, texture=False))
            elif r < 0.80:
                parts.append(describe(obj, colour=False, texture=False))
            elif r < 0.92:
                parts.append(describe(obj, colour=False))
            else:
                parts.append(describe(obj, colour=False, shape=False)
                             if obj.texture != "plain" else describe(obj, shape=False, texture=False))
        templated = rng.random() < 0.5
        article = "" if templated and len(parts) == 1 else "a "
        text = " and ".join(f"{article}{p}" for p in parts)
        if rng.random() < 0.35:
            text += f" on {scene.background}"
        if templated:
            text = str(rng.choice(TEMPLATES)).format(text)
    return text


def render_batch(rng: np.random.Generator, count: int, size: int = 64, max_objects: int = 2):
    """``count`` random scenes: uint8 images (N, size, size, 3) and scene specs."""
    images = np.empty((count, size, size, 3), np.uint8)
    scenes = []
    for i in range(count):
        n = 1 if rng.random() < 0.6 else int(rng.integers(2, max_objects + 1))
        n = min(n, max_objects)
        scene = random_scene(rng, n_objects=n, distinct=False)
        img, _ = render_scene(scene, size, supersample=2)
        images[i] = np.round(img * 255).astype(np.uint8)
        scenes.append(scene)
    return images, scenes
