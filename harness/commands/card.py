"""A checkpoint's model card with a sweep's results: ``harness card RUN [--checkpoint LABEL]``.

Writes a ``README.md`` whose YAML header holds the results in the Hub's ``model-index`` format
(``huggingface_hub``'s ``ModelCardData`` with one ``EvalResult`` per env: env id, training data,
D4RL-normalised score and mean return at the target ``--at`` names), so the result can be pushed
with the checkpoint (``huggingface-cli upload``). Default output: ``RUN/model_card/README.md``.

Exit codes: 0; 2 bad input (not a sweep folder, several checkpoints and none named, a missing target).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.publish import model_card
from harness.commands.cli import Parser, run
from harness.io.results import write_atomic


def main(argv: list[str] | None = None) -> int:
    """Command line (exit 0, or 2 on bad input)."""
    p = Parser(prog="harness card", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="sweep folder")
    p.add_argument("--checkpoint", default=None, help="checkpoint label (needed when the sweep has several)")
    p.add_argument("--env", default=None, help="only this env's results")
    p.add_argument(
        "--at", default="best", help="target reported: best (chosen on the same episodes), paper, or a target"
    )
    p.add_argument("--out", type=Path, default=None, help="file to write (default RUN/model_card/README.md)")
    args = p.parse_args(argv)

    def body() -> int:
        card = model_card(args.run, args.env, args.checkpoint, args.at)
        out = args.out or args.run / "model_card" / "README.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, str(card))
        print(f"wrote {out} ({len(card.data.eval_results or [])} results in model-index)")
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
