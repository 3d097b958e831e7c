"""Eye-disease classifier: network, preprocessing, weights, backends and micro-batching.

The lifespan calls `build_classifier(settings)` once per process and `close()` on
shutdown; a route decodes an upload with `decode_upload` in a worker thread and awaits
`classifier.classify(decoded.array)`.
"""

from app.errors import ModelUnavailable
from app.inference.classifier import Classification, Classifier, build_classifier
from app.inference.manifest import ClassLabel, ModelManifest
from app.inference.preprocess import DecodedImage, decode_upload, sniff

__all__ = [
    "ClassLabel",
    "Classification",
    "Classifier",
    "DecodedImage",
    "ModelManifest",
    "ModelUnavailable",
    "build_classifier",
    "decode_upload",
    "sniff",
]
