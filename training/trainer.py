"""`MiracleTrainer`: a `transformers.Trainer` that logs MIRACLE's loss components, applies the cyclical KL
schedule, mixes attributes in every batch, and writes a MIRACLE model card when pushing to the Hub."""

from __future__ import annotations

import os
from collections import defaultdict

import torch
from transformers import Trainer, TrainingArguments

from ..processing_miracle import MiracleProcessor
from .collator import AttributeInterleavedSampler, MiracleDataCollator
from .kl_schedule import kl_beta_at, unwrap_miracle
from .model_card import render_model_card

LOGGED_COMPONENTS = ("reconstruction_loss", "kl_loss", "classification_loss", "distance_loss", "bow_loss", "kl_beta")


class MiracleTrainer(Trainer):
    """Trainer for [`MiracleForPersonalizedGeneration`] (plain or PEFT-wrapped).

    It sets what MIRACLE needs itself: `remove_unused_columns=False` (the collator reads the raw `messages`,
    `response`, `attribute_id` and `aspect_id` columns), a [`MiracleDataCollator`] of `processing_class` when no
    `data_collator` is given, and no `pin_memory` on a machine without an accelerator.

    Args (beyond `Trainer`'s):
        data_description: a line on the training data for the model card.
        datasets: Hub ids of the training data sets, for the model card's metadata.
        interleave_attributes: order each epoch so every batch mixes the attributes (default True).
    """

    def __init__(self, model=None, args: TrainingArguments | None = None, data_collator=None, *rest,
                 data_description: str = "not recorded", interleave_attributes: bool = True,
                 datasets: list[str] | None = None, **kwargs):
        args = args if args is not None else TrainingArguments(output_dir="trainer_output")
        args.remove_unused_columns = False
        if args.dataloader_pin_memory and args.device.type == "cpu":
            args.dataloader_pin_memory = False
        processor = kwargs.get("processing_class")
        if data_collator is None and not rest and isinstance(processor, MiracleProcessor):
            data_collator = MiracleDataCollator(processor)
        super().__init__(model, args, data_collator, *rest, **kwargs)
        self.data_description = data_description
        self.datasets = datasets
        self.interleave_attributes = interleave_attributes
        self._component_sums = defaultdict(float)
        self._component_counts = defaultdict(int)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.interleave_attributes and dataset is not None and "attribute_id" in getattr(dataset, "column_names", []):
            return AttributeInterleavedSampler(dataset["attribute_id"], seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """MIRACLE's loss, with the cyclical KL weight of this optimisation step while training (1 in evaluation)."""
        config = unwrap_miracle(self.accelerator.unwrap_model(model)).config
        beta = kl_beta_at(self.state, config) if model.training else 1.0
        outputs = model(**inputs, kl_beta=beta)
        if model.training:
            for name in LOGGED_COMPONENTS:
                value = getattr(outputs, name, None)
                if value is not None:
                    self._component_sums[name] += float(value.detach() if torch.is_tensor(value) else value)
                    self._component_counts[name] += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean of each loss component since the last log to training logs.

        Under several processes every process logs the same values: the means over all processes' micro-batches
        since the last log (the sums and counts are added up across processes, as the Trainer averages `loss`).
        """
        if "loss" in logs:
            totals = self._gather_component_totals()
            for index, name in enumerate(LOGGED_COMPONENTS):
                total, count = float(totals[0, index]), float(totals[1, index])
                if count:
                    logs[name] = round(total / count, 4)
            self._component_sums.clear()
            self._component_counts.clear()
        super().log(logs, start_time)

    def _gather_component_totals(self) -> torch.Tensor:
        """(2, components) tensor: each component's sum and count since the last log, summed over processes.

        A collective when several processes train: the Trainer calls `log` with "loss" on every process at the
        same step (it gathers `loss` there too)."""
        totals = torch.tensor(
            [[self._component_sums[n] for n in LOGGED_COMPONENTS], [self._component_counts[n] for n in LOGGED_COMPONENTS]],
            dtype=torch.float32,
            device=self.args.device,
        )
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        return totals

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Writes a MIRACLE model card (attributes, data, training settings) to the output folder."""
        if not self.is_world_process_zero():
            return
        name = self.args.hub_model_id or model_name or os.path.basename(os.path.abspath(self.args.output_dir))
        card = render_model_card(unwrap_miracle(self.accelerator.unwrap_model(self.model)), name, self.data_description,
                                 self.args, datasets=self.datasets)
        with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(card)
