"""`pipeline("personalized-dialogue", ...)` on tiny random models: input forms, batching, truncation, errors, save/load."""

import copy

import pytest
import torch
from transformers import BertTokenizerFast, GPT2Config, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from modeling_miracle import MiracleConfig, MiracleForPersonalizedGeneration, MiracleProcessor
from modeling_miracle.backbones import load_gpt2_tokenizer, minilm_folder
from modeling_miracle.pipelines import PersonalizedDialoguePipeline

from .conftest import CHAT_TEMPLATE, CONVERSATIONS, OPPOSITE, PERSONALITY, make_model, tiny_encoder_config

TASK = "personalized-dialogue"
NEW = dict(max_new_tokens=6)
PERSONALITIES = [PERSONALITY, OPPOSITE, {"attitude": "optimistic"}]
LONG_HISTORY = [
    turn
    for i in range(12)
    for turn in (f"Old question number {i} about many long and winding things?", f"Old answer number {i} with detail.")
] + ["What is the newest question?"]


def sharpen(model):
    """Larger decoder weights, so that greedy decoding does not repeat one token."""
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def tokenizers():
    return BertTokenizerFast.from_pretrained(minilm_folder()), load_gpt2_tokenizer()


@pytest.fixture(scope="module")
def proc(tokenizers):
    return MiracleProcessor(copy.deepcopy(tokenizers[0]), copy.deepcopy(tokenizers[1]), max_encoder_length=64,
                            max_prompt_length=96)


@pytest.fixture(scope="module")
def model():
    return sharpen(make_model("gpt2", seed=0))


@pytest.fixture(scope="module")
def pipe(model, proc):
    return pipeline(TASK, model=model, processor=proc, device="cpu")


def reference(model, processor, conversations, seed=0, **kwargs):
    """What `model.generate` answers for the same inputs, seeded like the pipeline call."""
    inputs = processor(conversations)
    torch.manual_seed(seed)
    out = model.generate(**inputs, pad_token_id=50256, **kwargs)
    return processor.batch_decode(out, prompt_length=inputs["input_ids"].shape[1])


def run(pipe, inputs, seed=0, **kwargs):
    torch.manual_seed(seed)
    return pipe(inputs, **kwargs)


def texts(outputs):
    return [[answer["generated_text"] for answer in answers] for answers in outputs]


# ---------------------------------------------------------------------------------------------- building


def test_task_is_registered_and_builds_the_pipeline(pipe, model, proc):
    assert TASK in PIPELINE_REGISTRY.get_supported_tasks()
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["pt"] == (MiracleForPersonalizedGeneration,)
    assert isinstance(pipe, PersonalizedDialoguePipeline)
    assert pipe.model is model and pipe.processor is proc and pipe.tokenizer is proc.decoder_tokenizer
    assert pipe.device == torch.device("cpu")
    # `tokenizer=` holding a MiracleProcessor is an accepted alias of `processor=`.
    assert pipeline(TASK, model=model, tokenizer=proc, device="cpu").processor is proc


# ---------------------------------------------------------------------------------------------- input forms

FORMS = {
    "chat messages": [{"role": "user", "content": "I just moved to a new town."},
                      {"role": "assistant", "content": "Moving takes a lot of energy."},
                      {"role": "user", "content": "How should I meet people here?"}],
    "list of turns": ["I just moved to a new town.", "Moving takes a lot of energy.", "How should I meet people here?"],
    "string": "How should I meet people here?",
}


@pytest.mark.parametrize("form", list(FORMS))
def test_single_conversation_in_each_form_equals_generate(pipe, model, proc, form):
    out = run(pipe, FORMS[form], personality=PERSONALITY, **NEW)
    assert isinstance(out, list) and len(out) == 1
    assert out[0]["personality"] == PERSONALITY
    assert [out[0]["generated_text"]] == reference(model, proc, FORMS[form], personality=PERSONALITY, **NEW)
    assert out[0]["generated_text"]


def test_forms_of_the_same_conversation_agree_and_system_messages_are_accepted(pipe):
    answers = {form: run(pipe, FORMS[form], **NEW)[0]["generated_text"] for form in ("chat messages", "list of turns")}
    assert answers["chat messages"] == answers["list of turns"]
    with_system = [{"role": "system", "content": "Be brief."}] + FORMS["chat messages"]
    assert run(pipe, with_system, **NEW)[0]["generated_text"]


@pytest.mark.parametrize("form", ["chat messages", "list of turns", "string"])
def test_batch_with_a_personality_per_conversation_equals_generate(pipe, model, proc, form):
    batch = {
        "chat messages": CONVERSATIONS,
        "list of turns": [[m["content"] for m in conversation] for conversation in CONVERSATIONS],
        "string": [c[-1]["content"] for c in CONVERSATIONS],
    }[form]
    if form == "string":  # a list of strings is one conversation: a batch of one-turn ones is a list of lists
        batch = [[text] for text in batch]
    out = run(pipe, batch, personality=PERSONALITIES, batch_size=3, **NEW)
    assert len(out) == 3 and all(len(answers) == 1 for answers in out)
    assert [answers[0]["personality"] for answers in out] == PERSONALITIES
    assert [t[0] for t in texts(out)] == reference(model, proc, batch, personality=PERSONALITIES, **NEW)


def test_personalities_travel_with_their_conversation(separated_model, proc):
    """The same context asked in opposite personalities, in one batch: each row's aspects win on its own latent."""
    chat = pipeline(TASK, model=separated_model, processor=proc, device="cpu")
    conversation = CONVERSATIONS[1]
    out = run(chat, [conversation, conversation], personality=[PERSONALITY, OPPOSITE], batch_size=2,
              return_latent_diagnostics=True, **NEW)
    for answers, wanted in zip(out, (PERSONALITY, OPPOSITE)):
        diagnostics = answers[0]["latent_diagnostics"]
        assert {name: d["aspect"] for name, d in diagnostics.items()} == wanted
        assert all(d["after"] > 0.9 and d["after"] >= d["before"] for d in diagnostics.values())
    assert out[0][0]["generated_text"] != out[1][0]["generated_text"]
    # Aspects may be given by index; the output names them.
    indexed = run(chat, conversation, personality={"attitude": 1}, **NEW)
    assert indexed[0]["personality"] == {"attitude": "optimistic"}


def test_latent_diagnostics_are_those_of_sample_latent(pipe, model, proc):
    out = run(pipe, CONVERSATIONS, personality=PERSONALITIES, batch_size=3, return_latent_diagnostics=True, **NEW)
    inputs = proc(CONVERSATIONS)
    torch.manual_seed(0)
    sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality=PERSONALITIES)
    assert [answers[0]["latent_diagnostics"] for answers in out] == sample.diagnostics(model.config.attributes)
    assert set(out[2][0]["latent_diagnostics"]) == {"attitude"}
    # ... and the texts are those of generate(latent=...) from that sample
    again = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], latent=sample.latent,
                           pad_token_id=50256, **NEW)
    assert [t[0] for t in texts(out)] == proc.batch_decode(again, prompt_length=inputs["input_ids"].shape[1])
    assert "latent_diagnostics" not in run(pipe, CONVERSATIONS[0], **NEW)[0]


def test_batch_size_two_over_three_conversations_equals_unbatched(pipe):
    unbatched = run(pipe, CONVERSATIONS, personality=PERSONALITIES, **NEW)
    batched = run(pipe, CONVERSATIONS, personality=PERSONALITIES, batch_size=2, **NEW)
    assert texts(batched) == texts(unbatched)
    assert len({t[0] for t in texts(batched)}) == 3


# ---------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_beams=3, num_return_sequences=2),
        dict(do_sample=True, top_k=5, num_return_sequences=2),
        dict(use_ebm=False),
        dict(sampler_method="rk4", sampler_step_size=0.25, attribute_weights={"attitude": -1.0}),
    ],
    ids=["beams", "sampling", "no-ebm", "sampler-overrides"],
)
def test_generation_and_sampler_arguments_equal_generate(pipe, model, proc, kwargs):
    personality = {"attitude": "optimistic"}
    out = run(pipe, CONVERSATIONS, personality=personality, batch_size=3, **NEW, **kwargs)
    per_row = kwargs.get("num_return_sequences", 1)
    assert all(len(answers) == per_row for answers in out)
    expected = reference(model, proc, CONVERSATIONS, personality=personality, **NEW, **kwargs)
    assert [text for answers in texts(out) for text in answers] == expected


def test_arguments_given_when_building_are_defaults(model, proc):
    chat = pipeline(TASK, model=model, processor=proc, device="cpu", personality=PERSONALITY, max_new_tokens=4,
                    return_latent_diagnostics=True)
    out = run(chat, CONVERSATIONS[0])
    assert out[0]["personality"] == PERSONALITY and "latent_diagnostics" in out[0]
    assert [out[0]["generated_text"]] == reference(model, proc, CONVERSATIONS[0], personality=PERSONALITY,
                                                   max_new_tokens=4)
    # a call's arguments win
    assert run(chat, CONVERSATIONS[0], personality=None)[0]["personality"] == {}


def test_chat_template_decoder(model, tokenizers):
    decoder_tokenizer = copy.deepcopy(tokenizers[1])
    decoder_tokenizer.chat_template = CHAT_TEMPLATE
    processor = MiracleProcessor(copy.deepcopy(tokenizers[0]), decoder_tokenizer, max_encoder_length=64)
    chat = pipeline(TASK, model=model, processor=processor, device="cpu")
    out = run(chat, CONVERSATIONS, personality=PERSONALITIES, batch_size=3, **NEW)
    assert [t[0] for t in texts(out)] == reference(model, processor, CONVERSATIONS, personality=PERSONALITIES, **NEW)


# ---------------------------------------------------------------------------------------------- long histories


def test_history_longer_than_the_encoder_limit_keeps_its_newest_turn(pipe, model, proc):
    full = proc.encoder_tokenizer(proc.encoder_context_text([{"role": "user", "content": t} for t in LONG_HISTORY]))
    assert len(full["input_ids"]) > proc.max_encoder_length
    out = run(pipe, LONG_HISTORY, personality=PERSONALITY, **NEW)
    assert [out[0]["generated_text"]] == reference(model, proc, LONG_HISTORY, personality=PERSONALITY, **NEW)
    inputs = pipe.preprocess(LONG_HISTORY)
    context = proc.encoder_tokenizer.decode(inputs["prior_input_ids"][0], skip_special_tokens=True)
    prompt = proc.decoder_tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert inputs["prior_input_ids"].shape[1] <= proc.max_encoder_length
    assert context.endswith("what is the newest question?") and "number 0 " not in context
    assert prompt.endswith("User: What is the newest question?\nAssistant:") and "number 0 " not in prompt


def test_prompt_and_new_tokens_fit_the_decoders_positions(proc):
    """A decoder with 48 positions: the 96-token prompt limit is lowered to 48 - max_new_tokens."""
    decoder = GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=50256,
                         eos_token_id=50256)
    torch.manual_seed(0)
    small = MiracleForPersonalizedGeneration(
        MiracleConfig(encoder=tiny_encoder_config(), decoder=decoder, latent_size=16, head_hidden_size=16)
    ).eval()
    chat = pipeline(TASK, model=small, processor=proc, device="cpu")
    out = run(chat, LONG_HISTORY, max_new_tokens=16, min_new_tokens=16)
    assert out[0]["generated_text"]
    inputs = chat.preprocess(LONG_HISTORY, max_prompt_length=chat._prompt_limit({"max_new_tokens": 16}))
    assert inputs["input_ids"].shape[1] <= 32
    assert proc.max_prompt_length == 96  # the shared processor is left as it was
    with pytest.raises(ValueError, match="leaves no room"):
        chat("Hi!", max_new_tokens=48)


def test_newest_turn_alone_too_long_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="newest user turn alone"):
        pipe("word " * 200, **NEW)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "inputs, kwargs, error, message",
    [
        ("", {}, ValueError, "Empty or non-string message content"),
        ([], {}, ValueError, "non-empty list of conversations"),
        ([[]], {}, ValueError, r"non-empty string, list of turns or list of chat messages \(\{'role': one of \['system', 'user', 'assistant'\]"),
        (["Hi!", "Hello, how are you?"], {}, ValueError, "must end with a user turn"),
        ([{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}], {}, ValueError,
         "must end with a user turn.*'assistant'"),
        ([{"role": "bot", "content": "Hi!"}], {}, ValueError, r"Unknown role 'bot'; valid roles: \['system', 'user', 'assistant'\]"),
        ("Hi!", {"personality": {"humour": "dry"}}, ValueError,
         r"Unknown attribute 'humour'; valid attributes: \['language_style', 'attitude', 'mental_characteristics'\]"),
        ("Hi!", {"personality": {"attitude": "cheerful"}}, ValueError, r"valid aspects: \['pessimistic', 'optimistic'\]"),
        ("Hi!", {"personality": {"attitude": 2}}, ValueError, r"valid aspects: \['pessimistic', 'optimistic'\]"),
        ("Hi!", {"personality": "lyrical"}, ValueError, "must be a dict attribute -> value"),
        (CONVERSATIONS, {"personality": [PERSONALITY, OPPOSITE]}, ValueError, "2 entries for a batch of 3 rows"),
        ("Hi!", {"personality": {"attitude": 1}, "attribute_weights": {"tone": 1.0}}, ValueError, "valid attributes"),
        ("Hi!", {"sampler_temperature": 2.0}, ValueError, "valid options"),
        ("Hi!", {"latent": torch.zeros(1, 16)}, ValueError, "builds .*latent"),
        ("Hi!", {"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_inputs_are_clear_errors(pipe, inputs, kwargs, error, message):
    with pytest.raises(error, match=message):
        pipe(inputs, **kwargs)


def test_bad_batch_entries_fail_before_any_generation(pipe, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(pipe, "_forward", fail)
    with pytest.raises(ValueError, match="Unknown aspect 'grumpy'"):
        pipe(CONVERSATIONS, personality=[PERSONALITY, OPPOSITE, {"attitude": "grumpy"}], batch_size=1)
    with pytest.raises(ValueError, match="must end with a user turn"):
        pipe(CONVERSATIONS + [["Hi!", "Hello."]], batch_size=1)


def test_missing_or_wrong_processor_is_a_clear_error(model, tokenizers):
    with pytest.raises(ValueError, match="processor=MiracleProcessor"):
        pipeline(TASK, model=model, device="cpu")
    with pytest.raises(ValueError, match="two tokenizers"):
        pipeline(TASK, model=model, tokenizer=tokenizers[1], device="cpu")
    with pytest.raises(TypeError, match="MiracleProcessor"):
        PersonalizedDialoguePipeline(model=model, processor=object(), device="cpu")
    with pytest.raises(TypeError, match="MiracleForPersonalizedGeneration"):
        PersonalizedDialoguePipeline(model=model.decoder, processor=None, device="cpu")


# ---------------------------------------------------------------------------------------------- save / load


def test_save_pretrained_then_pipeline_from_the_folder(pipe, model, proc, tmp_path):
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "processor_config.json").is_file()
    assert not hasattr(model.config, "custom_pipelines") or not model.config.custom_pipelines
    expected = texts(run(pipe, CONVERSATIONS, personality=PERSONALITIES, batch_size=3, **NEW))

    reloaded = pipeline(TASK, model=str(tmp_path), device="cpu")
    assert isinstance(reloaded, PersonalizedDialoguePipeline)
    assert type(reloaded.model) is MiracleForPersonalizedGeneration and not reloaded.model.training
    assert reloaded.processor.max_prompt_length == proc.max_prompt_length
    assert texts(run(reloaded, CONVERSATIONS, personality=PERSONALITIES, batch_size=3, **NEW)) == expected

    # a model object loaded from the folder finds its processor there; `processor=` also takes a path
    loaded = MiracleForPersonalizedGeneration.from_pretrained(tmp_path).eval()
    for chat in (pipeline(TASK, model=loaded, device="cpu"), pipeline(TASK, model=loaded, processor=str(tmp_path),
                                                                      device="cpu")):
        assert texts(run(chat, CONVERSATIONS, personality=PERSONALITIES, batch_size=3, **NEW)) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"use_ebm": "false"}, r"`use_ebm` must be true or false \(a bool\); got 'false'"),
        ({"return_latent_diagnostics": "yes"}, "`return_latent_diagnostics` must be true or false"),
        ({"sampler_keep_prior_term": "no"}, "`sampler_keep_prior_term` must be true or false"),
        ({"sampler_max_steps": 2.5}, "`sampler_max_steps` must be an integer or None"),
    ],
)
def test_wrongly_typed_options_fail_before_any_generation(pipe, monkeypatch, kwargs, message):
    def fail(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(pipe, "_forward", fail)
    with pytest.raises(ValueError, match=message):
        pipe(CONVERSATIONS, personality=PERSONALITY, **kwargs)


# ---------------------------------------------------------------------------------------------- one request path


@pytest.fixture(scope="module")
def guided(separated_model):
    """The separated model with a guidance default in its config, like the shipped default model."""
    model = copy.deepcopy(separated_model)
    model.config.latent_guidance_scale = 2.0
    return model


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(use_ebm=False), dict(latent_guidance_scale=1.0, latent_guidance_plausibility=0.05),
     dict(sampler_start_scale=0.0)],
    ids=["ebm-config-guidance", "no-ebm", "explicit-guidance", "prior-mean-start"],
)
def test_pipeline_equals_generate_with_and_without_ebm_and_guidance(guided, proc, kwargs):
    chat = pipeline(TASK, model=guided, processor=proc, device="cpu")
    out = run(chat, CONVERSATIONS, personality=PERSONALITIES, batch_size=3, **NEW, **kwargs)
    assert [t[0] for t in texts(out)] == reference(guided, proc, CONVERSATIONS, personality=PERSONALITIES, **NEW,
                                                   **kwargs)


def test_without_ebm_the_reply_does_not_depend_on_the_personality(guided, proc):
    """The paper's "w/o EBM" ablation: no ODE and no latent guidance (although the config has a guidance default),
    so each personality gets the same reply from the same seed, while with the EBM the replies differ."""
    chat = pipeline(TASK, model=guided, processor=proc, device="cpu")
    conversation = CONVERSATIONS[1]
    ablation = {run(chat, conversation, personality=p, use_ebm=False, **NEW)[0]["generated_text"]
                for p in (PERSONALITY, OPPOSITE, {"attitude": "optimistic"}, None)}
    assert len(ablation) == 1
    with_ebm = {run(chat, conversation, personality=p, **NEW)[0]["generated_text"] for p in (PERSONALITY, OPPOSITE)}
    assert len(with_ebm) == 2
    # with a deterministic start, rows of one batch agree too
    batch = run(chat, [conversation] * 3, personality=[PERSONALITY, OPPOSITE, None], use_ebm=False,
                sampler_start_scale=0.0, batch_size=3, **NEW)
    assert len({answers[0]["generated_text"] for answers in batch}) == 1


def test_a_generator_of_a_thousand_conversations_is_answered_while_consumed(pipe):
    consumed = []

    def conversations():
        for i in range(1000):
            consumed.append(i)
            yield [f"Question number {i}?"]

    answers = pipe(conversations(), personality=PERSONALITY, batch_size=50, max_new_tokens=1, use_ebm=False)
    assert len(consumed) <= 1  # the base class peeks at the first item to tell its form; nothing more is read
    first = next(iter(answers))
    assert first[0]["personality"] == PERSONALITY and len(consumed) <= 51
    rest = list(answers)
    assert len(rest) == 999 and len(consumed) == 1000


def test_key_dataset_and_personalities_that_travel_with_each_input(pipe, model, proc):
    from datasets import Dataset
    from transformers.pipelines.pt_utils import KeyDataset

    dataset = Dataset.from_dict({"messages": CONVERSATIONS, "personality": PERSONALITIES})
    torch.manual_seed(0)
    streamed = list(pipe(KeyDataset(dataset, "messages"), personality=PERSONALITY, batch_size=3, **NEW))
    assert [answers[0]["personality"] for answers in streamed] == [PERSONALITY] * 3
    assert [a[0] for a in texts(streamed)] == reference(model, proc, CONVERSATIONS, personality=PERSONALITY, **NEW)
    # dict inputs carry their own personality (and win over the call's), in a list or a stream
    rows = [{"messages": c, "personality": p} for c, p in zip(CONVERSATIONS, PERSONALITIES)]
    listed = run(pipe, rows, personality=OPPOSITE, batch_size=3, **NEW)
    assert [answers[0]["personality"] for answers in listed] == PERSONALITIES
    assert [a[0] for a in texts(listed)] == reference(model, proc, CONVERSATIONS, personality=PERSONALITIES, **NEW)
    torch.manual_seed(0)
    assert texts(list(pipe((r for r in rows), batch_size=3, **NEW))) == texts(listed)
    with pytest.raises(ValueError, match="for a stream, yield dicts"):
        pipe((c for c in CONVERSATIONS), personality=PERSONALITIES)
    with pytest.raises(ValueError, match="A dict input must be"):
        pipe({"conversation": CONVERSATIONS[0]})
