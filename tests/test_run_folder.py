import pytest

from modeling_miracle.training.run_folder import parse_resume, prepare_output_dir


def make_run(folder, steps=(10, 20)):
    for step in steps:
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (folder / "adapter").mkdir()
    (folder / "model.safetensors").write_text("old")
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize("value, expected", [(None, None), (False, None), (True, True), ("true", True), ("True", True),
                                              ("false", None), ("runs/x/checkpoint-5", "runs/x/checkpoint-5")])
def test_parse_resume_reads_the_trainers_forms(value, expected):
    assert parse_resume(value) == expected


def test_new_runs_start_in_missing_or_empty_folders(tmp_path):
    assert prepare_output_dir(str(tmp_path / "new")) is None
    (tmp_path / "empty").mkdir()
    assert prepare_output_dir(str(tmp_path / "empty")) is None


def test_a_folder_holding_a_run_is_refused(tmp_path):
    make_run(tmp_path)
    with pytest.raises(FileExistsError, match=r"is not empty \(adapter, checkpoint-10, checkpoint-20, model.safetensors"):
        prepare_output_dir(str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        prepare_output_dir(str(tmp_path / "file"))


def test_resume_true_picks_the_last_checkpoint(tmp_path):
    make_run(tmp_path)
    assert prepare_output_dir(str(tmp_path), "true") == str(tmp_path / "checkpoint-20")
    assert (tmp_path / "checkpoint-10").is_dir()  # resuming deletes nothing
    with pytest.raises(FileNotFoundError, match="there is none"):
        prepare_output_dir(str(tmp_path / "new"), True)
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        prepare_output_dir(str(tmp_path), str(tmp_path / "checkpoint-99"))
    assert prepare_output_dir(str(tmp_path), str(tmp_path / "checkpoint-10")) == str(tmp_path / "checkpoint-10")


def test_overwrite_deletes_the_old_runs_checkpoints_first(tmp_path):
    make_run(tmp_path)
    with pytest.raises(ValueError, match="use one or the other"):
        prepare_output_dir(str(tmp_path), True, overwrite_output_dir=True)
    with pytest.raises(ValueError, match="would delete .*checkpoint-10"):
        prepare_output_dir(str(tmp_path), str(tmp_path / "checkpoint-10"), overwrite_output_dir=True)
    assert prepare_output_dir(str(tmp_path), overwrite_output_dir=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "notes.txt"]
