"""keras-fer-viz: see what a Keras image classifier looks at.

Saliency maps, Grad-CAM, CAM, LIME and filter visualisation for any Keras 3
image classifier, during training and after, with facial-expression
recognition on FER2013 as the flagship case.

The public API is re-exported here, explicitly, and imported on first use:
``import keras_fer_viz`` and the command line's ``--help`` do not start
Keras or TensorFlow, and the FER2013 loader works without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "EMOTIONS": "keras_fer_viz.data.fer2013",
    "load_fer2013": "keras_fer_viz.data.fer2013",
    "SyntheticFaces": "keras_fer_viz.data.synthetic",
    "synthetic_faces": "keras_fer_viz.data.synthetic",
    "adapt_images": "keras_fer_viz.data.adapt",
    "load_image_folder": "keras_fer_viz.data.folders",
    "fer_cnn": "keras_fer_viz.models",
    "BestModelCheckpoint": "keras_fer_viz.training",
    "per_class_accuracy": "keras_fer_viz.training",
    "train": "keras_fer_viz.training",
    "all_layers": "keras_fer_viz.layers",
    "conv_layers": "keras_fer_viz.layers",
    "last_conv_layer": "keras_fer_viz.layers",
    "resolve_layer": "keras_fer_viz.layers",
    "spatial_layers": "keras_fer_viz.layers",
    "submodel": "keras_fer_viz.layers",
    "Saliency": "keras_fer_viz.saliency",
    "SmoothGrad": "keras_fer_viz.saliency",
    "IntegratedGradients": "keras_fer_viz.saliency",
    "GradientXInput": "keras_fer_viz.saliency",
    "GradCAM": "keras_fer_viz.grad_cam",
    "GradCAMPlusPlus": "keras_fer_viz.grad_cam",
    "XGradCAM": "keras_fer_viz.grad_cam",
    "HiResCAM": "keras_fer_viz.grad_cam",
    "LayerCAM": "keras_fer_viz.grad_cam",
    "EigenCAM": "keras_fer_viz.grad_cam",
    "GuidedBackprop": "keras_fer_viz.guided",
    "GuidedGradCAM": "keras_fer_viz.guided",
    "CAM": "keras_fer_viz.cam",
    "gap_head": "keras_fer_viz.cam",
    "maximize_activation": "keras_fer_viz.filters",
    "feature_maps": "keras_fer_viz.filters",
    "Lime": "keras_fer_viz.lime",
    "Occlusion": "keras_fer_viz.perturbation",
    "ScoreCAM": "keras_fer_viz.perturbation",
    "EXPLAINERS": "keras_fer_viz.registry",
    "explain_dataset": "keras_fer_viz.datasets",
    "DatasetExplanation": "keras_fer_viz.datasets",
}

__all__ = [
    "EMOTIONS",
    "EXPLAINERS",
    "BestModelCheckpoint",
    "CAM",
    "DatasetExplanation",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "IntegratedGradients",
    "LayerCAM",
    "Lime",
    "Occlusion",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "SyntheticFaces",
    "XGradCAM",
    "adapt_images",
    "all_layers",
    "conv_layers",
    "explain_dataset",
    "feature_maps",
    "fer_cnn",
    "gap_head",
    "last_conv_layer",
    "load_fer2013",
    "load_image_folder",
    "maximize_activation",
    "per_class_accuracy",
    "resolve_layer",
    "spatial_layers",
    "submodel",
    "synthetic_faces",
    "train",
]
assert sorted(__all__) == sorted(_EXPORTS)


# Submodules reachable as attributes (kfv.figures.saliency_grid, ...).
_SUBMODULES = {"callbacks", "figures", "layers", "metrics", "report", "spec"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"keras_fer_viz.{name}")
        globals()[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_fer_viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


if TYPE_CHECKING:  # static tools see the real definitions
    from keras_fer_viz import callbacks, figures, layers, metrics, report, spec  # noqa: F401
    from keras_fer_viz.cam import CAM, gap_head
    from keras_fer_viz.data.adapt import adapt_images
    from keras_fer_viz.data.fer2013 import EMOTIONS, load_fer2013
    from keras_fer_viz.data.folders import load_image_folder
    from keras_fer_viz.data.synthetic import SyntheticFaces, synthetic_faces
    from keras_fer_viz.filters import feature_maps, maximize_activation
    from keras_fer_viz.grad_cam import (
        EigenCAM,
        GradCAM,
        GradCAMPlusPlus,
        HiResCAM,
        LayerCAM,
        XGradCAM,
    )
    from keras_fer_viz.guided import GuidedBackprop, GuidedGradCAM
    from keras_fer_viz.layers import (
        all_layers,
        conv_layers,
        last_conv_layer,
        resolve_layer,
        spatial_layers,
        submodel,
    )
    from keras_fer_viz.lime import Lime
    from keras_fer_viz.models import fer_cnn
    from keras_fer_viz.perturbation import Occlusion, ScoreCAM
    from keras_fer_viz.registry import EXPLAINERS
    from keras_fer_viz.saliency import GradientXInput, IntegratedGradients, Saliency, SmoothGrad
    from keras_fer_viz.training import BestModelCheckpoint, per_class_accuracy, train
