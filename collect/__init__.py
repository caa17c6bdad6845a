"""`miracle collect`: single-aspect (and multi-attribute test) dialogue collection with any chat LLM, as in the
MIRACLE paper (section 3.2, appendix A): instruction templates, backends, parsing and cleaning, a resumable ledger.

    from modeling_miracle.collect import BackendArguments, CollectConfig, collect

    backend = BackendArguments(base_url="http://localhost:8080/v1", model="my-model").build()
    report = collect(CollectConfig(output_dir="data/mine", dialogues_per_aspect=50), backend)
    print(report.table())
"""

from .aspects import DEFAULT_ATTRIBUTES_FILE, AspectDescription, CollectionSpec, load_collection_spec, read_topics
from .backends import ChatBackend, FatalBackendError, OpenAICompatibleBackend, RequestFailed, SamplingSettings, TransformersBackend
from .cleaning import DROP_REASONS, CleaningConfig, FilterConfig, NearDuplicateIndex, parse_dialogue
from .config import BackendArguments, CollectConfig
from .outputs import CollectReport
from .plan import WorkItem, plan_items
from .runner import collect
from .templates import MULTI_ATTRIBUTE_TEMPLATE, SINGLE_ASPECT_TEMPLATE, build_prompt

__all__ = [
    "DEFAULT_ATTRIBUTES_FILE",
    "DROP_REASONS",
    "MULTI_ATTRIBUTE_TEMPLATE",
    "SINGLE_ASPECT_TEMPLATE",
    "AspectDescription",
    "BackendArguments",
    "ChatBackend",
    "CleaningConfig",
    "CollectConfig",
    "CollectReport",
    "CollectionSpec",
    "FatalBackendError",
    "FilterConfig",
    "NearDuplicateIndex",
    "OpenAICompatibleBackend",
    "RequestFailed",
    "SamplingSettings",
    "TransformersBackend",
    "WorkItem",
    "build_prompt",
    "collect",
    "load_collection_spec",
    "parse_dialogue",
    "plan_items",
    "read_topics",
]
