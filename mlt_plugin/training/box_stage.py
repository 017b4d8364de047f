"""The box head's training stage (`mlt train box`): the head learns a target's extent from (x, z) pairs.

The extractor stays frozen (the one the tracker runs, with the features it gives the tracker: on an x86
CPU OpenVINO's int8 engine, elsewhere torch), so only the head trains; MLT's matching network and
meta-learner are not touched. Pairs are the matching stage's (every source kind, negatives, same-image
distractors, same-class look-alikes, pasted and occluded stills), with a wider scale and shift jitter
than the matching stage and an aspect stretch of z, so that the head sees targets of other sizes and
shapes than the template's, as a tracker's search crop does.

Loss per pair: 1 - GIoU of the head's box against the target's on the cells within the label radius of
the target's centre and inside its box (where MLT's peak lands when it is right), plus eq. (6)'s balanced
logistic loss on the head's foreground logits with eq. (6)'s labels.
"""
import numpy as np
import torch

from mlt_plugin.geometry import LABEL_RADIUS, TOTAL_STRIDE
from mlt_plugin.networks.box_head import BoxHead, giou_loss, side_iou, side_targets
from mlt_plugin.networks.losses import label_map, logistic_loss
from mlt_plugin.networks.weights_io import load_box_head, load_weights, save_box_head
from mlt_plugin.params import resolve_precision
from mlt_plugin.training.sampling import CropSampler, PairDataset

HEAD_CHANNELS = 64


def box_sampler():
    """The matching stage's augmentation with more scale (+-35 %) and shift (+-5 cells) jitter."""
    return CropSampler(scale_jitter=0.35, shift_jitter=40.0, blur=0.2, noise=2.0, color=0.2, grayscale=0.1)


def box_losses(head, template_features, search_features, batch):
    """(GIoU loss on the positive cells, logistic loss of the head's score, mean IoU on the positive cells)."""
    sides, logits = head(template_features, search_features)
    cells = logits.shape[-1]
    centers, sizes = batch["centers"], batch["sizes"]
    labels = label_map(centers, LABEL_RADIUS, cells)
    boxes = torch.stack([centers[:, 1] * TOTAL_STRIDE, centers[:, 0] * TOTAL_STRIDE, sizes[:, 1], sizes[:, 0]], 1)
    targets = side_targets(boxes, cells)
    positive = (labels > 0) & (targets.amin(1) > 0)
    score = logistic_loss(logits, labels)
    if not positive.any():
        zero = sides.sum() * 0
        return zero, score, torch.tensor(float("nan"))
    pred, true = sides.permute(0, 2, 3, 1)[positive], targets.permute(0, 2, 3, 1)[positive]
    return giou_loss(pred, true).mean(), score, side_iou(pred.detach(), true).mean()


class FrozenFeatures:
    """The frozen extractor's features of uint8 crops (B, 3, S, S), as the tracker computes them."""

    def __init__(self, extractor: str, device):
        self.net = load_weights("mt", None, extractor)[0].to(device).eval().fold_batch_norm()
        self.device, self.precision = device, resolve_precision("auto", device)
        self.engines = {}  # the extractor's CPU search engine (as MLT._build_search_engine), per batch shape

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        key = tuple(crops.shape)
        if key not in self.engines:
            self.engines[key] = self.net.backbone.cpu_search_engine(self.net, self.precision, self.device, key[0],
                                                                    key[-1], lambda: crops.float())
        if self.engines[key] is not None:
            pixels = crops.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
            return self.engines[key](np.ascontiguousarray(pixels)).to(self.device).contiguous()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
            return self.net.conv4_features(crops.float()).float()


class BoxStage:
    """``mlt train box``: the box head on a frozen extractor."""

    export_name = "box.safetensors"

    def __init__(self, extractor, device, aspect=0.3):
        self.extractor, self.device, self.aspect = extractor, device, aspect
        self.features = FrozenFeatures(extractor, device)
        self.model = BoxHead(self.features.net.backbone.channels, HEAD_CHANNELS).to(device)

    def trainable(self):
        return self.model

    def load_init(self, path):
        self.model.load_state_dict(load_box_head(path, self.extractor).state_dict())

    def prepare(self, sources, rank, world):
        return sources

    def dataset(self, sources, iterations, batch_size, seed, first_sample):
        return PairDataset(sources, iterations, batch_size, seed=seed, first_sample=first_sample,
                           sampler=box_sampler(), aspect=self.aspect)

    def _losses(self, module, batch):
        return box_losses(module, self.features(batch["x"]), self.features(batch["z"]), batch)

    def loss(self, module, batch):
        giou, score, _ = self._losses(module, batch)
        return giou + score

    def validation_data(self, sources, val_sources, batch_size, count, seed):
        """Fixed batches of pairs from the validation sequences and the training sources, the training
        augmentation without the hard pairs (the extent is what is measured)."""
        def fixed(from_sources):
            pairs = PairDataset(from_sources, count, batch_size, seed=seed + 1000, sampler=box_sampler(), hard=False,
                                aspect=self.aspect)
            return [{k: v.to(self.device) for k, v in pairs[i].items()} for i in range(count)]
        return {"validation": fixed(val_sources), "training": fixed(sources)}

    def validation(self, module, data) -> dict:
        """GIoU + score loss in eval mode (validation first: it picks the best state), and the mean IoU of the
        head's boxes on the positive cells."""
        was_training = module.training
        module.eval()
        result = {}
        with torch.no_grad():
            for name, batches in data.items():
                losses = [self._losses(module, b) for b in batches]
                result[name] = float(np.mean([float(g + s) for g, s, _ in losses]))
                result[f"{name}_iou"] = float(np.nanmean([float(i) for _, _, i in losses]))
        module.train(was_training)
        return {**result, "gap": result["validation"] - result["training"]}

    def export(self, path, suffix=""):
        save_box_head(path / self.export_name.replace(".safetensors", f"{suffix}.safetensors"), self.model,
                      self.extractor)
