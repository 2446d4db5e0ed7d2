"""Trajectory data: schema, synthetic world, math tasks, foresight-block builder, rendering.

Submodules are imported explicitly (``from foresight_jax.data import schema``); this file stays
empty of imports so that sibling modules (retrieval adapters, pipelines) can be added without
touching it.
"""
