"""MIRACLE: personalized dialogue generation with multiple personal attribute control (EMNLP 2023 Findings).

Importing this package registers `MiracleConfig` / `MiracleForPersonalizedGeneration` with the Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from configuration import PAPER_ATTRIBUTES, MiracleConfig

from .conversation import normalize_conversation, normalize_conversations
from .modeling_miracle import LatentSample, MiracleForPersonalizedGeneration, MiracleOutput
from .processing_miracle import MiracleProcessor

AutoConfig.register(MiracleConfig.model_type, MiracleConfig, exist_ok=True)
AutoModel.register(MiracleConfig, MiracleForPersonalizedGeneration, exist_ok=True)
AutoModelForCausalLM.register(MiracleConfig, MiracleForPersonalizedGeneration, exist_ok=True)

__all__ = [
    "LatentSample",
    "PAPER_ATTRIBUTES",
    "MiracleConfig",
    "MiracleForPersonalizedGeneration",
    "MiracleOutput",
    "MiracleProcessor",
    "normalize_conversation",
    "normalize_conversations",
]
