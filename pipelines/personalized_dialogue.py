"""`PersonalizedDialoguePipeline`: the `"personalized-dialogue"` task, MIRACLE's answer to a conversation in a chosen
personality (SPEC section 4)."""

from __future__ import annotations

import copy
import os
import types

import torch
from transformers import GenerationConfig, Pipeline

from ..configuration.validation import check_value
from ..conversation import normalize_conversations
from ..modeling_miracle import MiracleForPersonalizedGeneration
from ..processing_miracle import MiracleProcessor
from ..sampling import SamplerSettings, per_row, resolve_personality

TASK = "personalized-dialogue"

# Arguments the pipeline sets itself when it calls `generate`: passing them is an error.
_RESERVED_GENERATE_ARGS = ("input_ids", "attention_mask", "prior_input_ids", "prior_attention_mask", "latent")


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

    Inputs (one conversation, or a list of conversations):

    - a list of chat messages `{"role": "user" | "assistant" | "system", "content": str}`, ending with a user turn;
    - a list of strings: alternating user / assistant turns, starting and ending with the user;
    - a string: one user turn.

    A list of strings is *one* conversation; a batch of one-turn conversations is `[["Hi!"], ["Hello?"]]`.

    Call arguments (also accepted when building the pipeline, as defaults for every call):

    - `personality`: `{attribute: aspect}` (aspect by name or index) for every conversation, or one dict (or
      `None`) per conversation. Attributes and aspects are those of `model.config.attributes`.
    - `attribute_weights`: `{attribute: weight}` (default 1 for each named attribute; negative steers away), one
      for all or one per conversation.
    - `use_ebm`: `False` decodes from the context's prior sample, without the personality ODE.
    - `sampler_*`: overrides of the ODE sampler settings (`sampler_method`, `sampler_rtol`, `sampler_step_size`,
      ...), and `generator`: a `torch.Generator` for the random start of the ODE.
    - generation arguments of `generate` (`max_new_tokens` (default 64), `do_sample`, `num_beams`,
      `num_return_sequences`, `top_p`, ...), and `latent_guidance_scale` (decoding-time latent guidance; default
      the model config's).
    - `streamer`: a transformers streamer (e.g. `TextStreamer`) that gets the reply's tokens as they are written,
      batch by batch (`TextStreamer` takes one row: one conversation, `num_return_sequences=1`).
    - `return_latent_diagnostics`: add `"latent_diagnostics"`: for each attribute the personality names,
      `{"aspect", "before", "after"}`, the latent classifier's probability of that aspect at the start and the
      end of the latent sampling.
    - `batch_size`: conversations per model call (default 1).

    Output, for each conversation: one dict per returned sequence,
    `{"generated_text": str, "personality": {attribute: aspect name}}` (+ `"latent_diagnostics"`). One
    conversation in gives that list; a list of conversations gives a list of such lists.

    Histories longer than the encoder's limit or the decoder prompt limit (the processor's `max_encoder_length`
    and `max_prompt_length`, the latter lowered so that prompt + `max_new_tokens` fit the decoder's position limit)
    lose their oldest turns first; the newest user turn is never cut (a ValueError says so when it alone is too
    long).

    Reproducibility: the latent sampling starts from a random sample, so seed torch (or pass `generator=`) to repeat
    an answer. Each batch is one `model.generate` call, so the answers equal `model.generate`'s on the same batch.
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
    def _sanitize_parameters(self, **kwargs):
        """Route call / init arguments: personality -> preprocess, sampling + generation -> forward, output -> postprocess."""
        preprocess_params = {k: kwargs.pop(k) for k in ("personality", "attribute_weights") if k in kwargs}
        forward_params = {k: kwargs.pop(k) for k in ("use_ebm", "generator") if k in kwargs}
        sampler_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("sampler_")}
        if sampler_overrides:
            forward_params["sampler_overrides"] = sampler_overrides
        postprocess_params = {
            k: kwargs.pop(k)
            for k in ("return_latent_diagnostics", "skip_special_tokens", "clean_up_tokenization_spaces")
            if k in kwargs
        }
        reserved = sorted(set(kwargs) & set(_RESERVED_GENERATE_ARGS))
        if reserved:
            raise ValueError(
                f"The pipeline builds {reserved} itself from the conversations; pass conversations and `personality` "
                "instead (or call `model.generate` directly)."
            )
        if kwargs:
            forward_params["generate_kwargs"] = kwargs
        return preprocess_params, forward_params, postprocess_params

    def _call_parameters(self, kwargs):
        """This call's parameters on top of those given when the pipeline was built."""
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        merged_forward = {**self._forward_params, **forward}
        for nested in ("sampler_overrides", "generate_kwargs"):
            merged_forward[nested] = {**self._forward_params.get(nested, {}), **forward.get(nested, {})}
        return (
            {**self._preprocess_params, **preprocess},
            merged_forward,
            {**self._postprocess_params, **postprocess},
        )

    # ------------------------------------------------------------------ call
    def __call__(self, inputs, batch_size: int | None = None, **kwargs):
        """Answer one conversation or a list of them (see the class docstring for inputs, arguments and output)."""
        if isinstance(inputs, types.GeneratorType):
            inputs = list(inputs)
        conversations, is_batched = normalize_conversations(inputs)
        preprocess_params, forward_params, postprocess_params = self._call_parameters(kwargs)
        count = len(conversations)
        personalities = per_row(preprocess_params.get("personality"), count, "personality")
        weights = per_row(preprocess_params.get("attribute_weights"), count, "attribute_weights")
        # Check everything before the first model call, so a bad entry fails fast and names what is valid.
        resolve_personality(self.model.config, personalities, weights, count)
        SamplerSettings.from_config(self.model.config, **forward_params["sampler_overrides"])
        for name, value in (("use_ebm", forward_params.get("use_ebm", True)),
                            ("return_latent_diagnostics", postprocess_params.get("return_latent_diagnostics", False))):
            check_value(name, value, bool)
        forward_params["generate_kwargs"] = self._prepare_generate_kwargs(forward_params["generate_kwargs"])
        prompt_limit = self._prompt_limit(forward_params["generate_kwargs"])

        batch_size = batch_size if batch_size is not None else (self._batch_size or 1)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1; got {batch_size!r}.")
        outputs = []
        for start in range(0, count, batch_size):
            rows = slice(start, start + batch_size)
            model_inputs = self.preprocess(
                conversations[rows], personality=personalities[rows], attribute_weights=weights[rows],
                max_prompt_length=prompt_limit,
            )
            model_outputs = self.forward(model_inputs, **forward_params)
            outputs.extend(self.postprocess(model_outputs, **postprocess_params))
        return outputs if is_batched else outputs[0]

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

    # ------------------------------------------------------------------ steps
    def preprocess(self, conversations, personality=None, attribute_weights=None, max_prompt_length: int | None = None):
        """Tokenize a batch of conversations with the processor (oldest turns dropped to fit the limits).

        `personality` / `attribute_weights`: one dict for all rows or one per row. Returns the processor's tensors
        plus `personality` (per row, `{attribute: aspect name}`) and `attribute_weights` (per row).
        """
        batch, _ = normalize_conversations(conversations)
        processor = self.processor
        if max_prompt_length is not None and max_prompt_length != processor.max_prompt_length:
            processor = copy.copy(processor)  # shares the tokenizers
            processor.max_prompt_length = max_prompt_length
        personalities = per_row(personality, len(batch), "personality")
        model_inputs = dict(processor(batch, return_tensors="pt"))
        model_inputs["personality"] = [self._aspect_names(p) for p in personalities]
        model_inputs["attribute_weights"] = per_row(attribute_weights, len(batch), "attribute_weights")
        return model_inputs

    def _aspect_names(self, personality: dict | None) -> dict:
        """`{attribute: aspect}` with aspects given by name or index -> `{attribute: aspect name}` (validated)."""
        config = self.model.config
        return {
            attribute: config.attributes[attribute][config.aspect_index(attribute, aspect)]
            for attribute, aspect in (personality or {}).items()
        }

    def _forward(self, model_inputs, use_ebm: bool = True, generator=None, sampler_overrides=None, generate_kwargs=None):
        """Sample each row's latent for its personality, then decode from it (what `model.generate` does)."""
        sample = self.model.sample_latent(
            model_inputs["prior_input_ids"],
            model_inputs["prior_attention_mask"],
            personality=model_inputs["personality"],
            attribute_weights=model_inputs["attribute_weights"],
            use_ebm=use_ebm,
            generator=generator,
            **(sampler_overrides or {}),
        )
        generate_kwargs = dict(generate_kwargs or {})  # already prepared by __call__
        scale = generate_kwargs.pop("latent_guidance_scale", self.model.config.latent_guidance_scale)
        if scale:
            generate_kwargs.update(latent_guidance_scale=scale, guidance_latent=self.model.opposite_latent(
                model_inputs["prior_input_ids"], model_inputs["prior_attention_mask"], sample,
                model_inputs["attribute_weights"], **(sampler_overrides or {})))
        generated = self.model.generate(
            input_ids=model_inputs["input_ids"],
            attention_mask=model_inputs["attention_mask"],
            latent=sample.latent,
            **generate_kwargs,
        )
        sequences = generated if isinstance(generated, torch.Tensor) else generated.sequences
        return {
            "sequences": sequences,
            "prompt_length": model_inputs["input_ids"].shape[1],
            "personality": model_inputs["personality"],
            "latent_diagnostics": sample.diagnostics(self.model.config.attributes),
        }

    def postprocess(self, model_outputs, return_latent_diagnostics: bool = False, skip_special_tokens: bool = True,
                    clean_up_tokenization_spaces: bool | None = None):
        """Decode the new tokens; one list of `{"generated_text", "personality"[, "latent_diagnostics"]}` per row."""
        decode_kwargs = {"skip_special_tokens": skip_special_tokens}
        if clean_up_tokenization_spaces is not None:
            decode_kwargs["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        texts = self.processor.batch_decode(model_outputs["sequences"], prompt_length=model_outputs["prompt_length"],
                                            **decode_kwargs)
        rows = len(model_outputs["personality"])
        per_row = len(texts) // rows  # generate returns each row's sequences next to each other
        results = []
        for row in range(rows):
            answers = []
            for text in texts[row * per_row:(row + 1) * per_row]:
                answer = {"generated_text": text, "personality": dict(model_outputs["personality"][row])}
                if return_latent_diagnostics:
                    answer["latent_diagnostics"] = copy.deepcopy(model_outputs["latent_diagnostics"][row])
                answers.append(answer)
            results.append(answers)
        return results

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


__all__ = ["PersonalizedDialoguePipeline", "TASK"]
