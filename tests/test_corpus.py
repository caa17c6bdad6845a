from modeling_miracle.corpus import check_corpus


def test_shipped_corpus_passes_every_check():
    problems, summary = check_corpus.check()
    assert problems == []
    for attribute in ("language_style", "attitude", "mental_characteristics"):
        assert summary[f"{attribute}/train_topics"] >= 150
    assert all(summary[key] >= 20 for key in summary if key.startswith("multi/"))


def test_the_checker_catches_bad_rows(tmp_path):
    import shutil

    shutil.copytree(check_corpus.CORPUS_DIR, tmp_path / "corpus", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = tmp_path / "corpus" / "dialogue_attitude.train.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = '{"input": ["Hi there?"], "output": ["Is it fine? Sure it is."], "personas": "x", "tag": 3}'
    lines[1] = lines[2]  # a duplicate dialogue
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems, _ = check_corpus.check(tmp_path / "corpus")
    text = "\n".join(problems)
    assert "tag 3 not in (0, 1)" in text
    assert "question mark" in text
    assert "1 turns (allowed 2-4)" in text
    assert "dialogue_attitude.train.jsonl:3: assistant turn duplicates dialogue_attitude.train.jsonl:2" in text
    assert "topics not in topics.txt" in text
    assert "differs from a fresh build" in text
