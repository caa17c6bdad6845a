"""MIRACLE: personalized dialogue generation with multiple personal attribute control."""

from setuptools import setup

# Repository folders installed under `modeling_miracle` (the layout is described in README.md, "Architecture").
SUBPACKAGES = ["configuration", "pipelines", "training", "evaluation", "evaluation.modules", "corpus", "collect",
               "commands", "serving"]

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
        "modeling_miracle.evaluation": ["modules/*/*.py"],
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
        "evaluate>=0.4",
    ],
    extras_require={
        "offline": ["gguf>=0.10"],
        "eval": ["nltk>=3.8", "rouge-score>=0.1.2"],
        "serve": ["fastapi>=0.115", "uvicorn>=0.30"],
        "web": ["gradio>=6,<7", "pandas>=2"],
        # The default test run talks to a real local server with the official client and drives the Gradio app
        # with gradio_client; the slow browser test also needs playwright and Debian's `chromium`.
        "tests": ["pytest>=8", "gguf>=0.10", "nltk>=3.8", "rouge-score>=0.1.2", "fastapi>=0.115", "uvicorn>=0.30",
                  "httpx>=0.27", "openai>=1.40", "gradio>=6,<7", "gradio-client>=1.0", "pandas>=2",
                  "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["miracle=modeling_miracle.commands.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
