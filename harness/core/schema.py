"""The output folder's contract, defined once: file names, columns, figures, episode statuses.

Everything that writes or reads a sweep folder (``results/<run>/``) takes its names from here,
so adding a column, a figure or a status is one edit. Imports nothing of the project.

>>> Status("ok").failed, Status.NAN_ACTION.failed
(False, True)
>>> [f"{name}.{ext}" for name in FIGURES for ext in FIGURE_FORMATS][:2]
['return_conditioning.png', 'return_conditioning.svg']
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How an episode ended (the ``status`` column).

    ``ok``: ran to termination or the time limit. Failures end only their own episode:
    ``nan_action`` (the model's action was not finite), ``unstable_state`` (non-finite or exploding
    observation, MuJoCo instability warning), ``env_error`` (the env raised in step, or in reset
    twice on fresh envs).
    """

    OK = "ok"
    NAN_ACTION = "nan_action"
    UNSTABLE_STATE = "unstable_state"
    ENV_ERROR = "env_error"

    @property
    def failed(self) -> bool:
        return self is not Status.OK

    def __str__(self) -> str:
        return self.value


EPISODES = "episodes.csv"
SUMMARY = "summary.csv"
CALIBRATION = "calibration.csv"
METADATA = "metadata.json"
IDENTITY = "sweep.json"
VIDEO_DIR = "videos"
ROBUSTNESS = "robustness.csv"
"""Written only by a sweep with shifted conditions (``--shift``, several ``--env-version``)."""
RESULT_FILES = (EPISODES, SUMMARY, CALIBRATION, ROBUSTNESS, METADATA, IDENTITY)
"""Files a sweep writes (besides figures and videos)."""

FIGURE_RETURN_CONDITIONING = "return_conditioning"
FIGURE_RETURN_DISTRIBUTIONS = "return_distributions"
FIGURE_EPISODE_LENGTH = "episode_length"
FIGURE_LEARNING_CURVE = "learning_curve"
"""Drawn only when an env has checkpoints of several training steps (a Trainer run)."""
FIGURE_SHIFT = "return_conditioning_shift"
"""Drawn only for a sweep with shifted conditions: return conditioning under each shift level."""
FIGURES = (
    FIGURE_RETURN_CONDITIONING,
    FIGURE_RETURN_DISTRIBUTIONS,
    FIGURE_EPISODE_LENGTH,
    FIGURE_LEARNING_CURVE,
    FIGURE_SHIFT,
)
FIGURE_FORMATS = ("png", "svg")


def figure_files() -> list[str]:
    """Every figure file a sweep folder can hold (``return_conditioning.png``, ...)."""
    return [f"{name}.{ext}" for name in FIGURES for ext in FIGURE_FORMATS]


EPISODE_COLUMNS = [
    "env",
    "env_id",
    "checkpoint",
    "shift",
    "target",
    "episode",
    "seed",
    "return",
    "length",
    "terminated",
    "truncated",
    "status",
    "normalized_score",
    "wall_time_s",
    "error",
    "video",
]
"""``episodes.csv``: one row per episode."""

SUMMARY_COLUMNS = [
    "env",
    "env_id",
    "checkpoint",
    "shift",
    "target",
    "target_score",
    "n",
    "n_failed",
    "return_mean",
    "return_std",
    "return_ci_low",
    "return_ci_high",
    "return_iqm",
    "score_mean",
    "score_ci_low",
    "score_ci_high",
    "length_mean",
    "dataset_best_return",
    "dataset_best_score",
    "dataset_return_min",
    "dataset_return_p10",
    "dataset_return_median",
    "dataset_return_p90",
    "retained",
    "retained_ci_low",
    "retained_ci_high",
]
"""``summary.csv``: one row per env × env id × checkpoint × shift × target (statistics over ``ok``
episodes). ``retained``: under a shift (or another env version), the mean score as a share of the
unshifted cell's at the same target, paired by seed (:mod:`harness.analysis.robustness`)."""

NO_SHIFT = "none"
"""The ``shift`` label of an unshifted episode (:mod:`harness.world.shift`); older files lack the
column and read as this."""

READ_OPTIONS: dict[str, object] = {"keep_default_na": False, "na_values": [""]}
"""How every table of a sweep folder is read: ``pd.read_csv(path, **READ_OPTIONS)``. Only an empty
field is missing, so a label such as ``none`` (no shift), ``NA`` or ``null`` stays a string."""

CELL_KEY = ["env", "env_id", "checkpoint", "shift", "target"]
EPISODE_KEY = [*CELL_KEY, "episode"]
LEGACY_EPISODE_COLUMNS = [c for c in EPISODE_COLUMNS if c != "shift"]
"""``episodes.csv`` as written before the shift axis: read as ``shift = none``."""

EXIT_OK = 0
EXIT_FAILED_EPISODES = 3
"""A sweep that completed but recorded failed episodes (``status`` not ``ok``)."""
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
