"""The learning loop: doctors' confirmations and corrections become locked, traceable
datasets (datasets.py, with feedback_snapshot.py, splits.py, dataset_manifest.py and
dataset_export.py); an allow-listed, versioned recipe (recipes.py) fine-tunes a candidate
from a registered version (trainer.py, on examples.py, with checkpoints.py) in a worker
process of its own (worker.py, job_lease.py, job_inputs.py; `ocupredict train-worker`,
worker_command.py); the temperature and referral thresholds are fitted on the
calibration split (calibration.py, measuring.py); the candidate and its parent are
measured on a locked test set against the recipe's gates (evaluation.py); the candidate
is registered staged through the registry's validation (candidate.py). Promotion stays
with an admin (app/registry/promotion.py)."""
