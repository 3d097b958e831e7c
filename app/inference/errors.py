"""The one failure the rest of the service sees from the model package."""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """Weights cannot be fetched or loaded, the backend failed, or the classifier is closed.

    The API answers 503 MODEL_UNAVAILABLE; the message is for logs, not for clients.
    """
