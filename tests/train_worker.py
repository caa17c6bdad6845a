"""`miracle train` with per-process records, for the multi-process tests (`tests/test_train_command.py`).

    accelerate launch --multi_gpu --num_processes 2 -m tests.train_worker RECORD_DIR train ... --use_cpu true

Runs the real CLI (`modeling_miracle.commands.cli.main`) unchanged, with two observers swapped into `modeling_miracle.commands.train`: the
collator records which examples (by response text) each process's batches hold, and the trainer records every
micro-batch's loss components as that process computed them, and its log history. Each process writes
`RECORD_DIR/rank<N>.json`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from modeling_miracle.commands import train as train_command
from modeling_miracle.commands.cli import main as cli_main
from modeling_miracle.training.collator import MiracleDataCollator
from modeling_miracle.training.trainer import LOGGED_COMPONENTS, MiracleTrainer


def recorders() -> tuple[dict, type, type]:
    """A record dict and the collator and trainer classes that fill it."""
    record = {"batches": [], "micro_steps": [], "log_history": [], "world_size": None}

    class RecordingCollator(MiracleDataCollator):
        def __call__(self, examples):
            record["batches"].append([e["response"] for e in examples])
            return super().__call__(examples)

    class RecordingTrainer(MiracleTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            if model.training:
                row = {"step": self.state.global_step, "loss": float(loss.detach())}
                for name in LOGGED_COMPONENTS:
                    value = getattr(outputs, name, None)
                    if value is not None:
                        row[name] = float(value.detach()) if hasattr(value, "detach") else float(value)
                record["micro_steps"].append(row)
            return (loss, outputs) if return_outputs else loss

        def train(self, *args, **kwargs):
            result = super().train(*args, **kwargs)
            record["log_history"] = self.state.log_history
            record["world_size"] = self.args.world_size
            return result

    return record, RecordingCollator, RecordingTrainer


def main(argv: list[str]) -> int:
    record, collator_class, trainer_class = recorders()
    train_command.MiracleDataCollator = collator_class
    train_command.MiracleTrainer = trainer_class
    code = cli_main(argv[1:])
    record_dir = Path(argv[0])
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{int(os.environ.get('RANK', '0'))}.json").write_text(json.dumps(record))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
