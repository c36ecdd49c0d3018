"""Train a Decision Transformer on an offline dataset: ``python -m harness.train``.

The recipe of the Hugging Face tutorial ("Train your first Decision Transformer") on the
``transformers`` Trainer: states normalised with the dataset mean/std (+1e-6), returns-to-go
(undiscounted suffix sums) divided by 1000, trajectories sampled in proportion to their length,
windows of K = 20 timesteps left-padded (actions padded with -10, mask 0), and the masked MSE of
the predicted actions as the loss. Defaults as the tutorial: batch 64, lr 1e-4, weight decay
1e-4, warm-up ratio 0.1, AdamW, max grad norm 0.25; hidden 128, 3 layers, 1 head.

    python -m harness.train --data data/hopper.parquet --env hopper --steps 15000 --bf16 --out ckpt/hopper

The collator is vectorised: everything per transition (normalised state, return-to-go,
timestep) is computed once; a batch is one numpy gather. Writes a checkpoint in the evaluator's
format (``harness.io.checkpoints``) with the dataset summary, and ``train_log.csv`` beside it.

``--init CHECKPOINT`` fine-tunes an existing checkpoint (embedded name, folder or Hub id) instead
of starting from random weights: its architecture, K, return scale and state statistics are kept
(the weights keep seeing the inputs they were trained on), only the data and schedule are new.
"""

from __future__ import annotations

import sys

from harness.commands.cli import DefaultsFormatter, Parser, add_dataclass_flags, field_docs, quiet_hf_logs, run
from harness.core.errors import HarnessError
from harness.offline.training import ANCHORS, FLAGS, TrainConfig, export, train


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig(data="", env="", out="")
    p = Parser(
        prog="harness train",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsFormatter,
    )
    docs = field_docs(TrainConfig)
    p.add_argument("--data", required=True, help=docs["data"])
    p.add_argument("--env", required=True, help=docs["env"])
    p.add_argument("--out", required=True, help=docs["out"])
    add_dataclass_flags(p, TrainConfig, [f for f in FLAGS if f not in ("bf16", "resume", "name")])
    p.add_argument(
        "--window",
        choices=ANCHORS,
        default=d.window,
        help=docs["window"],
    )
    add_dataclass_flags(p, TrainConfig, ["bf16", "resume"])
    p.add_argument("--name", default=None, help=docs["name"])
    p.add_argument("--init", default=None, metavar="CHECKPOINT", help=docs["init"])
    p.add_argument(
        "--export",
        default=None,
        metavar="TRAINER_CHECKPOINT",
        help="do not train: copy an intermediate Trainer checkpoint (OUT/trainer/checkpoint-N) out to OUT as a "
        "checkpoint folder (the Trainer checkpoints it writes also evaluate as they are)",
    )
    args = p.parse_args(argv)
    export_from = args.export
    del args.export
    cfg = TrainConfig(**vars(args))
    quiet_hf_logs()

    def body() -> int:
        if cfg.steps < 1 or cfg.batch_size < 1:
            raise HarnessError("--steps and --batch-size must be >= 1")
        if cfg.keep_checkpoints < 0 or cfg.save_steps < 1:
            raise HarnessError("--keep-checkpoints must be >= 0 (0 keeps all) and --save-steps >= 1")
        print(export(export_from, cfg) if export_from else train(cfg))
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
