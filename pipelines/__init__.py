"""Hugging Face pipelines of MIRACLE.

`import modeling_miracle` (or this package) registers the `"personalized-dialogue"` task, so that
`transformers.pipeline("personalized-dialogue", model=...)` builds a [`PersonalizedDialoguePipeline`].
"""

# Import the model package first: it registers the task and imports `.personalized_dialogue` at its end, which
# keeps the import order free of cycles whichever of the two packages is imported first.
import modeling_miracle  # noqa: F401

from .personalized_dialogue import PersonalizedDialoguePipeline

__all__ = ["PersonalizedDialoguePipeline"]
