"""Ship trained default-model parts: copy them over `modeling_miracle/default_model`, drop what only training needs,
and record the decoding settings chosen on validation data.

    python examples/ship_default_model.py runs/long_c/final \
        --inference '{"latent_guidance_scale": 2, "latent_guidance_plausibility": 0.1, "sampler_start_scale": 0}'

- The bag-of-words head (`bow_loss_weight` > 0) is a training loss only: its weights (a latent -> vocabulary layer,
  half the file) are left out and `bow_loss_weight` is set to 0 in the shipped config (the trained value stays in
  `miracle_settings.json` under "trained_config").
- Weights are stored in float16 (`--dtype float32` keeps them as trained); they load back into the float32 model.
  For the shipped model this halved the file (29 -> 14.5 MB) and changed nothing measured: the same `miracle demo`
  replies and the same validation table row.
- `--inference` entries (MiracleConfig fields read at generation: `latent_guidance_*`, `sampler_*`) become the
  shipped model's defaults; every one can still be overridden per call.
The new folder is written beside the shipped one and swapped in only once complete.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from modeling_miracle.configuration import MiracleConfig
from modeling_miracle.default_model import DEFAULT_MODEL_DIR
from train_default_model import write_atomically

TRAINING_ONLY_MODULES = ("bow_head",)
DECODING_FIELDS = ("latent_guidance_scale", "latent_guidance_plausibility")


def check_inference_settings(settings: dict) -> None:
    """Only generation-time fields of MiracleConfig are accepted (so shipping never changes what was trained)."""
    known = set(MiracleConfig.__dataclass_fields__)
    wrong = sorted(k for k in settings if k not in known or not (k.startswith("sampler_") or k in DECODING_FIELDS))
    if wrong:
        raise SystemExit(f"--inference takes sampler_* and {', '.join(DECODING_FIELDS)} fields only; got {wrong}.")


def ship(parts: Path, inference: dict, output: Path = DEFAULT_MODEL_DIR, dtype: str = "float16") -> None:
    check_inference_settings(inference)
    settings = json.loads((parts / "miracle_settings.json").read_text())
    adapter = json.loads((parts / "adapter_config.json").read_text())
    weights = load_file(parts / "adapter_model.safetensors")

    trained_config = dict(settings["config"])
    config = {**trained_config, **inference}
    if config.get("bow_loss_weight", 0) > 0:
        config["bow_loss_weight"] = 0.0
    kept = {k: v.to(getattr(torch, dtype)) for k, v in weights.items()
            if not any(f".{m}." in k for m in TRAINING_ONLY_MODULES)}
    adapter["modules_to_save"] = [m for m in adapter.get("modules_to_save") or [] if m not in TRAINING_ONLY_MODULES]
    record = {**settings, "config": config, "trained_config": trained_config, "inference": inference,
              "shipped_from": str(parts)}

    def write(folder: Path) -> None:
        folder.mkdir(parents=True)
        save_file(kept, folder / "adapter_model.safetensors")
        (folder / "adapter_config.json").write_text(json.dumps(adapter, indent=2))
        (folder / "miracle_settings.json").write_text(json.dumps(record, indent=2))

    write_atomically(output, write)
    dropped = len(weights) - len(kept)
    print(f"Shipped {parts} to {output} ({dropped} training-only tensors left out; decoding defaults {inference}).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", type=Path, help="A run's default-model parts, e.g. runs/long_c/final.")
    parser.add_argument("--inference", default="{}", help="JSON of generation-time MiracleConfig fields.")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="Storage type of the weights.")
    parser.add_argument("--output", type=Path, default=DEFAULT_MODEL_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ship(args.parts, json.loads(args.inference), args.output, args.dtype)


if __name__ == "__main__":
    main()
