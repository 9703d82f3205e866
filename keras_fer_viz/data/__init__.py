"""Data: the FER2013 CSV loader, image folders, synthetic faces with a known
ground truth, train/validation/test splits of any of them, picking images
by class, and fitting images to a model's input.

None needs Keras at import: the loaders are numpy (and Pillow) only, and
`adapt_images` imports Keras only to resize.
"""

from keras_fer_viz.data.adapt import adapt_images, adapt_masks
from keras_fer_viz.data.fer2013 import EMOTIONS, load_fer2013
from keras_fer_viz.data.folders import load_image_folder, split_folders
from keras_fer_viz.data.pick import class_index, pick_faces
from keras_fer_viz.data.splits import load_splits
from keras_fer_viz.data.synthetic import SyntheticFaces, synthetic_faces

__all__ = [
    "EMOTIONS",
    "load_fer2013",
    "SyntheticFaces",
    "synthetic_faces",
    "adapt_images",
    "adapt_masks",
    "load_image_folder",
    "split_folders",
    "class_index",
    "pick_faces",
    "load_splits",
]
