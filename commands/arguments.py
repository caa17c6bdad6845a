"""Dataclass arguments of `miracle train`, from flags or a JSON/YAML file: MIRACLE's own (this module, read by
`DataclassArgumentParser` without importing transformers, so help and their mistakes come at once), then
`transformers.TrainingArguments` (read by `HfArgumentParser` from the flags MIRACLE's do not take)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


# MiracleConfig fields that `miracle train` sets from other flags, not from --miracle_config.
CONFIG_KEYS_WITH_THEIR_OWN_FLAG = {
    "encoder": "the encoder comes from --encoder",
    "decoder": "the decoder comes from --decoder",
    "attributes": "give them with --attributes (or --add_attribute with --from_model)",
}



def split_pair(text: str, flag: str, form: str, error: type[Exception] = ValueError) -> tuple[str, str]:
    """`key=value` -> (key, value), both stripped; otherwise `error` saying that `flag` takes `form` pairs."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise error(f"{flag} takes {form} pairs; got {text!r}.")
    return key, value

@dataclass
class ModelArguments:
    """Which model to train and how."""

    _argument_group_name = "model"

    encoder: str | None = field(default=None, metadata={"help": "Encoder backbone (path/Hub id; 'default' = packaged all-MiniLM-L6-v2; paper: bert-base-uncased)."})
    decoder: str | None = field(default=None, metadata={"help": "Decoder backbone (path/Hub id; 'default' = packaged SmolLM2-135M-Instruct; paper: microsoft/DialoGPT-medium)."})
    decoder_gguf_file: str | None = field(default=None, metadata={"help": "GGUF file name inside --decoder, if it is a GGUF folder."})
    from_model: str | None = field(default=None, metadata={"help": "Continue from a saved MIRACLE model (folder, Hub id, or 'default' = the shipped model) instead of backbones."})
    attributes: str | None = field(default=None, metadata={"help": "JSON attribute -> aspects mapping for a new model (default: the paper's three)."})
    add_attribute: str | None = field(default=None, metadata={"help": "Add an attribute to --from-model: 'name=aspect0,aspect1'."})
    train_head_only: bool = field(default=True, metadata={"help": "With --add-attribute: train only the new head on the frozen latent space."})
    miracle_config: str | None = field(default=None, metadata={"help": "JSON of MiracleConfig fields (latent_size, use_distance_loss, ...)."})
    freeze_backbones: bool = field(default=False, metadata={"help": "Freeze encoders and decoder (train MIRACLE layers, and LoRA if on)."})
    lora: bool | None = field(default=None, metadata={"nargs": "?", "const": True, "help": "LoRA adapters on the decoder; MIRACLE layers fully trained (~1 %% of the default model's parameters). Default: on when --from_model was trained with LoRA (the shipped model was), else off."})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_encoders: bool = field(default=False, metadata={"help": "Also put LoRA adapters on the encoders."})
    max_encoder_length: int = 256
    max_prompt_length: int = 384
    max_response_length: int = 96

    def check_flags(self) -> None:
        """Refuse flag combinations that would be silently ignored, and a malformed `--add_attribute`."""
        if self.from_model:
            ignored = [f"--{name}" for name in ("encoder", "decoder", "decoder_gguf_file", "attributes", "miracle_config")
                       if getattr(self, name)]
            if ignored:
                raise ValueError(f"{', '.join(ignored)} cannot be combined with --from_model: the saved model's own "
                                 "backbones and config are used.")
        elif self.add_attribute:
            raise ValueError("--add_attribute adds a head to a trained model: give it with --from_model <saved model>.")
        self.new_attribute()  # checks its form

    def miracle_config_kwargs(self) -> dict:
        """`--miracle_config` as a dict of `MiracleConfig` fields; unknown keys are refused (naming the valid ones)."""
        from ..configuration import MiracleConfig
        from ..configuration.validation import check_config_kwargs

        if not self.miracle_config:
            return {}
        try:
            settings = json.loads(self.miracle_config)
        except json.JSONDecodeError as error:
            raise ValueError(f"--miracle_config must be a JSON object; {error.msg} in {self.miracle_config!r}.") from None
        if not isinstance(settings, dict):
            raise ValueError(f"--miracle_config must be a JSON object of MiracleConfig fields; got {self.miracle_config!r}.")
        return check_config_kwargs(MiracleConfig, settings, reserved=CONFIG_KEYS_WITH_THEIR_OWN_FLAG)

    def attributes_mapping(self) -> dict | None:
        return json.loads(self.attributes) if self.attributes else None

    def new_attribute(self) -> tuple[str, list[str]] | None:
        if not self.add_attribute:
            return None
        name, aspects = split_pair(self.add_attribute, "--add-attribute", "name=aspect0,aspect1")
        return name, [a.strip() for a in aspects.split(",")]


@dataclass
class DataArguments:
    """Which data to train on."""

    _argument_group_name = "data"

    data_files: list[str] = field(default_factory=list, metadata={"help": "attribute=path pairs (one JSONL per attribute; repeat an attribute for several files). Default: the packaged corpus."})
    validation_files: list[str] = field(default_factory=list, metadata={"help": "attribute=path pairs for evaluation during training."})
    hub_dataset: str | None = field(default=None, metadata={"help": "Hub dataset holding the files (e.g. lu-vae/Miracle-Conversation; without --data-files its default file per attribute)."})
    skip_malformed: bool = field(default=False, metadata={"help": "Skip malformed rows (and report how many) instead of stopping."})
    max_dialogues_per_attribute: int | None = None
    expand_prefixes: bool = field(default=True, metadata={"help": "One example per assistant turn (authors' prefix expansion)."})
    decoder_history_dropout: float = field(default=0.0, metadata={"help": "Share of examples whose decoder sees only the last user turn (encoders still read the whole history); not in the paper, default 0. Makes the decoder read z instead of copying the style of earlier turns."})

    @staticmethod
    def parse_pairs(pairs: list[str]) -> dict[str, list[str]]:
        files: dict[str, list[str]] = {}
        for pair in pairs:
            attribute, path = split_pair(pair, "--data_files / --validation_files", "attribute=path")
            files.setdefault(attribute, []).append(path)
        return files


@dataclass
class RunArguments:
    """What to do with an output folder that already holds a run (besides `--resume_from_checkpoint`)."""

    _argument_group_name = "run"

    overwrite_output_dir: bool = field(default=False, metadata={"help": "Train into a non-empty --output_dir: its old checkpoints are deleted first."})
