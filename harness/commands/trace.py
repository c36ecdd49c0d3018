"""One episode's floats step by step, and where two traces part: ``harness trace``.

    harness trace --env hopper --target 3600 --seed 1000 --out trace.json     # this machine
    harness trace --env hopper --target 3600 --seed 1000 --numerics native --out native.json
    harness trace --diff trace.json native.json                                # first step and component

A trace fingerprints, per step, the observation, the normalised state, every layer's output of
the forward, the action and the reward (:mod:`harness.engine.trace`). ``--diff`` names the first
step and the first component that differ (exit 1), or says the two are identical (exit 0): how to
answer "why do my numbers differ from my colleague's" (send each other the JSON files).

Exit codes: 0 written, or identical; 1 the traces differ; 2 bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.commands.cli import Parser, quiet_hf_logs, run
from harness.core import numerics
from harness.core.errors import HarnessError
from harness.core.provenance import machine, versions
from harness.io.results import write_atomic


def _read(path: Path) -> dict[str, Any]:
    try:
        trace = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read trace {path} ({exc}); pass two files written by harness trace --out") from None
    if not isinstance(trace, dict) or "steps" not in trace:
        raise HarnessError(f"{path} is not a trace (no steps); pass two files written by harness trace --out")
    return trace


def diff(a: Path, b: Path) -> int:
    """Print where traces ``a`` and ``b`` first differ; 0 identical, 1 different."""
    from harness.engine.trace import describe_difference, first_difference

    ta, tb = _read(a), _read(b)
    for key in ("env_id", "checkpoint", "fingerprint", "target", "seed", "precision"):
        if ta.get(key) != tb.get(key):
            print(f"note: {key} differs: {ta.get(key)!r} vs {tb.get(key)!r} (not the same episode)")
    for key in ("numerics", "machine"):
        if ta.get(key) != tb.get(key):
            print(f"{key}: {a.name}: {_short(ta.get(key))}; {b.name}: {_short(tb.get(key))}")
    print(describe_difference(ta, tb, (a.name, b.name)))
    return 0 if first_difference(ta, tb) is None else 1


def _short(value: Any) -> str:
    if isinstance(value, dict):
        keys = ("mode", "products", "definition") if "mode" in value else ("cpu", "isa")
        return ", ".join(f"{k}={value.get(k)}" for k in keys if k in value)
    return repr(value)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="harness trace", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", help="short env name or Gymnasium id")
    p.add_argument("--target", type=float, help="target return the episode is conditioned on (raw)")
    p.add_argument("--seed", type=int, default=0, help="the episode's reset seed (a sweep's episode k: its --seed + k)")
    p.add_argument(
        "--checkpoint", default=None, help="embedded name, folder or Hub id (default: the env's embedded one)"
    )
    p.add_argument("--numerics", default=numerics.DEFAULT.value, choices=[m.value for m in numerics.Numerics])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--max-steps", type=int, default=None, help="stop the episode after this many steps")
    p.add_argument("--out", type=Path, default=None, help="trace file to write (JSON); refused if it exists")
    p.add_argument("--diff", nargs=2, type=Path, metavar=("A", "B"), help="compare two trace files instead")
    args = p.parse_args(argv)
    if args.diff:
        return run(lambda: diff(*args.diff))
    if args.env is None or args.target is None or args.out is None:
        p.error("--env, --target and --out are required (or --diff A B)")

    def body() -> int:
        state = numerics.apply(args.numerics)  # before any kernel runs
        quiet_hf_logs()
        from harness.engine.trace import trace_episode
        from harness.io.checkpoints import load_checkpoint
        from harness.world.envs import resolve_env

        if args.out.exists():
            raise HarnessError(f"{args.out} exists; remove it or pass another --out")
        if args.max_steps is not None and args.max_steps < 1:
            raise HarnessError(f"--max-steps must be at least 1, got {args.max_steps}")
        env = resolve_env(args.env)
        ckpt = load_checkpoint(args.checkpoint or env.name)
        ckpt.check_env(env)
        trace = trace_episode(ckpt, env, args.target, args.seed, args.precision, args.max_steps)
        trace |= {"numerics": numerics.state() | {"requested": state["mode"]}, "machine": machine()}
        trace |= {"versions": versions(), "command": "harness trace " + " ".join(argv or sys.argv[1:])}
        write_atomic(args.out, json.dumps(trace, indent=1) + "\n")
        print(
            f"wrote {args.out}: {env.env_id}, target {args.target:g}, seed {args.seed}: return {trace['return']:.4f} "
            f"in {trace['length']} steps ({numerics.describe(trace['numerics'])})"
        )
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
