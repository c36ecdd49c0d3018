"""The episode engine: the padded context window, the batched policy and its exact fast forward, the rollout
of many episodes on N slots, and the tutorial's one-episode loop (the oracle)."""
