import pytest

from training.cli import main

from .conftest import make_model


def test_generate_prints_responses_and_latent_probabilities(tmp_path, processor, capsys):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "--personality", "attitude=optimistic", "--weight", "attitude=2",
                 "--max-new-tokens", "3", "--num-return-sequences", "2", "--do-sample", "--", "I moved.", "Nice.", "Any tips?"]) == 0
    out = capsys.readouterr().out
    assert out.count("attitude=optimistic: latent probability") == 2


def test_unknown_command_and_bad_pairs(capsys, tmp_path, processor):
    assert main(["frobnicate"]) == 2
    assert "commands: train, generate, demo, evaluate, collect" in capsys.readouterr().out
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(SystemExit, match="attribute=value"):
        main(["generate", "Hi?", "--model", str(tmp_path), "--personality", "optimistic"])
    with pytest.raises(ValueError, match="valid attributes"):
        main(["generate", "Hi?", "--model", str(tmp_path), "--personality", "humour=dry"])
