"""Shipping the trained policy: a Hugging Face model folder with its card and serving recipe."""

from polaris_lib.release.model import ExportError, export_model, last_trained_stage, run_config
