"""What the tests share and are not tests: helpers to import (images, uploads, accounts,
factories, the registry, the audit trail, DICOM and fundus images, the legacy source,
waiting with a deadline) and the harness conftest.py builds its fixtures on.

Test modules import from here, never from another test module nor from conftest.py
(tests/test_test_hygiene.py checks it); fixtures live in tests/conftest.py.
"""
