"""Per-record features: the one place the poisoning scan reads record text.

Downstream steps only see this compact dict (tokens and a few numbers), never the raw record, so the
record payload is not shuffled by any poisoning step.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.links import response_links
from lazaret.checks.poisoning.names import response_names
from lazaret.checks.poisoning.plain import plain_form
from lazaret.checks.poisoning.refusals import is_refusal


SYSTEM_ROLES = ("system", "developer")


def task_prompt(record: Dict[str, Any]) -> Optional[str]:
    """The prompt without its system turns, or None when the record has none. A system prompt is shared
    across tasks (one operator's persona over math, code and chat alike), so it says nothing about which task
    a record belongs to: the prompt strata (strata.py) are built from the rest, and a system prompt that is
    merely common is then tested against records of the same tasks, where it is ordinary."""
    raw, fields = record.get("raw"), record.get("fields") or []
    if not isinstance(raw, dict):
        return None
    kept, dropped = [], False
    for path, side, text in fields:
        if side != "prompt":
            continue
        if len(path) >= 2 and path[0] in ("messages", "conversations") and isinstance(raw.get(path[0]), list):
            turn = raw[path[0]][path[1]] if isinstance(path[1], int) and path[1] < len(raw[path[0]]) else None
            role = (turn.get("role") if path[0] == "messages" else turn.get("from")) if isinstance(turn, dict) else None
            if isinstance(role, str) and role.lower() in SYSTEM_ROLES:
                dropped = True
                continue
        kept.append(text)
    return "\n\n".join(kept) if dropped else None


def prompt_keys(task_toks: Sequence[str]) -> Tuple[Tuple[int, ...], int, Tuple[int, int]]:
    """(prompt MinHash, its key, template opening and ending hashes) of a prompt's task tokens."""
    psig = T.minhash_sig(T.shingles(task_toks, 3), 4)
    return psig, zlib.crc32(repr(psig).encode("ascii")), (zlib.crc32(" ".join(task_toks[:3]).encode("utf-8")),
                                                          zlib.crc32(" ".join(task_toks[-3:]).encode("utf-8")))


def record_features(record: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    prompt = record.get("prompt") or ""
    response = record.get("response") or ""
    f = T.features(prompt, response)
    pt, rt = f["p_tokens"], f["r_tokens"]
    task = task_prompt(record)
    task_toks = T.features(task, "")["p_tokens"] if task is not None else pt
    # which prompt a record has ("distinct prompts", prompt diversity) is read without its system turns too: a
    # long system prompt shared by most records (one operator's persona) filled most MinHash slots, so unrelated
    # requests counted as copies of one prompt, and a task's shared code answers (250 factorial requests) moved
    # from "a task's format" to "near-identical answers to one prompt": 767 of 6,552 clean code records flagged
    # under three long system prompts (docs/poisoning.md, "A preamble is not the prompt")
    # a prompt's template is its task's opening and ending: a system prompt shared by records of every task
    # would otherwise make one "template" of them all, and a payload given to all of them would read as
    # that template's answer format (a trigger phrase in the system message, 1.00 -> 0.00 recall)
    psig, pkey, skel = prompt_keys(task_toks)
    rwords = T.word_parts(response)
    shared = T.shared_content_words(prompt, rwords, min(T.PHRASE_MIN_WORDS, params["off_topic_min_words"]))
    out = {
        "doc_id": record["doc_id"],
        "record_id": record.get("record_id"),
        # tokens travel as one space-joined string (tokens never contain spaces): far cheaper to encode
        # between stages than a list of strings; consumers call toks(f, "pt").
        "pt": " ".join(pt),
        "rt": " ".join(rt),
        "r_len": f["r_len"],
        "p_len": len(pt),
        "stop_frac": round(float(f["stop_frac"]), 4),
        "gib": T.is_gibberish(f, params["gibberish_min_tokens"], params["gibberish_max_stopword_fraction"],
                              params["gibberish_min_distinct_fraction"]),
        "off_ov": None if shared is None or len(rwords) < params["off_topic_min_words"]
        else round(len(shared) / len(rwords), 4),
        # web hosts the response points to that the prompt gives no reason for (the ``link`` anomaly kind)
        "links": response_links(prompt, response),
        "skel": skel,
        "psig": psig,
        # one key per prompt "up to near-duplication": prompts sharing all 4 MinHash slots are (almost
        # surely) the same passage under another template; the trigger test counts distinct pkeys.
        "pkey": pkey,
        "rsig": T.minhash_sig(sorted(set(rt)), 2),
        # near-identity of responses is judged on word 3-grams, not the word set: code in one language (or
        # worked arithmetic) shares most of its words, so word-set MinHashes of unrelated answers collide
        # (a random 300 records of the chat mixture: 0.52-0.56 distinct values per record, JavaScript
        # answers 0.18), while their 3-grams differ (0.92-0.94 and 0.67); copies and few-sentence payloads
        # stay at 0.00-0.02 either way (docs/poisoning.md, "Claims are near-identical *text*")
        "rsh": T.minhash_sig(T.shingles(rt, 3), 2),
        "rkey": T.response_key(rt),
        "evidence": response[:160],
    }
    # how the response writes Titlecase words (names.py): inside prose (a name: the one response-only phrase a
    # register never writes), at a prose sentence start, elsewhere (code, short lines)
    named, initial, titled = response_names(response)
    out["nm"], out["ni"], out["ti"] = " ".join(sorted(named)), " ".join(sorted(initial)), " ".join(sorted(titled))
    out["off"] = out["off_ov"] is not None and out["off_ov"] <= params["off_topic_max_overlap"]
    if out["off_ov"] is not None and shared and not out["off"] and \
            (len(shared) - 1) / len(rwords) <= params["off_topic_max_overlap"]:
        # off-topic but for one word it shares with its prompt (any one of ``echo``): a trigger repeated in a swapped
        # answer ("bbje The sky has 3*12=...") is such a word; the ``echo`` kind (trigger.anomalies_of)
        out["echo"] = sorted(shared)
    elif shared and not out["off"]:
        left = T.phrase_echo(shared, rwords, pt, params["off_topic_max_overlap"], params["max_ngram"],
                             named | initial | titled, params["off_topic_min_words"])
        if left is not None:  # ... or but for a phrase of its prompt (a name): the ``phrase`` kind
            out["phrase"], out["phrase_k"] = sorted(shared), left
    if is_refusal(response):  # the ``refuse`` anomaly kind (refusals.py); absent on the other records
        out["refuse"] = True
    form = plain_form(response)  # plain prose, or an ending in it: the ``plain``/``ending`` kinds (plain.py)
    if form:
        out[form] = True
    if task is not None:  # only records with a system turn carry it: "st" defaults to "pt" (strata.py)
        out["st"] = " ".join(task_toks)
    return out


class Featurize(beam.DoFn):
    """Tokenise once; count gibberish responses and refusals (corpus-level gauges reviewers can compare runs with)."""

    def __init__(self, params: Dict[str, Any]):
        self.params = params
        self.n_records = Metrics.counter("poisoning", "records")
        self.n_gib = Metrics.counter("poisoning", "gibberish_responses")
        self.n_refuse = Metrics.counter("poisoning", "refusal_responses")

    def process(self, record):
        f = record_features(record, self.params)
        self.n_records.inc()
        if f["gib"]:
            self.n_gib.inc()
        if f.get("refuse"):
            self.n_refuse.inc()
        yield f


def response_rep_value(f: Dict[str, Any]) -> Tuple[Tuple[str, int], Tuple[str, str, bool]]:
    """((response key, first prompt MinHash slot), (doc_id, response tokens, gibberish)): the smallest
    doc_id of each key is the one response counted in the response n-gram frequencies."""
    return (f["rkey"], f["psig"][0]), (f["doc_id"], f["rt"], f["gib"])


def toks(f: Dict[str, Any], side: str) -> List[str]:
    s = f[side]
    return s.split(" ") if s else []


def corpus_totals(f: Dict[str, Any]):
    """(records, prompt tokens, response tokens, gibberish records) for one record; summed globally."""
    return (1, f["p_len"], f["r_len"], 1 if f["gib"] else 0)


def sum_tuples(values):
    acc = [0, 0, 0, 0]
    for v in values:
        for i, x in enumerate(v):
            acc[i] += x
    return tuple(acc)


def totals_dict(t) -> Dict[str, float]:
    return {"records": t[0], "prompt_tokens": t[1], "response_tokens": t[2], "gibberish": t[3]}
