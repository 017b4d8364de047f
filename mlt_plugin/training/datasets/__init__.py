"""Training data: trajectories (frame paths, 0-based boxes, visibility) over real dataset layouts."""
from mlt_plugin.training.datasets.coco import load_yolo_images
from mlt_plugin.training.datasets.sources import Source, load_source, parse_source_spec
from mlt_plugin.training.datasets.vid import load_vid

__all__ = ["Source", "load_source", "parse_source_spec", "load_yolo_images", "load_vid"]
