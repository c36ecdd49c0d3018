"""Checkpoints and data: loading and saving DT checkpoints with their statistics, offline datasets, and the
sweep folder's crash-safe episode log."""
