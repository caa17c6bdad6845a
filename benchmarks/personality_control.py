"""Does the personality show in the text? MIRACLE against what a user would try instead, side by side.

    python benchmarks/personality_control.py [--model PATH] [--test-file F ...] [--max-examples 96]
        [--systems prompt,steering,no_ebm,miracle,guided] [--steering-layer 15 --steering-scale 4]
        [--guidance-scale 2] [--scorers runs/scorers]
    python benchmarks/personality_control.py --steering-grid 6,10,15,20:2,4,8 --test-file <validation files>
    python benchmarks/personality_control.py --contexts ../shared/data/contexts/dailydialog.validation.jsonl \
        --max-examples 480    # real conversations: 60 contexts x all 8 personalities

Same contexts, same decoder backbone (SmolLM2-135M-Instruct for the default model), same scorers (the project's
attribute classifiers and NLI coherence classifier, `miracle evaluate`'s), greedy decoding, 40 new tokens:

- plain: the plain decoder on the conversation alone (no personality: the cost baseline, and chance accuracy);
- prompt: the plain decoder with a system message describing the personality (appendix A wording);
- steering: contrastive activation addition on the plain decoder (vectors from the corpus's training responses);
- no_ebm / miracle: MIRACLE without / with EBM sampling; guided: MIRACLE with decoding-time latent guidance.

Test rows with `tags` give each context its target personality (the corpus's multi-attribute test set); rows
without give all 2^N personalities. `--contexts` takes conversations that end on a user turn (no targets, e.g. the
real DailyDialog contexts): the last turn of each, in all 2^N personalities. Columns: per-attribute accuracy and
their average, NLI coherence, Distinct-2 (corpus level), share of degenerate replies (empty or a repeated word
trigram), perplexity under the plain decoder, seconds per 100 responses and that time as a ratio to the plain
decoder's in the same run (`x plain`, when `plain` is among the systems). `--steering-grid layers:scales` tunes steering on the given (validation) files.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import context_examples, scorer_models
from control_systems import MiracleSystem, PlainSystem, PromptSystem, SteeringSystem, training_pairs
from modeling_miracle.evaluation import metrics
from modeling_miracle import load_model_and_processor
from modeling_miracle.training.data import CORPUS_DIR
from modeling_miracle.evaluation.suite import evaluation_examples

ALL_SYSTEMS = ("plain", "prompt", "steering", "no_ebm", "miracle", "guided")


def is_degenerate(text: str) -> bool:
    """Empty, or some word trigram occurs twice (a loop)."""
    words = metrics.tokenize(text)
    if not words:
        return True
    grams = metrics.ngrams(words, 3)
    return len(set(grams)) < len(grams)


def score_replies(examples, replies, scorers, attributes, fluency) -> dict:
    targets = {a: [attributes[a].index(e["personality"][a]) for e in examples] for a in attributes}
    safe = [r if r.strip() else "." for r in replies]
    predictions = {a: scorers[a].predict(safe) for a in attributes}
    row = metrics.personalization_scores(predictions, targets)
    row["NLI"] = metrics.nli_coherence(scorers["nli"].predict([e["context"] for e in examples], safe))
    row["Distinct-2"] = metrics.distinct(safe, n_values=(2,))["corpus-distinct-2"]
    row["degenerate"] = 100.0 * sum(map(is_degenerate, replies)) / len(replies)
    row["PPL"] = metrics.perplexity(safe, *fluency)["perplexity"]
    return row


def run_system(system, examples, batch_size: int) -> tuple[list[str], float]:
    from tqdm.auto import tqdm

    replies, started = [], time.perf_counter()
    for start in tqdm(range(0, len(examples), batch_size), desc=type(system).__name__, leave=False):
        replies += system.respond(examples[start:start + batch_size])
    return replies, 100 * (time.perf_counter() - started) / len(examples)


def plain_decoder(path: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_miracle.backbones import smollm2_folder

    path = path or str(smollm2_folder())
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def shared_decoding(generation_config, args) -> dict:
    """Loop-avoiding decoding settings applied to every system alike: the MIRACLE model's `generation_config`
    values (its shipped defaults), overridden by the command line."""
    decoding = {"no_repeat_ngram_size": generation_config.no_repeat_ngram_size or 0,
                "repetition_penalty": generation_config.repetition_penalty or 1.0}
    if args.no_repeat_ngram_size is not None:
        decoding["no_repeat_ngram_size"] = args.no_repeat_ngram_size
    if args.repetition_penalty is not None:
        decoding["repetition_penalty"] = args.repetition_penalty
    return decoding


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="MIRACLE model (saved folder or default-model parts; default: shipped).")
    parser.add_argument("--base-decoder", default=None, help="Plain decoder for prompt/steering/PPL (default: packaged SmolLM2).")
    parser.add_argument("--test-file", nargs="+", default=[str(CORPUS_DIR / "dialogue_multi.test.jsonl")])
    parser.add_argument("--contexts", nargs="+", default=None,
                        help="Context files (rows ending on a user turn, no targets) instead of --test-file.")
    parser.add_argument("--max-examples", type=int, default=96)
    parser.add_argument("--skip-examples", type=int, default=0,
                        help="Leave out the first N examples (e.g. the contexts settings were tuned on).")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument("--steering-layer", type=int, default=15)
    parser.add_argument("--steering-scale", type=float, default=4.0)
    parser.add_argument("--steering-grid", default=None, help="'layers:scales', e.g. '6,10,15:2,4,8': tune steering only.")
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--guidance-plausibility", type=float, default=None,
                        help="latent_guidance_plausibility for the guided row (tokens below this share of the top one are ruled out).")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None,
                        help="Forbid repeating a token n-gram, for every system alike (0: off, the paper's plain greedy; "
                             "default: the MIRACLE model's generation_config).")
    parser.add_argument("--repetition-penalty", type=float, default=None,
                        help="Repetition penalty for every system alike (1: off; default: the MIRACLE model's "
                             "generation_config).")
    parser.add_argument("--sampler", default="{}", help='JSON of sampler_* overrides for the MIRACLE rows, e.g. \'{"sampler_keep_prior_term": true}\'.')
    parser.add_argument("--start-scale", type=float, default=None, help="sampler_start_scale for the MIRACLE rows.")
    parser.add_argument("--residual-scale", type=float, default=None,
                        help="latent_residual_scale of the MIRACLE model (models with latent_residual_layers).")
    parser.add_argument("--scorers", default="runs/scorers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="Write the table, settings and all replies to this JSON file.")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.manual_seed(args.seed)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(ALL_SYSTEMS))
    if unknown:
        raise SystemExit(f"Unknown system(s) {unknown}; valid: {list(ALL_SYSTEMS)}.")
    model, processor = load_model_and_processor(args.model)
    if args.residual_scale is not None:
        model.config.latent_residual_scale = args.residual_scale
    attributes = model.config.attributes
    wanted = args.skip_examples + args.max_examples
    if args.contexts:
        examples = context_examples(args.contexts, attributes, wanted)[args.skip_examples:]
    else:
        examples = evaluation_examples(args.test_file, attributes, wanted)[args.skip_examples:]
    scorers = scorer_models(args.scorers, attributes)
    decoder, tokenizer = plain_decoder(args.base_decoder)
    decoding = shared_decoding(model.generation_config, args)
    fluency = (decoder, tokenizer)
    steering = None
    if "steering" in systems or args.steering_grid:
        steering = SteeringSystem(decoder, tokenizer, attributes, args.steering_layer, args.steering_scale,
                                  args.max_new_tokens, decoding).fit(training_pairs(attributes))

    runs = []
    if args.steering_grid:
        layers, scales = (list(map(float, part.split(","))) for part in args.steering_grid.split(":"))
        for layer in layers:
            for scale in scales:
                runs.append((f"steering L{int(layer)} x{scale:g}", steering.with_setting(int(layer), scale)))
    else:
        options = json.loads(args.sampler)  # sampler_* overrides, then the MIRACLE rows' decoding options
        if args.start_scale is not None:
            options["sampler_start_scale"] = args.start_scale
        options.update(decoding=decoding, guidance_plausibility=args.guidance_plausibility)
        for name in systems:
            system = {
                "plain": lambda: PlainSystem(decoder, tokenizer, args.max_new_tokens, decoding),
                "prompt": lambda: PromptSystem(decoder, tokenizer, args.max_new_tokens, decoding),
                "steering": lambda: steering,
                "no_ebm": lambda: MiracleSystem(model, processor, False, 0.0, args.max_new_tokens, args.seed, **options),
                "miracle": lambda: MiracleSystem(model, processor, True, 0.0, args.max_new_tokens, args.seed, **options),
                "guided": lambda: MiracleSystem(model, processor, True, args.guidance_scale, args.max_new_tokens,
                                                args.seed, **options),
            }[name]()
            runs.append((name, system))

    columns = list(attributes) + ["avg", "NLI", "Distinct-2", "degenerate", "PPL", "s/100", "x plain"]
    table, samples = {}, {}
    for name, system in runs:
        replies, seconds = run_system(system, examples, args.batch_size)
        table[name] = {**score_replies(examples, replies, scorers, attributes, fluency), "s/100": seconds}
        samples[name] = replies
    for row in table.values():
        row["x plain"] = row["s/100"] / table["plain"]["s/100"] if "plain" in table else float("nan")
    print("command: python benchmarks/personality_control.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items() if v is not None))
    print(f"{len(examples)} examples from {args.contexts or args.test_file}; greedy, {args.max_new_tokens} new tokens; "
          f"steering layer {args.steering_layer} scale {args.steering_scale}; guidance scale {args.guidance_scale}; "
          f"decoding for every system {decoding}\n")
    print("| system | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" if c == "x plain" else f"{row[c]:.1f}" for c in columns) + " |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"settings": vars(args), "table": table, "examples": [
                {"context": e["context"], "personality": e["personality"], **{n: samples[n][i] for n in samples}}
                for i, e in enumerate(examples)]}, handle, indent=2)


if __name__ == "__main__":
    main()
