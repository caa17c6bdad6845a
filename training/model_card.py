"""A model card (README.md) for a trained MIRACLE model: Hub metadata, attributes, data, training settings."""

from __future__ import annotations

import os

from huggingface_hub import ModelCard, ModelCardData

TAGS = ["miracle", "personalized-dialogue", "text-generation"]

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

A [MIRACLE](https://aclanthology.org/2023.findings-emnlp.395) model for personalized dialogue generation with
multiple personal attribute control: responses are decoded from a latent code sampled with an energy-based ODE
towards any combination of the aspects below.

## Attributes

| attribute | aspects |
|---|---|
{{ attributes }}

## Model

- encoder (prior and posterior{{ shared }}): `{{ encoder }}`
- decoder: `{{ decoder }}`
- latent size: {{ latent_size }}; injection: {{ injection }}
- losses: reconstruction + KL (weight {{ kl_weight }}, free bits {{ kl_threshold }}, {{ kl_num_cycles }} cycles){{ losses }}

## Training data

{{ data }}

## Training settings

{{ settings }}

## Usage

```python
import modeling_miracle  # registers the model and the pipeline
from transformers import pipeline

chat = pipeline("personalized-dialogue", model="{{ name }}")
chat([{"role": "user", "content": "What do you do on weekends?"}],
     personality={{ example }})
```
"""


def _hub_id(name_or_path: str | None) -> str | None:
    """A backbone's Hub id, or None for a local folder (not a `base_model` the Hub can link)."""
    if not name_or_path or os.path.isabs(name_or_path) or os.path.exists(name_or_path) or name_or_path.count("/") > 1:
        return None
    return name_or_path


def build_model_card(model, name: str, data_description: str = "not recorded", training_args=None,
                     datasets: list[str] | None = None) -> ModelCard:
    """The Hub model card of `model` (a MiracleForPersonalizedGeneration): metadata (`library_name`, `base_model`
    for both backbones when they come from the Hub, `datasets`, `tags`, `pipeline_tag`) and a description."""
    config = model.config
    base_models = [m for m in (_hub_id(config.encoder._name_or_path), _hub_id(config.decoder._name_or_path)) if m]
    card_data = ModelCardData(
        library_name="miracle-dialogue",
        base_model=list(dict.fromkeys(base_models)) or None,
        datasets=list(datasets) if datasets else None,
        tags=TAGS,
        pipeline_tag="text-generation",
    )
    attributes = "\n".join(f"| {a} | {', '.join(aspects)} |" for a, aspects in config.attributes.items())
    injection = " + ".join(
        x for x, on in (("embedding add", config.add_latent_to_embeddings), ("latent prefix", config.use_latent_prefix)) if on
    )
    losses = "".join(
        f" + {label} (weight {weight})"
        for label, on, weight in (
            ("L_C", config.use_classification_loss, config.classification_loss_weight),
            ("L_D", config.use_distance_loss, config.distance_loss_weight),
        )
        if on
    )
    if not config.use_posterior:
        losses += "; trained without the posterior (ablation)"
    settings = "not recorded"
    if training_args is not None:
        keys = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                "max_steps", "warmup_steps", "weight_decay", "seed")
        # A `max_steps` run ignores `num_train_epochs`: leave it out rather than state epochs that never ran.
        keys = tuple(k for k in keys if not (k == "num_train_epochs" and getattr(training_args, "max_steps", -1) > 0))
        settings = "\n".join(f"- {k}: {getattr(training_args, k)}" for k in keys if hasattr(training_args, k))
    example = {a: aspects[-1] for a, aspects in config.attributes.items()}
    return ModelCard.from_template(
        card_data,
        template_str=MODEL_CARD_TEMPLATE,
        name=name,
        attributes=attributes,
        shared=", shared" if config.share_encoder else "",
        encoder=config.encoder._name_or_path or config.encoder.model_type,
        decoder=config.decoder._name_or_path or config.decoder.model_type,
        latent_size=config.latent_size,
        injection=injection,
        kl_weight=config.kl_weight,
        kl_threshold=config.kl_threshold,
        kl_num_cycles=config.kl_num_cycles,
        losses=losses,
        data=data_description,
        settings=settings,
        example=example,
    )


def render_model_card(model, name: str, data_description: str = "not recorded", training_args=None,
                      datasets: list[str] | None = None) -> str:
    """The model card of `model` as README.md text (see [`build_model_card`])."""
    return str(build_model_card(model, name, data_description, training_args, datasets))
