"""Hugging Face pipelines of MIRACLE.

`import modeling_miracle` (or this package) registers the `"personalized-dialogue"` task, so that
`transformers.pipeline("personalized-dialogue", model=...)` builds a [`PersonalizedDialoguePipeline`].
"""

from .personalized_dialogue import PersonalizedDialoguePipeline

__all__ = ["PersonalizedDialoguePipeline"]
