"""Retrieval for the search environment: BM25, a JAX dense encoder (MiniLM / E5), an on-device
(shardable) top-k index, and a loopback HTTP server speaking Search-R1's `/retrieve`.

Every retriever answers `search(query, k) -> [(title, text)]`, the synthetic world's `SearchFn`:
  world.search_text(query, k=3, search_fn=BM25Retriever(world.docs).search)
"""
from foresight_jax.retrieval.bm25 import BM25Index, BM25Retriever, build_index as build_bm25_index
from foresight_jax.retrieval.dense import DenseIndex, DenseRetriever, build_index as build_dense_index
from foresight_jax.retrieval.dense import search as dense_search
from foresight_jax.retrieval.encoder import Encoder, EncoderConfig, embed, encode, load_encoder
from foresight_jax.retrieval.format import (DEFAULT_TOPK, Retriever, ScoredRetriever, format_results,
                                            from_contents, to_contents)
from foresight_jax.retrieval.server import HttpRetriever, retrieve, start_server, stop_server

__all__ = ["BM25Index", "BM25Retriever", "build_bm25_index", "DenseIndex", "DenseRetriever",
           "build_dense_index", "dense_search", "Encoder", "EncoderConfig", "embed", "encode",
           "load_encoder", "DEFAULT_TOPK", "Retriever", "ScoredRetriever", "format_results",
           "from_contents", "to_contents", "HttpRetriever", "retrieve", "start_server", "stop_server"]
