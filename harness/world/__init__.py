"""The world: env names to Gymnasium ids, sizes and D4RL scores; the batched MuJoCo stepper and the vector envs."""
