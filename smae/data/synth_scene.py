"""Synthetic scenes: textured sprites moving over a panning textured background, and their
exact rasterisation into RGB frames plus per-pixel object and part-class labels.

Coordinates: pixel (row i, column j) has its centre at world point (x=j, y=i). A sprite's
pose for frame t is a 3x3 similarity matrix (rotation, uniform scale, translation) mapping its
local coordinates (u, v, 1) to world (x, y, 1); its shape lies in the local unit disc.

Objects: an object is one sprite (a random shape) or an articulated "puppet" of ten sprites
(torso, head, two-segment arms and legs) whose 15 joints follow JHMDB's joint order. Objects
are drawn back to front in a random z-order, so later ones occlude earlier ones, and each
pixel gets exactly one object id and one part class from the same inside-tests that coloured it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from smae.data.synth_camera import SHADING, Camera
from smae.data.synth_shapes import Shape, Texture

# JHMDB's 15 joints, in its order (JHMDB joint_positions.mat, pos_img[:, j, t]).
JOINT_NAMES = (
    "neck", "belly", "face", "right shoulder", "left shoulder", "right hip", "left hip",
    "right elbow", "left elbow", "right knee", "left knee", "right wrist", "left wrist",
    "right ankle", "left ankle",
)
# VIP part classes used by puppets (VIP class ids: 0 background ... 19 left-shoe).
HAT, HAIR, UPPER_CLOTHES, DRESS, COAT, PANTS, SKIRT, FACE = 1, 2, 4, 5, 6, 8, 11, 13
RIGHT_ARM, LEFT_ARM, RIGHT_LEG, LEFT_LEG, RIGHT_SHOE, LEFT_SHOE = 14, 15, 16, 17, 18, 19


@dataclass(frozen=True)
class Sprite:
    """One rigid textured shape; its parts are bands along one local axis."""

    shape: Shape
    textures: tuple[Texture, ...]  # one per part
    part_classes: tuple[int, ...]  # VIP class id per part (0 for non-person objects)
    part_axis: int  # 0: bands along local u, 1: along local v
    part_edges: tuple[float, ...]  # len(textures) - 1 increasing band boundaries
    poses: np.ndarray  # (T, 3, 3) world-from-local similarity per frame
    object_index: int  # which object this sprite belongs to (0-based)
    # Non-rigid motion: local (u, v) -> (u + a sin(k v + w t + p), v + a sin(k u + w t + p + 1)),
    # warping outline and texture together; (a, k, w, p), a in local units (0: rigid).
    warp: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    shading: float = 0.0  # how much brighter towards the camera's light (synth_camera.SHADING; 0: flat)


@dataclass(frozen=True)
class Scene:
    height: int
    width: int
    background: np.ndarray  # (Hb, Wb, 3) uint8, larger than the frame
    pan: np.ndarray  # (T, 2) int: (row, col) of the frame's top-left corner in the background
    sprites: tuple[Sprite, ...]  # back to front
    num_objects: int
    joints: tuple[np.ndarray, ...]  # per puppet: (T, 15, 2) world (x, y), 0-based pixels
    actions: tuple[str, ...]  # per puppet: "walk" or "wave" (JHMDB action classes)
    camera: Camera | None = None  # light, exposure drift and noise over the rendering; None: exact

    @property
    def num_frames(self) -> int:
        return len(self.pan)


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    objects: np.ndarray  # (H, W) uint8: 0 background, k + 1 for object index k
    parts: np.ndarray  # (H, W) uint8: VIP part class of the visible part, 0 elsewhere


def similarity(tx, ty, angle, scale) -> np.ndarray:
    """Stack of 3x3 similarity matrices from broadcastable arrays -> (..., 3, 3)."""
    arrays = (np.asarray(a, dtype=np.float64) for a in (tx, ty, angle, scale))
    tx, ty, angle, scale = np.broadcast_arrays(*arrays)
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    zero, one = np.zeros_like(tx), np.ones_like(tx)
    rows = [np.stack([cos, -sin, tx], -1), np.stack([sin, cos, ty], -1), np.stack([zero, zero, one], -1)]
    return np.stack(rows, -2)


def _wander(rng: np.random.Generator, frames: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth 2-D wobble (T, 2): two sinusoids per axis with periods of 40-160 frames."""
    out = np.zeros((len(frames), 2))
    for axis in range(2):
        for _ in range(2):
            omega = 2 * np.pi / rng.uniform(40, 160)
            out[:, axis] += rng.uniform(0, amplitude) * np.sin(omega * frames + rng.uniform(0, 2 * np.pi))
    return out


def _exit_distance(point: np.ndarray, direction: np.ndarray, height: int, width: int) -> float:
    """How far from `point` along `direction` until the frame rectangle is left."""
    limits = []
    for coord, step, size in ((point[0], direction[0], width), (point[1], direction[1], height)):
        if step > 1e-9:
            limits.append((size - coord) / step)
        elif step < -1e-9:
            limits.append(-coord / step)
    return min(limits)


def object_poses(rng, num_frames: int, height: int, width: int, radius: float, entering: bool) -> np.ndarray:
    """Poses (T, 3, 3) of one object of pixel radius `radius`.

    Anchored objects start with their centre inside the frame, wander and drift (fast
    drifters leave the frame); entering objects start fully outside and cross into it.
    """
    frames = np.arange(num_frames, dtype=np.float64)
    size = min(height, width)
    wobble = _wander(rng, frames, 0.12 * size)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    if entering:
        target = np.array([rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height])
        arrive = rng.uniform(0.3, 0.7) * max(num_frames - 1, 1)
        # Start far enough back along -direction that the whole sprite is outside the frame
        # at t = 0 (the wobble is zero there and the scale at most `radius`).
        reach = _exit_distance(target, -direction, height, width) + radius + 2
        speed = reach / arrive
        start = target - direction * speed * arrive
    else:
        start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
        speed = rng.uniform(0, 0.004 if rng.random() < 0.7 else 0.015) * np.hypot(height, width)
    centre = start + np.outer(frames, direction * speed) + wobble - wobble[0]
    angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-0.03, 0.03) * frames
    scale_swing = rng.uniform(0, 0.25)
    breathing = np.sin(2 * np.pi * frames / rng.uniform(40, 160) + rng.uniform(0, 2 * np.pi))
    scale = radius * np.exp(scale_swing * breathing)
    if entering:
        scale /= np.exp(scale_swing)  # never larger than `radius`
    return similarity(centre[:, 0], centre[:, 1], angle, scale)


def _puppet_sprites(rng, num_frames, height, width, object_index, size):
    """An articulated person: ten sprites, its joints (T, 15, 2) and its action name.

    Torso local frame: u towards the puppet's left (image right when it faces the camera),
    v down; one torso unit = half the torso's height. Arms and legs are chains of two
    segments pinned at the torso, each swinging about its pin; the joints are the pins and
    segment ends, so they move with the body exactly.
    """
    frames = np.arange(num_frames, dtype=np.float64)
    torso_half = rng.uniform(*size) * height
    path = object_poses(rng, num_frames, height, width, torso_half, entering=False)
    # Keep the path and size of a generic object, but a person stays roughly upright.
    tilt = rng.uniform(-0.25, 0.25) + 0.12 * np.sin(2 * np.pi * frames / rng.uniform(30, 90))
    torso = similarity(path[:, 0, 2], path[:, 1, 2], tilt, np.hypot(path[:, 0, 0], path[:, 1, 0]))
    walking = rng.random() < 0.5  # else standing, waving the right arm
    period = rng.uniform(20, 50)

    def swing(base, amplitude, phase):
        return base + amplitude * np.sin(2 * np.pi * frames / period + phase)

    def pin(parent, x, y, angle):
        """Frame of a joint at (x, y) of `parent`, turned by `angle` (T,)."""
        return parent @ similarity(x, y, angle, 1.0)

    def segment(pin_pose, half_length):
        """Sprite pose of a limb segment running from its pin to 2 * half_length along u."""
        return pin_pose @ similarity(half_length, 0.0, 0.0, half_length)

    def tip(pin_pose, half_length):
        return pin_pose @ similarity(2 * half_length, 0.0, 0.0, 1.0)

    limb_unit = 0.4 * torso_half  # pixels per local unit of the head and limb segments
    down = np.pi / 2
    joints, limbs_behind, limbs_front = {}, [], []
    for side, name, arm, leg, shoe in ((-1, "right", RIGHT_ARM, RIGHT_LEG, RIGHT_SHOE),
                                       (+1, "left", LEFT_ARM, LEFT_LEG, LEFT_SHOE)):
        phase = (0.0 if side > 0 else np.pi) if walking else rng.uniform(0, 2 * np.pi)
        waving = not walking and side < 0
        raise_arm = 1.9 if waving else 0.0  # radians up from hanging, outwards
        # Segment half-lengths in torso units: upper arm, forearm, thigh, shin.
        upper, lower, thigh, shin = (rng.uniform(lo, lo + 0.1) for lo in (0.4, 0.35, 0.5, 0.45))
        arm_angle = swing(down - side * (0.25 + raise_arm), 0.5 if waving else 0.25, phase)
        shoulder = pin(torso, 0.42 * side, -0.8, arm_angle)
        elbow = pin(shoulder, 2 * upper, 0.0, swing(-0.6 if waving else 0.0, 0.5, phase + 0.8))
        hip = pin(torso, 0.3 * side, 0.9, swing(down - side * 0.08, 0.35 if walking else 0.08, phase + np.pi))
        knee = pin(hip, 2 * thigh, 0.0, swing(0.15, 0.25 if walking else 0.05, phase + np.pi + 1.0))
        joints.update({f"{name} shoulder": shoulder, f"{name} elbow": elbow, f"{name} wrist": tip(elbow, lower),
                       f"{name} hip": hip, f"{name} knee": knee, f"{name} ankle": tip(knee, shin)})
        skin, trousers = Texture.random(rng, limb_unit, "noise"), Texture.random(rng, limb_unit)
        # The puppet's left limbs pass behind the torso, its right limbs in front.
        (limbs_behind if side > 0 else limbs_front).extend([
            _limb(segment(shoulder, upper), (skin,), (arm,), object_index),
            _limb(segment(elbow, lower), (skin,), (arm,), object_index),
            _limb(segment(hip, thigh), (trousers,), (leg,), object_index),
            _limb(segment(knee, shin), (trousers, Texture.random(rng, limb_unit)), (leg, shoe), object_index),
        ])
    top = (HAT, HAIR)[rng.integers(2)]
    clothes = (UPPER_CLOTHES, DRESS, COAT)[rng.integers(3)]
    legwear = (PANTS, SKIRT)[rng.integers(2)]
    head_pose = torso @ similarity(0.0, -1.38, swing(0.0, 0.15, 0.3), 0.4)
    head_textures = (Texture.random(rng, limb_unit), Texture.random(rng, limb_unit, "noise"))
    head = Sprite(Shape.ellipse(0.8, 1.0), head_textures, (top, FACE), 1, (-0.35,), head_pose, object_index)
    body_textures = (Texture.random(rng, torso_half), Texture.random(rng, torso_half))
    waist = float(rng.uniform(0.2, 0.5))
    body = Sprite(Shape.ellipse(0.5, 1.0), body_textures, (clothes, legwear), 1, (waist,), torso, object_index)
    joints["neck"] = torso @ similarity(0.0, -1.0, 0.0, 1.0)
    joints["belly"] = torso @ similarity(0.0, 0.2, 0.0, 1.0)
    joints["face"] = head_pose
    points = np.stack([joints[name][:, :2, 2] for name in JOINT_NAMES], axis=1)  # (T, 15, 2)
    return limbs_behind + [body, head] + limbs_front, points, "walk" if walking else "wave"


def _limb(pose, textures, part_classes, object_index) -> Sprite:
    """A limb segment; with two parts, the distal 20% (u > 0.6) is the second (a shoe)."""
    edges = (0.6,) if len(textures) == 2 else ()
    return Sprite(Shape.ellipse(1.0, 0.28), textures, part_classes, 0, edges, pose, object_index)


SIMILAR_COLOUR_SHARE = 0.3  # shapes whose colours are taken (jittered) from the background's
BENDING_SHARE = 0.5  # shapes that bend and ripple (non-rigid) rather than stay rigid


def _shape_sprite(rng, num_frames, height, width, object_index, entering, background: Texture) -> Sprite:
    radius = rng.uniform(0.1, 0.35) * min(height, width)
    poses = object_poses(rng, num_frames, height, width, radius, entering)
    palette = background.palette() if rng.random() < SIMILAR_COLOUR_SHARE else None
    texture = Texture.random(rng, radius, palette=palette)
    warp = (0.0, 0.0, 0.0, 0.0)
    if rng.random() < BENDING_SHARE:
        warp = (float(rng.uniform(0.04, 0.12)), float(rng.uniform(2, 5)), float(rng.uniform(0.05, 0.2)),
                float(rng.uniform(0, 2 * np.pi)))
    return Sprite(Shape.random(rng), (texture,), (0,), 0, (), poses, object_index, warp)


def _background_texture(rng, height, width) -> tuple[Texture, float]:
    """The background's texture and its pixels per texture unit."""
    unit = 0.25 * min(height, width)
    return Texture.random(rng, unit, scale=float(rng.uniform(1.0, 2.5))), unit


def _background(rng, num_frames, height, width, texture: Texture, unit: float):
    """Background image larger than the frame, and the camera's integer pan path (T, 2)."""
    frames = np.arange(num_frames, dtype=np.float64)
    size = min(height, width)
    velocity = rng.uniform(-0.006, 0.006, size=2) * size
    path = frames[:, None] * velocity + _wander(rng, frames, 0.05 * size)
    path = np.round(path - path.min(0)).astype(np.int64)  # (T, 2) as (x, y)
    margin_x, margin_y = path.max(0)
    ys, xs = np.mgrid[0 : height + margin_y, 0 : width + margin_x]
    rgb = texture.sample(xs.ravel() / unit, ys.ravel() / unit)
    image = rgb.reshape(height + margin_y, width + margin_x, 3).astype(np.uint8)
    return image, path[:, ::-1].copy()  # pan as (row, col)


def build_scene(rng: np.random.Generator, num_frames: int, height: int, width: int, num_objects: int,
                num_entering: int, people: bool, puppet_share: float = 0.25,
                person_size: tuple[float, float] = (0.07, 0.13), min_visible: float = 0.003,
                attempts: int = 50, camera: bool = True) -> Scene:
    """A random scene whose first `num_objects` objects are visible in frame 0.

    people: every anchored object is a puppet (JHMDB, VIP); otherwise each one is a puppet
    with probability `puppet_share`. Half a puppet's torso is person_size x H tall (a range).
    Entering objects (indices num_objects...) are plain shapes outside the frame at t = 0.
    Each anchored object must show at least max(20, min_visible x H x W) pixels in frame 0
    (not fully occluded); a scene that fails is redrawn from the same generator, so the
    result stays a function of the seed. camera: seen through a random Camera (uneven and
    drifting light, sprites shaded towards one light, sensor noise), as real video is; False
    renders the exact colours.
    """
    needed = max(20, int(min_visible * height * width))
    for _ in range(attempts):
        objects, all_joints, actions = [], [], []
        background_texture, unit = _background_texture(rng, height, width)
        for index in range(num_objects + num_entering):
            entering = index >= num_objects
            if not entering and (people or rng.random() < puppet_share):
                sprites, joints, action = _puppet_sprites(rng, num_frames, height, width, index, person_size)
                all_joints.append(joints)
                actions.append(action)
            else:
                sprites = [_shape_sprite(rng, num_frames, height, width, index, entering, background_texture)]
            objects.append(sprites)
        order = rng.permutation(len(objects))  # z-order: later objects occlude earlier ones
        background, pan = _background(rng, num_frames, height, width, background_texture, unit)
        sprites = tuple(s for i in order for s in objects[i])
        lens = None
        if camera:
            lens = Camera.random(rng, num_frames, background.shape[:2])
            sprites = tuple(dataclasses.replace(s, shading=float(rng.uniform(*SHADING))) for s in sprites)
        scene = Scene(height, width, background, pan, sprites, len(objects), tuple(all_joints), tuple(actions), lens)
        counts = np.bincount(render_frame(scene, 0).objects.ravel(), minlength=len(objects) + 1)
        if (counts[1 : num_objects + 1] >= needed).all() and not counts[num_objects + 1 :].any():
            return scene
    raise RuntimeError(f"could not place {num_objects} visible objects in {attempts} attempts "
                       f"on a {height}x{width} frame; use fewer objects or a larger frame")


def render_frame(scene: Scene, t: int) -> Frame:
    """Rasterises frame t: background crop, then each sprite back to front (painter's order)."""
    height, width = scene.height, scene.width
    row, col = scene.pan[t]
    rgb = scene.background[row : row + height, col : col + width].copy()
    objects = np.zeros((height, width), np.uint8)
    parts = np.zeros((height, width), np.uint8)
    for sprite in scene.sprites:
        pose = sprite.poses[t]
        amplitude, frequency, speed, phase = sprite.warp
        reach = np.hypot(pose[0, 0], pose[1, 0]) * (1 + amplitude)  # the (warped) unit disc's radius in pixels
        x0, y0 = (max(0, int(np.floor(c - reach))) for c in pose[:2, 2])
        x1 = min(width, int(np.ceil(pose[0, 2] + reach)) + 1)
        y1 = min(height, int(np.ceil(pose[1, 2] + reach)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue  # entirely outside the frame
        inverse = np.linalg.inv(pose)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        u = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        v = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        if amplitude:
            u, v = (u + amplitude * np.sin(frequency * v + speed * t + phase),
                    v + amplitude * np.sin(frequency * u + speed * t + phase + 1))
        inside = sprite.shape.contains(u, v)
        if not inside.any():
            continue
        u, v = u[inside], v[inside]
        part = np.searchsorted(np.asarray(sprite.part_edges), (u, v)[sprite.part_axis])
        colour = np.empty((len(u), 3), np.float32)
        for index, texture in enumerate(sprite.textures):
            chosen = part == index
            colour[chosen] = texture.sample(u[chosen], v[chosen])
        if scene.camera is not None and sprite.shading:
            gain = scene.camera.shade(xs[inside] - pose[0, 2], ys[inside] - pose[1, 2], reach, sprite.shading)
            colour = np.clip(colour * gain[:, None], 0, 255)
        rgb[y0:y1, x0:x1][inside] = colour.astype(np.uint8)
        objects[y0:y1, x0:x1][inside] = sprite.object_index + 1
        parts[y0:y1, x0:x1][inside] = np.asarray(sprite.part_classes, np.uint8)[part]
    if scene.camera is not None:
        rgb = scene.camera.observe(rgb, t, (row, col))
    return Frame(rgb, objects, parts)
