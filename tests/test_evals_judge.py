"""The LLM judge (evals/judge.py): strict verdict parsing, the local judge on a scripted sampler,
and the HTTP judge against a real local OpenAI-compatible server that checks the bearer key;
failures give verdict None with a reason and never show the key."""
import http.server
import json
import logging
import threading

import pytest

from foresight_jax.evals import judge as J

KEY = "sk-test-7f3a9c-secret-value"
ENV = "FJ_TEST_JUDGE_KEY"
ITEMS = [J.JudgeItem("Capital of France?", ("Paris",), "Paris"),
         J.JudgeItem("Capital of Spain?", ("Madrid", "Madrid, Spain"), "Lisbon"),
         J.JudgeItem("Largest planet?", ("Jupiter",), "ramble")]


@pytest.mark.parametrize("reply,verdict", [("CORRECT", True), (" incorrect.\n", False), ("Correct", True),
                                           ("CORRECT because", None), ("yes", None), ("", None),
                                           ("INCORRECT INCORRECT", None)])
def test_parse_verdict_is_strict(reply, verdict):
  assert J.parse_verdict(reply).verdict is verdict


def test_local_judge_prompts_and_parses():
  seen = []

  def gen(convs):
    seen.extend(convs)
    return ["CORRECT", "INCORRECT", "maybe?"]

  out = J.LocalJudge(gen, "scripted")(ITEMS)
  assert [v.verdict for v in out] == [True, False, None]
  last = seen[1][-1]
  assert last["role"] == "user" and "Gold answer(s): Madrid | Madrid, Spain\n" in last["content"]
  assert "Candidate answer: Lisbon" in last["content"]
  # the worked examples come first, one of each verdict
  assert [m["content"] for m in seen[1] if m["role"] == "assistant"] == ["CORRECT", "INCORRECT"]
  assert "off-format" in out[2].reason

  def broken(prompts):
    raise RuntimeError("device lost")
  failed = J.LocalJudge(broken, "broken")(ITEMS)
  assert all(v.verdict is None and "device lost" in v.reason for v in failed)


class _Handler(http.server.BaseHTTPRequestHandler):
  """OpenAI-compatible /v1/chat/completions: 401 without the right bearer key; grades by whether
  the gold string is in the candidate line; a candidate 'ramble' gets a 500."""

  def do_POST(self):  # noqa: N802
    self.server.requests.append((self.path, self.headers.get("Authorization")))
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    if self.path != "/v1/chat/completions":
      return self._send(404, {"error": "not found"})
    if self.headers.get("Authorization") != f"Bearer {KEY}":
      return self._send(401, {"error": "bad key"})
    prompt = body["messages"][-1]["content"]
    gold = prompt.split("Gold answer(s): ")[1].split("\n")[0]
    cand = prompt.split("Candidate answer: ")[1].split("\n")[0]
    if cand == "ramble":
      return self._send(500, {"error": "boom"})
    if cand == "echo":  # a careless proxy that quotes the request's header in its status line
      return self._send(403, {"error": "denied"}, f"denied for {self.headers.get('Authorization')}")
    verdict = "CORRECT" if gold in cand else "INCORRECT"
    self._send(200, {"choices": [{"message": {"role": "assistant", "content": verdict}}],
                     "model": body["model"]})

  def _send(self, code, obj, message=None):
    data = json.dumps(obj).encode()
    self.send_response(code, message)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


@pytest.fixture()
def server():
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  srv.requests = []
  t = threading.Thread(target=srv.serve_forever, daemon=True)
  t.start()
  yield srv
  srv.shutdown()
  srv.server_close()


def test_http_judge_against_a_local_server(server, monkeypatch, caplog):
  monkeypatch.setenv(ENV, KEY)
  j = J.HTTPJudge(f"http://127.0.0.1:{server.server_port}/v1", "grader-1", ENV, timeout_s=10)
  with caplog.at_level(logging.WARNING):
    out = j(ITEMS)
  assert [v.verdict for v in out] == [True, False, None]
  assert "HTTP 500" in out[2].reason
  assert all(auth == f"Bearer {KEY}" for _, auth in server.requests) and len(server.requests) == 3
  # the key appears nowhere: not in repr, reasons or the log
  text = repr(j) + str(vars(j)) + " ".join(v.reason for v in out) + caplog.text
  assert KEY not in text and ENV in repr(j)
  assert "no verdict for 1 of 3" in caplog.text
  echoed = j([J.JudgeItem("Q?", ("a",), "echo")])[0]
  assert echoed.verdict is None and "HTTP 403 denied for Bearer ***" in echoed.reason and KEY not in echoed.reason


def test_http_judge_wrong_key_missing_key_and_dead_endpoint(server, monkeypatch, caplog):
  monkeypatch.setenv(ENV, "sk-wrong")
  j = J.HTTPJudge(f"http://127.0.0.1:{server.server_port}/v1", "grader-1", ENV, timeout_s=10)
  assert all(v.verdict is None and "HTTP 401" in v.reason for v in j(ITEMS[:1]))
  monkeypatch.delenv(ENV)
  missing = j(ITEMS[:1])[0]
  assert missing.verdict is None and ENV in missing.reason
  monkeypatch.setenv(ENV, KEY)
  port = server.server_port
  server.shutdown()
  server.server_close()
  with caplog.at_level(logging.WARNING):
    dead = J.HTTPJudge(f"http://127.0.0.1:{port}/v1", "grader-1", ENV, timeout_s=2)(ITEMS)
  assert all(v.verdict is None and "request failed" in v.reason for v in dead)
  assert KEY not in caplog.text + " ".join(v.reason for v in dead)


def test_http_judge_rejects_bad_config():
  with pytest.raises(ValueError, match="base_url"):
    J.HTTPJudge("localhost:8000/v1", "m", ENV)
  with pytest.raises(ValueError, match="judge.model"):
    J.HTTPJudge("http://localhost:8000/v1", "", ENV)
