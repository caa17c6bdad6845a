"""MIRACLE: personalized dialogue generation with multiple personal attribute control (EMNLP 2023 Findings).

Importing this package registers `MiracleConfig` / `MiracleForPersonalizedGeneration` / `MiracleProcessor` with the
Auto classes (`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoProcessor`) and the `"personalized-dialogue"`
pipeline task.
"""

import os
import sys


def _started_by_the_cli() -> bool:
    """True when the `miracle` console script is starting: it imports this package only to reach `commands.cli`,
    and its help and argument errors must come without loading torch and transformers (seconds). The commands that
    need the model import it from here, which then loads and registers everything (see `__getattr__`)."""
    return os.path.basename(sys.argv[0]) in ("miracle", "miracle.exe", "miracle-script.py")


def _load():
    """Import the public API and register it with the Auto classes and the pipeline registry."""
    global _loaded
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
    globals().update({name: value for name, value in locals().items() if name in __all__})
    _loaded = True
    _register_pipeline()


def _register_pipeline():
    """Register `pipeline("personalized-dialogue", ...)` (imported last: the pipeline module uses this package)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    from .modeling_miracle import MiracleForPersonalizedGeneration
    from .pipelines.personalized_dialogue import TASK, PersonalizedDialoguePipeline

    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is not PersonalizedDialoguePipeline:
        PIPELINE_REGISTRY.register_pipeline(
            TASK, pipeline_class=PersonalizedDialoguePipeline, pt_model=MiracleForPersonalizedGeneration
        )


def __getattr__(name):
    if name in __all__ and not _loaded:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_loaded = False


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

if not _started_by_the_cli():
    _load()
