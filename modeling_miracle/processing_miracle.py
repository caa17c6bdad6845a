"""`MiracleProcessor`: both tokenizers of a MIRACLE model, and every model input built from conversations."""

from __future__ import annotations

import json
import os

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase, ProcessorMixin
from transformers.utils import PROCESSOR_NAME

from .configuration.validation import as_python_scalar

from .conversation import normalize_conversations

PROCESSOR_CONFIG_NAME = PROCESSOR_NAME  # "processor_config.json", written by `ProcessorMixin.save_pretrained`
LEGACY_PROCESSOR_CONFIG_NAME = "miracle_processor.json"  # what MIRACLE saved before it was a ProcessorMixin
ENCODER_TOKENIZER_DIR = "encoder_tokenizer"
DECODER_TOKENIZER_DIR = "decoder_tokenizer"


LIMITS = ("max_encoder_length", "max_prompt_length", "max_response_length")


def check_limits(allow_default_encoder_length: bool = False, **limits) -> dict[str, int]:
    """The processor's token limits as Python ints >= 1 (numpy / 0-d tensor integers accepted); a ValueError names a
    bad one. `max_encoder_length` may be None (the tokenizer's limit) with `allow_default_encoder_length`."""
    checked = {}
    for name, value in limits.items():
        value = as_python_scalar(value)
        if value is None and name == "max_encoder_length" and allow_default_encoder_length:
            checked[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1 (a number of tokens); got {value!r}.")
        checked[name] = value
    return checked


def _looks_like_local_path(source: str) -> bool:
    """Whether a missing `source` was meant as a local folder rather than a Hub id."""
    parent = os.path.dirname(source)
    return (os.path.isabs(source) or source.startswith((".", "~")) or os.sep != "/" and os.sep in source
            or source.count("/") > 1 or bool(parent) and os.path.isdir(parent))


def _settings_file(source: str, hub_kwargs: dict) -> str:
    """The local path of a saved processor's settings file (`processor_config.json`, else the older
    `miracle_processor.json`); an OSError says what is missing or why the Hub could not be read."""
    names = (PROCESSOR_CONFIG_NAME, LEGACY_PROCESSOR_CONFIG_NAME)
    if os.path.isdir(source):
        found = [name for name in names if os.path.isfile(os.path.join(source, name))]
        if not found:
            raise OSError(
                f"{source} has no {PROCESSOR_CONFIG_NAME} (nor the older {LEGACY_PROCESSOR_CONFIG_NAME}): it is not a "
                "saved MiracleProcessor (save one with `processor.save_pretrained(folder)`)."
            )
        missing = [name + "/" for name in (ENCODER_TOKENIZER_DIR, DECODER_TOKENIZER_DIR)
                   if not os.path.isdir(os.path.join(source, name))]
        if missing:
            raise OSError(
                f"{source} is an incomplete saved MiracleProcessor: {' and '.join(missing)} missing (it holds the "
                "encoder's and the decoder's tokenizers in encoder_tokenizer/ and decoder_tokenizer/). Save it "
                "again with `processor.save_pretrained(folder)`."
            )
        return os.path.join(source, found[0])
    if _looks_like_local_path(source):
        raise FileNotFoundError(f"No folder {source!r}: give the folder a MiracleProcessor was saved to, or a Hub id.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError

    hub_kwargs = {k: hub_kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in hub_kwargs}
    for name in names:
        try:
            return hf_hub_download(source, name, **hub_kwargs)
        except HFValidationError:
            raise OSError(f"{source!r} is neither a local folder nor a Hub repository id ('name' or 'owner/name').") from None
        except EntryNotFoundError as error:
            if isinstance(error, LocalEntryNotFoundError):  # offline, or not in the cache: the Hub was not read
                raise _unreachable(source, error) from error
            if name == names[-1]:
                raise OSError(f"The Hub repository {source!r} holds no {' or '.join(names)}: it is not a saved "
                              "MiracleProcessor.") from None
        except Exception as error:
            raise _unreachable(source, error) from error


def _unreachable(source: str, error: Exception) -> OSError:
    return OSError(f"{source!r} is not a local folder, and its {PROCESSOR_CONFIG_NAME} could not be fetched from the "
                   f"Hub ({type(error).__name__}: {error}).")


def _read_settings(path: str, overrides: dict) -> dict:
    """The limits saved in `path`, with `overrides` applied, checked; a ValueError names the file."""
    with open(path, encoding="utf-8") as handle:
        settings = json.load(handle)
    if not isinstance(settings, dict):
        raise ValueError(f"{path} must hold a JSON object of processor settings; got {settings!r}.")
    settings.pop("processor_class", None)
    unknown = sorted(set(settings) - set(LIMITS))
    if unknown:
        raise ValueError(f"{path}: unknown processor setting(s) {unknown}; valid: {list(LIMITS)}.")
    settings.update(overrides)
    try:
        check_limits(**settings, allow_default_encoder_length=True)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return settings


class MiracleProcessor(ProcessorMixin):
    """Holds the encoder's and the decoder's tokenizers and builds MIRACLE's inputs from chat conversations.

    `processor(conversations, return_tensors="pt")` gives the generation inputs: `prior_input_ids` /
    `prior_attention_mask` (context, encoder tokenizer) and `input_ids` / `attention_mask` (decoder prompt,
    left-padded). With `responses=[...]` it also gives the training inputs: `posterior_input_ids` /
    `posterior_attention_mask` (context + response) and decoder `input_ids` covering prompt + response + EOS,
    with `labels` set to -100 outside the response and EOS.

    Histories too long for either model are cut from the oldest turn; the newest user turn is never cut.

    Args:
        encoder_tokenizer: tokenizer of the prior/posterior encoders.
        decoder_tokenizer: tokenizer of the causal LM decoder. Its chat template is used when it has one,
            a plain `User:` / `Assistant:` layout otherwise.
        max_encoder_length: token limit of the encoders (default: the tokenizer's limit, at most 512).
        max_prompt_length: token limit of the decoder prompt (default 512).
        max_response_length: token limit of a training response, EOS included (default 128).

    A `ProcessorMixin`: `save_pretrained` writes `processor_config.json` (the limits) and the two tokenizers in
    `encoder_tokenizer/` and `decoder_tokenizer/`; `from_pretrained` also loads folders saved before, whose settings
    file is `miracle_processor.json`.
    """

    def __init__(
        self,
        encoder_tokenizer: PreTrainedTokenizerBase,
        decoder_tokenizer: PreTrainedTokenizerBase,
        max_encoder_length: int | None = None,
        max_prompt_length: int = 512,
        max_response_length: int = 128,
    ):
        super().__init__(encoder_tokenizer=encoder_tokenizer, decoder_tokenizer=decoder_tokenizer)
        if decoder_tokenizer.pad_token is None:
            decoder_tokenizer.pad_token = decoder_tokenizer.eos_token
        decoder_tokenizer.padding_side = "left"
        encoder_tokenizer.truncation_side = "left"  # over-long training contexts keep their newest tokens
        if max_encoder_length is None:
            max_encoder_length = min(int(encoder_tokenizer.model_max_length), 512)
        limits = check_limits(max_encoder_length=max_encoder_length, max_prompt_length=max_prompt_length,
                              max_response_length=max_response_length)
        self.max_encoder_length = limits["max_encoder_length"]
        self.max_prompt_length = limits["max_prompt_length"]
        self.max_response_length = limits["max_response_length"]

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "MiracleProcessor":
        """Load a processor saved with `save_pretrained` (a local folder or a Hub repository id); folders saved before
        MIRACLE's processor became a `ProcessorMixin` (settings in `miracle_processor.json`) load too.

        `max_encoder_length`, `max_prompt_length` and `max_response_length` override the saved limits; other
        `kwargs` go to `ProcessorMixin.from_pretrained` (and so to the tokenizers').
        """
        path = _settings_file(str(pretrained_model_name_or_path), kwargs)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in LIMITS}
        settings = _read_settings(path, overrides)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs, **settings)

    @classmethod
    def _load_tokenizer_from_pretrained(cls, sub_processor_type, pretrained_model_name_or_path, subfolder="", **kwargs):
        """The base loader, without the processor's own limits (they are not tokenizer settings)."""
        kwargs = {k: v for k, v in kwargs.items() if k not in LIMITS}
        return super()._load_tokenizer_from_pretrained(sub_processor_type, pretrained_model_name_or_path,
                                                       subfolder=subfolder, **kwargs)

    # ------------------------------------------------------------------ text layout
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The decoder's tokenizer: the one transformers' `ProcessorMixin` users (`Trainer`, `decode`) read."""
        return self.decoder_tokenizer

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.decoder_tokenizer, "chat_template", None))

    def encoder_context_text(self, messages: list[dict]) -> str:
        """The context as the encoders read it: user/assistant turns joined by the encoder's separator."""
        separator = f" {self.encoder_tokenizer.sep_token} " if self.encoder_tokenizer.sep_token else "\n"
        return separator.join(m["content"] for m in messages if m["role"] != "system")

    def decoder_prompt_text(self, messages: list[dict]) -> str:
        """The decoder prompt: the chat template with a generation prompt, or `User:` / `Assistant:` lines."""
        if self.uses_chat_template:
            return self.decoder_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(lines + ["Assistant:"])

    def response_ids(self, response: str) -> list[int]:
        """Token ids of a response followed by EOS, cut to `max_response_length`."""
        text = response if self.uses_chat_template else " " + response
        ids = self.decoder_tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_response_length - 1]
        return ids + [self.decoder_tokenizer.eos_token_id]

    def _encoder_length(self, messages) -> int:
        return len(self.encoder_tokenizer(self.encoder_context_text(messages), verbose=False)["input_ids"])

    def _prompt_ids(self, messages) -> list[int]:
        return self.decoder_tokenizer(self.decoder_prompt_text(messages), add_special_tokens=False, verbose=False)["input_ids"]

    def _fits(self, messages) -> bool:
        return (self._encoder_length(messages) <= self.max_encoder_length
                and len(self._prompt_ids(messages)) <= self.max_prompt_length)

    def truncate_history(self, messages: list[dict], strict: bool = True) -> list[dict]:
        """Drop the oldest turns until the context fits the encoder and the decoder prompt limits.

        System messages are kept; the newest user turn is never cut: if it alone is too long, a ValueError says so
        (`strict=False`, used for training data, keeps it and lets the tokenizers cut its oldest tokens instead).
        Linear in the history's length: each turn is tokenized once to estimate where to cut, and only the kept
        context (about the limits' size) is tokenized again to check the cut exactly.
        """
        system = [m for m in messages if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"]
        start = self._estimated_start(system, turns)
        if self._fits(system + turns[start:]):
            while start > 0 and self._fits(system + turns[start - 1:]):
                start -= 1  # the estimate cut one turn too many
            return system + turns[start:]
        for start in range(start + 1, len(turns)):
            if self._fits(system + turns[start:]):
                return system + turns[start:]
        if not strict:
            return system + turns[-1:]
        raise ValueError(
            f"The newest user turn alone does not fit the limits (encoder {self.max_encoder_length} tokens, decoder "
            f"prompt {self.max_prompt_length} tokens); shorten it or raise `max_encoder_length` / `max_prompt_length`."
        )

    def _estimated_start(self, system: list[dict], turns: list[dict]) -> int:
        """The oldest turn from which the history probably fits both limits.

        A suffix's length is estimated as the sum of its turns' token counts plus per-turn and fixed overheads
        (separators, chat template, special tokens) measured exactly on the newest one or two turns. Turns are
        tokenized once each, newest first, in chunks that double in size, and only until the limits are passed: the
        cost follows the kept context, not the whole history.
        """
        if len(turns) == 1:
            return 0
        texts = [m["content"] for m in turns]
        tokenizers = (self.encoder_tokenizer, self.decoder_tokenizer)
        length_of = (self._encoder_length, lambda messages: len(self._prompt_ids(messages)))
        newest = [self._turn_lengths(tokenizer, texts[-2:]) for tokenizer in tokenizers]
        fixed = [length(system + turns[-1:]) - counts[-1] for length, counts in zip(length_of, newest)]
        per_turn = [max(0, length(system + turns[-2:]) - sum(counts) - f)
                    for length, counts, f in zip(length_of, newest, fixed)]
        limits = (self.max_encoder_length, self.max_prompt_length)
        totals = [f - p for f, p in zip(fixed, per_turn)]
        end, chunk = len(turns), 8
        while end > 0:
            begin = max(0, end - chunk)
            counts = [self._turn_lengths(tokenizer, texts[begin:end]) for tokenizer in tokenizers]
            for index in range(end - 1, begin - 1, -1):
                totals = [t + c[index - begin] + p for t, c, p in zip(totals, counts, per_turn)]
                if any(t > limit for t, limit in zip(totals, limits)):
                    return min(index + 1, len(turns) - 1)
            end, chunk = begin, chunk * 2
        return 0

    @staticmethod
    def _turn_lengths(tokenizer, texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

    # ------------------------------------------------------------------ main entry
    def __call__(self, conversations, responses: list[str] | str | None = None, return_tensors: str | None = "pt",
                 decoder_conversations=None) -> BatchEncoding:
        """Build model inputs from one conversation or a batch (see class docstring).

        `decoder_conversations` (training): other conversations for the decoder prompt only (e.g. the history
        dropped), one per conversation; the encoders still read `conversations`.
        """
        batch, is_batched = normalize_conversations(conversations)
        if responses is not None:
            responses = [responses] if isinstance(responses, str) else list(responses)
            if len(responses) != len(batch):
                raise ValueError(f"Got {len(batch)} conversations but {len(responses)} responses; give one response each.")
            if any(not isinstance(r, str) or not r.strip() for r in responses):
                raise ValueError("Responses must be non-empty strings.")
        else:
            responses = [None] * len(batch)
        training = responses[0] is not None
        contexts = [self.truncate_history(messages, strict=not training) for messages in batch]
        decoder_contexts = contexts
        if decoder_conversations is not None:
            decoder_batch, _ = normalize_conversations(decoder_conversations)
            if len(decoder_batch) != len(batch):
                raise ValueError(f"Got {len(batch)} conversations but {len(decoder_batch)} decoder conversations.")
            decoder_contexts = [self.truncate_history(messages, strict=not training) for messages in decoder_batch]
        return self._encode_batch(contexts, responses, return_tensors, decoder_contexts)

    def _encode_batch(self, contexts, responses, return_tensors, decoder_contexts=None) -> BatchEncoding:
        context_texts = [self.encoder_context_text(messages) for messages in contexts]
        prior = self.encoder_tokenizer(context_texts, padding=True, truncation=True, max_length=self.max_encoder_length)
        features = {"prior_input_ids": prior["input_ids"], "prior_attention_mask": prior["attention_mask"]}
        # Only over-long training contexts reach the cuts below: they keep the newest tokens.
        prompts = [self._prompt_ids(messages)[-self.max_prompt_length:] for messages in (decoder_contexts or contexts)]
        training = responses[0] is not None
        if training:
            posterior = self.encoder_tokenizer(
                context_texts, list(responses), padding=True, truncation="longest_first", max_length=self.max_encoder_length
            )
            features["posterior_input_ids"] = posterior["input_ids"]
            features["posterior_attention_mask"] = posterior["attention_mask"]
            answers = [self.response_ids(r) for r in responses]
            sequences = [p + a for p, a in zip(prompts, answers)]
            label_rows = [[-100] * len(p) + a for p, a in zip(prompts, answers)]
        else:
            sequences, label_rows = prompts, None
        features.update(self._left_pad(sequences, label_rows))
        return BatchEncoding(features, tensor_type=return_tensors)

    def _left_pad(self, sequences, label_rows=None) -> dict:
        width = max(len(s) for s in sequences)
        pad_id = self.decoder_tokenizer.pad_token_id
        out = {
            "input_ids": [[pad_id] * (width - len(s)) + s for s in sequences],
            "attention_mask": [[0] * (width - len(s)) + [1] * len(s) for s in sequences],
        }
        if label_rows is not None:
            out["labels"] = [[-100] * (width - len(s)) + s for s in label_rows]
        return out

    def pad(self, encodings: list[dict]) -> BatchEncoding:
        """Stack generation inputs built one conversation at a time (each of batch 1) into one batch, padded as
        `processor(conversations)` pads them: the encoder's on its side, the decoder prompt on the left."""
        features = {}
        for prefix, tokenizer in (("prior_", self.encoder_tokenizer), ("", self.decoder_tokenizer)):
            rows = [{"input_ids": e[prefix + "input_ids"][0].tolist(), "attention_mask": e[prefix + "attention_mask"][0].tolist()}
                    for e in encodings]
            padded = tokenizer.pad(rows, padding=True, return_tensors="pt")
            features[prefix + "input_ids"], features[prefix + "attention_mask"] = padded["input_ids"], padded["attention_mask"]
        return BatchEncoding(features)

    # ------------------------------------------------------------------ decoding
    def batch_decode(self, sequences: torch.Tensor, prompt_length: int = 0, **kwargs) -> list[str]:
        """Decode generated ids (dropping the first `prompt_length` tokens) with the decoder tokenizer."""
        kwargs.setdefault("skip_special_tokens", True)
        texts = self.decoder_tokenizer.batch_decode(sequences[:, prompt_length:], **kwargs)
        return [t.strip() for t in texts]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(encoder_tokenizer={type(self.encoder_tokenizer).__name__}, "
            f"decoder_tokenizer={type(self.decoder_tokenizer).__name__}, {self.to_dict()})"
        )
