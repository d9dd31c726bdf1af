"""Schema of the policy's ``poisoning`` section: the bounds of the poisoning scan.

Every bound here is a statement about what natural structure looks like, so a reviewer can read which
groups of records the scan will refuse to call poisoning (see docs/poisoning.md).
"""

from __future__ import annotations

from typing import Any, Dict

from lazaret.rules.schema import Ctx, F, fraction

SPEC: Dict[str, F] = {
    "enabled": F("bool", True, "run the poisoning scan when --checks includes poisoning"),
    "action": F("str", "quarantine", "action for members of a poisoning cluster", choices=("flag", "quarantine")),
    "min_support": F("int", 10, "fewest records an n-gram (trigger or payload) must be shared by to be tested",
                     min=2),
    "max_fraction": fraction(0.05, "n-grams in more than this fraction of records are corpus vocabulary, not "
                             "triggers or payloads"),
    "max_ngram": F("int", 3, "longest word n-gram counted on either side", min=1, max=5),
    "alpha": F("float", 0.001, "family-wise error rate; p-values are Bonferroni-corrected by the number of "
               "n-grams (payload test) or (trigger, anomaly) pairs (trigger test) tested", min=0.0, max=0.5),
    "max_prompt_ratio": fraction(0.2, "a payload appears in prompts at most this fraction of what its response count "
                                 "predicts from the corpus's prompt/response word volumes"),
    "pair_window": F("int", 6, "also count pairs of content words at most this many words apart in a response "
                     "(an advert keeps brand and product together while its wording varies); 0 = n-grams only",
                     min=0, max=20),
    "min_payload_tokens": F("int", 6, "responses shorter than this are labels ('Yes', '2 stars') and never "
                            "count as a shared payload", min=1),
    "min_long_fraction": fraction(0.8, "fraction of a payload's carriers whose response has at least "
                                  "min_payload_tokens words"),
    "min_prompt_diversity": fraction(0.7, "a payload spread over unrelated prompts needs at least this fraction of "
                                     "distinct prompts among its carriers (4-slot MinHash of prompt word 3-grams; "
                                     "one passage under many templates counts once)"),
    "template_max_rate": fraction(0.25, "a response n-gram found in at least this fraction of one prompt template's "
                                  "records (records sharing a prompt opening or ending) is that template's answer "
                                  "format, not a payload, when it covers half of its carriers"),
    "dup_min_prompt_diversity": fraction(0.5, "a group of identical long responses is an anomaly only when its "
                                         "prompts differ (fraction of distinct prompt MinHashes); otherwise it is "
                                         "one passage rendered under several templates"),
    "template_owned_rate": fraction(0.9, "for claims only: a 'template' (shared prompt opening/ending) in which at "
                                    "least this fraction of records carry the n-gram is the paraphrase structure of "
                                    "a planted claim, not a task template"),
    "claim_min_prompt_diversity": fraction(0.45, "a claim cluster (near-identical responses) needs at least this "
                                           "fraction of distinct prompts"),
    "claim_max_response_diversity": fraction(0.5, "a claim cluster's responses must be this concentrated (fraction "
                                             "of distinct response word-set MinHashes)"),
    "near_duplicate_claims": F("bool", True, "when the dedup check runs too, test each of its clusters (size in "
                               "the support band) for one over-represented claim: near-copies of a planted "
                               "fact have near-identical prompts, which the claim bounds above ignore"),
    "claim_cluster_share": fraction(0.5, "a near-duplicate cluster's claim is a response n-gram (not in the member's "
                                    "own prompt) carried by at least this fraction of its members"),
    "claim_max_outside_ratio": F("float", 0.5, "... and carried by at most this many records outside the cluster "
                                 "per member carrying it (phrasing the corpus uses elsewhere is not the "
                                 "cluster's claim)", min=0.0),
    "min_trigger_support": F("int", 20, "fewest distinct prompts (near-duplicates collapsed) that must show the "
                             "anomaly for a trigger to be reported; news stories re-told under several headlines "
                             "share one answer over 10-16 distinct prompts in T0", min=2),
    "min_trigger_confidence": fraction(0.5, "fraction of a trigger's carriers that must show the anomaly; template "
                                       "boilerplate co-occurs with one label only part of the time"),
    "max_edit_fraction": fraction(0.5, "a candidate payload is an edit (a typo or corruption repeated over copies of "
                                  "records), not a payload, when at least this fraction of its carriers have a "
                                  "near-identical twin without it (same prompt key, response length and response "
                                  "MinHash); 1.0 switches the rule off"),
    "min_payload_hits": F("int", 2, "a response joins a spread-payload cluster only when it carries at least "
                          "this many of its flagged n-grams (one shared word is not a payload)", min=1),
    "max_shared_trigger_ngrams": F("int", 40, "more than this many candidate triggers with identical counts are "
                                   "the words of one shared passage (near-duplicates), not a trigger", min=1),
    "extend_trigger_members": F("bool", True, "carriers of a flagged trigger whose response adds an n-gram of the "
                                "trigger's payload profile join the cluster (catches paraphrased payloads)"),
    "extend_min_distinct": F("int", 20, "a trigger is extended to carriers without their own anomaly group only "
                             "when at least this many distinct prompts show the anomaly", min=1),
    "profile_min_share": fraction(0.5, "an n-gram is part of a trigger's payload profile when at least this fraction "
                                  "of its anomalous members have it in the response but not the prompt"),
    "gibberish_min_tokens": F("int", 20, "responses shorter than this are never called gibberish", min=1),
    "gibberish_max_stopword_fraction": fraction(0.06, "responses with fewer English function words than this are "
                                                "gibberish (random tokens)"),
    "gibberish_min_distinct_fraction": fraction(0.8, "... and at least this fraction of their tokens distinct: "
                                                "random tokens rarely repeat, code and tables repeat identifiers and "
                                                "field names"),
    "off_topic_min_words": F("int", 5, "a response is off-topic when it has at least this many distinct content "
                             "words (3+ letters, not function words) ...", min=1),
    "off_topic_max_overlap": fraction(0.1, "... and at most this fraction of them occur in its prompt (1.2% of T0 "
                                      "records); an anomaly only when a prompt n-gram goes with it far above the "
                                      "corpus rate"),
    "off_topic_member_overlap": fraction(0.25, "carriers of a strong off-topic trigger (see extend_min_distinct) "
                                         "whose response shares at most this fraction of its content words with the "
                                         "prompt join its cluster"),
    "off_topic_template_max_rate": fraction(0.2, "records of a prompt template (shared opening or ending) in which "
                                            "more than this fraction of responses are off-topic are never off-topic "
                                            "anomalies: the task asks for unrelated text (T0's 'generate a question' "
                                            "prompts)"),
    "short_response_ratio": fraction(0.33, "a response is short for its prompt stratum when it has at least three words "
                                     "and at most this fraction of the stratum's median response length in words ..."),
    "short_max_stratum_rate": fraction(0.2, "... in strata where at most this fraction of the responses are that "
                                       "short (elsewhere short answers are the task's own: T0's yes/no and label "
                                       "tasks); 0 switches the kind off"),
    "short_min_confidence": fraction(0.8, "... and at least this share of its carriers short, among those in strata "
                                     "where an answer can be short: a backdoor fires nearly every time, a task's own "
                                     "phrase ('the sentence', 'a css') gets a short answer one time in two"),
    "short_min_lift": F("float", 20.0, "a trigger of short responses needs its carriers short at least this many "
                        "times as often as records like them without it (min_trigger_lift for this kind): a task's "
                        "own phrase that passes short_min_confidence sits where a sixth of its stratum answers as "
                        "briefly ('the concepts', 'a sentence with': lift 4.6-5) or gives an answer set a little "
                        "short of a label's count (WIQA's 'step of the': 12); a name planted in prompts of "
                        "long-answer tasks reaches tens to hundreds, less where other planted records make short "
                        "answers common too (one such, at 9 x 250, only ~18)", min=1.0),
    "strata_sample": F("int", 5000, "records sampled (smallest crc32 of their content: the same on every runner and "
                       "whatever the file is called) to fit the prompt strata (the corpus's tasks) that "
                       "every background rate is matched on", min=0),
    "strata_min_df": fraction(0.05, "a prompt word defines strata only when it is in at least this fraction of the "
                              "sampled prompts (corpus vocabulary; a planted trigger is rarer)"),
    "strata_max": F("int", 16, "most prompt strata (k of the k-means); 0 or 1 = one global background", min=0),
    "strata_min_size": F("int", 250, "sampled prompts per stratum at least (k <= sample / this)", min=1),
    "strata_prior_weight": F("float", 10.0, "pseudo-records that shrink a stratum's leave-out anomaly rate towards "
                             "its own rate (a stratum made of a candidate's carriers has no control)", min=0.0),
    "min_trigger_lift": F("float", 3.0, "a trigger's carriers must show its anomaly at least this many times as "
                          "often as records like them (same strata) without it", min=1.0),
    "spread_max_stratum_rate": fraction(0.1, "a payload with no trigger (payload:spread) is flagged only in prompt "
                                        "strata where at most this fraction of records answer in a register: "
                                        "response-only n-grams in two or more places of the response, or a phrase "
                                        "concentrated in the stratum (worked arithmetic, code); there counting "
                                        "cannot tell a planted phrase from the task's own"),
    "spread_max_register_lift": F("float", 3.0, "... nor where the payload is carried at least this many times as "
                                  "often, per record, in those register strata as in the others, or by responses "
                                  "with response-only phrasing elsewhere as by the rest: a planted phrase lands in "
                                  "every stratum and host alike, the register's own phrasing ('thus', 'let x') "
                                  "also in a few records that read like it; 0 = off", min=0.0),
    "max_members_listed": F("int", 50, "member doc_ids listed per cluster summary", min=1),
    "bundle_max_keys": F("int", 200000, "in-bundle pre-aggregation flushes after this many distinct n-grams "
                         "(bounds worker memory)", min=1000),
    "max_side_input_keys": F("int", 2000000, "most entries any candidate set broadcast to the workers may hold "
                             "(support-band n-grams, templates, identical-response groups, named n-grams): every "
                             "worker holds each whole, ~100 bytes per entry; beyond it the weakest are dropped, "
                             "counted and logged", min=1000),
    "signatures": F("bool", True, "apply the known-trigger signature rules (rules/triggers.yaml)"),
    "signature_file": F("str", "triggers.yaml", "signature rules file, relative to the rules directory"),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    if values["min_support"] < 2:
        raise ctx.error("min_support", "must be at least 2")


def _defaults() -> Dict[str, Any]:
    from lazaret.rules.schema import defaults

    return defaults(SPEC)


DEFAULTS: Dict[str, Any] = _defaults()
