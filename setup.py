"""MIRACLE: personalized dialogue generation with multiple personal attribute control."""

from setuptools import setup

# Repository folders installed under `modeling_miracle` (the layout is described in README.md, "Architecture").
SUBPACKAGES = ["configuration", "pipelines", "training", "evaluation", "corpus", "collect", "commands", "serving"]

setup(
    name="miracle-dialogue",
    version="0.1.0",
    description="MIRACLE (EMNLP 2023 Findings): personalized dialogue generation with multiple personal attribute "
    "control in a CVAE latent space, Hugging Face-native.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # One installed namespace: every top-level folder of the repository is a subpackage of `modeling_miracle`
    # (`training/` installs as `modeling_miracle.training`, ...), so nothing generic lands on `sys.path`.
    packages=["modeling_miracle"] + [f"modeling_miracle.{name}" for name in SUBPACKAGES],
    package_dir={"modeling_miracle": "modeling_miracle",
                 **{f"modeling_miracle.{name}": name.replace(".", "/") for name in SUBPACKAGES}},
    package_data={
        "modeling_miracle": ["default_model/*"],
        "modeling_miracle.corpus": ["*.jsonl", "*.txt", "*.md", "sources/*.jsonl"],
        "modeling_miracle.collect": ["*.yaml"],
    },
    include_package_data=True,
    install_requires=[
        # torch is pinned by the install commands (`pip install torch==2.13.0` first): a range here would let
        # pip pull a multi-GB CUDA build on a fresh machine.
        "torch>=2.4,<=2.13.0",
        "transformers>=5.23,<6",
        "torchdiffeq>=0.2.4",
        "datasets>=3.0",
        "accelerate>=1.0",
        "peft>=0.17",
        "huggingface-hub>=1.0",
        "safetensors>=0.4",
        "pyyaml>=6.0",
        "tqdm>=4.66",
    ],
    extras_require={
        "offline": ["gguf>=0.10"],
        "eval": ["nltk>=3.8", "rouge-score>=0.1.2"],
        "tests": ["pytest>=8", "gguf>=0.10", "nltk>=3.8", "rouge-score>=0.1.2"],
    },
    entry_points={"console_scripts": ["miracle=modeling_miracle.commands.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
