"""The sample corpus exists in every format, and the copies agree with news.jsonl."""

from __future__ import annotations

import nerx


def _entities(docs):
    return [[(d.text[e.start : e.end], e.label) for e in d.entities] for d in docs]


def test_samples_in_every_format_agree(samples):
    source = list(nerx.read(samples / "news.jsonl"))
    assert any(  # at least one nested entity, as the README promises
        a is not b and a.start <= b.start and b.end <= a.end
        for d in source
        for a in d.entities
        for b in d.entities
    )
    assert sum(len(d.relations) for d in source) > 0
    for copy in ("news.spacy", "news_brat"):
        docs = list(nerx.read(samples / copy))
        assert [d.id for d in docs] == [d.id for d in source]
        assert [d.text for d in docs] == [d.text for d in source]
        assert _entities(docs) == _entities(source)
        assert [[(r.head, r.tail, r.label) for r in d.relations] for d in docs] == [
            [(r.head, r.tail, r.label) for r in d.relations] for d in source
        ]
    conll = list(nerx.read(samples / "news.conll"))
    outermost = [
        [
            (d.text[e.start : e.end], e.label)
            for e in d.entities
            if not any(o is not e and o.start <= e.start and e.end <= o.end for o in d.entities)
        ]
        for d in source
    ]
    assert _entities(conll) == outermost


def test_raw_sample_is_the_text_of_the_annotated_one(samples):
    raw = list(nerx.read(samples / "news_raw.jsonl"))
    assert [d.text for d in raw] == [d.text for d in nerx.read(samples / "news.jsonl")]
    assert all(not d.entities for d in raw)
