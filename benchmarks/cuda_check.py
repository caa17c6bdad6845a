"""GPU check: `miracle train` for 2 steps under `accelerate launch --num_processes 1` on CUDA, then `generate`.

    python benchmarks/cuda_check.py [--steps 2] [--batch-size 8] [--no-bf16] [--device cuda]

Trains the offline default backbones (MiniLM + SmolLM2-135M, LoRA, bf16 autocast) on the packaged corpus through
the real command line, then loads the saved model on the device, in float32 and in bfloat16, and generates for
two corpus contexts with a three-attribute personality. Prints seconds per training step (from the Trainer's
`train_runtime`, which includes the first step's CUDA warm-up) and per `generate` call (median of 3 after a warm-up).
Nothing in the package or the tests depends on this script; `--device cpu` runs the same path on CPUs.
"""

import argparse
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PERSONALITY = {"language_style": "lyrical", "attitude": "optimistic", "mental_characteristics": "critical"}


def train(output_dir: Path, steps: int, batch_size: int, bf16: bool, device: str) -> dict:
    """The training command under `accelerate launch`; returns the Trainer's final metrics."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "bf16" if bf16 else "no", "--dynamo_backend", "no",
        "-m", "modeling_miracle.commands.cli", "train", "--encoder", "default", "--decoder", "default",
        "--lora", "true", "--freeze_backbones", "true", "--max_dialogues_per_attribute", "200",
        "--output_dir", str(output_dir), "--max_steps", str(steps), "--per_device_train_batch_size", str(batch_size),
        "--learning_rate", "1e-3", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--bf16", str(bf16).lower(), *(["--use_cpu", "true"] if device == "cpu" else []),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"Training failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    metrics = [ast.literal_eval(line) for line in result.stdout.splitlines() if line.startswith("{'train_runtime'")]
    if not metrics:
        raise SystemExit(f"No final training metrics in the output:\n{result.stdout[-3000:]}")
    return {key: float(value) for key, value in metrics[-1].items()}


def generate_seconds(folder: Path, device: str, dtype: torch.dtype) -> tuple[float, list[str], int]:
    from common import timed

    from modeling_miracle import MiracleForPersonalizedGeneration, MiracleProcessor
    from modeling_miracle.commands.demo import test_contexts

    model = MiracleForPersonalizedGeneration.from_pretrained(folder, dtype=dtype).to(device).eval()
    processor = MiracleProcessor.from_pretrained(folder)
    inputs = processor(test_contexts(2)).to(device)
    prompt_length = inputs["input_ids"].shape[1]

    def run():
        return model.generate(**inputs, personality=PERSONALITY, max_new_tokens=40,
                              generator=torch.Generator(device).manual_seed(0))

    seconds, output = timed(run)
    assert output.device.type == torch.device(device).type
    sample = model.sample_latent(inputs["prior_input_ids"], inputs["prior_attention_mask"], personality=PERSONALITY,
                                 generator=torch.Generator(device).manual_seed(0))
    assert bool((sample.aspect_probability_after >= sample.aspect_probability_before - 1e-3).all())
    return seconds, processor.batch_decode(output, prompt_length=prompt_length), sample.function_evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-bf16", action="store_true", help="Train in float32 instead of bf16 autocast.")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device: this check is for a GPU machine (`--device cpu` runs it on CPUs).")
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "run"
        metrics = train(output, args.steps, args.batch_size, not args.no_bf16, args.device)
        print(f"train: {args.steps} steps of batch {args.batch_size} "
              f"({'float32' if args.no_bf16 else 'bf16 autocast'}) in {metrics['train_runtime']:.2f} s, "
              f"{metrics['train_runtime'] / args.steps:.3f} s/step, loss {metrics['train_loss']:.3f}")
        for dtype in (torch.float32, torch.bfloat16):
            seconds, texts, evaluations = generate_seconds(output, args.device, dtype)
            print(f"generate ({dtype}, 2 contexts, 40 new tokens, EBM): {seconds:.3f} s per call, ODE NFE {evaluations}")
            for text in texts:
                print(f"  {text!r}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
