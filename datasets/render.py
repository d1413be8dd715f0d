"""A small pinhole-camera renderer for synthetic street-camera scenes.

Scenes are built from 3D primitives (cuboids, ellipsoids, cylinders, cones,
soft particles) placed in metres on a ground plane and seen by an elevated,
tilted camera, as a fixed street camera sees them. The background (road, lane
marks, kerb, pavement, facade) is ray-cast per pixel; objects are drawn with the
painter's algorithm and Lambert shading. Because every object is projected
from its own 3D vertices, its label box is exact.

World axes: X to the right, Y forward (away from the camera), Z up. The camera
stands at ``(0, 0, height)`` looking along +Y, pitched down.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]
Color = tuple[int, int, int]

NEAR = 0.3  # metres: nearer points are behind the image plane
MIN_SIDE_PX = 6.0  # smaller label boxes are dropped
MIN_IN_FRAME = 0.4  # an object mostly outside the picture is not labelled

LIGHT = np.array([0.35, -0.45, 0.82], np.float32) / np.linalg.norm([0.35, -0.45, 0.82])


@dataclass(frozen=True)
class Camera:
    """An elevated street camera.

    Attributes:
        width: Image width in pixels.
        height: Image height in pixels.
        cam_height: Mounting height in metres (street cameras: 3-8 m).
        pitch_deg: Downward tilt in degrees.
        hfov_deg: Horizontal field of view in degrees.
        yaw_deg: Rotation to the left/right in degrees.
    """

    width: int
    height: int
    cam_height: float
    pitch_deg: float
    hfov_deg: float
    yaw_deg: float = 0.0

    @property
    def focal(self) -> float:
        return self.width / 2 / math.tan(math.radians(self.hfov_deg) / 2)

    def axes(self) -> tuple[F32, F32, F32]:
        """Return the camera's right, up and forward unit vectors in world axes."""
        return self._axes

    @cached_property
    def _axes(self) -> tuple[F32, F32, F32]:
        p, y = math.radians(self.pitch_deg), math.radians(self.yaw_deg)
        fwd = np.array([math.sin(y) * math.cos(p), math.cos(y) * math.cos(p), -math.sin(p)], np.float32)
        right = np.array([math.cos(y), -math.sin(y), 0.0], np.float32)
        up = np.cross(right, fwd).astype(np.float32)
        return right, up, fwd

    def project(self, pts: F32) -> tuple[F32, F32]:
        """Project ``(n, 3)`` world points; returns ``(n, 2)`` pixels and ``(n,)`` depths."""
        right, up, fwd = self.axes()
        d = pts - np.array([0, 0, self.cam_height], np.float32)
        x, y, z = d @ right, d @ up, d @ fwd
        zc = np.maximum(z, 1e-3)
        f = self.focal
        uv = np.stack([self.width / 2 + f * x / zc, self.height / 2 - f * y / zc], axis=1)
        return uv.astype(np.float32), z.astype(np.float32)

    def rays(self) -> F32:
        """Return per-pixel world ray directions ``(h, w, 3)``."""
        right, up, fwd = self.axes()
        u = (np.arange(self.width, dtype=np.float32) + 0.5 - self.width / 2) / self.focal
        v = (self.height / 2 - np.arange(self.height, dtype=np.float32) - 0.5) / self.focal
        uu, vv = np.meshgrid(u, v)
        return uu[..., None] * right + vv[..., None] * up + fwd

    def ground_visible_y(self) -> tuple[float, float]:
        """Return the nearest and a sensible farthest ground distance (metres) seen by the camera."""
        half_v = math.atan(self.height / 2 / self.focal)
        low = math.radians(self.pitch_deg) + half_v
        near = self.cam_height / math.tan(min(low, math.radians(89)))
        high = math.radians(self.pitch_deg) - half_v
        far = self.cam_height / math.tan(high) if high > math.radians(2) else 60.0
        return near, min(far, 60.0)


@dataclass
class Part:
    """One drawable face set: polygons in world coordinates with a base colour."""

    faces: list[F32]
    color: Color
    texture: float = 0.0  # amplitude of per-face noise
    alpha: float = 1.0
    emissive: bool = False


@dataclass
class Obj:
    """A scene object: parts plus an optional label name."""

    label: str | None
    parts: list[Part] = field(default_factory=list)
    seed: int | None = None  # fixes the texture noise (clips keep an object's look across frames)
    soft: list[tuple[F32, float, Color, float]] = field(default_factory=list)  # centre, radius, colour, alpha

    def points(self) -> F32:
        pts = [f for p in self.parts for f in p.faces]
        half = [np.array([r, 0, r], np.float32) for _, r, _, _ in self.soft]
        pts += [np.stack([c - h, c + h]).astype(np.float32) for (c, _, _, _), h in zip(self.soft, half, strict=True)]
        return np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 3), np.float32)

    def center(self) -> F32:
        return np.asarray(self.points().mean(axis=0), np.float32)


def cuboid(x: float, y: float, z: float, sx: float, sy: float, sz: float, color: Color,
           texture: float = 8.0, yaw: float = 0.0, top: bool = True) -> Part:
    """A box with its bottom centre at ``(x, y, z)`` and size ``sx, sy, sz`` metres."""
    c, s = math.cos(yaw), math.sin(yaw)
    corners = []
    for dz in (0.0, sz):
        for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            lx, ly = dx * sx / 2, dy * sy / 2
            corners.append((x + c * lx - s * ly, y + s * lx + c * ly, z + dz))
    v = np.array(corners, np.float32)
    idx = [(0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7), (0, 1, 2, 3)]
    if top:
        idx.append((4, 5, 6, 7))
    return Part([v[list(i)] for i in idx], color, texture)


def ellipsoid(x: float, y: float, z: float, rx: float, ry: float, rz: float, color: Color,
              texture: float = 10.0, n: int = 8) -> Part:
    """An ellipsoid centred at ``(x, y, z)``, as a faceted mesh of quads."""
    faces = []
    th = np.linspace(0, math.pi, n // 2 + 1)
    ph = np.linspace(0, 2 * math.pi, n + 1)
    for i in range(len(th) - 1):
        for j in range(len(ph) - 1):
            quad = []
            for a, b in ((i, j), (i, j + 1), (i + 1, j + 1), (i + 1, j)):
                quad.append((x + rx * math.sin(th[a]) * math.cos(ph[b]),
                             y + ry * math.sin(th[a]) * math.sin(ph[b]),
                             z + rz * math.cos(th[a])))
            faces.append(np.array(quad, np.float32))
    return Part(faces, color, texture)


def cylinder(x: float, y: float, z: float, r: float, h: float, color: Color, n: int = 12,
             texture: float = 6.0, top: bool = True) -> Part:
    """A vertical cylinder with its bottom centre at ``(x, y, z)``."""
    ang = np.linspace(0, 2 * math.pi, n + 1)
    faces = []
    for a0, a1 in itertools.pairwise(ang):
        p0 = (x + r * math.cos(a0), y + r * math.sin(a0))
        p1 = (x + r * math.cos(a1), y + r * math.sin(a1))
        faces.append(np.array([(*p0, z), (*p1, z), (*p1, z + h), (*p0, z + h)], np.float32))
    if top:
        faces.append(np.array([(x + r * math.cos(a), y + r * math.sin(a), z + h) for a in ang[:-1]], np.float32))
    return Part(faces, color, texture)


def cone(x: float, y: float, z: float, r: float, h: float, color: Color, n: int = 12,
         stripes: Color | None = None) -> list[Part]:
    """An umbrella-like cone: base circle at height ``z``, apex ``h`` above it."""
    ang = np.linspace(0, 2 * math.pi, n + 1)
    parts: list[Part] = []
    for k, (a0, a1) in enumerate(itertools.pairwise(ang)):
        tri = np.array([(x + r * math.cos(a0), y + r * math.sin(a0), z),
                        (x + r * math.cos(a1), y + r * math.sin(a1), z), (x, y, z + h)], np.float32)
        col = stripes if (stripes is not None and k % 2) else color
        parts.append(Part([tri], col, 5.0))
    return parts


def plume(rng: np.random.Generator, x: float, y: float, z: float, height: float, grey: int,
          density: float) -> list[tuple[F32, float, Color, float]]:
    """Soft particles of a rising, drifting smoke plume."""
    drift = rng.uniform(-0.6, 0.6)
    out = []
    n = int(10 + 14 * density)
    for i in range(n):
        t = (i + rng.uniform()) / n
        c = np.array([x + drift * t * height + rng.normal(0, 0.1), y + rng.normal(0, 0.1), z + t * height], np.float32)
        r = 0.15 + 0.55 * t * height / 2
        g = int(np.clip(grey + rng.normal(0, 12), 60, 250))
        out.append((c, r, (g, g, g), float(density * (0.55 - 0.35 * t))))
    return out


def _shade(color: Color, normal: F32, texture_seed: float) -> Color:
    lam = 0.55 + 0.45 * abs(float(normal @ LIGHT))
    return tuple(int(np.clip(c * lam + texture_seed, 0, 255)) for c in color)  # type: ignore[return-value]


def render_background(cam: Camera, rng: np.random.Generator, road_x: float, road_w: float,
                      walk_w: float, palette: dict[str, Color]) -> Image:
    """Ray-cast the road, pavement and facade for every pixel."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _background(cam, cam.rays(), road_x, road_w, walk_w, palette, rng)


def _background(cam: Camera, rays: F32, road_x: float, road_w: float, walk_w: float,
                palette: dict[str, Color], rng: np.random.Generator) -> Image:
    h = cam.cam_height
    img = np.zeros((cam.height, cam.width, 3), np.float32)
    sky = np.array(palette["sky"], np.float32)
    img[:] = sky
    # Facade: a vertical plane at X = wall_x behind the pavement; the rest is ground.
    wall_x = road_x + road_w / 2 + walk_w
    t_wall = np.where(rays[..., 0] > 1e-4, wall_x / rays[..., 0], np.inf)
    t_ground = np.where(rays[..., 2] < -1e-4, -h / rays[..., 2], np.inf)
    gx, gy = rays[..., 0] * t_ground, rays[..., 1] * t_ground
    wz = h + rays[..., 2] * t_wall
    wy = rays[..., 1] * t_wall
    use_wall = (t_wall < t_ground) & (wz > 0) & (wz < 25)
    use_ground = np.isfinite(t_ground) & ~use_wall
    noise = rng.normal(0, 1, img.shape[:2]).astype(np.float32)
    # Ground colouring.
    on_road = np.abs(gx - road_x) < road_w / 2
    ground = np.where(on_road[..., None], np.array(palette["road"], np.float32),
                      np.array(palette["walk"], np.float32))
    tiles = ((np.floor(gx / 0.6) + np.floor(gy / 0.6)) % 2 == 0) & ~on_road
    ground = ground + tiles[..., None] * 10.0
    kerb = (np.abs(np.abs(gx - road_x) - road_w / 2) < 0.15)
    ground = np.where(kerb[..., None], np.array(palette["kerb"], np.float32), ground)
    lane = (np.abs(gx - road_x) < 0.08) & ((gy % 6.0) < 3.0)
    ground = np.where(lane[..., None], np.array((225, 225, 225), np.float32), ground)
    dist = np.clip(t_ground, 0, 200)
    haze = np.clip(dist / 120.0, 0, 0.6)[..., None]
    ground = ground * (1 - haze) + sky * haze
    img = np.where(use_ground[..., None], ground + noise[..., None] * 6, img)
    # Facade with windows and shop fronts.
    wall = np.array(palette["wall"], np.float32) + np.zeros_like(img)
    win = ((wy % 3.5) < 1.8) & ((wz % 3.2) > 1.2) & ((wz % 3.2) < 2.6) & (wz > 3.2)
    shop = (wz < 2.8) & ((wy % 7.0) < 5.0)
    wall = np.where(win[..., None], np.array(palette["window"], np.float32), wall)
    wall = np.where(shop[..., None], np.array(palette["shop"], np.float32), wall)
    img = np.where(use_wall[..., None], wall + noise[..., None] * 4, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_objects(img: Image, cam: Camera, objs: list[Obj], rng: np.random.Generator
                 ) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Draw objects far-to-near and return label boxes ``(name, (x1, y1, x2, y2))`` of visible ones."""
    boxes: list[tuple[str, tuple[float, float, float, float]]] = []
    order = sorted(objs, key=lambda o: -float(o.center()[1]))
    base = int(rng.integers(1 << 30))
    for obj in order:
        # Texture noise seeded by the object's own geometry: an object keeps its look when others
        # come or go (a re-rendered static scene must not change what stays in it).
        ident = obj.seed if obj.seed is not None else int(abs(float(obj.points().sum())) * 1000) % (1 << 31)
        obj_rng = np.random.default_rng((base, ident))
        faces: list[tuple[float, F32, Part]] = []
        for part in obj.parts:
            for f in part.faces:
                faces.append((float(cam.project(f)[1].mean()), f, part))
        faces.sort(key=lambda t: -t[0])
        for _, f, part in faces:
            uv, z = cam.project(f)
            if (z <= 0.3).any():
                continue
            n = np.cross(f[1] - f[0], f[2] - f[0])
            n = n / (np.linalg.norm(n) + 1e-9)
            col = part.color if part.emissive else _shade(part.color, n.astype(np.float32),
                                                          obj_rng.normal(0, part.texture))
            poly = np.round(uv * 16).astype(np.int32)
            if part.alpha >= 1:
                cv2.fillPoly(img, [poly], col, lineType=cv2.LINE_AA, shift=4)
            else:
                over = img.copy()
                cv2.fillPoly(over, [poly], col, lineType=cv2.LINE_AA, shift=4)
                cv2.addWeighted(over, part.alpha, img, 1 - part.alpha, 0, dst=img)
        for c, r, col, a in obj.soft:
            uv, z = cam.project(c[None])
            if z[0] <= 0.3:
                continue
            rad = max(1, int(cam.focal * r / z[0]))
            over = np.zeros_like(img)
            centre = (int(uv[0, 0]), int(uv[0, 1]))
            cv2.circle(over, centre, rad, col, -1, lineType=cv2.LINE_AA)
            disc = np.zeros(img.shape[:2], np.uint8)
            cv2.circle(disc, centre, rad, (255,), -1, lineType=cv2.LINE_AA)
            k = max(3, rad // 2 * 2 + 1)
            mask = cv2.GaussianBlur(disc, (k, k), 0).astype(np.float32) * (a / 255.0)
            img[:] = (img * (1 - mask[..., None]) + over * mask[..., None]).astype(np.uint8)
        if obj.label is None:
            continue
        box = labelled_box(cam, obj.points())
        if box is not None:
            boxes.append((obj.label, box))
    return boxes


def frame_box(cam: Camera, pts: F32) -> tuple[tuple[float, float, float, float], float] | None:
    """Projected box of ``pts`` clipped to the picture, and the share of the full box that is inside it.

    ``None`` when a point is behind (or too close to) the camera.
    """
    uv, z = cam.project(pts)
    if (z <= NEAR).any():
        return None
    x1, y1 = uv.min(axis=0)
    x2, y2 = uv.max(axis=0)
    box = (max(0.0, float(x1)), max(0.0, float(y1)), min(float(cam.width), float(x2)),
           min(float(cam.height), float(y2)))
    full = max(1e-6, float((x2 - x1) * (y2 - y1)))
    return box, max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]) / full


def labelled_box(cam: Camera, pts: F32) -> tuple[float, float, float, float] | None:
    """The label box of an object made of ``pts``: none when it is tiny or mostly outside the picture."""
    found = frame_box(cam, pts)
    if found is None:
        return None
    (x1, y1, x2, y2), share = found
    if x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX or share < MIN_IN_FRAME:
        return None
    return x1, y1, x2, y2
