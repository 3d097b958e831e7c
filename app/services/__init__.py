"""Flows that span repositories and clients (registration, sessions, prediction...)."""
