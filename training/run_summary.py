"""What a training run is about to do (model, trained parts, data, steps), printed before its first step."""

from __future__ import annotations

import os

from transformers import TrainerCallback


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def format_epochs(state, args, train_dataloader=None) -> str:
    """How many passes over the data the run makes: from its steps and the batches per epoch (a `--max_steps` run
    can stop part-way through an epoch, which `state.num_train_epochs`, rounded up, does not show)."""
    try:
        batches = len(train_dataloader)
    except TypeError:
        return f"{state.num_train_epochs} epoch(s)"
    steps_per_epoch = max(batches // max(args.gradient_accumulation_steps, 1), 1)
    epochs = state.max_steps / steps_per_epoch
    return f"{epochs:.3g} epoch(s)"


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def describe_footprint(model, save_steps=None) -> str:
    """Estimated memory (weights + gradients + Adam's two moments of the trained parameters, before activations) and
    disk per checkpoint (weights + optimizer state) and for the final model (weights)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    memory = weights + 3 * trained
    checkpoint = weights + 2 * trained
    every = f" (every {save_steps} steps)" if save_steps else ""
    return (f"footprint: about {_size(memory)} of memory before activations; each checkpoint{every} writes about "
            f"{_size(checkpoint)}, the final model about {_size(weights)}")


def describe_attributes(attributes: dict[str, list[str]]) -> str:
    return "; ".join(f"{name} ({', '.join(aspects)})" for name, aspects in attributes.items())


class TrainingSummaryCallback(TrainerCallback):
    """Prints the run's summary once the Trainer knows its step count, just before the first step.

    `lines` describe the model and the data; the callback adds the steps, batch, epochs, trainable parameters and,
    when resuming, where the run picks up.
    """

    def __init__(self, lines: list[str]):
        self.lines = list(lines)

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        per_step = args.per_device_train_batch_size * max(1, args.world_size) * args.gradient_accumulation_steps
        lines = ["MIRACLE training run", *self.lines]
        if model is not None:
            trainable, total = count_parameters(model)
            lines.append(f"  trained parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)")
            lines.append("  " + describe_footprint(model, save_steps=args.save_steps if args.save_strategy != "no" else None))
        lines.append(
            f"  steps: {state.max_steps:,} optimisation steps of {per_step} examples "
            f"({args.per_device_train_batch_size} per device x {max(1, args.world_size)} device(s) x "
            f"{args.gradient_accumulation_steps} accumulation), {format_epochs(state, args, train_dataloader)} over the data"
        )
        if state.global_step:
            lines.append(f"  resuming at step {state.global_step:,}: {state.max_steps - state.global_step:,} steps left")
        lines.append(f"  output: {os.path.abspath(args.output_dir)}")
        print("\n".join(lines), flush=True)


__all__ = ["TrainingSummaryCallback", "count_parameters", "describe_attributes", "describe_footprint", "format_epochs"]
