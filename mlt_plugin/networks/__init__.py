from mlt_plugin.networks.losses import label_map, logistic_loss, meta_gradient
from mlt_plugin.networks.matching import MatchingNetwork
from mlt_plugin.networks.meta_learner import MetaLearner
from mlt_plugin.networks.weights_io import load_weights, save_weights

__all__ = ["MatchingNetwork", "MetaLearner", "label_map", "logistic_loss", "meta_gradient", "load_weights", "save_weights"]
