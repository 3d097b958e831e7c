"""The learning loop: doctors' confirmations and corrections become locked, traceable
datasets (datasets.py, splits.py); an allow-listed, versioned recipe (recipes.py) fine-tunes
a candidate from a registered version (trainer.py) in a worker process of its own
(worker.py, `ocupredict train-worker`); the candidate and its parent are measured on a
locked test set against the recipe's gates (evaluation.py); the candidate is registered
staged through the registry's validation (candidate.py). Promotion stays with an admin
(app/registry/promotion.py)."""
