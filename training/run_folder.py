"""The output folder of a training run: never train over an earlier run by accident, resume on request."""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

# What a MIRACLE run writes besides the final model, and an overwrite clears first (a stale one would be picked up).
STALE_RUN_PARTS = ("adapter",)
_TRUE = ("true", "yes", "1", "last")
_FALSE = ("false", "no", "0", "none", "")


def parse_resume(value) -> bool | str | None:
    """`--resume_from_checkpoint` as the Trainer takes it: `True` (the last checkpoint in the output folder), a
    checkpoint path, or None. The strings "true" / "false" (any case) mean the booleans."""
    if value is None or value is False:
        return None
    if value is True:
        return True
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return None
    return text


def prepare_output_dir(output_dir: str, resume_from_checkpoint=None, overwrite_output_dir: bool = False) -> str | None:
    """Check the output folder before training, and return the checkpoint to resume from (or None).

    - An empty or missing folder starts a new run.
    - `resume_from_checkpoint=True` (or "true") resumes from the last `checkpoint-<step>` in the folder; a path
      resumes from that checkpoint.
    - A non-empty folder is refused unless the run resumes or `overwrite_output_dir` is set; overwriting deletes
      the earlier run's checkpoints (and LoRA adapter folder) first, so no stale checkpoint is ever picked up.
    """
    folder = Path(output_dir)
    resume = parse_resume(resume_from_checkpoint)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--output_dir {folder} is a file; give a folder for the run.")
    if resume is True:
        if overwrite_output_dir:
            raise ValueError(
                "--overwrite_output_dir deletes the checkpoints that --resume_from_checkpoint true would resume "
                "from; use one or the other."
            )
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint true resumes from the last {PREFIX_CHECKPOINT_DIR}-<step> folder in "
                f"{folder}, but there is none. Give the checkpoint folder itself, or start a new run without it."
            )
        return last
    if resume is not None:
        checkpoint = Path(resume)
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"--resume_from_checkpoint {checkpoint}: no such checkpoint folder.")
        if overwrite_output_dir and folder.resolve() in checkpoint.resolve().parents:
            raise ValueError(
                f"--overwrite_output_dir would delete {checkpoint}, the checkpoint to resume from; drop one of them."
            )
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not entries or resume is not None and not overwrite_output_dir:
        return resume
    if not overwrite_output_dir:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise FileExistsError(
            f"--output_dir {folder} is not empty ({shown}): a new run would overwrite that run and mix its "
            "checkpoints with the new ones. Continue it with --resume_from_checkpoint true (its last checkpoint) or "
            "--resume_from_checkpoint <checkpoint folder>, start over with --overwrite_output_dir true (its "
            "checkpoints are deleted first), or choose another --output_dir."
        )
    for path in folder.iterdir():
        if path.is_dir() and (path.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") or path.name in STALE_RUN_PARTS):
            shutil.rmtree(path)
    return resume


__all__ = ["parse_resume", "prepare_output_dir"]
