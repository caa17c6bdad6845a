"""Training throughput of MIRACLE vs plain fine-tuning of the same decoder, on the same corpus batches.

    python benchmarks/bench_train.py [--steps 4] [--batch-size 8]

Both train every backbone parameter with AdamW (MIRACLE: both encoder passes, decoder, latent maps and heads, with
all of its losses; plain: the decoder's causal LM loss on the same prompt + response tokens). Prints examples/s
of each and their ratio, measured in one run on the offline default backbones (MiniLM + SmolLM2-135M).
"""

import argparse
import time

import torch

from modeling_miracle.default_model import build_default_backbone_model, default_processor
from modeling_miracle.training import MiracleDataCollator, corpus_files, load_miracle_dataset


def throughput(step, batches) -> float:
    step(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    return sum(b["input_ids"].shape[0] for b in batches[1:]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_default_backbone_model().train()
    model.requires_grad_(True)
    processor = default_processor()
    dataset = load_miracle_dataset(corpus_files("train"), model.config.attributes).shuffle(seed=0)
    collator = MiracleDataCollator(processor)
    batches = [collator([dataset[i] for i in range(s * args.batch_size, (s + 1) * args.batch_size)]) for s in range(args.steps + 1)]

    miracle_optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    decoder_optimizer = torch.optim.AdamW(model.decoder.parameters(), lr=1e-5)

    def miracle_step(batch):
        model(**batch).loss.backward()
        miracle_optimizer.step()
        miracle_optimizer.zero_grad()

    def plain_step(batch):
        model.decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss.backward()
        decoder_optimizer.step()
        decoder_optimizer.zero_grad()

    plain = throughput(plain_step, batches)
    miracle = throughput(miracle_step, batches)
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} timed steps each")
    print("| plain decoder fine-tuning (examples/s) | MIRACLE training (examples/s) | MIRACLE / plain |")
    print("|---|---|---|")
    print(f"| {plain:.2f} | {miracle:.2f} | {miracle / plain:.2f} |")


if __name__ == "__main__":
    main()
