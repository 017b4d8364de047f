"""How a box comes out of the response: the second seam of the tracker (design.md).

A box estimator says which search crops a frame needs (``sides``) and turns their responses into the new
state (``locate``). Algorithm 1 and the meta-learner see only the chosen crop's response and the new box,
whichever estimator a parameter set names (``params.box_estimator``):

- ``scale_search``: the paper's (section 4.1, after SiamFC): the search region at every scale of
  ``params.scales``, the response upsampled, a penalty on scale change, a cosine window, the peak; the size
  follows the best scale, damped. The box keeps the first frame's aspect ratio.
- ``head``: one crop at the current scale; MLT's response (eq. 1, or eq. 4 after an update) says where the
  target is, the box head (networks/box_head.py) its extent there. Chosen as SiamRPN does: per cell, the
  head's box is penalised for changing scale and aspect, the penalised score gets a cosine window, the
  best cell gives the centre and (with a learning rate scaled by penalty and score) the size.
"""
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mlt_plugin.geometry import RESPONSE_SIZE
from mlt_plugin.networks.weights_io import load_box_head
from mlt_plugin.tracking.crops import context_size


@dataclass
class Located:
    crop: int  # which search crop the target was found in
    cell: tuple  # (row, col) of the response cell under the new centre, for the confidence gate
    probability: float  # sigmoid(f) of MLT's response there
    offset: np.ndarray  # (dy, dx) of the new centre from the crop centre, in crop pixels
    size: np.ndarray  # new (w, h) in image pixels
    search_side: float  # new search region side in image pixels


class ScaleSearch:
    """The paper's search over ``params.scales`` (section 4.1)."""

    def __init__(self, params, net=None):
        self.params = params
        self.scales = np.asarray(params.scales, dtype=np.float64)
        hann = np.hanning(params.response_upsample * RESPONSE_SIZE)
        self.window = np.outer(hann, hann) / np.outer(hann, hann).sum()

    @property
    def crops_per_frame(self) -> int:
        return len(self.scales)

    def start(self, template_conv4):
        pass

    def sides(self, search_side: float) -> np.ndarray:
        return search_side * self.scales

    def locate(self, logits, conv4, size, search_side) -> Located:
        p = self.params
        best, peak, probability = self._locate(logits)
        cells = logits.shape[-1]
        cell = tuple(min(int(v * cells / (cells * p.response_upsample)), cells - 1) for v in peak)
        # Peak offset from the response centre, in upsampled pixels -> search-crop pixels.
        offset_up = np.array(peak, dtype=np.float64) - (cells * p.response_upsample - 1) / 2  # (row, col)
        offset = offset_up * p.total_stride / p.response_upsample
        scale = (1 - p.scale_damping) + p.scale_damping * self.scales[best]
        return Located(best, cell, probability, offset, size * scale, search_side * scale)

    def _locate(self, logits):
        """Best scale, peak (row, col) in the upsampled map, and the response probability there."""
        p = self.params
        up_size = logits.shape[-1] * p.response_upsample
        maps = np.stack([cv2.resize(m, (up_size, up_size), interpolation=cv2.INTER_CUBIC) for m in logits])
        # The scale is chosen on the logits' maxima, as SiamFC (whose penalty 0.97 the paper takes) penalises
        # its raw scores, the logits of its logistic loss. On probabilities it froze the box size: a unit-scale
        # peak above 0.97 (the usual case) can never be beaten after a 0.97 penalty. A negative peak (target
        # lost) loses the same share of its magnitude, so a penalty always lowers a score.
        peaks = maps.max((1, 2))
        penalised = np.where(self.scales == 1.0, peaks, peaks - (1 - p.scale_penalty) * np.abs(peaks))
        best = int(np.argmax(penalised))
        probs = 1 / (1 + np.exp(-maps[best]))  # only the chosen scale's map is needed as probabilities
        response = probs - probs.min()
        response = response / max(float(response.sum()), 1e-12)
        response = (1 - p.window_influence) * response + p.window_influence * self.window
        peak = np.unravel_index(int(np.argmax(response)), response.shape)
        return best, peak, float(probs[peak])


def _change(ratio):
    return np.maximum(ratio, 1 / ratio)


class HeadBox:
    """One crop per frame; the box head gives the extent at MLT's response peak (SiamRPN's selection)."""

    crops_per_frame = 1

    def __init__(self, params, net):
        self.params = params
        self.head = load_box_head(params.box_head_weights, net.extractor).to(net.response_scale.device).eval()
        hann = np.hanning(RESPONSE_SIZE)
        self.window = np.outer(hann, hann)  # peak 1, as the probabilities it is mixed with
        self.kernel = None

    def start(self, template_conv4):
        self.template_side = template_conv4.shape[-1]
        with torch.inference_mode():
            self.kernel = self.head.kernel(template_conv4.float())

    def sides(self, search_side: float) -> np.ndarray:
        return np.array([search_side])

    def locate(self, logits, conv4, size, search_side) -> Located:
        p = self.params
        with torch.inference_mode():
            sides, head_logits = self.head.locate(self.kernel, conv4[:1].float(), self.template_side)
        sides, head_logits = sides[0].cpu().numpy().astype(np.float64), head_logits[0].cpu().numpy()
        probability = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
        score = probability
        if p.head_score_weight:  # the head's own foreground score beside MLT's response
            head_probability = 1 / (1 + np.exp(-head_logits.astype(np.float64)))
            score = (1 - p.head_score_weight) * probability + p.head_score_weight * head_probability
        left, top, right, bottom = sides
        crop_per_image = p.instance_size / search_side
        width, height = (left + right) / crop_per_image, (top + bottom) / crop_per_image
        # SiamRPN's penalty on the change of scale (of the context square) and of aspect ratio, per cell.
        scale_change = _change(context_size(width, height, p.context_amount) / context_size(*size, p.context_amount))
        aspect_change = _change((size[0] / size[1]) / (width / height))
        penalty = np.exp(-(scale_change * aspect_change - 1) * p.head_penalty)
        chosen = (1 - p.head_window_influence) * penalty * score + p.head_window_influence * self.window
        cell = np.unravel_index(int(np.argmax(chosen)), chosen.shape)
        cells = logits.shape[-1]
        cell_offset = (np.array(cell, dtype=np.float64) - (cells - 1) / 2) * p.total_stride
        offset = cell_offset + [(bottom[cell] - top[cell]) / 2, (right[cell] - left[cell]) / 2]  # (dy, dx)
        rate = penalty[cell] * score[cell] * p.head_learning_rate
        new_size = (1 - rate) * size + rate * np.array([width[cell], height[cell]])
        new_side = context_size(*new_size, p.context_amount) * p.instance_size / p.exemplar_size
        return Located(0, tuple(int(v) for v in cell), float(probability[cell]), offset, new_size, new_side)


BOX_ESTIMATORS = {"scale_search": ScaleSearch, "head": HeadBox}


def build_box_estimator(params, net):
    if params.box_estimator not in BOX_ESTIMATORS:
        raise ValueError(f"params.box_estimator must be one of {', '.join(BOX_ESTIMATORS)}, got {params.box_estimator!r}")
    return BOX_ESTIMATORS[params.box_estimator](params, net)
