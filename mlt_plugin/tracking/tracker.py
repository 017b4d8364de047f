"""The MLT tracker (Algorithm 1), with pytracking's BaseTracker contract.

Per frame: crop the search region around the last state, match it with the template (eq. 1, or eq. 4
once adapted), and let the box estimator (box_estimators.py: the paper's 3-scale search, or one crop and
the box head) turn the response into the new box. Confident context patches (the confidence gate below
above tau) go to a bounded memory; every T frames the M lowest-entropy ones (eq. 5) give delta
(eq. 2), the meta-learner gives w_target and channel attention (eq. 3), and the last layer is adapted
(eq. 4). The baselines swap that update: none (MLT-mt) or Adam fine-tuning of w5 (MLT-mt+ft).

The confidence gate (Algorithm 1's "if y[s_t] > tau") is ``params.confidence``:
- "relative" (default): the response peak's height above the map's mean, relative to the same
  quantity measured once in ``initialize`` (the template against the first frame's search region, where
  the target is known to be). tau = 0.5 then means what the paper means by a confident sample: at least
  half as strong a match as the target itself gives. The paper's raw "maximum response value" is not
  comparable across networks and targets: on our matching network the probability sigmoid(f) at the peak
  stayed at 0.68-0.97 while the tracker was lost, so tau = 0.5 on it stored 91 % of frames on a
  sequence where 193 of 199 frames had IoU < 0.1.
- "probability": the probability sigmoid(f) at the peak (the previous gate), kept for comparison;
- "psr": the map's peak-to-sidelobe ratio, relative to the first frame's.

Odd inputs (see _clamp_state): a box partly or wholly outside the frame, a 1-2 px or a larger-than-frame
target, or a frame size change mid-sequence never stop tracking; the state is clamped into the frame.
The reported object_presence_score is the probability sigmoid(f) at the new state times the share of the predicted box inside
the frame: outside it the crop is mean-colour padding, which cannot show the target, so a target that
leaves the frame gets a low score while the tracker stays alive at the frame's edge.
"""
import copy
import time
from collections import Counter

import numpy as np
import torch

from mlt_plugin.networks.losses import label_map, logistic_loss, meta_gradient
from mlt_plugin.networks.weights_io import load_weights
from mlt_plugin.params import TrackerParams, load_parameters, resolve_device, resolve_precision
from mlt_plugin.tracking.box_estimators import build_box_estimator
from mlt_plugin.tracking.crops import context_size, crop_square
from mlt_plugin.tracking.inputs import parse_box, prepare_image
from mlt_plugin.tracking.memory import ContextMemory, ContextPatch

UPDATES = ("meta", "none", "finetune")


def peak_to_sidelobe(logits, exclude: int = 2) -> float:
    """Peak-to-sidelobe ratio of a (17, 17) logit map: (max - mean) / std of the map outside a
    (2 * exclude + 1)^2 window around the maximum."""
    row, col = np.unravel_index(int(np.argmax(logits)), logits.shape)
    mask = np.ones(logits.shape, dtype=bool)
    mask[max(row - exclude, 0) : row + exclude + 1, max(col - exclude, 0) : col + exclude + 1] = False
    side = logits[mask]
    return float((logits[row, col] - side.mean()) / max(float(side.std()), 1e-6))


class MLT:
    """``MLT(params)``: ``initialize(image, box)``, then ``track(image)`` for every following frame."""

    multiobj_mode = "parallel"

    def __init__(self, params=None):
        if params is None or isinstance(params, str):
            params = load_parameters(params or "default")
        if not isinstance(params, TrackerParams):
            raise ValueError(f"params must be a TrackerParams or a parameter set name, got {type(params).__name__}")
        if params.update not in UPDATES:
            raise ValueError(f"params.update must be one of {UPDATES}, got {params.update!r}")
        self.params = params
        self.device = resolve_device(params.device)
        if params.num_threads:
            torch.set_num_threads(params.num_threads)
        variant = "mlt" if params.update == "meta" else "mt"
        self.net, self.meta_learner = load_weights(variant, params.weights, params.extractor)
        self.net = self.net.to(self.device, params.dtype).eval().fold_batch_norm()
        if self.meta_learner is not None:
            self.meta_learner = self.meta_learner.to(self.device).eval()
        # The precision of the search crops' conv1-4, the per-frame bulk of the work. The template, the last
        # layer, the L2 normalisation and the correlation always run in fp32: with them in bf16 too, the
        # logits that choose the box moved 7x more than with bf16 in conv1-4 alone (docs/results.md, "Precision and speed").
        self.precision = resolve_precision(params.precision, self.device)
        self.search_engine = None  # OpenVINO's search forward, built at the first initialize (_build_search_engine)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        # fp16/bf16: the search crops go through a copy of the extractor cast once (weights in that dtype,
        # channels-last), not through autocast, which casts every weight again at every frame.
        self.search_backbone = None if self.amp_dtype is None else \
            copy.deepcopy(self.net.backbone).to(self.amp_dtype).to(memory_format=torch.channels_last)
        self._initial_w5 = self.net.conv5.weight.detach().clone()
        self.box_estimator = build_box_estimator(params, self.net)
        self.initialized = False
        self.stage_seconds = Counter()  # crop / forward / postprocess / update time, read by `mlt bench`

    # pytracking calls this before initialize(); the networks are already loaded.
    def initialize_features(self):
        pass

    def initialize(self, image, info) -> dict:
        """Start tracking ``info`` ([x, y, w, h], 0-based, or a dict with 'init_bbox') in ``image``."""
        started = time.perf_counter()
        image = prepare_image(image)
        box = parse_box(info)
        p = self.params
        self.image_size = image.shape[:2]
        with np.errstate(over="ignore"):  # x + w / 2 may overflow for absurd boxes: inf is clamped below
            self.center = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
        self.size = box[2:].copy()
        self._clamp_state()
        self.pad_color = image.mean((0, 1))
        exemplar_side = context_size(*self.size, p.context_amount)
        self.search_side = exemplar_side * p.instance_size / p.exemplar_size
        exemplar = crop_square(image, self.center, exemplar_side, p.exemplar_size, self.pad_color)
        self.net.conv5.weight.data.copy_(self._initial_w5)  # undo fine-tuning from a previous sequence
        if self.search_engine is None:
            self._build_search_engine(image)
        with torch.inference_mode():
            template_conv4 = self.net.conv4_features(self._to_tensor([exemplar]))
        self.template_conv4 = template_conv4.float().clone()  # a normal tensor: updates differentiate through it
        self.box_estimator.start(self.template_conv4)
        self.w_target = self.attention = self.target_bias = None
        self._update_template()
        self.memory = ContextMemory(p.memory_size)
        self.frame_index = 1  # frame t of Algorithm 1; the initial frame is t = 1
        self.last_update = None  # the latest meta update's inputs, for mlt_plugin/diagnose.py (not a history: no growth)
        self.reference_height = self._reference_height(image)
        self.initialized = True
        return {"time": time.perf_counter() - started}

    def track(self, image, info=None) -> dict:
        """Locate the target in the next frame: {'target_bbox': [x, y, w, h], 'object_presence_score': p}."""
        if not self.initialized:
            raise ValueError("track() called before initialize(): give the first frame and box to initialize()")
        image = prepare_image(image)
        p = self.params
        self.frame_index += 1
        if image.shape[:2] != self.image_size:  # frame size changed mid-sequence: keep the state inside it
            self.image_size = image.shape[:2]
            self._clamp_state()
        tic = time.perf_counter()
        sides = self.box_estimator.sides(self.search_side)
        crops = self._search_crops(image, sides)
        toc = self._lap("crop", tic)
        with torch.inference_mode():
            conv4 = self._search_conv4(crops)
            logits = self.matcher(conv4).float().cpu().numpy()
        toc = self._lap("forward", toc)

        found = self.box_estimator.locate(logits, conv4, self.size, self.search_side)
        best, confidence = found.crop, found.probability
        height = float(logits[best][found.cell] - logits[best].mean())
        self.last_psr = peak_to_sidelobe(logits[best]) / max(self.reference_psr, 1e-6)
        self.center = self.center + (found.offset * sides[best] / p.instance_size)[::-1]
        self.size, self.search_side = found.size, found.search_side
        presence = confidence * self._visible_fraction()  # before clamping: how far out the peak went
        self._clamp_state()

        self.last_gate = self._gate_value(confidence, height)
        if self.last_gate > p.confidence_threshold:
            self.memory.add(
                ContextPatch(
                    conv4=conv4[best].detach().to(torch.float16),
                    response=torch.sigmoid(torch.from_numpy(logits[best])),
                    center=torch.tensor(found.offset / p.total_stride, dtype=torch.float32),
                    frame=self.frame_index - 1,  # 0-based frame number in the sequence
                    box=(self.center[0] - self.size[0] / 2, self.center[1] - self.size[1] / 2, *self.size),
                )
            )
        toc = self._lap("postprocess", toc)
        if self.frame_index % p.update_interval == 0:
            self.update()
            self._lap("update", toc)
        box = [self.center[0] - self.size[0] / 2, self.center[1] - self.size[1] / 2, self.size[0], self.size[1]]
        return {"target_bbox": [float(v) for v in box], "object_presence_score": float(presence)}

    def update(self):
        """Adapt the last layer from the memory: meta-learner (MLT) or fine-tuning (MLT-mt+ft)."""
        p = self.params
        if p.update == "none":
            return
        patches = self.memory.select_min_entropy(p.num_update_samples)
        if not patches:
            return
        search_conv4 = torch.stack([q.conv4 for q in patches]).to(self.device, torch.float32)
        labels = label_map(torch.stack([q.center for q in patches]).to(self.device), p.label_radius)
        if p.update == "meta":
            delta = meta_gradient(self.net, self.template_conv4, search_conv4, labels)
            with torch.inference_mode():
                w_target, self.attention = self.meta_learner(delta)
                # eq. (4) with the target channels normalised like the base channels (see target_kernels)
                self.w_target, self.target_bias = self.net.target_kernels(w_target, self.template_conv4)
            self.last_update = {"frame": self.frame_index, "delta": delta.detach(), "patches": patches}
        else:
            self._finetune(search_conv4, labels)
        self._update_template()

    def _finetune(self, search_conv4, labels):
        """MLT-mt+ft: Adam steps on w5 only (batch norm statistics frozen)."""
        p = self.params
        weight = self.net.conv5.weight
        optimizer = torch.optim.Adam([weight], lr=p.finetune_lr)
        with torch.enable_grad():
            weight.requires_grad_(True)
            for _ in range(p.finetune_iterations):
                template = self.net.embed(self.template_conv4)
                logits = self.net.correlate(template, self.net.embed(search_conv4))
                loss = logistic_loss(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            weight.requires_grad_(False)

    def _update_template(self):
        with torch.inference_mode():
            self.matcher = self.net.matcher(
                self.template_conv4, w_target=self.w_target, attention=self.attention, target_bias=self.target_bias)

    def _reference_height(self, image):
        """The gate's reference: the unadapted template against the first frame's search region at scale 1,
        where the target is known to be at the centre; the peak's logit height above the map's mean."""
        p = self.params
        crop = self._to_tensor([crop_square(image, self.center, self.search_side, p.instance_size, self.pad_color)])
        with torch.inference_mode():
            logits = self.matcher(self.net.conv4_features(crop)).float()
        self.reference_psr = peak_to_sidelobe(logits[0].cpu().numpy())
        return float(logits.max() - logits.mean())

    def _gate_value(self, probability, height):
        """The quantity compared with tau (params.confidence: "relative", "probability" or "psr")."""
        self.last_probability, self.last_relative = probability, height / max(self.reference_height, 1e-6)
        mode = self.params.confidence
        if mode == "probability":
            return self.last_probability
        if mode == "psr":
            return self.last_psr
        return self.last_relative

    def _clamp_state(self):
        """Keep the centre inside the frame and the size between min_size and 10x the frame.

        The centre is clipped to [0, W] x [0, H] (continuous pixel coordinates, as pysot does), so at
        least a quarter of a box smaller than the frame stays inside it; w and h are clipped separately
        to [min_size, 10 * W] and [min_size, 10 * H]. When the size is clipped the search region is
        recomputed from it: otherwise scale steps would keep shrinking or growing the search region
        while the box stays put (unclipped, both always scale together, so valid tracks are unchanged).
        """
        p = self.params
        height, width = self.image_size
        self.center = np.clip(self.center, 0, [width, height])
        size = np.clip(self.size, p.min_size, 10 * np.array([width, height], dtype=np.float64))
        if not np.array_equal(size, self.size):
            self.size = size
            self.search_side = context_size(*size, p.context_amount) * p.instance_size / p.exemplar_size

    def _visible_fraction(self) -> float:
        """Share of the box inside the frame, per axis of what the frame can show (a box wider than
        the frame that spans it counts as fully visible)."""
        height, width = self.image_size
        extent = np.array([width, height], dtype=np.float64)
        beyond = np.maximum(self.size / 2 - self.center, 0) + np.maximum(self.center + self.size / 2 - extent, 0)
        # Exactly 1 for a box inside the frame: valid tracks keep the network's score unchanged.
        return float(np.prod(np.clip((self.size - beyond) / np.minimum(self.size, extent), 0, 1)))

    def _lap(self, stage, since):
        now = time.perf_counter()
        self.stage_seconds[stage] += now - since
        return now

    def _build_search_engine(self, image):
        """The extractor's own search forward where it has a faster one than torch (networks/extractors.py:
        cpu_search_engine; OpenVINO on CPUs), once per tracker; else None (torch). int8 activation ranges come
        from the weight file (shipped files carry them, see tools/calibrate_int8.py), else from this first
        frame's search crops, kept for every later sequence (VOT's re-initialisations included)."""
        self.search_engine = self.net.backbone.cpu_search_engine(
            self.net, self.precision, self.device, self.box_estimator.crops_per_frame, self.params.instance_size,
            lambda: self._to_tensor(self._search_crops(image)))

    def _search_crops(self, image, sides=None) -> np.ndarray:
        """The search crops the box estimator asks for (``sides``, when already computed), (S, size, size, 3) uint8."""
        if sides is None:
            sides = self.box_estimator.sides(self.search_side)
        return np.stack([crop_square(image, self.center, s, self.params.instance_size, self.pad_color) for s in sides])

    def _search_conv4(self, crops):
        """conv1-4 of the search crops in the tracker's precision, returned in fp32."""
        if self.search_engine is not None:
            return self.search_engine(crops)
        if self.search_backbone is not None:
            return self.search_backbone(self._to_tensor(crops).to(self.amp_dtype)).float()
        return self.net.conv4_features(self._to_tensor(crops)).float()

    def _to_tensor(self, crops):
        # HxWxC crops are already channels-last: permute without copying; move as uint8 (a quarter of
        # float's bytes to a GPU), then convert there.
        batch = torch.from_numpy(np.asarray(crops)).permute(0, 3, 1, 2)
        return batch.to(self.device, memory_format=torch.channels_last).to(self.params.dtype)

