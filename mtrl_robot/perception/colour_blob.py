"""Colour-blob perception: find a coloured object in a camera image and place it on the table plane.

Pixels are (u, v) with u to the right and v down, the centre of the top-left pixel at (0, 0), as in
``sensor_msgs/CameraInfo``. A camera's pose is that of its optical frame (z forward, x right, y down) in the
world (REP 103/105); ``rotation`` is world_R_optical, whose columns are the optical axes in world coordinates.
HSV bounds are in OpenCV's units (H 0–179, S and V 0–255); a hue range whose low end exceeds its high end
wraps around red. Settings for the puck-table scene live in ``config/perception.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtrl_robot.core.config import load_config, setting
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir

HSV_MAX = (179, 255, 255)
ENCODINGS = {"rgb8": cv2.COLOR_RGB2HSV, "bgr8": cv2.COLOR_BGR2HSV, "rgba8": cv2.COLOR_RGB2HSV,
             "bgra8": cv2.COLOR_BGR2HSV}  # colour conversion of the first three channels
# MuJoCo cameras look along their −z with y up; optical frames look along +z with y down: flip y and z.
MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])
PARALLEL_EPSILON = 1e-9  # |ray z| below this counts as parallel to a horizontal plane


def _hsv_problem(values: tuple) -> str | None:
    """Why ``values`` are not an HSV triple in OpenCV's units, or None."""
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return f"must be three integers (H, S, V), got {values!r}"
    for v, top, channel in zip(values, HSV_MAX, "HSV", strict=True):
        if not 0 <= v <= top:
            return f"{channel} must be in 0..{top}, got {v}"
    return None


def _hsv(value: Sequence[int], name: str) -> tuple[int, int, int]:
    values = tuple(value)
    problem = _hsv_problem(values)
    if problem:
        raise ValueError(f"{name}: {problem}")
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class Blob:
    """A detected blob: sub-pixel centroid (u, v) and area in pixels."""

    centroid: tuple[float, float]
    area: float


@dataclass(frozen=True)
class ColourBlobDetector:
    """The largest blob of pixels within an HSV range, cleaned by morphological opening and closing."""

    hsv_low: tuple[int, int, int]
    hsv_high: tuple[int, int, int]
    min_area: float = 20.0  # pixels; smaller blobs count as not found
    kernel_size: int = 3  # pixels, side of the elliptical structuring element; 1: no morphology

    def __post_init__(self) -> None:
        low, high = _hsv(self.hsv_low, "hsv_low"), _hsv(self.hsv_high, "hsv_high")
        for i in (1, 2):
            if low[i] > high[i]:
                raise ValueError(f"hsv_low {'HSV'[i]} {low[i]} exceeds hsv_high {'HSV'[i]} {high[i]}")
        if not (math.isfinite(self.min_area) and self.min_area > 0):
            raise ValueError(f"min_area must be positive, got {self.min_area}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 1 \
                or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {self.kernel_size!r}")
        object.__setattr__(self, "hsv_low", low)
        object.__setattr__(self, "hsv_high", high)

    def mask(self, image: np.ndarray, encoding: str) -> np.ndarray:
        """The cleaned uint8 mask (255 inside the colour range) of an (H, W, 3 or 4) uint8 image."""
        if encoding not in ENCODINGS:
            raise ValueError(f"unsupported encoding '{encoding}' (use {', '.join(ENCODINGS)})")
        channels = 4 if encoding.endswith("a8") else 3
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] != channels or image.shape[0] == 0 or image.shape[1] == 0:
            shape = getattr(image, "shape", None)
            raise ValueError(f"a {encoding} image must be a non-empty (H, W, {channels}) uint8 array, got "
                             f"{type(image).__name__} {getattr(image, 'dtype', '')} {shape}")
        hsv = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), ENCODINGS[encoding])
        (h0, s0, v0), (h1, s1, v1) = self.hsv_low, self.hsv_high
        if h0 <= h1:
            mask = cv2.inRange(hsv, (h0, s0, v0), (h1, s1, v1))
        else:  # the hue range wraps around red
            mask = cv2.inRange(hsv, (h0, s0, v0), (HSV_MAX[0], s1, v1)) | cv2.inRange(hsv, (0, s0, v0), (h1, s1, v1))
        if self.kernel_size > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.kernel_size, self.kernel_size))
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        return mask

    def detect(self, image: np.ndarray, encoding: str) -> tuple[Blob | None, str]:
        """The largest blob and ``""``, or ``None`` and why nothing was found (``encoding`` as in :data:`ENCODINGS`)."""
        mask = self.mask(image, encoding)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not contours:
            return None, f"no pixels in the HSV range {self.hsv_low}..{self.hsv_high}"
        largest = max(contours, key=cv2.contourArea)
        region = np.zeros_like(mask)
        cv2.drawContours(region, [largest], -1, 255, thickness=cv2.FILLED)
        moments = cv2.moments(region & mask, binaryImage=True)  # the filled outline minus any holes
        area = moments["m00"]
        if area < self.min_area:
            return None, f"the largest blob has {area:g} pixels, fewer than min_area {self.min_area:g}"
        return Blob((moments["m10"] / area, moments["m01"] / area), area), ""


def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rz(yaw)·Ry(pitch)·Rx(roll): rotations about the fixed x, y, z axes in that order (REP 103)."""
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


@dataclass(frozen=True)
class CameraModel:
    """A distortion-free pinhole camera: intrinsics ``k`` (3×3) and its optical frame's pose in the world."""

    width: int
    height: int
    k: np.ndarray
    position: np.ndarray
    rotation: np.ndarray  # world_R_optical

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or isinstance(self.height, bool) or not (
                isinstance(self.width, (int, np.integer)) and isinstance(self.height, (int, np.integer))
                and self.width > 0 and self.height > 0):
            raise ValueError(f"image size must be positive integers, got {self.width!r} × {self.height!r}")
        k = np.array(self.k, dtype=float).reshape(3, 3) if np.size(self.k) == 9 else None
        if k is None or not np.all(np.isfinite(k)) or not (k[0, 0] > 0 and k[1, 1] > 0) \
                or not np.allclose(k[2], (0.0, 0.0, 1.0)) or k[1, 0] != 0:
            raise ValueError(f"K must be a 3×3 pinhole matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, "
                             f"got {np.asarray(self.k).tolist()}")
        position = np.array(self.position, dtype=float)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"camera position must be 3 finite numbers, got {self.position!r}")
        rotation = np.array(self.rotation, dtype=float)
        if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) \
                or not np.linalg.det(rotation) > 0:
            raise ValueError(f"camera rotation must be a proper 3×3 rotation matrix, got {self.rotation!r}")
        for name, value in (("width", int(self.width)), ("height", int(self.height)), ("k", k),
                            ("position", position), ("rotation", rotation)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_camera_info(cls, width: int, height: int, k: Sequence[float], position: Sequence[float],
                         rotation: np.ndarray) -> CameraModel:
        """Intrinsics as in ``sensor_msgs/CameraInfo`` (``k`` row-major, 9 values)."""
        return cls(width, height, np.asarray(k, dtype=float), np.asarray(position), rotation)

    @classmethod
    def from_fovy(cls, width: int, height: int, fovy_deg: float, position: Sequence[float],
                  rotation: np.ndarray) -> CameraModel:
        """Square pixels, principal point at the image centre, vertical field of view ``fovy_deg``."""
        if not 0 < fovy_deg < 180:
            raise ValueError(f"the vertical field of view must be in (0, 180) degrees, got {fovy_deg}")
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
        k = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
        return cls(width, height, k, np.asarray(position), rotation)

    def ray(self, pixel: Sequence[float]) -> np.ndarray:
        """The unit direction, in the world, of the ray from the camera through ``pixel`` (u, v)."""
        u, v = _pixel(pixel)
        direction = self.rotation @ np.linalg.solve(self.k, np.array([u, v, 1.0]))
        return direction / np.linalg.norm(direction)

    def project(self, point: Sequence[float]) -> np.ndarray:
        """The pixel (u, v) that the world point ``point`` in front of the camera images to."""
        local = self.rotation.T @ (np.asarray(point, dtype=float) - self.position)
        if not local[2] > 0:
            raise ValueError(f"point {list(point)} is not in front of the camera")
        return (self.k @ (local / local[2]))[:2]


def _pixel(pixel: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(pixel, dtype=float)
    if values.shape != (2,) or not np.all(np.isfinite(values)):
        raise ValueError(f"a pixel must be two finite numbers (u, v), got {pixel!r}")
    return float(values[0]), float(values[1])


def back_project_to_plane(pixel: Sequence[float], camera: CameraModel, plane_z: float) -> np.ndarray:
    """Where the ray through ``pixel`` meets the horizontal plane z = ``plane_z`` (world coordinates)."""
    direction = camera.ray(pixel)
    if abs(direction[2]) < PARALLEL_EPSILON:
        raise ValueError(f"the ray through pixel {list(pixel)} is parallel to the plane z = {plane_z}")
    distance = (plane_z - camera.position[2]) / direction[2]
    if distance <= 0:
        raise ValueError(f"the ray through pixel {list(pixel)} meets the plane z = {plane_z} behind the camera")
    return camera.position + distance * direction


def locate(image: np.ndarray, detector: ColourBlobDetector, camera: CameraModel, plane_z: float, *,
           encoding: str) -> np.ndarray | None:
    """The world position on z = ``plane_z`` of ``detector``'s blob in ``image``, or None if there is none."""
    blob, _ = detector.detect(image, encoding)
    return None if blob is None else back_project_to_plane(blob.centroid, camera, plane_z)


def camera_from_mujoco(model: Any, data: Any, name: str = "overhead") -> CameraModel:
    """The pinhole model of MuJoCo camera ``name`` at its pose in ``data`` (after ``mj_forward``).

    Intrinsics come from the camera's ``fovy`` and ``resolution``; its frame (looking along −z, y up) is turned
    into the optical frame by :data:`MUJOCO_TO_OPTICAL`.
    """
    try:
        i = model.camera(name).id
    except KeyError:
        raise ValueError(f"the MuJoCo model has no camera '{name}'") from None
    if model.cam_projection[i] != 0 or np.any(model.cam_sensorsize[i]):
        raise ValueError(f"camera '{name}' is not a perspective camera defined by fovy")
    width, height = (int(v) for v in model.cam_resolution[i])
    rotation = data.cam_xmat[i].reshape(3, 3) @ MUJOCO_TO_OPTICAL
    return CameraModel.from_fovy(width, height, float(model.cam_fovy[i]), data.cam_xpos[i].copy(), rotation)


@dataclass(frozen=True)
class TargetColour:
    """How to find one kind of object: its HSV range, smallest blob, and height of its centre above the table."""

    hsv_low: tuple[int, int, int] = setting(doc="H, S, V lower bounds (OpenCV units)")
    hsv_high: tuple[int, int, int] = setting(doc="H, S, V upper bounds; H below hsv_low's wraps around red")
    min_area: float = setting(doc="pixels; smaller blobs count as not found", above=0)
    height: float = setting(0.0, "m above the table of the plane the blob's centroid is back-projected onto",
                            minimum=0)

    def __post_init__(self) -> None:
        for name in ("hsv_low", "hsv_high"):
            problem = _hsv_problem(getattr(self, name))
            if problem:
                raise ConfigError(None, name, problem)
        ColourBlobDetector(self.hsv_low, self.hsv_high, self.min_area)


@dataclass(frozen=True)
class CameraPose:
    """The pose of the camera's optical frame (z forward, x right, y down) in the config's ``frame_id``."""

    position: tuple[float, float, float] = setting(doc="m")
    rpy: tuple[float, float, float] = setting(doc="rad, roll pitch yaw about the fixed x, y, z axes")


@dataclass(frozen=True)
class PerceptionConfig:
    """Colour presets, the table plane, and the overhead camera's extrinsics (``config/perception.yaml``)."""

    targets: dict[str, TargetColour] = setting(doc="what to find, by name")
    camera: CameraPose = setting(doc="the overhead camera's optical frame in frame_id")
    frame_id: str = setting("world", "frame of the table plane, the camera pose and the published points")
    table_height: float = setting(0.0, "m, z of the table surface in frame_id")
    kernel_size: int = setting(3, "pixels, morphological opening and closing of the colour mask; 1: none")

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError(None, "targets", "configure at least one target")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(None, "kernel_size", f"must be a positive odd integer, got {self.kernel_size}")

    def target(self, name: str) -> TargetColour:
        if name not in self.targets:
            raise ConfigError(None, "target", f"unknown target '{name}' (configured: {', '.join(self.targets)})")
        return self.targets[name]

    def detector(self, name: str, hsv_low: Sequence[int] | None = None,
                 hsv_high: Sequence[int] | None = None) -> ColourBlobDetector:
        """The detector of target ``name``, optionally with other HSV bounds."""
        target = self.target(name)
        return ColourBlobDetector(tuple(target.hsv_low if hsv_low is None else hsv_low),
                                  tuple(target.hsv_high if hsv_high is None else hsv_high),
                                  target.min_area, self.kernel_size)

    def plane_z(self, name: str) -> float:
        """z of the plane target ``name``'s centre moves in: the table top plus the target's height."""
        return self.table_height + self.target(name).height

    def camera_model(self, width: int, height: int, k: Sequence[float]) -> CameraModel:
        """The configured camera pose with the intrinsics of a CameraInfo."""
        return CameraModel.from_camera_info(width, height, k, self.camera.position,
                                            rotation_from_rpy(*self.camera.rpy))


def load_perception_config(path: str | Path | None = None) -> PerceptionConfig:
    """Read and check a perception config (default: the package's ``config/perception.yaml``)."""
    return load_config(PerceptionConfig, path if path is not None else data_dir("config") / "perception.yaml")
