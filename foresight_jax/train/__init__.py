"""Training: losses, (later) train state, optimizer, checkpointing and the stage loops."""
