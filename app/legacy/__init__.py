"""Moving in from the earlier Flask back-end: `ocupredict import-legacy` and the legacy
password hashes its accounts keep until their first login.

Kept import-light on purpose: app.security imports app.legacy.passwords at login, and must
not pull in the importer (and with it the image decoder and torch).
"""
