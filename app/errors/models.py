"""The refusals of the model registry (register, activate, retire, shadow) and of the
learning loop (datasets, training jobs, promotion gates)."""

from __future__ import annotations

from app.errors import KnownError

# --------------------------------------------------------------------------- model registry


class InvalidModel(KnownError):
    """Weights or manifest that the model registry refuses; the detail says why."""

    status_code = 422
    code = "INVALID_MODEL"
    message = "strict load failed: the weights are not a state dict for EyeDiseaseClassifier"


class ModelExists(KnownError):
    status_code = 409
    code = "MODEL_EXISTS"
    message = "This version is registered already"


class ModelRetired(KnownError):
    status_code = 409
    code = "MODEL_RETIRED"
    message = "A retired version cannot be activated"


class ModelActive(KnownError):
    status_code = 409
    code = "MODEL_ACTIVE"
    message = "The active version cannot be retired"


class ModelNotStaged(KnownError):
    status_code = 409
    code = "MODEL_NOT_STAGED"
    message = "Only a staged version can run in shadow"


class RegistryBusy(KnownError):
    status_code = 409
    code = "REGISTRY_BUSY"
    message = "The registry changed meanwhile; try again"


# --------------------------------------------------------------------------- learning loop


class DatasetOverlap(KnownError):
    """A training job whose training set shares images or patients with its test set."""

    status_code = 409
    code = "DATASET_OVERLAP"
    message = "The training set shares images or patients with the test set"


class UnknownRecipe(KnownError):
    status_code = 422
    code = "UNKNOWN_RECIPE"
    message = "No such training recipe (GET /admin/recipes lists them)"


class TrainingJobFinished(KnownError):
    status_code = 409
    code = "TRAINING_JOB_FINISHED"
    message = "The training job has finished already"


class GatesNotMet(KnownError):
    """Activation of a trained version whose evaluation did not pass its recipe's gates."""

    status_code = 409
    code = "GATES_NOT_MET"
    message = "This trained version did not pass the gates of its recipe"


class ShadowInsufficient(KnownError):
    """Activation of a trained version that has not yet been compared on enough live cases."""

    status_code = 409
    code = "SHADOW_INSUFFICIENT"
    message = "This trained version has not run in shadow on enough live cases yet"
