"""`PersonalizedDialoguePipeline`: the `"personalized-dialogue"` task, MIRACLE's answer to a conversation in a chosen
personality (SPEC section 4)."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Sized
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from transformers import GenerationConfig, Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from ..configuration.personality import Personality, per_row
from ..configuration.validation import check_value
from ..conversation import is_single_conversation, normalize_conversation
from ..modeling_miracle import MiracleForPersonalizedGeneration
from ..processing_miracle import MiracleProcessor
from ..sampling import SamplerSettings

TASK = "personalized-dialogue"

# Arguments the pipeline sets itself when it calls `generate`: passing them is an error.
_RESERVED_GENERATE_ARGS = ("input_ids", "attention_mask", "prior_input_ids", "prior_attention_mask", "latent",
                           "return_latent_sample")
# Keys of a dict input besides the conversation itself.
_REQUEST_KEYS = ("personality", "attribute_weights")


@dataclass
class DialogueRequest:
    """One conversation to answer (validated chat messages) with its resolved one-row [`Personality`]."""

    messages: list[dict]
    personality: Personality


class PersonalizedDialoguePipeline(Pipeline):
    """Answer a conversation with a MIRACLE model, in the personality you ask for.

    Build it with `transformers.pipeline` (importing `modeling_miracle` registers the task):

    ```python
    >>> import modeling_miracle
    >>> from transformers import pipeline
    >>> chat = pipeline("personalized-dialogue", model="path/to/saved/miracle")
    >>> chat(
    ...     [{"role": "user", "content": "What do you do on weekends?"}],
    ...     personality={"language_style": "lyrical", "attitude": "optimistic"},
    ...     max_new_tokens=40,
    ... )
    [{'generated_text': '...', 'personality': {'language_style': 'lyrical', 'attitude': 'optimistic'}}]
    ```

    `model` is a path or Hub id of a saved MIRACLE model (its [`MiracleProcessor`] is loaded from the same place),
    or a [`MiracleForPersonalizedGeneration`] object together with `processor=` (a `MiracleProcessor` or the path
    of a saved one; `tokenizer=` is accepted as an alias when it holds one). A model object loaded with
    `from_pretrained` finds its processor by itself when one was saved next to it. `device=` and `batch_size=` work
    as in other pipelines.

    Inputs: one conversation, a list of conversations, or a stream of them (a generator, a `datasets.Dataset`
    through `KeyDataset`), answered while it is consumed, as in every pipeline. A conversation is

    - a list of chat messages `{"role": "user" | "assistant" | "system", "content": str}`, ending with a user turn;
    - a list of strings: alternating user / assistant turns, starting and ending with the user;
    - a string: one user turn;
    - a dict `{"messages": <one of the above>, "personality": ..., "attribute_weights": ...}`: the personality
      travels with its conversation (it wins over the call's).

    A list of strings is *one* conversation; a batch of one-turn conversations is `[["Hi!"], ["Hello?"]]`.

    Call arguments (also accepted when building the pipeline, as defaults for every call):

    - `personality`: `{attribute: aspect}` (aspect by name or index) for every conversation, or one dict (or
      `None`) per conversation of a list. Attributes and aspects are those of `model.config.attributes`.
    - `attribute_weights`: `{attribute: weight}` (default 1 for each named attribute; negative steers away), one
      for all or one per conversation.
    - `use_ebm`: `False` decodes from the context's prior sample, without the personality ODE and without latent
      guidance: the paper's "w/o EBM" ablation, whose reply does not depend on the personality.
    - `sampler_*`: overrides of the ODE sampler settings (`sampler_method`, `sampler_rtol`, `sampler_step_size`,
      ...), and `generator`: a `torch.Generator` for the random start of the ODE.
    - generation arguments of `generate` (`max_new_tokens` (default 64), `do_sample`, `num_beams`,
      `num_return_sequences`, `top_p`, `streamer`, ...), and `latent_guidance_scale` (decoding-time latent guidance;
      default the model config's where it applies, see `MiracleForPersonalizedGeneration.guidance_scale`).
    - `streamer`: a transformers streamer (e.g. `TextStreamer`) that gets the reply's tokens as they are written,
      batch by batch (`TextStreamer` takes one row: one conversation, `num_return_sequences=1`).
    - `return_latent_diagnostics`: add `"latent_diagnostics"`: for each attribute the personality names,
      `{"aspect", "before", "after"}`, the latent classifier's probability of that aspect at the start and the
      end of the latent sampling.
    - `batch_size`: conversations per model call (default 1); `num_workers`: DataLoader workers for tokenizing.

    Output, for each conversation: one dict per returned sequence,
    `{"generated_text": str, "personality": {attribute: aspect name}}` (+ `"latent_diagnostics"`). One
    conversation in gives that list; a list of conversations gives a list of such lists; a stream gives an
    iterator of such lists.

    Histories longer than the encoder's limit or the decoder prompt limit (the processor's `max_encoder_length`
    and `max_prompt_length`, the latter lowered so that prompt + `max_new_tokens` fit the decoder's position limit)
    lose their oldest turns first; the newest user turn is never cut (a ValueError says so when it alone is too
    long).

    Reproducibility: the latent sampling starts from a random sample, so seed torch (or pass `generator=`) to repeat
    an answer. Each batch is one `model.generate` call (`_forward`), so the answers equal `model.generate`'s on the
    same batch.
    Across batch sizes they agree up to float rounding, with two caveats: the adaptive ODE solvers (the default)
    pick step sizes for the whole batch, so a latent can move within the solver tolerance with its batch
    (fixed-step `sampler_method="rk4"` + `sampler_step_size`, or `use_ebm=False`, avoid this); and random draws
    (the ODE start, `do_sample`) are taken batch by batch from the torch RNG.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=64)

    def __init__(self, model, processor=None, tokenizer=None, **kwargs):
        if not isinstance(model, MiracleForPersonalizedGeneration):
            raise TypeError(
                f"The {TASK!r} pipeline needs a MiracleForPersonalizedGeneration model (or the path of a saved one); "
                f"got {type(model).__name__}."
            )
        processor = _resolve_processor(model, processor, tokenizer)
        super().__init__(model=model, tokenizer=processor.decoder_tokenizer, processor=processor, **kwargs)

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(self, personality=None, attribute_weights=None, return_latent_diagnostics=None,
                             skip_special_tokens=None, clean_up_tokenization_spaces=None, **generate_kwargs):
        """Route call / init arguments: personality + prompt limit -> preprocess, everything else -> `generate`,
        output options -> postprocess. Options are checked here, before any model call."""
        reserved = sorted(set(generate_kwargs) & set(_RESERVED_GENERATE_ARGS))
        if reserved:
            raise ValueError(
                f"The pipeline builds {reserved} itself from the conversations; pass conversations and `personality` "
                "instead (or call `model.generate` directly)."
            )
        check_value("use_ebm", generate_kwargs.get("use_ebm", True), bool)
        SamplerSettings.from_config(self.model.config, **{k: v for k, v in generate_kwargs.items() if k.startswith("sampler_")})
        preprocess_params = {}
        if "max_new_tokens" in generate_kwargs:  # otherwise `preprocess` applies the limit of the defaults
            preprocess_params["max_prompt_length"] = self._prompt_limit(generate_kwargs)
        if personality is not None:
            preprocess_params["personality"] = personality
        if attribute_weights is not None:
            preprocess_params["attribute_weights"] = attribute_weights
        postprocess_params = {}
        if return_latent_diagnostics is not None:
            postprocess_params["return_latent_diagnostics"] = check_value(
                "return_latent_diagnostics", return_latent_diagnostics, bool)
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, generate_kwargs, postprocess_params

    def _prompt_limit(self, generate_kwargs: dict) -> int:
        """The decoder prompt limit: the processor's, lowered so that prompt + new tokens fit the decoder's positions."""
        limit = self.processor.max_prompt_length
        positions = getattr(self.model.config.decoder, "max_position_embeddings", None)
        new_tokens = generate_kwargs.get("max_new_tokens", self.model.generation_config.max_new_tokens)
        if positions is None or new_tokens is None:
            return limit
        room = int(positions) - int(new_tokens)
        if room < 1:
            raise ValueError(
                f"`max_new_tokens={new_tokens}` leaves no room for a prompt in the decoder's {positions} positions; "
                "ask for fewer new tokens."
            )
        return min(limit, room)

    # ------------------------------------------------------------------ call
    def __call__(self, inputs, **kwargs):
        """Answer one conversation, a list of them, or a stream (see the class docstring for inputs, arguments and
        output). The base `Pipeline.__call__` does the work; this only keeps a conversation given as a list (of
        turns or messages) one input, and pairs a list of personalities with a list of conversations, resolving
        every row before the first model call so that a bad entry fails fast."""
        batch_size = kwargs.get("batch_size")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"`batch_size` must be an integer >= 1; got {batch_size!r}.")
        personality = kwargs.pop("personality", self._preprocess_params.get("personality"))
        weights = kwargs.pop("attribute_weights", self._preprocess_params.get("attribute_weights"))
        if is_single_conversation(inputs) or isinstance(inputs, dict):
            inputs = self.request(inputs, personality, weights)
        elif isinstance(inputs, (list, tuple)):
            if not inputs:
                raise ValueError(f"Expected a conversation or a non-empty list of conversations; got {inputs!r}.")
            rows = zip(inputs, per_row(personality, len(inputs), "personality"),
                       per_row(weights, len(inputs), "attribute_weights"))
            inputs = [self.request(conversation, *row) for conversation, *row in rows]
        else:  # a stream: each conversation is resolved as it is read
            if isinstance(personality, (list, tuple)) or isinstance(weights, (list, tuple)):
                raise ValueError("A list of personalities pairs with a list of conversations; for a stream, yield "
                                 "dicts {'messages': ..., 'personality': ...} or pass one personality dict.")
            kwargs.update(personality=personality, attribute_weights=weights)
        return super().__call__(inputs, **kwargs)

    def request(self, conversation, personality=None, attribute_weights=None) -> DialogueRequest:
        """One input -> a [`DialogueRequest`] (messages validated, personality resolved); a dict input's own
        `personality` / `attribute_weights` win over the given ones."""
        if isinstance(conversation, DialogueRequest):
            return conversation
        if isinstance(conversation, dict) and not {"role", "content"} <= conversation.keys():
            unknown = sorted(set(conversation) - {"messages", *_REQUEST_KEYS})
            if "messages" not in conversation or unknown:
                raise ValueError("A dict input must be {'messages': <conversation>, 'personality': ..., "
                                 f"'attribute_weights': ...}}; got keys {sorted(conversation)}.")
            personality = conversation.get("personality", personality)
            attribute_weights = conversation.get("attribute_weights", attribute_weights)
            conversation = conversation["messages"]
        messages = getattr(conversation, "messages", conversation)  # the base class wraps streamed chats in `Chat`
        return DialogueRequest(
            normalize_conversation(messages),
            Personality.resolve(self.model.config, personality, attribute_weights, batch_size=1),
        )

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params,
                     postprocess_params):
        """The base iterator, with batches padded by the processor (the base collate knows only one tokenizer)."""
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            num_workers = min(num_workers, 1)  # an iterable is read by one worker, as in the base class
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        collate = functools.partial(_collate, self.processor) if batch_size > 1 else _single
        # A loader of its own generator: the base one draws its worker seed from the global RNG, which would shift
        # the latent sampling of a seeded call away from `model.generate`'s.
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate,
                            generator=torch.Generator())
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    # ------------------------------------------------------------------ steps
    def preprocess(self, inputs, personality=None, attribute_weights=None, max_prompt_length: int | None = None):
        """Tokenize one conversation (a [`DialogueRequest`] or any input form) with the processor, oldest turns
        dropped to fit the limits. Returns the processor's tensors (batch 1) and the row's `Personality`."""
        request = self.request(inputs, personality, attribute_weights)
        processor = self.processor
        if max_prompt_length is None:
            max_prompt_length = self._prompt_limit(self._prepare_generate_kwargs({}))
        if max_prompt_length != processor.max_prompt_length:
            processor = copy.copy(processor)  # shares the tokenizers
            processor.max_prompt_length = max_prompt_length
        return {**processor([request.messages], return_tensors="pt"), "personality": request.personality}

    def _forward(self, model_inputs, **generate_kwargs):
        """One `model.generate` call for the batch; each row's returned sequences are kept together."""
        prompt = model_inputs["input_ids"]
        output = self.model.generate(**model_inputs, return_latent_sample=True,
                                     **self._prepare_generate_kwargs(generate_kwargs))
        new_tokens = output.sequences[:, prompt.shape[1]:]
        attributes = self.model.config.attributes
        return {
            "sequences": new_tokens.reshape(prompt.shape[0], -1, new_tokens.shape[-1]),
            "personality": model_inputs["personality"].names(attributes),
            "latent_diagnostics": output.latent_sample.diagnostics(attributes),
        }

    def postprocess(self, model_outputs, return_latent_diagnostics: bool = False, skip_special_tokens: bool = True,
                    clean_up_tokenization_spaces: bool | None = None):
        """Decode one conversation's new tokens: `[{"generated_text", "personality"[, "latent_diagnostics"]}]`, one
        dict per returned sequence."""
        decode_kwargs = {"skip_special_tokens": skip_special_tokens}
        if clean_up_tokenization_spaces is not None:
            decode_kwargs["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        texts = self.processor.batch_decode(model_outputs["sequences"][0], **decode_kwargs)
        personality, diagnostics = (_row(model_outputs[key]) for key in ("personality", "latent_diagnostics"))
        answers = []
        for text in texts:
            answer = {"generated_text": text, "personality": dict(personality)}
            if return_latent_diagnostics:
                answer["latent_diagnostics"] = copy.deepcopy(diagnostics)
            answers.append(answer)
        return answers

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Save the model and its processor, so that `pipeline("personalized-dialogue", model=save_directory)` reloads.

        `kwargs` go to the model's `save_pretrained`. Unlike the base class, no pipeline code is copied and the
        config gets no `custom_pipelines` entry: the task comes from the installed package.
        """
        if os.path.isfile(save_directory):
            raise ValueError(f"{save_directory} is a file; give a directory to save the pipeline in.")
        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)


def _resolve_processor(model, processor, tokenizer) -> MiracleProcessor:
    """The pipeline's `MiracleProcessor`: the one given, one loaded from a path, or the one saved with the model."""
    if processor is None and isinstance(tokenizer, (MiracleProcessor, str, os.PathLike)):
        processor, tokenizer = tokenizer, None
    if tokenizer is not None:
        raise ValueError(
            "MIRACLE reads a conversation with two tokenizers (the encoder's and the decoder's): pass "
            "`processor=MiracleProcessor(encoder_tokenizer, decoder_tokenizer)` (or the path of a saved processor) "
            f"instead of `tokenizer=` ({type(tokenizer).__name__})."
        )
    if isinstance(processor, (str, os.PathLike)):
        return MiracleProcessor.from_pretrained(processor)
    if processor is None:
        source = getattr(model, "name_or_path", None) or ""
        if not source:
            raise ValueError(
                "This model was not loaded from a saved folder, so its processor cannot be found: pass "
                "`processor=MiracleProcessor(encoder_tokenizer, decoder_tokenizer)` (or the path of a saved one)."
            )
        try:
            return MiracleProcessor.from_pretrained(source)
        except Exception as error:
            raise OSError(
                f"Could not load the MiracleProcessor saved with the model at {source!r} ({error}); pass `processor=`."
            ) from error
    if not isinstance(processor, MiracleProcessor):
        raise TypeError(
            f"`processor` must be a MiracleProcessor or the path of a saved one; got {type(processor).__name__}."
        )
    return processor


def _collate(processor: MiracleProcessor, items: list[dict]) -> dict:
    """Batch preprocessed conversations: the processor pads the tensors, the personalities are stacked."""
    return {**processor.pad(items), "personality": Personality.cat([item["personality"] for item in items])}


def _single(items: list[dict]) -> dict:
    return items[0]


def _row(value):
    """A per-row value of a batch of one: unbatched by the base iterator (the row itself) or not (a list of one)."""
    return value[0] if isinstance(value, list) else value


__all__ = ["DialogueRequest", "PersonalizedDialoguePipeline", "TASK"]
