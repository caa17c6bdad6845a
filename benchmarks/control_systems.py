"""The systems `personality_control.py` compares, all on the same decoder backbone:

- `PlainSystem`: the plain decoder on the conversation alone (no personality);
- `PromptSystem`: the plain decoder told the personality in a system message (the paper's appendix A wording);
- `SteeringSystem`: contrastive activation addition: per attribute, the difference of the decoder's mean residual
  activation between the two aspects' training responses, added at one layer with a scale;
- `MiracleSystem`: a MIRACLE model's `generate` (with or without EBM, with optional latent guidance).

Each `respond(examples)` returns greedy replies for examples `{"messages", "personality"}`.
"""

from __future__ import annotations

import copy

import torch

from modeling_miracle.latent_modules import decoder_blocks

# Aspect descriptions in the paper's appendix A style ("answers ... in a plain and down-to-earth manner").
ASPECT_DESCRIPTIONS = {
    "plain": "plain and down-to-earth",
    "lyrical": "lyrical and poetic",
    "pessimistic": "pessimistic and negative",
    "optimistic": "optimistic and positive",
    "emotional": "emotional and sensitive",
    "critical": "critical and intellectual",
}


def personality_instruction(personality: dict[str, str]) -> str:
    """A system message asking for the personality, as in the paper's multi-attribute test template."""
    described = ", ".join(ASPECT_DESCRIPTIONS.get(a, a) for a in personality.values())
    return (f"You are PersonB. You answer PersonA's questions in a {described} manner. "
            "Reply in at most two sentences and do not ask questions.")


def left_padded(tokenizer, prompts: list[str]) -> dict:
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


@torch.no_grad()
def greedy_replies(decoder, tokenizer, prompts: list[str], max_new_tokens: int, decoding: dict | None = None) -> list[str]:
    inputs = left_padded(tokenizer, prompts)
    output = decoder.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                              pad_token_id=tokenizer.pad_token_id, **(decoding or {}))
    texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [t.strip() for t in texts]


class PlainSystem:
    """The plain decoder on the conversation alone: no personality (the baseline of cost and of accuracy)."""

    def __init__(self, decoder, tokenizer, max_new_tokens: int = 40, decoding: dict | None = None):
        self.decoder, self.tokenizer, self.max_new_tokens = decoder, tokenizer, max_new_tokens
        self.decoding = decoding or {}

    def messages(self, example: dict) -> list[dict]:
        return example["messages"]

    def respond(self, examples: list[dict]) -> list[str]:
        prompts = [self.tokenizer.apply_chat_template(self.messages(e), add_generation_prompt=True, tokenize=False)
                   for e in examples]
        return greedy_replies(self.decoder, self.tokenizer, prompts, self.max_new_tokens, self.decoding)


class PromptSystem(PlainSystem):
    """The plain decoder with the personality described in a system message."""

    def messages(self, example: dict) -> list[dict]:
        return [{"role": "system", "content": personality_instruction(example["personality"])}] + example["messages"]


class SteeringSystem:
    """Contrastive activation addition on the plain decoder (no training).

    `fit(responses_by_aspect)` stores, per attribute, mean activation(aspect 1) - mean activation(aspect 0) at the
    output of every layer, averaged over response tokens (each response after its own context). At generation the
    target aspects' vectors are added to one layer's output at every position: `+scale * v` for aspect 1 and
    `-scale * v` for aspect 0.
    """

    def __init__(self, decoder, tokenizer, attributes: dict[str, list[str]], layer: int = 15, scale: float = 4.0,
                 max_new_tokens: int = 40, decoding: dict | None = None):
        self.decoder, self.tokenizer, self.attributes = decoder, tokenizer, attributes
        self.layer, self.scale, self.max_new_tokens = layer, scale, max_new_tokens
        self.decoding = decoding or {}
        self.vectors: dict[str, torch.Tensor] = {}  # attribute -> (layers + 1, hidden)

    @torch.no_grad()
    def mean_activation(self, pairs: list[tuple[list[dict], str]], batch_size: int = 16) -> torch.Tensor:
        """Mean hidden state of every layer over the response tokens of (messages, response) pairs."""
        total, count = None, 0
        self.tokenizer.padding_side = "left"
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            prompts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m, _ in batch]
            prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            response_ids = [self.tokenizer(r, add_special_tokens=False)["input_ids"] for _, r in batch]
            width = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
            ids = torch.full((len(batch), width), self.tokenizer.pad_token_id)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            response_mask = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (p, r) in enumerate(zip(prompt_ids, response_ids)):
                ids[row, width - len(p) - len(r):] = torch.tensor(p + r)
                mask[row, width - len(p) - len(r):] = 1
                response_mask[row, width - len(r):] = True
            hidden = self.decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            stacked = torch.stack(hidden)  # (layers + 1, batch, width, hidden)
            summed = (stacked * response_mask[None, :, :, None]).sum((1, 2))
            total = summed if total is None else total + summed
            count += int(response_mask.sum())
        return total / count

    def fit(self, pairs_by_aspect: dict[str, dict[int, list[tuple[list[dict], str]]]]) -> "SteeringSystem":
        for attribute, by_aspect in pairs_by_aspect.items():
            self.vectors[attribute] = self.mean_activation(by_aspect[1]) - self.mean_activation(by_aspect[0])
        return self

    def with_setting(self, layer: int, scale: float) -> "SteeringSystem":
        """The same fitted vectors, added at another layer / with another scale."""
        other = copy.copy(self)
        other.layer, other.scale = layer, scale
        return other

    def steering_vector(self, personality: dict[str, str]) -> torch.Tensor:
        # hidden_states[i + 1] is the output of block i.
        vector = 0
        for attribute, aspect in personality.items():
            sign = 1.0 if self.attributes[attribute].index(aspect) == 1 else -1.0
            vector = vector + sign * self.vectors[attribute][self.layer + 1]
        return self.scale * vector

    def respond(self, examples: list[dict]) -> list[str]:
        vectors = torch.stack([self.steering_vector(e["personality"]) for e in examples])  # (batch, hidden)

        def add_vector(module, args, output):
            if isinstance(output, tuple):
                return (output[0] + vectors[:, None, :].to(output[0].dtype),) + tuple(output[1:])
            return output + vectors[:, None, :].to(output.dtype)

        handle = decoder_blocks(self.decoder)[self.layer].register_forward_hook(add_vector)
        try:
            prompts = [self.tokenizer.apply_chat_template(e["messages"], add_generation_prompt=True, tokenize=False)
                       for e in examples]
            return greedy_replies(self.decoder, self.tokenizer, prompts, self.max_new_tokens, self.decoding)
        finally:
            handle.remove()


class MiracleSystem:
    """A MIRACLE model's own generation (EBM on or off, latent guidance scale)."""

    def __init__(self, model, processor, use_ebm: bool = True, guidance_scale: float = 0.0, max_new_tokens: int = 40,
                 seed: int = 0, decoding: dict | None = None, guidance_plausibility: float | None = None,
                 **sampler_overrides):
        self.model, self.processor, self.use_ebm = model, processor, use_ebm
        self.guidance_scale, self.max_new_tokens, self.seed = guidance_scale, max_new_tokens, seed
        self.decoding, self.guidance_plausibility = decoding or {}, guidance_plausibility
        self.sampler_overrides = sampler_overrides

    @torch.no_grad()
    def respond(self, examples: list[dict]) -> list[str]:
        inputs = self.processor([e["messages"] for e in examples])
        output = self.model.generate(
            **inputs, personality=[e["personality"] for e in examples], use_ebm=self.use_ebm, do_sample=False,
            max_new_tokens=self.max_new_tokens, latent_guidance_scale=self.guidance_scale,
            latent_guidance_plausibility=self.guidance_plausibility, **self.decoding,
            generator=torch.Generator().manual_seed(self.seed), **self.sampler_overrides,
        )
        return self.processor.batch_decode(output, prompt_length=inputs["input_ids"].shape[1])


def training_pairs(attributes: dict[str, list[str]], per_aspect: int = 64) -> dict:
    """(messages, response) pairs of the first turns of the packaged corpus's training dialogues, per attribute and
    aspect (at most `per_aspect` each)."""
    from common import corpus_examples_by_aspect

    grouped = corpus_examples_by_aspect("train", attributes, first_turn_only=True)
    return {attribute: {aspect: [(e["messages"], e["response"]) for e in examples[:per_aspect]]
                        for aspect, examples in by_aspect.items()}
            for attribute, by_aspect in grouped.items()}
