"""MIRACLE: personalized dialogue generation with multiple personal attribute control (EMNLP 2023 Findings).

Importing this package registers `MiracleConfig` / `MiracleForPersonalizedGeneration` / `MiracleProcessor` with the
Auto classes (`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoProcessor`) and the `"personalized-dialogue"`
pipeline task.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor

from .configuration import PAPER_ATTRIBUTES, MiracleConfig

from .conversation import normalize_conversation, normalize_conversations
from .default_model import default_processor, load_default_model, load_model_and_processor
from .modeling_miracle import LatentSample, MiracleForPersonalizedGeneration, MiracleOutput
from .processing_miracle import MiracleProcessor

AutoConfig.register(MiracleConfig.model_type, MiracleConfig, exist_ok=True)
AutoModel.register(MiracleConfig, MiracleForPersonalizedGeneration, exist_ok=True)
AutoModelForCausalLM.register(MiracleConfig, MiracleForPersonalizedGeneration, exist_ok=True)
AutoProcessor.register(MiracleConfig, MiracleProcessor, exist_ok=True)


def _register_pipeline():
    """Register `pipeline("personalized-dialogue", ...)` (imported last: the pipeline module uses this package)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    from .pipelines.personalized_dialogue import TASK, PersonalizedDialoguePipeline

    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is not PersonalizedDialoguePipeline:
        PIPELINE_REGISTRY.register_pipeline(
            TASK, pipeline_class=PersonalizedDialoguePipeline, pt_model=MiracleForPersonalizedGeneration
        )


_register_pipeline()

__all__ = [
    "LatentSample",
    "PAPER_ATTRIBUTES",
    "MiracleConfig",
    "MiracleForPersonalizedGeneration",
    "MiracleOutput",
    "MiracleProcessor",
    "default_processor",
    "load_default_model",
    "load_model_and_processor",
    "normalize_conversation",
    "normalize_conversations",
]
