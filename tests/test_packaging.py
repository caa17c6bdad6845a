"""The distribution installs one import name, `modeling_miracle`: a built wheel in a clean virtual environment
imports from a folder that holds a user's own `training.py`, `pipelines.py` and `configuration/`."""

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A user's own modules with the names of the repository's folders: they must neither shadow nor be shadowed.
USER_FILES = {
    "training.py": "WHERE = 'user training.py'\n",
    "pipelines.py": "raise ImportError('the user pipelines.py was imported by the package')\n",
    "configuration/__init__.py": "raise ImportError('the user configuration/ was imported by the package')\n",
}

CHECK = textwrap.dedent("""
    import sys
    import modeling_miracle
    from modeling_miracle.training import MiracleTrainer
    from modeling_miracle.pipelines import PersonalizedDialoguePipeline
    from modeling_miracle.commands.cli import main
    import training

    assert training.WHERE == "user training.py", training.__file__
    assert modeling_miracle.__file__.startswith(sys.prefix), modeling_miracle.__file__
    assert MiracleTrainer.__module__ == "modeling_miracle.training.trainer", MiracleTrainer.__module__
    assert modeling_miracle.MiracleConfig.__module__ == "modeling_miracle.configuration.configuration_miracle"
    print("ok", modeling_miracle.__file__)
""")


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "runs", "outputs", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_one_namespace_that_user_modules_cannot_shadow(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"modeling_miracle"}
    assert "modeling_miracle/corpus/dialogue_multi.test.jsonl" in names
    assert "modeling_miracle/default_model/adapter_model.safetensors" in names
    assert "modeling_miracle/collect/attributes.yaml" in names

    # A clean environment with the wheel; its dependencies (torch, transformers, ...) come from this one's
    # site-packages through a path entry, which does not run that folder's .pth files (no editable install).
    env_dir = tmp_path / "clean"
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    Path(site_packages, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "user_project"
    for name, text in USER_FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    (work / "check.py").write_text(CHECK)
    result = subprocess.run([str(python), "check.py"], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok " + site_packages)
