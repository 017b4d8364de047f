"""A teacher for the matching stage (distillation): NanoTrack v2's classification map for a crop pair.

NanoTrack v2 (OpenCV's ``TrackerNano``, Apache-2.0) learned from far more video than this project has. For
any (x, z) pair that training cuts, its foreground probability says how much each place of z resembles
the target, distractors included, where our labels only say where the target is. Two levels:

- ``map``: the map resampled to the student's response grid, a soft label beside eq. (6)
  (``losses.soft_logistic_loss``);
- ``features``: its 48-channel search features, which the student's conv4 matches through a learned 1x1
  projection (``feature_distillation_loss``).

It runs at training time only, through OpenCV's dnn module (part of opencv-python, already a dependency),
on the two ONNX files of ``../shared/models/nanotrack_v2``: tracking never needs it.
"""
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mlt_plugin.geometry import EXEMPLAR_SIZE, INSTANCE_SIZE, RESPONSE_SIZE, TOTAL_STRIDE

BACKBONE, HEAD = "nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"
TEACHER_STRIDE, TEACHER_CELLS = 16, 16  # its map: 16x16 cells over the 255 crop, cell 8 at the crop centre
TEACHER_CHANNELS = 48  # its backbone's feature channels


def resampling_matrix(size=RESPONSE_SIZE, stride=TOTAL_STRIDE) -> np.ndarray:
    """(size, 16) bilinear weights from the teacher's cells to the student's along one axis.

    Student cell k sits at stride * (k - (size - 1) / 2) crop pixels from the crop centre, teacher cell j at
    16 * (j - 8) (OpenCV's tracker_nano.cpp): the student's 17 cells of 8 px fall on teacher cells 4 to 12."""
    offsets = stride * (np.arange(size) - (size - 1) / 2)
    position = np.clip(offsets / TEACHER_STRIDE + TEACHER_CELLS // 2, 0, TEACHER_CELLS - 1)
    low = np.minimum(np.floor(position).astype(int), TEACHER_CELLS - 2)
    frac = position - low
    weights = np.zeros((size, TEACHER_CELLS), np.float32)
    weights[np.arange(size), low] = 1 - frac
    weights[np.arange(size), low + 1] = frac
    return weights


def on_teacher_cells(student: torch.Tensor):
    """Student features (B, C, N, N) of the 255 search crop (stride 8, centred: cell i at 8 (i - (N - 1) / 2)
    px from the crop centre) sampled bilinearly at the teacher's cells that fall inside them (teacher cell j
    at 16 (j - 8) px): (B, C, n, n) and the teacher's cell indices (a slice), e.g. cells 3 to 13 for N = 24."""
    side = student.shape[-1]
    half = (side - 1) / 2
    first = int(np.ceil(TEACHER_CELLS // 2 - half * TOTAL_STRIDE / TEACHER_STRIDE))
    last = int(np.floor(TEACHER_CELLS // 2 + half * TOTAL_STRIDE / TEACHER_STRIDE))
    first, last = max(first, 0), min(last, TEACHER_CELLS - 1)
    cells = torch.arange(first, last + 1, dtype=student.dtype, device=student.device)
    # grid_sample's normalised coordinates (align_corners: -1 and 1 are the first and last cell centres)
    positions = (cells - TEACHER_CELLS // 2) * TEACHER_STRIDE / TOTAL_STRIDE / half
    grid = torch.stack(torch.meshgrid(positions, positions, indexing="xy"), -1)
    grid = grid.unsqueeze(0).expand(student.shape[0], -1, -1, -1)
    return F.grid_sample(student, grid, align_corners=True), slice(first, last + 1)


def feature_distillation_loss(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity, per teacher cell inside the student's view, between the student's projected
    search features (B, 48, N, N) and the teacher's (B, 48, 16, 16): scale-free, so that neither network's
    feature magnitude matters."""
    student, cells = on_teacher_cells(projected.float())
    return (1 - F.cosine_similarity(student, teacher[:, :, cells, cells].float(), dim=1)).mean()


class NanoTrackTeacher:
    """``teacher(x, z)``: NanoTrack's foreground probability for template x (127x127x3) and search crop z
    (255x255x3), both RGB uint8 as the samplers cut them, on the student's 17x17 grid, and its search
    features (48, 16, 16).

    The networks load lazily, so that each data-loading process builds its own (OpenCV nets do not pickle).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        missing = [name for name in (BACKBONE, HEAD) if not (self.folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"teacher: {', '.join(missing)} not in {self.folder} (NanoTrack v2's folder, "
                                    f"e.g. ../shared/models/nanotrack_v2)")
        self.weights = resampling_matrix()
        self._nets = None

    def __getstate__(self):
        return {**self.__dict__, "_nets": None}

    def _features(self, backbone, crop):
        # OpenCV's TrackerNano feeds RGB 0-255 without scaling; the crops are RGB already.
        backbone.setInput(cv2.dnn.blobFromImage(np.ascontiguousarray(crop), 1.0))
        return backbone.forward().copy()

    def __call__(self, x, z):
        if x.shape[:2] != (EXEMPLAR_SIZE, EXEMPLAR_SIZE) or z.shape[:2] != (INSTANCE_SIZE, INSTANCE_SIZE):
            raise ValueError(f"teacher: crops of {EXEMPLAR_SIZE} and {INSTANCE_SIZE} px expected, got "
                             f"{x.shape[:2]} and {z.shape[:2]} (distillation needs --search-size {INSTANCE_SIZE})")
        if self._nets is None:
            self._nets = tuple(cv2.dnn.readNetFromONNX(str(self.folder / name)) for name in (BACKBONE, HEAD))
        backbone, head = self._nets
        template, search = self._features(backbone, x), self._features(backbone, z)
        head.setInput(template, "input1")
        head.setInput(search, "input2")
        scores = head.forward("output1")[0].astype(np.float64)  # (2, 16, 16): background, foreground
        foreground = 1.0 / (1.0 + np.exp(scores[0] - scores[1]))  # the softmax's foreground channel
        return (self.weights @ foreground @ self.weights.T).astype(np.float32), search[0]
