"""Loopback HTTP retrieval server speaking Search-R1's `/retrieve` protocol, and its client.

Request  (POST /retrieve, JSON): {"queries": ["q1", ...], "topk": 3, "return_scores": true}
  `topk` may be omitted or null (-> 3, Search-R1's default); `return_scores` defaults to false.
Response: {"result": [[{"document": {"id": "17", "contents": "\"Title\"\ntext"}, "score": 12.3},
                       ...], ...]}  one list per query, best first.
  Without scores each entry is the bare document ({"id", "contents"}), as Search-R1 returns it.
Errors:   400 {"error": "..."} for malformed JSON or fields (Search-R1's FastAPI answers 422; a
  plain 400 with a message is what a training loop can log), 404 unknown path, 405 wrong method,
  413 oversized body.

stdlib only (`http.server.ThreadingHTTPServer`): one thread per connection, nothing to install,
binds 127.0.0.1 by default. Port 0 picks a free port; `server.server_address` tells which.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

from foresight_jax.retrieval.format import DEFAULT_TOPK, Doc, ScoredRetriever, from_contents, to_contents

MAX_BODY = 8 << 20       # bytes: a batch of queries, never a corpus
MAX_QUERIES = 4096
MAX_TOPK = 1000


class RequestError(ValueError):
  """A client mistake: becomes a 400 with this message."""


def parse_request(body: bytes) -> tuple[list[str], int, bool]:
  """Validate a `/retrieve` body -> (queries, topk, return_scores); raises RequestError."""
  try:
    req = json.loads(body.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RequestError(f"body is not valid UTF-8 JSON: {e}") from None
  if not isinstance(req, dict):
    raise RequestError(f"body must be a JSON object, got {type(req).__name__}")
  if "queries" not in req:
    raise RequestError('missing field "queries" (a list of strings)')
  queries = req["queries"]
  if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
    raise RequestError('"queries" must be a list of strings')
  if len(queries) > MAX_QUERIES:
    raise RequestError(f'"queries" has {len(queries)} entries; at most {MAX_QUERIES} per request')
  topk = req.get("topk")
  if topk is None:
    topk = DEFAULT_TOPK
  # bool is an int subclass in Python and JSON true would otherwise pass as topk=1
  if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
    raise RequestError(f'"topk" must be an integer in [1, {MAX_TOPK}], got {json.dumps(topk)}')
  scores = req.get("return_scores", False)
  if not isinstance(scores, bool):
    raise RequestError(f'"return_scores" must be true or false, got {json.dumps(scores)}')
  return queries, topk, scores


def build_response(retriever: ScoredRetriever, queries: Sequence[str], topk: int,
                   return_scores: bool, doc_ids: Sequence[str] | None = None) -> dict[str, Any]:
  if not queries:
    return {"result": []}
  ids, scores = retriever.top_k_batch(list(queries), topk)
  result = []
  for row_ids, row_scores in zip(ids.tolist(), scores.tolist()):
    entries = []
    for i, s in zip(row_ids, row_scores):
      title, text = retriever.docs[i]
      doc = {"id": doc_ids[i] if doc_ids is not None else str(i), "contents": to_contents(title, text)}
      entries.append({"document": doc, "score": float(s)} if return_scores else doc)
    result.append(entries)
  return {"result": result}


def _handler(retriever: ScoredRetriever, doc_ids):
  class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a rollout worker reuses its connection

    def _send(self, code: int, payload: dict) -> None:
      data = json.dumps(payload).encode("utf-8")
      self.send_response(code)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server naming)
      try:
        length = int(self.headers.get("Content-Length", ""))
      except ValueError:
        self.close_connection = True
        return self._send(411, {"error": "Content-Length header required"})
      if length < 0:
        self.close_connection = True
        return self._send(400, {"error": f"bad Content-Length {length}"})
      if length > MAX_BODY:
        self.close_connection = True  # the unread body would corrupt the next request
        return self._send(413, {"error": f"body of {length} bytes exceeds {MAX_BODY}"})
      body = self.rfile.read(length)  # read even for a 404, so the connection stays usable
      if self.path.rstrip("/") != "/retrieve":
        return self._send(404, {"error": f"unknown path {self.path!r}; POST /retrieve"})
      try:
        queries, topk, scores = parse_request(body)
      except RequestError as e:
        return self._send(400, {"error": str(e)})
      try:
        return self._send(200, build_response(retriever, queries, topk, scores, doc_ids))
      except Exception as e:  # a retriever bug must not kill the server thread silently
        return self._send(500, {"error": f"{type(e).__name__}: {e}"})

    def do_GET(self):  # noqa: N802
      self._send(405, {"error": "use POST /retrieve with a JSON body"})

    def log_message(self, fmt, *args):  # quiet: a training loop makes thousands of calls
      pass

  return Handler


def start_server(retriever: ScoredRetriever, host: str = "127.0.0.1", port: int = 0,
                 doc_ids: Sequence[str] | None = None) -> ThreadingHTTPServer:
  """Serve in a daemon thread; returns the server (`.server_address`, `.shutdown()`;
  `stop_server` also closes the socket). `doc_ids` replaces the default ids (corpus row numbers)."""
  server = ThreadingHTTPServer((host, port), _handler(retriever, doc_ids))
  server.daemon_threads = True
  threading.Thread(target=server.serve_forever, name="retrieval-server", daemon=True).start()
  return server


def stop_server(server: ThreadingHTTPServer) -> None:
  server.shutdown()
  server.server_close()


def server_url(server: ThreadingHTTPServer) -> str:
  host, port = server.server_address[:2]
  return f"http://{host}:{port}/retrieve"


# ----------------------------------------------------------------------------------- client
class RetrievalError(RuntimeError):
  def __init__(self, status: int, message: str):
    super().__init__(f"retrieval server answered {status}: {message}")
    self.status, self.message = status, message


def retrieve(url: str, queries: Sequence[str], topk: int = DEFAULT_TOPK, return_scores: bool = True,
             timeout: float = 30.0) -> list:
  """POST to a `/retrieve` endpoint (ours or Search-R1's); returns the "result" list."""
  data = json.dumps({"queries": list(queries), "topk": topk, "return_scores": return_scores}).encode()
  req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
      return json.loads(r.read())["result"]
  except urllib.error.HTTPError as e:
    body = e.read()
    try:
      msg = json.loads(body).get("error") or json.loads(body).get("detail") or body.decode()
    except (ValueError, AttributeError):
      msg = body.decode("utf-8", "replace")
    raise RetrievalError(e.code, str(msg)) from None


def result_docs(entries: list) -> list[Doc]:
  """One query's result entries (with or without scores) -> [(title, text)]."""
  return [from_contents((e["document"] if "document" in e else e)["contents"]) for e in entries]


class HttpRetriever:
  """`Retriever` backed by a `/retrieve` endpoint: `search` plugs into the world's `search_fn`."""

  def __init__(self, url: str, timeout: float = 30.0):
    self.url, self.timeout = url, timeout

  def search(self, query: str, k: int = DEFAULT_TOPK) -> list[Doc]:
    return result_docs(retrieve(self.url, [query], k, False, self.timeout)[0])

  def search_batch(self, queries: Sequence[str], k: int = DEFAULT_TOPK) -> list[list[Doc]]:
    return [result_docs(r) for r in retrieve(self.url, queries, k, False, self.timeout)]
