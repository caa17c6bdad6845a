"""Evaluate a MIRACLE model like the paper's tables 1 and 4 (with the "w/o EBM" row).

    python examples/evaluate.py [--model runs/my-miracle] [--max-examples 64]

Equivalent to `miracle evaluate --without-ebm ...`: scorers are trained on first use from the packaged corpus
(under runs/scorers), then reused.
"""

import sys

from modeling_miracle.commands.evaluate import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--without-ebm" not in argv:
        argv.append("--without-ebm")
    sys.exit(main(argv))
