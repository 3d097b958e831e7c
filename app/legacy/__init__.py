"""Moving in from the earlier Flask back-end: `ocupredict import-legacy`.

The legacy password hashes its accounts keep until their first login are checked by
app.security.legacy_hashes, below this package.
"""
