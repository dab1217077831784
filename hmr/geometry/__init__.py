"""Geometry shared by every part of the toolkit: rotations, cameras, projection, alignment."""

from hmr.geometry.boxes import box_iou, square_side
from hmr.geometry.camera import (
    Camera,
    cam_crop_to_full,
    crop_cam_to_translation,
    perspective_projection,
    weak_perspective_projection,
)
from hmr.geometry.procrustes import procrustes_align, procrustes_transform
from hmr.geometry.rotation import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rot6d_to_matrix,
    rotation_between,
    skew,
    so3_right_jacobian,
)

__all__ = [
    "box_iou", "square_side", "Camera", "cam_crop_to_full", "crop_cam_to_translation", "perspective_projection",
    "weak_perspective_projection", "procrustes_align", "procrustes_transform", "axis_angle_to_matrix",
    "matrix_to_axis_angle", "matrix_to_quaternion", "matrix_to_rot6d", "quaternion_to_axis_angle",
    "quaternion_to_matrix", "rot6d_to_matrix", "rotation_between", "skew", "so3_right_jacobian",
]  # fmt: skip
