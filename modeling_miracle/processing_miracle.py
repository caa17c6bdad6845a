"""`MiracleProcessor`: both tokenizers of a MIRACLE model, and every model input built from conversations."""

from __future__ import annotations

import json
import os

import torch
from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerBase

from .conversation import normalize_conversations

PROCESSOR_CONFIG_NAME = "miracle_processor.json"
ENCODER_TOKENIZER_DIR = "encoder_tokenizer"
DECODER_TOKENIZER_DIR = "decoder_tokenizer"


class MiracleProcessor:
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
    """

    def __init__(
        self,
        encoder_tokenizer: PreTrainedTokenizerBase,
        decoder_tokenizer: PreTrainedTokenizerBase,
        max_encoder_length: int | None = None,
        max_prompt_length: int = 512,
        max_response_length: int = 128,
    ):
        self.encoder_tokenizer = encoder_tokenizer
        self.decoder_tokenizer = decoder_tokenizer
        if decoder_tokenizer.pad_token is None:
            decoder_tokenizer.pad_token = decoder_tokenizer.eos_token
        decoder_tokenizer.padding_side = "left"
        encoder_tokenizer.truncation_side = "left"  # over-long training contexts keep their newest tokens
        if max_encoder_length is None:
            max_encoder_length = min(int(encoder_tokenizer.model_max_length), 512)
        self.max_encoder_length = max_encoder_length
        self.max_prompt_length = max_prompt_length
        self.max_response_length = max_response_length

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "max_encoder_length": self.max_encoder_length,
            "max_prompt_length": self.max_prompt_length,
            "max_response_length": self.max_response_length,
        }

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Save both tokenizers (in sub-folders) and the processor settings into `save_directory`."""
        os.makedirs(save_directory, exist_ok=True)
        self.encoder_tokenizer.save_pretrained(os.path.join(save_directory, ENCODER_TOKENIZER_DIR), **kwargs)
        self.decoder_tokenizer.save_pretrained(os.path.join(save_directory, DECODER_TOKENIZER_DIR), **kwargs)
        with open(os.path.join(save_directory, PROCESSOR_CONFIG_NAME), "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "MiracleProcessor":
        """Load a processor saved with `save_pretrained` (a local folder or a Hub repository id)."""
        settings = {}
        local_config = os.path.join(str(pretrained_model_name_or_path), PROCESSOR_CONFIG_NAME)
        if os.path.isdir(str(pretrained_model_name_or_path)):
            if not os.path.isfile(local_config):
                raise OSError(
                    f"{pretrained_model_name_or_path} has no {PROCESSOR_CONFIG_NAME}: it is not a saved MiracleProcessor "
                    "(save one with `processor.save_pretrained(folder)`)."
                )
            path = local_config
        else:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(str(pretrained_model_name_or_path), PROCESSOR_CONFIG_NAME)
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
        settings.pop("processor_class", None)
        settings.update({k: kwargs.pop(k) for k in list(kwargs) if k in settings})
        encoder_tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, subfolder=ENCODER_TOKENIZER_DIR, **kwargs)
        decoder_tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, subfolder=DECODER_TOKENIZER_DIR, **kwargs)
        return cls(encoder_tokenizer, decoder_tokenizer, **settings)

    # ------------------------------------------------------------------ text layout
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
        return len(self.encoder_tokenizer(self.encoder_context_text(messages))["input_ids"])

    def _prompt_ids(self, messages) -> list[int]:
        return self.decoder_tokenizer(self.decoder_prompt_text(messages), add_special_tokens=False)["input_ids"]

    def truncate_history(self, messages: list[dict], strict: bool = True) -> list[dict]:
        """Drop the oldest turns until the context fits the encoder and the decoder prompt limits.

        System messages are kept; the newest user turn is never cut: if it alone is too long, a ValueError says so
        (`strict=False`, used for training data, keeps it and lets the tokenizers cut its oldest tokens instead).
        """
        system = [m for m in messages if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"]
        for start in range(len(turns)):
            candidate = system + turns[start:]
            if (
                self._encoder_length(candidate) <= self.max_encoder_length
                and len(self._prompt_ids(candidate)) <= self.max_prompt_length
            ):
                return candidate
        if not strict:
            return system + turns[-1:]
        raise ValueError(
            f"The newest user turn alone does not fit the limits (encoder {self.max_encoder_length} tokens, decoder "
            f"prompt {self.max_prompt_length} tokens); shorten it or raise `max_encoder_length` / `max_prompt_length`."
        )

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
