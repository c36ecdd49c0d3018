"""Offline data making: behaviour agents and the D4RL recipe (used by ``harness collect``)."""
