"""Learning to reach across a robot population, in the same verbs as puck hitting (``mtrl_robot.learning.puck``).

- :mod:`~mtrl_robot.learning.reaching.presets` — every hyperparameter, from ``config/training/*.yaml``.
- :mod:`~mtrl_robot.learning.reaching.data` — demos as tensors per joint set, the seeded task sampler.
- :mod:`~mtrl_robot.learning.reaching.pretrain` — motor VAE, then target policy, on nominal (or all) robots.
- :mod:`~mtrl_robot.learning.reaching.train` — the whole run from a preset: ``train_from_preset``.
- :mod:`~mtrl_robot.learning.reaching.adapt` — K demos of a new robot → adapted checkpoint.
- :mod:`~mtrl_robot.learning.reaching.evaluate` — reaching error of held-out robots executed in MuJoCo, per method.
- :mod:`~mtrl_robot.learning.reaching.predict` — model file + targets → ``JointTrajectory``s for a robot.
- :mod:`~mtrl_robot.learning.reaching.checkpoint` — the reaching checkpoint format.

Import the submodules: the package imports none of them, so that acting with a model file (``predict``) does not
load the training code.
"""
