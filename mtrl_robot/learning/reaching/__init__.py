"""Learning to reach across a robot population: glue between demos, the motor model and meta-learning.

- :mod:`~mtrl_robot.learning.reaching.presets` — every hyperparameter, from ``config/training/*.yaml``.
- :mod:`~mtrl_robot.learning.reaching.data` — demos as tensors per joint set, the seeded task sampler.
- :mod:`~mtrl_robot.learning.reaching.pretrain` — motor VAE, then target policy, on nominal (or all) robots.
- :mod:`~mtrl_robot.learning.reaching.train` — the whole run: ``train_from_preset`` (and ``python -m``).
- :mod:`~mtrl_robot.learning.reaching.adapt` — K demos of a new robot → adapted checkpoint (``adapt``, ``adapt_cli``).
- :mod:`~mtrl_robot.learning.reaching.predict` — model file + targets → ``JointTrajectory``s for a robot.
- :mod:`~mtrl_robot.learning.reaching.held_out` — few-shot reaching error on held-out robots.
- :mod:`~mtrl_robot.learning.reaching.checkpoint` — the reaching checkpoint format (and its model file's path).

Import the submodules: the package imports none of them, so that acting with a model file (``predict``) does not
load the training code.
"""
