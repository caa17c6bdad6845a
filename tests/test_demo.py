import itertools

from modeling_miracle.commands import demo

from .conftest import make_model


def test_demo_answers_every_personality_and_says_what_it_is_doing(tmp_path, processor, capsys):
    make_model("gpt2").save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    results = demo.run_demo(str(tmp_path), contexts=2, max_new_tokens=2)
    captured = capsys.readouterr()
    attributes = results[0]["latent_diagnostics"].keys()
    assert len(results) == 16 and [r["context"] for r in results[::8]] == demo.test_contexts(2)
    combos = {tuple(r["personality"][a] for a in attributes) for r in results}
    assert len(combos) == 8 == len(set(itertools.product(*[{r["personality"][a] for r in results} for a in attributes])))
    assert captured.out.count("User: ") == 2
    # Progress goes to stderr, before each slow step.
    assert f"Loading {tmp_path}" in captured.err
    assert "context 1/2: generating 8 responses" in captured.err and "context 2/2: generating 8 responses" in captured.err
