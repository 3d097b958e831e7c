"""The production shape run for real: nginx in front of N single-process uvicorns.

- nginx.py: the nginx configuration, rendered from the one template (package data).
- worker.py: one uvicorn process on a Unix socket that drains on SIGTERM.
- supervisor.py: `ocupredict serve-nginx`: starts the workers and nginx in the
  foreground, restarts a worker that dies, stops everything on SIGTERM.
- harness.py: the same command started and stopped by tests, e2e and bench/soak.py.
"""
