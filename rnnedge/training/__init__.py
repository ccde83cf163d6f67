"""Training: the model family, stateful truncated-BPTT training, checkpoints."""
