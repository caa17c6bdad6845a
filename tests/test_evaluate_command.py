import json

import torch
from transformers import GPT2LMHeadModel

from modeling_miracle import PAPER_ATTRIBUTES
from modeling_miracle.commands.evaluate import main
from modeling_miracle.evaluation.suite import evaluation_examples
from modeling_miracle.training.data import CORPUS_DIR

from .conftest import make_model, save_tiny_backbones, tiny_decoder_config


def test_examples_use_row_targets_or_every_combination(tmp_path):
    multi = evaluation_examples(str(CORPUS_DIR / "dialogue_multi.test.jsonl"), PAPER_ATTRIBUTES)
    assert len({tuple(e["personality"].values()) for e in multi[:8]}) == 8  # interleaved by personality
    assert len(multi) == 510
    single = tmp_path / "s.jsonl"
    single.write_text(json.dumps({"input": ["Hi?"], "output": ["Hello."], "personas": "", "tag": 0}) + "\n")
    examples = evaluation_examples(str(single), PAPER_ATTRIBUTES)
    assert len(examples) == 8 and all(e["reference"] == "Hello." for e in examples)


def test_end_to_end_table_has_every_column(tmp_path, processor):
    encoder, _ = save_tiny_backbones(tmp_path / "backbones")
    model = make_model("gpt2")
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    torch.manual_seed(0)
    GPT2LMHeadModel(tiny_decoder_config("gpt2")).save_pretrained(tmp_path / "lm")
    processor.decoder_tokenizer.save_pretrained(tmp_path / "lm")
    assert main([
        "--model", str(tmp_path / "model"), "--max-examples", "8", "--without-ebm",
        "--ablation", f"w/o L_C={tmp_path / 'model'}", "--scorers", str(tmp_path / "scorers"),
        "--scorer-backbone", encoder, "--scorer-epochs", "0.2", "--fluency-lm", str(tmp_path / "lm"),
        "--max-new-tokens", "4", "--batch-size", "4", "--output-dir", str(tmp_path / "eval"),
    ]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert list(results["table"]) == ["MIRACLE", "w/o EBM", "w/o L_C"]
    for row in results["table"].values():
        for column in ["Avg.", "language_style", "attitude", "mental_characteristics", "BLEU", "Rouge", "NLI", "PPL",
                       "Distinct", "sBLEU"]:
            assert isinstance(row[column], float) and row[column] == row[column], column
    table = (tmp_path / "eval" / "results.md").read_text()
    assert table.startswith("| system | Avg. | language_style | attitude | mental_characteristics | BLEU |")
    assert "w/o EBM" in table and '"examples": 8' in table
    assert results["settings"]["fluency_lm"] == str(tmp_path / "lm")
    assert (tmp_path / "scorers" / "nli" / "scorer.json").is_file()


def test_a_model_with_its_own_attribute_gets_every_aspect_of_it_on_tagged_rows():
    attributes = {**PAPER_ATTRIBUTES, "humour": ["dry", "playful"]}
    examples = evaluation_examples(str(CORPUS_DIR / "dialogue_multi.test.jsonl"), attributes)
    assert len(examples) == 2 * 510  # each tagged target, once with each humour aspect
    assert {e["personality"]["humour"] for e in examples} == {"dry", "playful"}
    assert all(set(e["personality"]) == set(attributes) for e in examples)


def test_evaluate_names_the_scorer_data_a_new_attribute_needs_before_any_work(tmp_path, processor, capsys):
    from modeling_miracle.commands.cli import main as cli_main
    from modeling_miracle.evaluation.suite import missing_scorer_data

    model = make_model("gpt2")
    model.add_attribute("humour", ["dry", "playful"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    missing = missing_scorer_data(str(tmp_path / "scorers"), model.config.attributes)
    assert len(missing) == 1 and "text_humour.train.jsonl" in missing[0]
    assert cli_main(["evaluate", "--model", str(tmp_path / "model"), "--max-examples", "4", "--without-ebm",
                     "--scorers", str(tmp_path / "scorers"), "--output-dir", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "'humour'" in err and "text_humour.train.jsonl" in err and "--scorer-data" in err and "Traceback" not in err
    assert not (tmp_path / "scorers").exists()  # stopped before training any scorer
