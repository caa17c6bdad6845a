"""Configuration of MIRACLE models."""

from .configuration_miracle import PAPER_ATTRIBUTES, MiracleConfig

__all__ = ["MiracleConfig", "PAPER_ATTRIBUTES"]
