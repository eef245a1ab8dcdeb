"""Models: the motor VAE over joint trajectories, the target policy, the composite reaching model (torch), and
OpenCV perception. Import from the submodules, so a perception-only user does not load torch."""
