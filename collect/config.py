"""Dataclass settings of `miracle collect` (read by `commands.dataclass_parser.DataclassArgumentParser`, from flags or a JSON/YAML file)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .backends import ChatBackend, OpenAICompatibleBackend, SamplingSettings, TransformersBackend
from .plan import MODES

BACKENDS = ("openai", "local")


@dataclass
class CollectConfig:
    """What to collect and where."""

    _argument_group_name = "collection"

    output_dir: str = field(metadata={"help": "Folder of the collection (created; rerun with the same folder to resume)."})
    attributes_file: list[str] = field(default_factory=lambda: ["default"], metadata={"help": "YAML/JSON file(s) of attributes, aspects, wordings and examples ('default' = the project's three attributes)."})
    only: list[str] = field(default_factory=list, metadata={"help": "Collect only these attributes of the file(s)."})
    topics_file: str | None = field(default=None, metadata={"help": "Seed topics, one per line (default: corpus/topics.txt)."})
    mode: str = field(default="train", metadata={"help": "'train': single-aspect dialogues split into train/validation/test/heldout; 'test': multi-attribute dialogues with their target `tags` (every combination)."})
    dialogues_per_aspect: int = field(default=10, metadata={"help": "Dialogues to request per aspect (per combination in test mode)."})
    max_requests: int | None = field(default=None, metadata={"help": "Send at most this many new requests in this run (retries not counted); rerun to continue."})
    seed: int = field(default=0, metadata={"help": "Seed of the choice of topics, wordings and examples (and of each request)."})
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.05, 0.05, 0.1], metadata={"help": "Shares of train, validation, test and heldout (dialogues for a scorer)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (--no_progress: no bar)."})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode {self.mode!r}; valid: {list(MODES)}.")
        if not 1 <= len(self.split_fractions) <= 4 or any(f < 0 for f in self.split_fractions) or not self.split_fractions[0] > 0:
            raise ValueError(f"split_fractions are up to 4 non-negative shares (train > 0, validation, test, heldout); "
                             f"got {self.split_fractions}.")
        if self.max_requests is not None and self.max_requests < 0:
            raise ValueError(f"max_requests must be >= 0; got {self.max_requests}.")


@dataclass
class BackendArguments:
    """Which LLM writes the dialogues, and how it is called."""

    _argument_group_name = "backend"

    backend: str = field(default="openai", metadata={"help": "'openai': any OpenAI-compatible chat-completions server (--base-url); 'local': a transformers causal LM (--local-model)."})
    base_url: str | None = field(default=None, metadata={"help": "Server URL up to where /chat/completions is appended, e.g. http://localhost:8080/v1."})
    model: str | None = field(default=None, metadata={"help": "Model name sent to the server (e.g. gpt-4o-mini)."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the API key (the key itself is never logged or saved)."})
    concurrency: int = field(default=4, metadata={"help": "Requests in flight at once."})
    timeout: float = field(default=120.0, metadata={"help": "Seconds before a request times out (then retried)."})
    max_retries: int = field(default=5, metadata={"help": "Retries after 429/5xx/timeouts/connection errors."})
    backoff: float = field(default=1.0, metadata={"help": "First retry delay in seconds; doubles each retry."})
    max_backoff: float = field(default=60.0, metadata={"help": "Longest retry delay in seconds."})
    temperature: float | None = field(default=1.0, metadata={"help": "Sampling temperature (0 = greedy for the local backend)."})
    top_p: float | None = None
    max_tokens: int | None = field(default=512, metadata={"help": "Longest reply in tokens."})
    extra_body: str | None = field(default=None, metadata={"help": "JSON of further request fields (e.g. '{\"frequency_penalty\": 0.5}'; generate() arguments for the local backend)."})
    local_model: str | None = field(default=None, metadata={"help": "Local causal LM path (default: the packaged SmolLM2-135M-Instruct)."})
    prefill: str = field(default="[PersonA]:", metadata={"help": "Local backend: text the reply starts with (helps small models keep the format)."})
    device: str | None = None

    def sampling(self) -> SamplingSettings:
        extra = json.loads(self.extra_body) if self.extra_body else {}
        if not isinstance(extra, dict):
            raise ValueError(f"--extra-body must be a JSON object; got {self.extra_body!r}.")
        return SamplingSettings(self.temperature, self.top_p, self.max_tokens, extra)

    def build(self) -> ChatBackend:
        """The backend these arguments describe."""
        if self.backend == "openai":
            if not self.base_url:
                raise ValueError("--backend openai needs --base-url (e.g. http://localhost:8080/v1 or https://api.openai.com/v1).")
            return OpenAICompatibleBackend(self.base_url, self.model, self.api_key_env, self.sampling(), self.concurrency,
                                           self.timeout, self.max_retries, self.backoff, self.max_backoff)
        if self.backend == "local":
            return TransformersBackend(self.local_model, self.sampling(), self.prefill, self.device)
        raise ValueError(f"Unknown backend {self.backend!r}; valid: {list(BACKENDS)}.")
