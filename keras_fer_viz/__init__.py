"""keras-fer-viz: see what a Keras image classifier looks at.

Saliency maps, Grad-CAM, CAM, LIME and filter visualisation for any Keras 3
image classifier, during training and after, with facial-expression
recognition on FER2013 as the flagship case. The public API is re-exported
here explicitly.
"""

from keras_fer_viz.data import EMOTIONS, SyntheticFaces, load_fer2013, synthetic_faces
from keras_fer_viz.models import fer_cnn
from keras_fer_viz.training import BestModelCheckpoint, per_class_accuracy, train

__version__ = "0.1.0"

__all__ = [
    "EMOTIONS",
    "BestModelCheckpoint",
    "SyntheticFaces",
    "fer_cnn",
    "load_fer2013",
    "per_class_accuracy",
    "synthetic_faces",
    "train",
]
