"""Model governance: the registry of model versions, validation of new weights, the
per-process holder that hot-swaps the classifier, and shadow evaluation.

- `validation`: the checks a new set of weights must pass before it is registered.
- `holder`: the process's current classifier (and shadow classifier) behind leases, and
  the follower that keeps it on the registry's active version.
- `metrics`: accuracy, per-class precision/recall, Wilson interval and ECE from the
  aggregates the repository computes in SQL.
"""
