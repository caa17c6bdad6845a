import subprocess
import sys

import pytest

import modeling_miracle.commands.cli as cli_module
from modeling_miracle.commands.cli import main

from .conftest import run_cli_as_console_script, make_model


def test_generate_prints_responses_and_latent_probabilities(tmp_path, processor, capsys):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "--personality", "attitude=optimistic", "--weight", "attitude=2",
                 "--max-new-tokens", "3", "--num-return-sequences", "2", "--do-sample", "--", "I moved.", "Nice.", "Any tips?"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("attitude=optimistic: latent probability") == 2
    assert f"Loading {tmp_path} ..." in captured.err  # said before the slow part


def test_unknown_command_and_bad_pairs(capsys, tmp_path, processor):
    assert main(["frobnicate"]) == 2
    captured = capsys.readouterr()
    assert "unknown command 'frobnicate'; commands: train, generate, demo, evaluate, collect, serve, web" in captured.err
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "Hi?", "--model", str(tmp_path), "--personality", "optimistic"])
    assert exit_info.value.code == 2 and "attribute=value" in capsys.readouterr().err
    assert main(["generate", "Hi?", "--model", str(tmp_path), "--personality", "humour=dry"]) == 2
    assert "valid attributes" in capsys.readouterr().err


def test_a_mistake_is_one_line_and_status_2_and_debug_shows_the_traceback(tmp_path, processor, capsys, monkeypatch):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    turn = ["--model", str(tmp_path), "--personality", "attitude=happy", "--max-new-tokens", "2", "Hi?"]
    assert main(["generate", *turn]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "miracle generate: error:" in err and "'happy'" in err and "optimistic" in err  # what was wrong, what is valid
    assert "--debug" in err
    with pytest.raises(ValueError, match="happy"):
        main(["generate", "--debug", *turn])
    monkeypatch.setenv("MIRACLE_DEBUG", "1")
    with pytest.raises(ValueError, match="happy"):
        main(["generate", *turn])
    monkeypatch.delenv("MIRACLE_DEBUG")
    assert main(["generate", "--weight", "attitude=lots", "--model", str(tmp_path), "--personality", "attitude=optimistic", "Hi?"]) == 2
    assert "attribute=number" in capsys.readouterr().err


def test_a_missing_model_folder_is_reported_at_once(tmp_path, capsys, monkeypatch):
    import time

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    for value in ("runs/nonexistent", "./mine", str(tmp_path / "gone"), "a/b/c"):
        started = time.time()
        assert main(["generate", "--model", value, "hi"]) == 2
        assert time.time() - started < 5
        err = capsys.readouterr().err
        assert f"--model {value}: no such folder" in err and "'default'" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["generate", "--model", "someone/some-model", "hi"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_a_hub_id_shaped_value_is_refused_at_once_when_the_hub_cannot_be_reached(tmp_path, monkeypatch, capsys):
    import socket
    import time

    from modeling_miracle.commands.model_path import resolve_model

    monkeypatch.chdir(tmp_path)  # no `runs/` here: "runs/nonexistent" looks like a Hub id
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.time()
    assert main(["generate", "--model", "runs/nonexistent", "hi"]) == 2
    assert time.time() - started < 5
    err = capsys.readouterr().err
    assert "--model runs/nonexistent: no such folder" in err and "http://127.0.0.1:9 is unreachable" in err
    with socket.socket() as hub:  # an endpoint that answers: the value is worth looking up there
        hub.bind(("127.0.0.1", 0))
        hub.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")
        assert resolve_model("someone/some-model") == "someone/some-model"
    assert "looking it up as a Hugging Face Hub id" in capsys.readouterr().err


def test_default_means_the_packaged_model():
    from modeling_miracle.commands.model_path import resolve_model

    assert resolve_model("default") is None and resolve_model(None) is None


def test_generate_in_the_form_the_help_shows(tmp_path, processor, capsys):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert 'miracle generate --personality attitude=optimistic "What do you do on weekends?"' in cli_module.__doc__
    assert main(["generate", "--model", str(tmp_path), "--max-new-tokens", "2",
                 "--personality", "attitude=optimistic", "What do you do on weekends?"]) == 0
    assert capsys.readouterr().out.count("attitude=optimistic: latent probability") == 1
    # Several pairs after one flag, weights likewise, then the turns of a longer conversation.
    assert main(["generate", "--model", str(tmp_path), "--max-new-tokens", "2", "--personality", "attitude=optimistic",
                 "language_style=lyrical", "--weight", "attitude=2", "I moved.", "Nice.", "Any tips?"]) == 0
    out = capsys.readouterr().out
    assert "attitude=optimistic" in out and "language_style=lyrical" in out


def test_pair_flags_leave_turns_with_an_equals_sign_alone():
    from modeling_miracle.commands.cli import _one_pair_per_flag

    assert _one_pair_per_flag(["--personality", "attitude=optimistic", "Is 2+2=4?"]) == [
        "--personality", "attitude=optimistic", "Is 2+2=4?"]
    assert _one_pair_per_flag(["--weight", "a=1", "b=2", "--", "x=y"]) == ["--weight", "a=1", "--weight", "b=2", "--", "x=y"]


def test_generation_flags_pass_the_guidance_scale_only_when_given():
    import argparse

    from modeling_miracle.commands.cli import _add_generation_flags, generation_options

    parser = argparse.ArgumentParser()
    _add_generation_flags(parser)
    assert generation_options(parser.parse_args([])) == {"use_ebm": True, "max_new_tokens": 40}
    options = generation_options(parser.parse_args(["--guidance-scale", "2.5", "--no-ebm"]))
    assert options == {"use_ebm": False, "max_new_tokens": 40, "latent_guidance_scale": 2.5}


# Modules of training and evaluation that the inference commands must not load (`miracle --help` took ~10 s when
# the command line lived in the training package).
TRAINER_STACK = ("transformers.trainer", "datasets", "peft", "modeling_miracle.training", "modeling_miracle.evaluation")


def test_help_generate_and_demo_do_not_import_the_trainer_stack(tmp_path, processor):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    script = (
        "import sys\n"
        "from modeling_miracle.commands.cli import main\n"
        "assert main(['--help']) == 0\n"
        f"print('after help:', sorted(m for m in {TRAINER_STACK!r} if m in sys.modules))\n"
        f"assert main(['generate', '--model', {str(tmp_path)!r}, '--max-new-tokens', '2', 'Hi?']) == 0\n"
        f"print('after generate:', sorted(m for m in {TRAINER_STACK!r} if m in sys.modules))\n"
        f"assert main(['demo', '--model', {str(tmp_path)!r}, '--contexts', '1', '--max-new-tokens', '2']) == 0\n"
        f"print('after demo:', sorted(m for m in {TRAINER_STACK!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "after help: []" in result.stdout
    assert "after generate: []" in result.stdout
    assert "after demo: []" in result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["demo", "--help"], ["evaluate", "--help"],
                                  ["train", "--help"], ["collect", "--help"],
                                  ["generate"], ["generate", "--personality", "optimistic", "Hi?"], ["frobnicate"]])
def test_help_and_argument_errors_load_neither_torch_nor_transformers(argv, tmp_path):
    """`miracle --help` took 6 s (torch and transformers imported by the package); started as the `miracle`
    console script, the package loads them only when a command needs the model."""
    status, _, stderr, loaded = run_cli_as_console_script(argv, tmp_path)
    assert loaded == "[]", stderr[-2000:]
    assert status == (0 if "--help" in argv else 2)
    if status:
        assert "Traceback" not in stderr and stderr.strip()


def test_the_cli_loads_the_package_when_a_command_needs_the_model(tmp_path, processor):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    script = (
        "import sys\n"
        "sys.argv[0] = 'miracle'\n"
        "from modeling_miracle.commands.cli import main\n"
        f"assert main(['generate', '--model', {str(tmp_path)!r}, '--max-new-tokens', '2', 'Hi?']) == 0\n"
        "from transformers import AutoConfig\n"
        "print('registered', AutoConfig.for_model('miracle').__class__.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registered MiracleConfig" in result.stdout
