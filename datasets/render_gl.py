"""OpenGL renderer for synthetic street scenes (Mesa llvmpipe on a CPU, or a GPU), via moderngl/EGL.

It draws the same scene description as :mod:`datasets.render` (objects made of
polygons in world metres, seen by :class:`~datasets.render.Camera`), but with a
real rasteriser instead of the painter's algorithm:

- a depth buffer, so interpenetrating and overlapping objects occlude each
  other correctly (the painter's algorithm sorts whole faces and gets crossing
  geometry wrong);
- an object-id buffer, so each label box is the tight box of the object's
  *visible* pixels, and an occlusion query gives the object's full silhouette,
  so an object hidden behind a truck is not labelled (the painter's renderer
  labels it from its projected vertices, visible or not);
- sun and sky lighting with a random sun direction, planar cast shadows on the
  ground, procedural surface grain, camera-facing soft particles for smoke,
  and 2x supersampling for anti-aliased edges.

``bench/README.md`` and ``bench/results/render.json`` hold the measured
comparison (speed per image, label errors of the painter's renderer).
The context is created once per process with ``backend='egl'``; where no EGL
driver exists :func:`get_renderer` raises :class:`RendererUnavailable` and
callers fall back to the painter's renderer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from datasets.render import MIN_IN_FRAME, MIN_SIDE_PX, NEAR, Camera, Image, Obj, frame_box, labelled_box

if TYPE_CHECKING:
    import moderngl

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
SUPERSAMPLE = 2
FAR = 500.0
MIN_VISIBLE = 0.35  # keep a label when at least this share of the object's silhouette is visible

_VERTEX = """
#version 330
uniform vec3 cam_pos; uniform vec3 right; uniform vec3 up; uniform vec3 fwd;
uniform vec2 focal; uniform vec2 depth_ab;
uniform vec3 shadow_dir; uniform int shadow;
in vec3 in_pos; in vec3 in_nrm; in vec3 in_col; in vec3 in_mat; in float in_id;
out vec3 v_pos; out vec3 v_nrm; out vec3 v_col; out vec3 v_mat; flat out float v_id;
void main() {
    vec3 p = in_pos;
    if (shadow == 1) { p = p - shadow_dir * (p.z / shadow_dir.z); p.z = 0.0; }
    vec3 d = p - cam_pos;
    float z = dot(d, fwd);
    gl_Position = vec4(focal.x * dot(d, right), focal.y * dot(d, up), depth_ab.x * z + depth_ab.y, z);
    v_pos = p; v_nrm = in_nrm; v_col = in_col; v_mat = in_mat; v_id = in_id;
}
"""

_FRAGMENT = """
#version 330
uniform vec3 cam_pos; uniform vec3 light; uniform vec3 sun_col; uniform float ambient; uniform int shadow;
in vec3 v_pos; in vec3 v_nrm; in vec3 v_col; in vec3 v_mat;   // mat: alpha, emissive, texture amplitude
layout(location = 0) out vec4 f_col;
layout(location = 1) out float f_id;
flat in float v_id;
float hash(vec3 p) { return fract(sin(dot(p, vec3(12.9898, 78.233, 37.719))) * 43758.5453); }
float vnoise(vec3 p) {
    vec3 i = floor(p); vec3 f = fract(p); f = f * f * (3.0 - 2.0 * f);
    float a = mix(mix(hash(i), hash(i + vec3(1, 0, 0)), f.x),
                  mix(hash(i + vec3(0, 1, 0)), hash(i + vec3(1, 1, 0)), f.x), f.y);
    float b = mix(mix(hash(i + vec3(0, 0, 1)), hash(i + vec3(1, 0, 1)), f.x),
                  mix(hash(i + vec3(0, 1, 1)), hash(i + vec3(1, 1, 1)), f.x), f.y);
    return mix(a, b, f.z);
}
void main() {
    if (shadow == 1) { f_col = vec4(1.0); f_id = 0.0; return; }
    vec3 n = normalize(v_nrm);
    if (dot(n, cam_pos - v_pos) < 0.0) n = -n;
    float sky = 0.5 + 0.5 * n.z;
    vec3 lit = v_col * (ambient * (0.75 + 0.25 * sky) + sun_col * max(dot(n, light), 0.0));
    float amp = v_mat.z / 255.0;
    float grain = (vnoise(v_pos * 23.0) - 0.5) * 2.0 * amp + (vnoise(v_pos * 5.0) - 0.5) * amp;
    vec3 c = v_mat.y > 0.5 ? v_col : lit + grain;
    f_col = vec4(clamp(c, 0.0, 1.0) * v_mat.x, v_mat.x);
    f_id = v_mat.x >= 1.0 ? v_id : 0.0;
}
"""

_PARTICLE_VERTEX = """
#version 330
uniform vec3 cam_pos; uniform vec3 right; uniform vec3 up; uniform vec3 fwd;
uniform vec2 focal; uniform vec2 depth_ab;
in vec3 in_pos; in vec2 in_uv; in vec4 in_col;
out vec2 v_uv; out vec4 v_col;
void main() {
    vec3 d = in_pos - cam_pos;
    float z = dot(d, fwd);
    gl_Position = vec4(focal.x * dot(d, right), focal.y * dot(d, up), depth_ab.x * z + depth_ab.y, z);
    v_uv = in_uv; v_col = in_col;
}
"""

_PARTICLE_FRAGMENT = """
#version 330
in vec2 v_uv; in vec4 v_col;
layout(location = 0) out vec4 f_col;
void main() {
    float r2 = dot(v_uv, v_uv);
    if (r2 > 1.0) discard;
    float a = v_col.a * exp(-3.0 * r2);
    f_col = vec4(v_col.rgb * a, a);
}
"""


class RendererUnavailable(RuntimeError):
    """No OpenGL context could be created (no EGL driver, or moderngl not installed)."""


@dataclass(frozen=True)
class Light:
    """Scene lighting.

    Attributes:
        direction: Unit vector towards the sun (world axes, Z up).
        sun: Sun strength (0 at night).
        ambient: Sky and bounce light.
        shadow: Darkening of the ground in full shadow (0..1).
        tint: Sun colour multiplier (B, G, R).
    """

    direction: tuple[float, float, float] = (0.35, -0.45, 0.82)
    sun: float = 0.55
    ambient: float = 0.55
    shadow: float = 0.35
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @staticmethod
    def sample(rng: np.random.Generator) -> Light:
        """Draw a daylight sun: azimuth anywhere, elevation 20-75 degrees, some haze."""
        az, el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(20, 75))
        d = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
        overcast = rng.uniform() < 0.3
        sun = float(rng.uniform(0.15, 0.3) if overcast else rng.uniform(0.45, 0.7))
        warm = float(rng.uniform(0.0, 0.12))
        return Light(direction=d, sun=sun, ambient=float(rng.uniform(0.5, 0.65)),
                     shadow=float(0.12 if overcast else rng.uniform(0.3, 0.5)), tint=(1.0 - warm, 1.0, 1.0 + warm))


@dataclass
class _Geometry:
    tris: npt.NDArray[np.float32]  # (n_vertices, 13): pos 3, normal 3, colour 3, alpha/emissive/texture 3, id 1
    ranges: dict[int, tuple[int, int]]  # object id -> (first vertex, vertex count) of its opaque triangles
    particles: npt.NDArray[np.float32]  # (n_vertices, 9): pos 3, uv 2, colour+alpha 4
    particle_boxes: dict[int, list[tuple[npt.NDArray[np.float32], float]]]


class GLRenderer:
    """Renders scene objects onto a background image with OpenGL; one instance per process."""

    def __init__(self) -> None:
        try:
            import moderngl
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RendererUnavailable("moderngl is not installed (pip install moderngl)") from exc
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")  # type: ignore[arg-type]
        except Exception as exc:
            raise RendererUnavailable(f"no OpenGL context through EGL: {exc}") from exc
        self.info = f"{self.ctx.info.get('GL_RENDERER', '?')}, {self.ctx.info.get('GL_VERSION', '?')}"
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.particle_prog = self.ctx.program(vertex_shader=_PARTICLE_VERTEX, fragment_shader=_PARTICLE_FRAGMENT)
        self._size: tuple[int, int] | None = None
        log.info("OpenGL renderer: %s", self.info)

    def _targets(self, w: int, h: int) -> None:
        if self._size == (w, h):
            return
        ctx = self.ctx
        self.color = ctx.texture((w, h), 4, dtype="f1")
        self.ids = ctx.texture((w, h), 1, dtype="f4")
        self.depth = ctx.depth_texture((w, h))
        self.fbo = ctx.framebuffer(color_attachments=[self.color, self.ids], depth_attachment=self.depth)
        self.fbo_blend = ctx.framebuffer(color_attachments=[self.color], depth_attachment=self.depth)
        self.fbo_blend.depth_mask = False  # particles are depth-tested against solids but do not hide each other
        self.mask = ctx.texture((w, h), 1, dtype="f1")
        self.fbo_mask = ctx.framebuffer(color_attachments=[self.mask])
        self._size = (w, h)

    def _uniforms(self, prog: moderngl.Program, cam: Camera, ss: int) -> None:
        right, up, fwd = cam.axes()
        f = cam.focal * ss
        w, h = cam.width * ss, cam.height * ss
        values: dict[str, Any] = {
            "cam_pos": (0.0, 0.0, cam.cam_height), "right": tuple(map(float, right)), "up": tuple(map(float, up)),
            "fwd": tuple(map(float, fwd)), "focal": (2 * f / w, 2 * f / h),
            "depth_ab": ((FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR)),
        }
        for name, value in values.items():
            if name in prog:
                prog[name].value = value  # type: ignore[union-attr]

    def draw(self, img: Image, cam: Camera, objs: list[Obj], rng: np.random.Generator,
             light: Light | None = None) -> list[tuple[str, Box]]:
        """Draw ``objs`` onto ``img`` (BGR, in place) and return boxes of the labelled, visible ones."""
        import moderngl

        light = light or Light()
        ss = SUPERSAMPLE
        w, h = cam.width * ss, cam.height * ss
        self._targets(w, h)
        geo = _build(objs, rng)
        ctx = self.ctx
        prog = self.prog
        self._uniforms(prog, cam, ss)
        ldir = np.asarray(light.direction, np.float32)
        ldir = ldir / np.linalg.norm(ldir)
        prog["light"].value = tuple(map(float, ldir))  # type: ignore[union-attr]
        prog["shadow_dir"].value = tuple(map(float, ldir))  # type: ignore[union-attr]
        prog["sun_col"].value = tuple(light.sun * t for t in light.tint)  # type: ignore[union-attr]
        prog["ambient"].value = light.ambient  # type: ignore[union-attr]
        vbo = ctx.buffer(geo.tris.tobytes()) if len(geo.tris) else None
        vao = (ctx.vertex_array(prog, [(vbo, "3f 3f 3f 3f 1f", "in_pos", "in_nrm", "in_col", "in_mat", "in_id")])
               if vbo is not None else None)
        bg = img.astype(np.float32)
        # 1. Cast shadows: opaque geometry flattened onto the ground along the sun direction.
        if vao is not None and light.shadow > 0:
            self.fbo_mask.use()
            self.fbo_mask.clear(0.0)
            ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
            prog["shadow"].value = 1  # type: ignore[union-attr]
            vao.render(moderngl.TRIANGLES)
            raw = np.frombuffer(self.mask.read(), np.uint8).reshape(h, w)[::-1]
            small = cv2.resize(raw, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
            k = max(3, int(cam.width / 160) | 1)
            shade = np.asarray(cv2.GaussianBlur(small.astype(np.float32) / 255, (k, k), 0), np.float32)
            bg *= (1 - light.shadow * shade)[..., None]
        # 2. Opaque and translucent faces with depth; ids of opaque faces.
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.BLEND)
        if vao is not None:
            prog["shadow"].value = 0  # type: ignore[union-attr]
            vao.render(moderngl.TRIANGLES)
        # 3. Smoke: camera-facing soft particles, blended, depth-tested but not depth-writing.
        if len(geo.particles):
            self.fbo_blend.use()
            self._uniforms(self.particle_prog, cam, ss)
            ctx.enable(moderngl.BLEND)
            ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
            pbo = ctx.buffer(geo.particles.tobytes())
            pvao = ctx.vertex_array(self.particle_prog, [(pbo, "3f 2f 4f", "in_pos", "in_uv", "in_col")])
            pvao.render(moderngl.TRIANGLES)
            ctx.disable(moderngl.BLEND)
            pvao.release()
            pbo.release()
        big = np.frombuffer(self.color.read(), np.uint8).reshape(h, w, 4)[::-1].astype(np.float32)
        ids = np.frombuffer(self.ids.read(), np.float32).reshape(h, w)[::-1]
        color = np.asarray(cv2.resize(big, (cam.width, cam.height), interpolation=cv2.INTER_AREA), np.float32)
        alpha = color[..., 3:4] / 255.0
        img[:] = np.clip(bg * (1 - alpha) + color[..., :3], 0, 255).astype(np.uint8)
        silhouettes = self._silhouettes(vao, geo, objs, cam, ss) if vao is not None else {}
        if vao is not None:
            vao.release()
        if vbo is not None:
            vbo.release()
        return _label_boxes(objs, cam, ids, silhouettes, geo, ss)

    def _silhouettes(self, vao: moderngl.VertexArray, geo: _Geometry, objs: list[Obj], cam: Camera,
                     ss: int) -> dict[int, int]:
        """Full silhouette area (pixels) of every labelled solid object, drawn alone.

        Read back from the object's own projected box only; counting pixels rather than
        samples of an occlusion query, which would count each overlapping face again.
        """
        import moderngl

        out: dict[int, int] = {}
        ctx = self.ctx
        self.fbo_mask.use()
        ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
        self.prog["shadow"].value = 0  # type: ignore[union-attr]
        w, h = cam.width * ss, cam.height * ss
        for k, (first, count) in geo.ranges.items():
            obj = objs[k - 1]
            if obj.label is None or count == 0:
                continue
            uv, z = cam.project(obj.points())
            if (z <= NEAR).all():
                continue
            x1, y1 = np.floor(np.clip(uv.min(axis=0) * ss - 2, 0, [w, h])).astype(int)
            x2, y2 = np.ceil(np.clip(uv.max(axis=0) * ss + 2, 0, [w, h])).astype(int)
            if (z <= NEAR).any():  # partly behind the camera: projected box unreliable
                x1, y1, x2, y2 = 0, 0, w, h
            if x2 <= x1 or y2 <= y1:
                out[k] = 0
                continue
            self.fbo_mask.clear(0.0)
            vao.render(moderngl.TRIANGLES, vertices=count, first=first)
            # GL rows count from the bottom.
            raw = self.fbo_mask.read(viewport=(int(x1), int(h - y2), int(x2 - x1), int(y2 - y1)), components=1)
            out[k] = int(np.count_nonzero(np.frombuffer(raw, np.uint8)))
        return out


def _build(objs: list[Obj], rng: np.random.Generator) -> _Geometry:
    """Triangulate every object's faces into one vertex array; object ids start at 1."""
    rows: list[npt.NDArray[np.float32]] = []
    ranges: dict[int, tuple[int, int]] = {}
    particles: list[npt.NDArray[np.float32]] = []
    particle_boxes: dict[int, list[tuple[npt.NDArray[np.float32], float]]] = {}
    base = int(rng.integers(1 << 30))
    first = 0
    for k, obj in enumerate(objs, start=1):
        ident = obj.seed if obj.seed is not None else int(abs(float(obj.points().sum())) * 1000) % (1 << 31)
        obj_rng = np.random.default_rng((base, ident))
        count = 0
        for part in obj.parts:
            for face in part.faces:
                f = np.asarray(face, np.float32)
                if len(f) < 3:
                    continue
                n = np.cross(f[1] - f[0], f[2] - f[0])
                n = n / (np.linalg.norm(n) + 1e-9)
                jitter = 0.0 if part.emissive else float(obj_rng.normal(0, part.texture))
                col = np.clip((np.asarray(part.color, np.float32) + jitter) / 255.0, 0, 1)
                fan = np.stack([np.zeros(len(f) - 2, int), np.arange(1, len(f) - 1), np.arange(2, len(f))], 1).ravel()
                v = np.empty((len(fan), 13), np.float32)
                v[:, 0:3] = f[fan]
                v[:, 3:6] = n
                v[:, 6:9] = col
                v[:, 9:12] = (part.alpha, 1.0 if part.emissive else 0.0, part.texture)
                v[:, 12] = k
                rows.append(v)
                count += len(fan)
        ranges[k] = (first, count)
        first += count
        for centre, radius, colour, alpha in obj.soft:
            c = np.asarray(centre, np.float32)
            col = np.array([*(np.asarray(colour, np.float32) / 255.0), alpha], np.float32)
            particles.append(_billboard(c, radius, col))
            particle_boxes.setdefault(k, []).append((c, radius))
    tris = np.concatenate(rows) if rows else np.zeros((0, 13), np.float32)
    parts = np.concatenate(particles) if particles else np.zeros((0, 9), np.float32)
    return _Geometry(tris, ranges, parts, particle_boxes)


def _billboard(c: npt.NDArray[np.float32], r: float, col: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Two triangles of a particle; oriented to the camera in the shader's space by using X/Z axes.

    The camera looks roughly along +Y, so a quad in the X-Z plane faces it; the particle
    is a blurred disc, so the small tilt of a pitched camera does not show.
    """
    corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, -1), (1, 1), (-1, 1)], np.float32)
    v = np.empty((6, 9), np.float32)
    v[:, 0] = c[0] + corners[:, 0] * r
    v[:, 1] = c[1]
    v[:, 2] = c[2] + corners[:, 1] * r
    v[:, 3:5] = corners
    v[:, 5:9] = col
    return v


def _label_boxes(objs: list[Obj], cam: Camera, ids: npt.NDArray[np.float32], silhouettes: dict[int, int],
                 geo: _Geometry, ss: int) -> list[tuple[str, Box]]:
    """Tight boxes of visible pixels for solid objects; projected discs for smoke."""
    boxes: list[tuple[str, Box]] = []
    for k, obj in enumerate(objs, start=1):
        if obj.label is None:
            continue
        if k in silhouettes:
            full = silhouettes[k]
            in_frame = frame_box(cam, obj.points())
            if in_frame is None or in_frame[1] < MIN_IN_FRAME:  # mostly outside the picture: too little to tell
                continue
            mask = ids == float(k)
            visible = int(mask.sum())
            if full <= 0 or visible / full < MIN_VISIBLE:
                continue
            ys, xs = np.nonzero(mask)
            box = (xs.min() / ss, ys.min() / ss, (xs.max() + 1) / ss, (ys.max() + 1) / ss)
            if box[2] - box[0] < MIN_SIDE_PX or box[3] - box[1] < MIN_SIDE_PX:
                continue
            boxes.append((obj.label, tuple(float(v) for v in box)))  # type: ignore[arg-type]
        elif k in geo.particle_boxes:
            discs = geo.particle_boxes[k]
            halves = [np.array([r * 0.7, 0.0, r * 0.7], np.float32) for _, r in discs]
            pts = np.concatenate([np.stack([c - hv, c + hv]) for (c, _), hv in zip(discs, halves, strict=True)])
            smoke = labelled_box(cam, pts.astype(np.float32))
            if smoke is not None:
                boxes.append((obj.label, smoke))
    return boxes


_RENDERER: GLRenderer | None = None


def get_renderer() -> GLRenderer:
    """Return the process's OpenGL renderer, creating it on first use.

    Raises:
        RendererUnavailable: No EGL/OpenGL driver, or moderngl missing.
    """
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = GLRenderer()
    return _RENDERER
