"""Shared plumbing: atomic files and folders, YAML configs, provenance records."""
