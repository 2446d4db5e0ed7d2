"""The loopback `/retrieve` server: real HTTP round trips on 127.0.0.1 (port 0), Search-R1's
request/response layout, the client plugging into the world's `search_fn`, and 4xx errors."""
import http.client
import json
import threading

import pytest

from foresight_jax.data.world import World
from foresight_jax.retrieval import bm25, server
from foresight_jax.retrieval.format import Retriever


@pytest.fixture(scope="module")
def world():
  return World(seed=0)


@pytest.fixture(scope="module")
def served(world):
  r = bm25.BM25Retriever(world.docs)
  srv = server.start_server(r, "127.0.0.1", 0)
  assert srv.server_address[1] != 0
  yield r, srv, server.server_url(srv)
  server.stop_server(srv)


def _raw(srv, method, path, body=b"", headers=None):
  conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
  conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
  resp = conn.getresponse()
  out = resp.status, json.loads(resp.read())
  conn.close()
  return out


def test_round_trip_with_scores(served, world):
  r, _, url = served
  queries = [world.docs[5][0] + " " + "country", "nothing zzz", world.docs[40][0]]
  result = server.retrieve(url, queries, topk=3, return_scores=True)
  ids, scores = r.top_k_batch(queries, 3)
  assert len(result) == 3 and all(len(row) == 3 for row in result)
  for row, row_ids, row_scores in zip(result, ids, scores):
    for entry, i, s in zip(row, row_ids, row_scores):
      assert set(entry) == {"document", "score"} and set(entry["document"]) == {"id", "contents"}
      title, text = world.docs[i]
      assert entry["document"] == {"id": str(i), "contents": f'"{title}"\n{text}'}
      assert entry["score"] == pytest.approx(float(s), rel=1e-6)
  assert result[2][0]["document"]["contents"].startswith(f'"{world.docs[40][0]}"\n')


def test_defaults_and_bare_documents(served):
  _, srv, _ = served
  status, body = _raw(srv, "POST", "/retrieve", json.dumps({"queries": ["river"]}).encode())
  assert status == 200 and len(body["result"][0]) == 3  # topk defaults to 3
  assert set(body["result"][0][0]) == {"id", "contents"}  # no scores: the bare document
  status, body = _raw(srv, "POST", "/retrieve", json.dumps({"queries": [], "topk": None}).encode())
  assert status == 200 and body == {"result": []}
  status, body = _raw(srv, "POST", "/retrieve", json.dumps({"queries": ["x"], "topk": 10000 // 10}).encode())
  assert status == 200 and len(body["result"][0]) == 128  # capped at the corpus size


def test_http_retriever_plugs_into_the_world(served, world):
  r, _, url = served
  client = server.HttpRetriever(url)
  assert isinstance(client, Retriever)
  for q in ("Varnholm mayor", world.docs[3][0] + " capital", world.docs[77][0]):
    assert client.search(q, 3) == r.search(q, 3)
    assert world.search_text(q, k=3, search_fn=client.search) == world.search_text(q, 3, search_fn=r.search)
  assert client.search_batch(["a", "b"], 2) == [r.search("a", 2), r.search("b", 2)]


def test_concurrent_clients(served):
  r, _, url = served
  queries = [f"city {i}" for i in range(16)]
  out = [None] * len(queries)

  def work(j):
    out[j] = server.retrieve(url, [queries[j]], topk=2, return_scores=True)[0]

  threads = [threading.Thread(target=work, args=(j,)) for j in range(len(queries))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(10)
  ids, _ = r.top_k_batch(queries, 2)
  assert [[int(e["document"]["id"]) for e in row] for row in out] == ids.tolist()


@pytest.mark.parametrize("body,needle", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe", "not valid UTF-8 JSON"),
    (b"[1, 2]", "JSON object"),
    (b"{}", 'missing field "queries"'),
    (b'{"queries": "one string"}', '"queries" must be a list of strings'),
    (b'{"queries": ["ok", 3]}', '"queries" must be a list of strings'),
    (b'{"queries": ["q"], "topk": 0}', '"topk" must be an integer'),
    (b'{"queries": ["q"], "topk": "3"}', '"topk" must be an integer'),
    (b'{"queries": ["q"], "topk": 2.5}', '"topk" must be an integer'),
    (b'{"queries": ["q"], "topk": true}', '"topk" must be an integer'),
    (b'{"queries": ["q"], "return_scores": "yes"}', '"return_scores" must be true or false'),
])
def test_bad_requests_are_400_with_a_message(served, body, needle):
  _, srv, _ = served
  status, payload = _raw(srv, "POST", "/retrieve", body)
  assert status == 400 and needle in payload["error"]


def test_wrong_path_method_and_client_errors(served):
  _, srv, url = served
  assert _raw(srv, "POST", "/search", b"{}")[0] == 404
  status, payload = _raw(srv, "GET", "/retrieve")
  assert status == 405 and "POST /retrieve" in payload["error"]
  with pytest.raises(server.RetrievalError, match='"topk" must be an integer') as e:
    server.retrieve(url, ["q"], topk=0)
  assert e.value.status == 400
  # the server is still healthy after the errors
  assert len(server.retrieve(url, ["river"], topk=1)[0]) == 1
  # a trailing slash names the same endpoint
  status, payload = _raw(srv, "POST", "/retrieve/", json.dumps({"queries": ["river"], "topk": 2}).encode())
  assert status == 200 and len(payload["result"][0]) == 2


def test_served_ids_are_the_corpus_ids_given():
  """`doc_ids` (e.g. wiki-18's own ids) replace the row numbers in every answer."""
  docs = [("Tarn", "a lake in the hills"), ("Varn", "a river town"), ("Orm", "a river mouth")]
  srv = server.start_server(bm25.BM25Retriever(docs), "127.0.0.1", 0, doc_ids=["w-10", "w-11", "w-12"])
  try:
    status, body = _raw(srv, "POST", "/retrieve", json.dumps({"queries": ["lake hills"], "topk": 1}).encode())
  finally:
    server.stop_server(srv)
  assert status == 200 and body["result"] == [[{"id": "w-10", "contents": '"Tarn"\na lake in the hills'}]]


def test_parse_request_unit():
  assert server.parse_request(b'{"queries": ["a"], "topk": 5, "return_scores": true}') == (["a"], 5, True)
  assert server.parse_request(b'{"queries": ["a"], "extra": 1}') == (["a"], 3, False)
  with pytest.raises(server.RequestError):
    server.parse_request(json.dumps({"queries": ["a"] * (server.MAX_QUERIES + 1)}).encode())
  assert server.build_response(bm25.BM25Retriever([("T", "x")]), ["x"], 3, False) == \
      {"result": [[{"id": "0", "contents": '"T"\nx'}]]}
