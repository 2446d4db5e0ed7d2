"""FC-RL (design.md §3, §5): the fused RL step's in-graph pieces (token layout, device search tool,
rollout, rewards, GRPO loss). Import the submodules directly; this package imports nothing."""
