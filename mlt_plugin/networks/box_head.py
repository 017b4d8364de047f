"""The box head: where MLT's response says the target is, the head says its extent.

Anchor-free, as in FCOS, SiamBAN and NanoTrack: per cell of the 17x17 response grid, the distances from
the cell to the box's four sides (left, top, right, bottom, in search-crop pixels) and a foreground logit.
Its input is a depthwise correlation of the extractor's template and search features (SiamRPN++): each
channel of the template's central half (the target, 8x8 of the lite extractor's 16x16 cells) slides over
the same channel of the search features; the part of that map whose cells line up with the response's
is kept, so cell (i, j) of the head is cell (i, j) of eq. (1)'s response. A small conv tower then reads
the box off the correlation. The head sees the frozen extractor's features only: one head serves MLT,
MLT-mt and MLT-mt+ft of a network family, whatever their last layers and updates.

Geometry: cell (i, j) sits at ((j - 8) * 8, (i - 8) * 8) search-crop pixels from the crop centre (the
tracker's convention for the response). Distances are ``SIDE_UNIT * exp(raw)``: positive, and at a raw 0
the half-extent of a target the tracker's crop sizes to ~64 px.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mlt_plugin.geometry import TOTAL_STRIDE

SIDE_UNIT = 32.0  # crop pixels: half the ~64 px a target spans in the 255 px search crop
RAW_RANGE = (-4.0, 3.0)  # exp(raw) in [0.018, 20]: finite distances whatever the input


def _conv_bn_relu(cin, cout, k):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def xcorr_depthwise(search: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of ``kernel`` (B, C, k, k) correlated with the same channel of ``search`` (B, C, s, s)."""
    batch, channels = kernel.shape[:2]
    out = F.conv2d(search.reshape(1, batch * channels, *search.shape[2:]),
                   kernel.reshape(batch * channels, 1, *kernel.shape[2:]), groups=batch * channels)
    return out.view(batch, channels, *out.shape[2:])


class BoxHead(nn.Module):
    """(template features, search features) -> (sides (B, 4, R, R) l, t, r, b in crop pixels, logits (B, R, R)).

    ``in_channels``: the extractor's feature channels (112 for lite); ``channels``: the head's width.
    """

    def __init__(self, in_channels: int, channels: int = 64):
        super().__init__()
        self.in_channels, self.channels = in_channels, channels
        self.template_adjust = nn.Sequential(*_conv_bn_relu(in_channels, channels, 1))
        self.search_adjust = nn.Sequential(*_conv_bn_relu(in_channels, channels, 1))
        self.tower = nn.Sequential(*_conv_bn_relu(channels, channels, 3), *_conv_bn_relu(channels, channels, 3))
        self.sides = nn.Conv2d(channels, 4, 3, padding=1)
        self.score = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.normal_(self.sides.weight, std=1e-3)  # start near SIDE_UNIT on every side
        nn.init.zeros_(self.sides.bias)

    def kernel(self, template_conv4: torch.Tensor) -> torch.Tensor:
        """The template's central half (t/4 to 3t/4 of its t cells), adjusted: the correlation kernel."""
        side = template_conv4.shape[-1]
        start, size = side // 4, side // 2
        return self.template_adjust(template_conv4[..., start : start + size, start : start + size])

    def forward(self, template_conv4: torch.Tensor, search_conv4: torch.Tensor):
        return self.locate(self.kernel(template_conv4), search_conv4, template_conv4.shape[-1])

    def locate(self, kernel: torch.Tensor, search_conv4: torch.Tensor, template_side: int):
        """``kernel`` from ``kernel()`` (once per target when tracking); ``template_side``: the full template's
        feature side (16 for lite), which fixes the grid: R = s - template_side + 1 cells, as eq. (1)'s response."""
        correlation = xcorr_depthwise(self.search_adjust(search_conv4), kernel)
        response = search_conv4.shape[-1] - template_side + 1
        start = (correlation.shape[-1] - response) // 2  # (template_side - kernel side) / 2
        x = self.tower(correlation[..., start : start + response, start : start + response])
        raw = self.sides(x).float().clamp(*RAW_RANGE)
        return SIDE_UNIT * raw.exp(), self.score(x).float().squeeze(1)


def cell_offsets(cells: int, device=None) -> torch.Tensor:
    """Each response cell's offset from the crop centre in crop pixels, (cells,): (k - (cells - 1) / 2) * stride."""
    return (torch.arange(cells, dtype=torch.float32, device=device) - (cells - 1) / 2) * TOTAL_STRIDE


def decode_boxes(sides: torch.Tensor) -> torch.Tensor:
    """Per-cell boxes (..., 4, R, R) as (cx, cy, w, h) in crop pixels from the crop centre, from ``sides``
    (..., 4, R, R) = (l, t, r, b) measured from each cell."""
    left, top, right, bottom = sides.unbind(-3)
    offsets = cell_offsets(sides.shape[-1], sides.device)
    x, y = offsets.view(1, -1), offsets.view(-1, 1)
    return torch.stack([x + (right - left) / 2, y + (bottom - top) / 2, left + right, top + bottom], -3)


def side_targets(boxes: torch.Tensor, cells: int) -> torch.Tensor:
    """The distances (B, 4, R, R) from every cell to the sides of ``boxes`` (B, 4) = (cx, cy, w, h) in crop
    pixels from the crop centre (negative where the cell lies outside the box)."""
    offsets = cell_offsets(cells, boxes.device)
    cx, cy, w, h = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    x, y = offsets.view(1, 1, -1), offsets.view(1, -1, 1)
    left, right = (x - (cx - w / 2)).expand(-1, cells, -1), ((cx + w / 2) - x).expand(-1, cells, -1)
    top, bottom = (y - (cy - h / 2)).expand(-1, -1, cells), ((cy + h / 2) - y).expand(-1, -1, cells)
    return torch.stack([left, top, right, bottom], 1)


def _overlap(sides: torch.Tensor, targets: torch.Tensor):
    """(IoU, union, enclosing area) of boxes given by their distances (N, 4) = (l, t, r, b) from one shared point."""
    pl, pt, pr, pb = sides.unbind(-1)
    tl, tt, tr, tb = targets.unbind(-1)
    area_p, area_t = (pl + pr) * (pt + pb), (tl + tr) * (tt + tb)
    inter = (torch.min(pl, tl) + torch.min(pr, tr)).clamp(min=0) * (torch.min(pt, tt) + torch.min(pb, tb)).clamp(min=0)
    union = area_p + area_t - inter
    enclosing = (torch.max(pl, tl) + torch.max(pr, tr)) * (torch.max(pt, tt) + torch.max(pb, tb))
    return inter / union.clamp(min=1e-6), union, enclosing


def side_iou(sides: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of boxes given by their distances (N, 4) = (l, t, r, b) from one shared point, per row."""
    return _overlap(sides, targets)[0]


def giou_loss(sides: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - GIoU of boxes given by their distances (N, 4) = (l, t, r, b) from one shared point, per row."""
    iou, union, enclosing = _overlap(sides, targets)
    return 1 - (iou - (enclosing - union) / enclosing.clamp(min=1e-6))
