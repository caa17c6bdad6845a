"""Streaming: `model.generate`, the pipeline and `miracle generate` hand the reply to a transformers streamer as it is
written."""

import pytest
import torch
import transformers
from transformers import TextStreamer, pipeline
from transformers.generation.streamers import BaseStreamer

from modeling_miracle.commands.cli import main

from .conftest import CONVERSATIONS, make_model


class Recorder(BaseStreamer):
    def __init__(self):
        self.puts, self.ended = [], 0

    def put(self, value):
        self.puts.append(value.clone())

    def end(self):
        self.ended += 1


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_generate_streams_the_user_batch_token_by_token(processor, guidance):
    """Latent guidance doubles the batch inside `forward`; the streamer still sees one row per conversation."""
    model = make_model("gpt2")
    inputs = processor(CONVERSATIONS[:2])
    recorder = Recorder()
    torch.manual_seed(0)
    generated = model.generate(**inputs, personality={"attitude": "optimistic"}, max_new_tokens=5,
                               latent_guidance_scale=guidance, streamer=recorder)
    prompt, *steps = recorder.puts
    assert torch.equal(prompt, inputs["input_ids"]) and recorder.ended == 1
    assert all(step.shape == (2,) for step in steps)
    assert torch.equal(torch.stack(steps, dim=1), generated[:, prompt.shape[1]:])


class TextRecorder(TextStreamer):
    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.pieces = []

    def on_finalized_text(self, text, stream_end=False):
        self.pieces.append(text)


def test_pipeline_passes_a_streamer_to_generate(processor):
    chat = pipeline("personalized-dialogue", model=make_model("gpt2"), processor=processor)
    streamer = TextRecorder(processor.decoder_tokenizer)
    torch.manual_seed(0)
    streamed = chat(CONVERSATIONS[0], personality={"attitude": "optimistic"}, max_new_tokens=6, streamer=streamer)
    torch.manual_seed(0)
    plain = chat(CONVERSATIONS[0], personality={"attitude": "optimistic"}, max_new_tokens=6)
    assert streamed == plain
    assert len([p for p in streamer.pieces if p]) > 1
    assert "".join(streamer.pieces).strip() == plain[0]["generated_text"]


def test_miracle_generate_prints_the_reply_as_it_is_written(tmp_path, processor, capsys, monkeypatch):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    seen = []

    class Watched(TextStreamer):
        def on_finalized_text(self, text, stream_end=False):
            seen.append(text)
            super().on_finalized_text(text, stream_end)

    monkeypatch.setattr(transformers, "TextStreamer", Watched)
    assert main(["generate", "--model", str(tmp_path), "--max-new-tokens", "5", "--personality", "attitude=optimistic",
                 "Hi?"]) == 0
    out = capsys.readouterr().out
    reply = "".join(seen)
    assert len([s for s in seen if s]) > 1 and reply.strip()
    assert out.count(reply.strip()) == 1  # printed as it was written, not again at the end
    assert "attitude=optimistic: latent probability" in out
