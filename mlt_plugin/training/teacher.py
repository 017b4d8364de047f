"""A teacher for the matching stage (issue 31): NanoTrack v2's classification map for a crop pair.

NanoTrack v2 (OpenCV's ``TrackerNano``, Apache-2.0) learned from far more video than this project has. For
any (x, z) pair that training cuts, its foreground probability says how much each place of z resembles
the target, distractors included, where our labels only say where the target is. The map is resampled to
the student's response grid and used as a soft label beside eq. (6) (``losses.soft_logistic_loss``).

It runs at training time only, through OpenCV's dnn module (part of opencv-python, already a dependency),
on the two ONNX files of ``../shared/models/nanotrack_v2``: tracking never needs it.
"""
from pathlib import Path

import cv2
import numpy as np

from mlt_plugin.geometry import EXEMPLAR_SIZE, INSTANCE_SIZE, RESPONSE_SIZE, TOTAL_STRIDE

BACKBONE, HEAD = "nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"
TEACHER_STRIDE, TEACHER_CELLS = 16, 16  # its map: 16x16 cells over the 255 crop, cell 8 at the crop centre


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


class NanoTrackTeacher:
    """``teacher(x, z)``: NanoTrack's foreground probability for template x (127x127x3) and search crop z
    (255x255x3), both RGB uint8 as the samplers cut them, on the student's 17x17 grid.

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

    def __call__(self, x, z) -> np.ndarray:
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
        return (self.weights @ foreground @ self.weights.T).astype(np.float32)
