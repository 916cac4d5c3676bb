"""A synthetic image-text world in which segmentation can emerge from captions alone.

Each scene holds one to four objects (a shape kind and a colour) at random positions, sizes and
overlaps on a textured or noisy background. Its caption names some or all of the visible objects in
varied natural language (relations, counts, distractor words); its ground-truth mask labels every
pixel with the shape kind drawn there (0 = background), for zero-shot evaluation only. Options
(``WorldConfig``) name the background with nouns that become prompt words, or add empty training
scenes captioned by their background alone. Everything is a deterministic function of
(seed, split, index).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLORS = {
    "red": (215, 35, 35), "green": (35, 170, 55), "blue": (40, 70, 215),
    "yellow": (235, 215, 30), "purple": (140, 50, 195), "orange": (245, 135, 20),
}
BACKGROUNDS = ("noise", "stripes", "checkerboard", "gradient", "plain")
PLURAL = {s: s + "s" for s in SHAPES}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  image_size: int = 64
  min_objects: int = 1
  max_objects: int = 4
  min_size: float = 0.22  # object diameter as a fraction of the image side
  max_size: float = 0.45
  min_visible: float = 0.4  # an object named in a caption keeps >= this fraction of its pixels
  max_rotation: float = 0.0  # objects turn by U(-r, r) radians (0: upright shapes)
  name_all: float = 0.0  # probability that a caption names every visible object
  describe_background: float = 0.0  # probability that a caption describes the background
  color_mention: float = 1.0  # probability that an object phrase says the object's colour
  # Background descriptions name the background with a noun ("on a checkerboard") rather than an
  # adjective ("on a checkered background"), so the background kinds become prompt words and
  # can be named like stuff classes (``STUFF_NAMES``).
  background_nouns: bool = False
  # Fraction of *training* scenes that hold no object, captioned by their background alone
  # ("a checkerboard, nothing else"): the only place where background is seen without a shape,
  # so background looking like a shape costs the losses something. Val and test scenes always
  # hold min_objects to max_objects.
  empty_scenes: float = 0.0
  # Colours each shape kind is drawn in (None: any of ``colors``). A world where kinds have their
  # own colours, as many real categories do, lets a small model learn the kind names from colour.
  kind_colors: tuple[tuple[str, tuple[str, ...]], ...] | None = None
  shapes: tuple[str, ...] = SHAPES
  colors: tuple[str, ...] = tuple(COLORS)

  def to_dict(self) -> dict:
    """JSON-ready fields (tuples as lists), as world.json and the demo's metrics store them."""
    return json.loads(json.dumps(dataclasses.asdict(self)))

  @property
  def class_names(self) -> tuple[str, ...]:
    """Segmentation classes: background, then the shape kinds (label i = class_names[i])."""
    return ("background",) + tuple(self.shapes)


@dataclasses.dataclass
class SceneObject:
  shape: str
  color: str
  cx: float
  cy: float
  size: float
  angle: float
  visible_fraction: float = 1.0


@dataclasses.dataclass
class Scene:
  image: np.ndarray  # [H, W, 3] uint8
  mask: np.ndarray  # [H, W] uint8: 0 background, i = shapes[i - 1]
  objects: list[SceneObject]
  background: str
  caption: str


# ---- geometry ---------------------------------------------------------------------------------------


def _polygon(obj: SceneObject) -> list[tuple[float, float]]:
  r = obj.size / 2
  if obj.shape == "square":
    pts = [(-r, -r), (r, -r), (r, r), (-r, r)]
  elif obj.shape == "triangle":
    pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
  elif obj.shape == "star":
    pts = []
    for k in range(10):
      rr = r if k % 2 == 0 else 0.45 * r
      a = -math.pi / 2 + k * math.pi / 5
      pts.append((rr * math.cos(a), rr * math.sin(a)))
  else:
    raise ValueError(obj.shape)
  c, s = math.cos(obj.angle), math.sin(obj.angle)
  return [(obj.cx + x * c - y * s, obj.cy + x * s + y * c) for x, y in pts]


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, fill) -> None:
  if obj.shape == "circle":
    r = obj.size / 2
    draw.ellipse([obj.cx - r, obj.cy - r, obj.cx + r, obj.cy + r], fill=fill)
  else:
    draw.polygon(_polygon(obj), fill=fill)


# ---- backgrounds ------------------------------------------------------------------------------------


def _muted(rng: np.random.Generator) -> np.ndarray:
  """A low-saturation colour, so backgrounds never look like object colours."""
  gray = rng.uniform(70, 200)
  return np.clip(gray + rng.normal(0, 12, 3), 0, 255)


def _background(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
  yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
  a, b = _muted(rng), _muted(rng)
  if kind == "noise":
    t = rng.uniform(0, 1, (n, n))[..., None]
  elif kind == "stripes":
    ang = rng.uniform(0, math.pi)
    period = rng.uniform(5, 14)
    t = ((np.cos(ang) * xx + np.sin(ang) * yy) // (period / 2) % 2)[..., None]
  elif kind == "checkerboard":
    cell = int(rng.integers(5, 13))
    t = (((xx // cell) + (yy // cell)) % 2)[..., None]
  elif kind == "gradient":
    ang = rng.uniform(0, 2 * math.pi)
    t = (np.cos(ang) * xx + np.sin(ang) * yy)
    t = ((t - t.min()) / max(np.ptp(t), 1e-6))[..., None]
  else:
    t = np.zeros((n, n, 1))
  img = a * (1 - t) + b * t + rng.normal(0, 6, (n, n, 3))
  return np.clip(img, 0, 255)


# ---- captions ---------------------------------------------------------------------------------------

_OPENERS = ("", "", "", "a picture of ", "an image showing ", "a drawing with ", "here is ",
            "a simple sketch of ", "look at ", "a photo of ", "this shows ", "a cute painting of ")
_CLOSERS = ("", "", "", "", " on a {bg} background", " in the picture", ", drawn quickly",
            ", nothing else", " and some texture", " today", " on the {bg} wall")
_BACKGROUND_PHRASES = (" on a {bg} background", " against a {bg} backdrop", ", {bg} background",
                       " on {bg} ground", " over a {bg} background")
BACKGROUND_WORDS = {"noise": "noisy", "stripes": "striped", "checkerboard": "checkered",
                    "gradient": "shaded", "plain": "plain"}
# With ``background_nouns``: each background kind's stuff name (its class name in a vocabulary)
# and the noun phrase a caption uses for it.
STUFF_NAMES = {"noise": "noise", "stripes": "stripes", "checkerboard": "checkerboard",
               "gradient": "gradient", "plain": "wall"}
_STUFF_PHRASES = {"noise": "noise", "stripes": "stripes", "checkerboard": "a checkerboard",
                  "gradient": "a gradient", "plain": "a plain wall"}
_STUFF_CLOSERS = (" on {p}", " over {p}", " in front of {p}", " against {p}", ", {p} behind")
_RELATIONS = (("above", lambda a, b: a.cy < b.cy - 6), ("below", lambda a, b: a.cy > b.cy + 6),
              ("left of", lambda a, b: a.cx < b.cx - 6), ("right of", lambda a, b: a.cx > b.cx + 6),
              ("next to", lambda a, b: True), ("and", lambda a, b: True))


def _maybe_capitalised(rng: np.random.Generator, text: str) -> str:
  return text[0].upper() + text[1:] if rng.integers(0, 2) else text


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _np(obj: SceneObject, rng: np.random.Generator, with_color: bool = True) -> str:
  words = f"{obj.color} {obj.shape}" if with_color else obj.shape
  return f"{_article(words)} {words}"


def make_caption(rng: np.random.Generator, objects: list[SceneObject], background: str,
                 name_all: float = 0.0, describe_background: float = 0.0,
                 color_mention: float = 1.0, background_nouns: bool = False) -> str:
  """Names some or all visible objects; every named (colour, shape) is in the image."""

  def say(o: SceneObject) -> str:  # an object phrase; the colour is said with p=color_mention
    return _np(o, rng, with_color=color_mention >= 1 or rng.random() < color_mention)

  visible = [o for o in objects if o.visible_fraction > 0]
  if name_all > 0 and rng.random() < name_all:
    named = list(visible)
  else:
    named = [visible[i] for i in sorted(rng.choice(len(visible), rng.integers(1, len(visible) + 1),
                                                   replace=False))]
  style = rng.integers(0, 4)
  count_colors = style != 1 or color_mention >= 1 or rng.random() < color_mention
  groups: dict[tuple[str | None, str], int] = {}
  for o in named:
    key = (o.color if count_colors else None, o.shape)
    groups[key] = groups.get(key, 0) + 1
  if style == 0 and len(named) >= 2:  # a relation between two named objects
    a, b = named[0], named[1]
    rel = [r for r, ok in _RELATIONS if ok(a, b)]
    phrase = f"{say(a)} {rel[rng.integers(len(rel))]} {say(b)}"
    rest = named[2:]
    if rest:
      phrase += " with " + " and ".join(say(o) for o in rest)
  elif style == 1 and any(n > 1 for n in groups.values()):  # counts
    parts = []
    for (color, shape), n in groups.items():
      words = f"{color} {shape}" if color else shape
      plural = f"{color} {PLURAL[shape]}" if color else PLURAL[shape]
      parts.append(f"{NUMBER_WORDS[n]} {plural}" if n > 1 else f"{_article(words)} {words}")
    phrase = " and ".join(parts)
  elif style == 2:  # shapes only, colours omitted for some
    phrase = " and ".join(
        _np(o, rng, with_color=bool(rng.integers(0, 2)) and (
            color_mention >= 1 or rng.random() < color_mention)) for o in named)
  else:
    phrase = ", ".join(say(o) for o in named[:-1])
    phrase = (phrase + " and " if phrase else "") + say(named[-1])
  opener = _OPENERS[rng.integers(len(_OPENERS))]
  describe = describe_background > 0 and rng.random() < describe_background
  if describe and background_nouns:
    closer = _STUFF_CLOSERS[rng.integers(len(_STUFF_CLOSERS))].format(
        p=_STUFF_PHRASES[background])
  elif describe:
    closer = _BACKGROUND_PHRASES[rng.integers(len(_BACKGROUND_PHRASES))].format(
        bg=BACKGROUND_WORDS[background])
  else:
    closer = _CLOSERS[rng.integers(len(_CLOSERS))].format(bg=background)
  text = opener + phrase + closer
  return _maybe_capitalised(rng, text)


_EMPTY_OPENERS = ("", "", "a picture of ", "just ", "nothing but ", "an empty picture of ",
                  "a photo of ")
_EMPTY_CLOSERS = ("", "", ", nothing else", " and no shapes", ", empty")


def empty_caption(rng: np.random.Generator, background: str, background_nouns: bool) -> str:
  """The caption of a scene without objects: its background, and no shape word."""
  what = (_STUFF_PHRASES[background] if background_nouns
          else f"{_article(BACKGROUND_WORDS[background])} {BACKGROUND_WORDS[background]} background")
  text = (_EMPTY_OPENERS[rng.integers(len(_EMPTY_OPENERS))] + what
          + _EMPTY_CLOSERS[rng.integers(len(_EMPTY_CLOSERS))])
  return _maybe_capitalised(rng, text)


# ---- scenes -----------------------------------------------------------------------------------------


def _with_sensor_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  """[n, n, 3] float image -> uint8, with N(0, 4) pixel noise (a camera's, so no area is flat)."""
  return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, cfg: WorldConfig, allow_empty: bool = False) -> Scene:
  """One scene; with ``allow_empty`` (training scenes), empty with probability
  ``cfg.empty_scenes``."""
  n = cfg.image_size
  background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
  if allow_empty and cfg.empty_scenes > 0 and rng.random() < cfg.empty_scenes:
    image = _with_sensor_noise(rng, _background(rng, background, n))
    return Scene(image=image, mask=np.zeros((n, n), np.uint8), objects=[], background=background,
                 caption=empty_caption(rng, background, cfg.background_nouns))
  canvas = Image.fromarray(_background(rng, background, n).astype(np.uint8))
  mask_img = Image.new("L", (n, n), 0)
  owner = Image.new("L", (n, n), 0)  # which object (1-based) owns each pixel
  draw, draw_mask, draw_owner = ImageDraw.Draw(canvas), ImageDraw.Draw(mask_img), ImageDraw.Draw(owner)
  objects, areas = [], []
  for k in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
    size = rng.uniform(cfg.min_size, cfg.max_size) * n
    shape = cfg.shapes[rng.integers(len(cfg.shapes))]
    palette = dict(cfg.kind_colors)[shape] if cfg.kind_colors else cfg.colors
    obj = SceneObject(shape=shape, color=palette[rng.integers(len(palette))],
                      cx=rng.uniform(size / 2, n - size / 2), cy=rng.uniform(size / 2, n - size / 2),
                      size=size, angle=rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    tint = np.clip(np.array(COLORS[obj.color]) + rng.normal(0, 10, 3), 0, 255).astype(int)
    _draw(draw, obj, tuple(tint))
    _draw(draw_mask, obj, 1 + cfg.shapes.index(obj.shape))
    _draw(draw_owner, obj, k + 1)
    solo = Image.new("L", (n, n), 0)
    _draw(ImageDraw.Draw(solo), obj, 1)
    areas.append(max(int(np.asarray(solo).sum()), 1))
    objects.append(obj)
  owners = np.asarray(owner)
  for k, obj in enumerate(objects):
    frac = float((owners == k + 1).sum()) / areas[k]
    obj.visible_fraction = frac if frac >= cfg.min_visible else 0.0
  if not any(o.visible_fraction > 0 for o in objects):  # keep the top object nameable
    objects[-1].visible_fraction = 1.0
  image = _with_sensor_noise(rng, np.asarray(canvas, np.float32))  # drawn before the caption
  return Scene(image=image, mask=np.asarray(mask_img).copy(), objects=objects,
               background=background, caption=make_caption(rng, objects, background, cfg.name_all,
                                            cfg.describe_background, cfg.color_mention,
                                            cfg.background_nouns))


# Each shape kind in its own colours (red or orange circles, blue or purple squares, green
# triangles, yellow stars).
KIND_COLORS = (("circle", ("red", "orange")), ("square", ("blue", "purple")),
               ("triangle", ("green",)), ("star", ("yellow",)))

# Named worlds (``WORLDS``), tuned so that segments can emerge and be named within ~1k steps of
# a small model on a CPU (experiments/results/shapes_demo_notes.md).
# Larger objects, captions that name every object more often and mostly describe the background,
# and shape kinds with their own colours.
COLOURED_KINDS_WORLD = WorldConfig(min_size=0.3, max_size=0.5, min_visible=0.6, name_all=0.7,
                                   describe_background=0.6, kind_colors=KIND_COLORS)
# The same, with the background named with nouns ("... in front of a checkerboard": the background
# kinds are words too), described more often, and 20% of training scenes without objects.
NAMED_BACKGROUNDS_WORLD = dataclasses.replace(COLOURED_KINDS_WORLD, describe_background=0.8,
                                              background_nouns=True, empty_scenes=0.2)
# ``any_colour_world`` is a world with every shape in any colour: there the kind names can only be
# learnt from geometry.
def any_colour_world(cfg: WorldConfig = COLOURED_KINDS_WORLD) -> WorldConfig:
  return dataclasses.replace(cfg, kind_colors=None)


# The named-backgrounds world with every shape in any colour: a patch's colour no longer names its
# class, so a purely local labeller cannot name the shapes (the reference preset's world).
ANY_COLOUR_WORLD = any_colour_world(NAMED_BACKGROUNDS_WORLD)
WORLDS = {"coloured_kinds": COLOURED_KINDS_WORLD, "named_backgrounds": NAMED_BACKGROUNDS_WORLD,
          "any_colour": ANY_COLOUR_WORLD}
# The world of ``make demo`` (groupvit_jax/shapes_config.py PRESETS["demo"]).
DEMO_WORLD = NAMED_BACKGROUNDS_WORLD




SPLITS = {"train": 0, "val": 1, "test": 2}  # independent random streams per split


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, SPLITS[split], index])


def generate(cfg: WorldConfig, seed: int, index: int, split: str = "train") -> Scene:
  """Scene ``index`` of ``split`` in the world with ``seed`` (deterministic, order-independent)."""
  return render_scene(scene_rng(seed, split, index), cfg, allow_empty=split == "train")
