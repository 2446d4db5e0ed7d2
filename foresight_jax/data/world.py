"""A seeded, offline, fictional world: entities, relations, encyclopedia documents, questions.

Everything is a pure function of (WorldConfig, seed): the same seed gives the same names,
relations, documents, questions and search results on any machine (stdlib `random.Random`,
whose algorithms are stable across Python versions).

Entities (person, city, country, company, university, river) carry *functional* relations (one
object per subject and relation), so every relation chain has exactly one gold answer:

  person --born_in--> city --located_in--> country --capital--> city --mayor--> person
  person --educated_at--> university --campus_in--> city
  person --works_for--> company --founded_by--> person ; company --headquartered_in--> city
  river --source_in--> city

Each entity gets one document: a type sentence, one sentence per outgoing relation (in one of
several paraphrases), back-link sentences ("Notable people from X include ...") and distractor
sentences that name other entities, so that lexical search has to rank, not just match.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

SearchFn = Callable[[str, int], "list[tuple[str, str]]"]  # (query, k) -> [(title, text)]


@dataclass(frozen=True)
class Relation:
  subject: str          # subject kind
  target: str           # object kind
  templates: tuple      # document sentences; {s} subject, {o} object
  keyword: str          # what an expert appends to the subject name when searching
  phrase: str           # noun phrase for questions; {x} is the inner phrase
  desc: str             # for thoughts: "the {desc} of {s}"


RELATIONS: dict[str, Relation] = {r: Relation(*v) for r, v in {
    "born_in": ("person", "city", ("{s} was born in {o}.", "{s} is a native of {o}."),
                "birthplace", "the birthplace of {x}", "birthplace"),
    "educated_at": ("person", "university", ("{s} studied at {o}.", "{s} graduated from {o}."),
                    "education", "the school attended by {x}", "school"),
    "works_for": ("person", "company", ("{s} works for {o}.", "{s} is employed by {o}."),
                  "employer", "the employer of {x}", "employer"),
    "located_in": ("city", "country", ("{s} is a city in {o}.", "{s} lies in {o}."),
                   "country", "the country in which {x} lies", "country"),
    "mayor": ("city", "person", ("The mayor of {s} is {o}.", "{s} is governed by mayor {o}."),
              "mayor", "the mayor of {x}", "mayor"),
    "capital": ("country", "city", ("The capital of {s} is {o}.", "{o} serves as the capital of "
                                    "{s}."), "capital", "the capital of {x}", "capital"),
    "founded_by": ("company", "person", ("{s} was founded by {o}.", "{o} founded {s}."),
                   "founder", "the founder of {x}", "founder"),
    "headquartered_in": ("company", "city", ("{s} is headquartered in {o}.",
                                             "{s} has its head office in {o}."),
                         "headquarters", "the headquarters city of {x}", "headquarters city"),
    "campus_in": ("university", "city", ("{s} is located in {o}.", "{s} has its campus in {o}."),
                  "campus", "the city that is home to {x}", "campus city"),
    "source_in": ("river", "city", ("{s} rises near {o}.", "The source of {s} lies near {o}."),
                  "source", "the city near the source of {x}", "source city"),
}.items()}
KIND_RELATIONS = defaultdict(list)
for _r, _rel in RELATIONS.items():
  KIND_RELATIONS[_rel.subject].append(_r)

# Names: capitalised words; the same pattern is used to read objects back out of passages.
NAME = r"[A-Z][a-z'-]+(?: [A-Z][a-z'-]+)*"
_EXTRACT = {r: [re.compile(re.escape(t).replace(re.escape("{s}"), f"({NAME})")
                           .replace(re.escape("{o}"), f"({NAME})"))
                for t in rel.templates] for r, rel in RELATIONS.items()}
_ORDER = {r: [t.index("{s}") < t.index("{o}") for t in rel.templates]
          for r, rel in RELATIONS.items()}


def extract_objects(observation: str, subject: str, relation: str) -> list[str]:
  """Objects that the passage text states for (subject, relation), in order of appearance."""
  found = []
  for pat, s_first in zip(_EXTRACT[relation], _ORDER[relation]):
    for m in pat.finditer(observation):
      s, o = (m.group(1), m.group(2)) if s_first else (m.group(2), m.group(1))
      if s == subject or s.endswith(" " + subject):  # tolerate a capitalised word before it
        found.append((m.start(), o))
  return [o for _, o in sorted(found)]


_DOC_RE = re.compile(r"Doc \d+\(Title: (.*?)\) ")


def doc_titles(observation: str) -> list[str]:
  return _DOC_RE.findall(observation)


def split_docs(observation: str) -> list[tuple[str, str]]:
  """Inverse of format_docs: [(title, text)]."""
  parts = _DOC_RE.split(observation)
  return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def format_docs(docs: list[tuple[str, str]], sep: str = " ") -> str:
  """`Doc 1(Title: t) text Doc 2(Title: t) text ...` (Search-R1's layout; its code joins with
  newlines, the design's examples with spaces: `sep` picks)."""
  return sep.join(f"Doc {i}(Title: {t}) {x}" for i, (t, x) in enumerate(docs, 1))


# ---------------------------------------------------------------------------------------------
# Names and entities

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "r",
           "s", "st", "t", "tr", "v", "z", "th", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "k", "nd", "rn", "st"]
_SUFFIX = {
    "city": ["", "", "holm", "burg", "ford", "wick", "mere", "stad"],
    "country": ["ia", "land", "or", "esh", ""],
    "company": [" Dynamics", " Industries", " Works", " Labs", " Holdings", " Motors", " Foods",
                " Textiles"],
    "university": [" Institute", " Academy", " College"],
    "river": [" River"],
}
_FILLER = {
    "person": ["{s} is known for work in {field}.", "{s} once visited {city}.",
               "{s} has written about {river}.", "{s} was interviewed about {company}."],
    "city": ["{s} has a population of about {num} thousand.", "{s} is known for its {thing}.",
             "Travellers often compare {s} with {city}.", "{s} hosts a yearly {thing} festival."],
    "country": ["{s} is famous for its {thing}.", "{s} shares a border with {country}.",
                "{s} trades heavily with {country}."],
    "company": ["{s} was established in {year}.", "{s} competes with {company}.",
                "{s} is best known for its {thing}."],
    "university": ["{s} was established in {year}.", "{s} is known for its {field} faculty.",
                   "{s} partners with {univ}."],
    "river": ["{s} is about {num} km long.", "{s} is popular with {field} students.",
              "{s} is often confused with {river}."],
}
_INTRO = {"person": "{s} is a scholar of {field}.", "city": "{s} is a city.",
          "country": "{s} is a country.", "company": "{s} is a company.",
          "university": "{s} is a university.", "river": "{s} is a river."}
_FIELDS = ["botany", "music", "law", "geology", "poetry", "trade", "medicine", "astronomy"]
_THINGS = ["bridges", "markets", "lanterns", "ceramics", "glasswork", "orchards", "ferries"]


@dataclass(frozen=True)
class WorldConfig:
  n_countries: int = 6
  cities_per_country: int = 4
  n_people: int = 60
  n_companies: int = 20
  n_universities: int = 10
  n_rivers: int = 8
  n_fillers: int = 2  # distractor sentences per document
  # documents a search returns (the tool's top-k). Recorded with every trajectory's world config, so
  # the foresight builder's Monte Carlo branches and any rebuilt world search the same way
  search_k: int = 3


@dataclass
class Entity:
  name: str
  kind: str
  rel: dict = field(default_factory=dict)  # relation -> object name


class World:
  """Entities, documents and a lexical search index; immutable after construction."""

  def __init__(self, seed: int = 0, config: WorldConfig = WorldConfig()):
    self.seed, self.config = seed, config
    rng = random.Random(f"world:{seed}")
    self.entities = _make_entities(rng, config)
    self.by_kind = defaultdict(list)
    for e in self.entities.values():
      self.by_kind[e.kind].append(e.name)
    self.docs = [(e.name, _document(rng, e, self)) for e in self.entities.values()]
    self._index()
    self._cache: dict = {}

  # --- search -------------------------------------------------------------------------------
  def _index(self, k1: float = 1.2, b: float = 0.75) -> None:
    """BM25-style postings; title tokens count twice (titles name the entity a page is about)."""
    self._k1, self._b = k1, b
    self._postings = defaultdict(list)
    lens = []
    for i, (title, text) in enumerate(self.docs):
      tf = Counter(_tokens(title) * 2 + _tokens(text))
      lens.append(sum(tf.values()))
      for t, c in tf.items():
        self._postings[t].append((i, c))
    avg = sum(lens) / len(lens)
    n = len(self.docs)
    self._norm = [k1 * (1 - b + b * l / avg) for l in lens]
    self._idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
                 for t, p in self._postings.items()}

  def search(self, query: str, k: int | None = None) -> list[tuple[str, str]]:
    """Top-k (title, text), k = config.search_k unless given; always k documents (zero-score ones
    in index order fill the rest, as a dense retriever would return *something*); ties go to the
    earlier document."""
    k = self.config.search_k if k is None else k
    key = (query, k)
    hit = self._cache.get(key)
    if hit is not None:
      return hit
    scores = defaultdict(float)
    for t in dict.fromkeys(_tokens(query)):  # ordered dedup: float sums independent of hashing
      idf = self._idf.get(t)
      if idf is None:
        continue
      for i, c in self._postings[t]:
        scores[i] += idf * c * (self._k1 + 1) / (c + self._norm[i])
    ranked = sorted(scores, key=lambda i: (-scores[i], i))[:k]
    for i in range(len(self.docs)):
      if len(ranked) >= k:
        break
      if i not in scores:
        ranked.append(i)
    out = [self.docs[i] for i in ranked]
    if len(self._cache) < 200_000:  # MC branching repeats queries a lot
      self._cache[key] = out
    return out

  def search_text(self, query: str, k: int | None = None, search_fn: SearchFn | None = None) -> str:
    docs = (search_fn or self.search)(query, self.config.search_k if k is None else k)
    return format_docs(docs)

  # --- questions ----------------------------------------------------------------------------
  def sample_question(self, rng: random.Random, hops: int, qid: str) -> "Task":
    """A `hops`-hop question following a relation chain that never revisits an entity."""
    from foresight_jax.data.schema import Task
    starts = [e for e in self.entities.values() if KIND_RELATIONS[e.kind]]
    for _ in range(1000):
      e = rng.choice(starts)
      path, rels = [e.name], []
      while len(rels) < hops:
        options = [r for r in KIND_RELATIONS[e.kind] if e.rel.get(r) not in path]
        if not options:
          break
        r = rng.choice(options)
        rels.append(r)
        e = self.entities[e.rel[r]]
        path.append(e.name)
      if len(rels) == hops:
        break
    else:
      raise RuntimeError(f"no {hops}-hop chain in world {self.seed}")
    phrase = path[0]
    for r in rels:
      phrase = RELATIONS[r].phrase.format(x=phrase)
    wh = "Who is" if RELATIONS[rels[-1]].target == "person" else "What is"
    kinds = [self.entities[p].kind for p in path]
    return Task(id=qid, domain="search", question=f"{wh} {phrase}?", answers=[path[-1]],
                meta={"world_seed": self.seed, "start": path[0], "relations": rels,
                      "kinds": kinds, "path": path, "hops": hops, "phrase": phrase})


def _tokens(text: str) -> list[str]:
  return re.findall(r"[a-z0-9]+", text.lower())


def _word(rng: random.Random, syllables: int) -> str:
  w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
  return (w + rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)).capitalize()


def _make_entities(rng: random.Random, cfg: WorldConfig) -> dict[str, Entity]:
  used: set = set()

  def fresh(make):
    for _ in range(1000):
      n = make()
      # Unique full names, so that a name appearing in a passage identifies one entity.
      if n not in used and n.lower() not in {"the", "doc"}:
        used.add(n)
        return n
    raise RuntimeError("name space exhausted")

  named = lambda kind: fresh(lambda: _word(rng, rng.choice((2, 2, 3))) +  # noqa: E731
                             rng.choice(_SUFFIX[kind]))
  surnames = [_word(rng, 2) + rng.choice(["", "", "son", "er", "in"])
              for _ in range(max(2, cfg.n_people // 2))]  # shared surnames: lexical confusers
  ents: dict[str, Entity] = {}
  add = lambda name, kind: ents.setdefault(name, Entity(name, kind))  # noqa: E731
  countries = [add(named("country"), "country") for _ in range(cfg.n_countries)]
  cities = []
  for c in countries:
    mine = [add(named("city"), "city") for _ in range(cfg.cities_per_country)]
    for city in mine:
      city.rel["located_in"] = c.name
    c.rel["capital"] = mine[0].name
    cities += mine
  people = [add(fresh(lambda: f"{_word(rng, 2)} {rng.choice(surnames)}"), "person")
            for _ in range(cfg.n_people)]
  companies = [add(named("company"), "company") for _ in range(cfg.n_companies)]
  unis = [add(named("university"), "university") for _ in range(cfg.n_universities)]
  rivers = [add(named("river"), "river") for _ in range(cfg.n_rivers)]
  for p in people:
    p.rel.update(born_in=rng.choice(cities).name, educated_at=rng.choice(unis).name,
                 works_for=rng.choice(companies).name)
  for city, mayor in zip(cities, rng.sample(people, len(cities))):
    city.rel["mayor"] = mayor.name
  for co in companies:
    co.rel.update(founded_by=rng.choice(people).name, headquartered_in=rng.choice(cities).name)
  for u in unis:
    u.rel["campus_in"] = rng.choice(cities).name
  for r in rivers:
    r.rel["source_in"] = rng.choice(cities).name
  return ents


def _document(rng: random.Random, e: Entity, world: World) -> str:
  pick = lambda kind: rng.choice([n for n in world.by_kind[kind] if n != e.name])  # noqa: E731
  fill = dict(s=e.name, field=rng.choice(_FIELDS), thing=rng.choice(_THINGS),
              num=rng.randint(12, 900), year=rng.randint(1650, 1990))
  for kind, key in (("city", "city"), ("country", "country"), ("company", "company"),
                    ("university", "univ"), ("river", "river")):
    fill[key] = pick(kind)
  facts = [rng.choice(RELATIONS[r].templates).format(s=e.name, o=o) for r, o in e.rel.items()]
  backlinks = []
  if e.kind == "country":
    mine = [n for n in world.by_kind["city"] if world.entities[n].rel["located_in"] == e.name]
    backlinks.append(f"Cities in {e.name} include {', '.join(mine[:-1])} and {mine[-1]}.")
  elif e.kind == "city":
    born = [n for n in world.by_kind["person"] if world.entities[n].rel["born_in"] == e.name]
    if born:
      backlinks.append(f"Notable people from {e.name} include {' and '.join(born[:2])}.")
  elif e.kind == "company":
    staff = [n for n in world.by_kind["person"] if world.entities[n].rel["works_for"] == e.name]
    if staff:
      backlinks.append(f"Its staff include {staff[0]}.")
  fillers = [f.format(**fill) for f in rng.sample(_FILLER[e.kind], world.config.n_fillers)]
  body = facts + backlinks + fillers
  rng.shuffle(body)
  return " ".join([_INTRO[e.kind].format(**fill)] + body)
