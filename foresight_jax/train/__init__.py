"""Training: losses, train state, optimizer, the jitted step, orbax checkpoints and the loop."""
