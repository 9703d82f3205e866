"""Data: the FER2013 CSV loader and synthetic faces with a known ground truth.

Neither needs Keras: both are numpy only.
"""

from keras_fer_viz.data.fer2013 import EMOTIONS, load_fer2013
from keras_fer_viz.data.synthetic import SyntheticFaces, synthetic_faces

__all__ = ["EMOTIONS", "load_fer2013", "SyntheticFaces", "synthetic_faces"]
