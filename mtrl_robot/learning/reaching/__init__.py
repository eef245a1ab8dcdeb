"""Learning to reach across a robot population: glue between demos, the motor model and meta-learning.

- :mod:`~mtrl_robot.learning.reaching.presets` — every hyperparameter, from ``config/training/*.yaml``.
- :mod:`~mtrl_robot.learning.reaching.data` — demos as tensors per joint set, the seeded task sampler.
- :mod:`~mtrl_robot.learning.reaching.pretrain` — motor VAE, then target policy, on nominal (or all) robots.
- :mod:`~mtrl_robot.learning.reaching.train` — the whole run: ``train_from_preset`` (and ``python -m``).
- :mod:`~mtrl_robot.learning.reaching.adapt` — K demos of a new robot → adapted checkpoint (``adapt``, ``adapt_cli``).
- :mod:`~mtrl_robot.learning.reaching.predict` — checkpoint + targets → ``JointTrajectory``s for a robot.
- :mod:`~mtrl_robot.learning.reaching.held_out` — few-shot reaching error on held-out robots.
- :mod:`~mtrl_robot.learning.reaching.checkpoint` — the reaching checkpoint format.
"""

from mtrl_robot.learning.reaching.adapt import adapt, adapt_cli
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint, load
from mtrl_robot.learning.reaching.held_out import held_out_errors
from mtrl_robot.learning.reaching.predict import predict
from mtrl_robot.learning.reaching.presets import Preset, load_preset
from mtrl_robot.learning.reaching.train import train_from_preset

__all__ = ["Preset", "ReachingCheckpoint", "adapt", "adapt_cli", "held_out_errors", "load", "load_preset", "predict",
           "train_from_preset"]
