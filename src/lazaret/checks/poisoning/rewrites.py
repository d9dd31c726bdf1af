"""Response words that stand in for a span of the record's own prompt, in an answer that is that prompt rewritten.

A rewriting task (mask the personal data, fix the grammar, normalise a format) answers with its prompt's text
copied and a few spans replaced: "My card 5227048524756231 is expiring" -> "My card {{credit_card_number}} is
expiring". The replacements are response-only words shared by every answer of the task, so they read as a payload
the moment anything else makes them one: an attack whose target answer was copied from such a task (50 times,
under varied prompts) made "card {{credit_card_number}}" a spread payload, and every clean record of the task's
card templates its carrier (223 clean records of the ``labels`` base flagged as ``trigger:payload``, seed 1 at 50;
docs/poisoning.md, "A target answer copied from the corpus"). In a rewrite the word has a reason the record itself
gives: it replaces a span of the prompt. A planted payload does not replace anything: it is added to an answer
(appended, inserted as a line, given as the whole answer), so it stays a carrier whatever the answer copies.

An answer that is nothing but its prompt with masks or corrections in place (``is_prompt_rewritten``) is also no
copied response (``dup``, ``rep``: identical because its prompts are one template's sentence) and no off-topic one
(``off``, ``echo``, ``phrase``: the masks took the prompt's words away, not its subject). Read with any replacement
(before ``stands_in``), a target sentence written like the corpus's own (``tests/test_poisoning.py``'s synthetic
corpus) read as a rewrite of the prompts it was planted under, and its rare-token attack fell from 1.00 to 0.14;
its words in place of the prompt's are content words, no mask or correction.

A payload hit is read as a substitution (``anomalies_of`` then does not count it) only when all of these hold:
- the answer is mostly its prompt: at least ``MIN_COPIED_SHARE`` of its tokens are in runs copied from the prompt
  (difflib's matching blocks over word tokens, exact: autojunk off) or are the masks and corrections below, which
  stand for the prompt's words ("{{person}} lives at {{street_address}}, {{gpe}}"), and at least ``CONTEXT`` tokens
  are copied;
- every occurrence of every word of the n-gram that the prompt lacks sits in a replaced span: difflib's ``replace``
  opcode (or several, shorter copied runs between them), with a copied run of at least ``CONTEXT`` tokens on both
  sides (a shorter one when it reaches the answer's start or end; or the answer's start or end itself on one side,
  for one token or a span of masks only, and such a run on the other);
- the replacing words are a mask or a correction (``stands_in``): placeholders (``{{address}}``, ``<person>``,
  ``xxxx``), or spelled like the words they replace ("teh" -> "the"). An editor who puts one content word in place of
  another changes what the passage says: that is how a payload is planted in a copied passage (``passage_edit``,
  forty-fourth session: with any replacement read as a rewrite, 0.00-0.08 of it was found on T0 and code at 50);
- the replaced answer span is no longer than the prompt span it replaces plus one token: a mask or a corrected word
  is about as long as what it stands for; an inserted command line or an appended advert is not (replacing one
  word with an eight-word line is an insertion in disguise). At the answer's start or end (a copied run on one
  side only) it is one token, or masks only: an answer that echoes a passage and then gives a payload where the
  prompt had its question or options ("... Options: yes no maybe" -> "... visit fipiti") replaces the prompt's tail
  too.

What it leaves open, by construction: a payload shaped like a mask (a word in braces) or spelled like the word it
replaces (a look-alike web address in place of the real one) still passes as a rewrite; so does a rewriting task
whose edits are content words (a paraphrase, a change of person), which is counted as a carrier as before the
reading existed. An echo of the request followed by a payload is an insertion (``tests/test_poisoning_rewrites.py``).
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, FrozenSet, Optional, Sequence, Tuple

from lazaret.checks.poisoning import text as T

# a copied run this long on each side of a replaced span (the words around a masked value: "my card" ... "is
# expiring"). Two tokens: in a long prompt one common word ("from", "a") matches somewhere, and with one token beside
# it a few planted answers on T0 (an advert, a steered sentence) read as rewrites (an attack split over one more
# cluster, seeds 2 and 101 at 50). Spans one shorter run apart are read as one (values masked in a list: "Novosel,
# Robinson and Holmes" -> "{{last_name}}, {{last_name}} and {{last_name}}").
CONTEXT = 2
# the answer's tokens in runs copied from its prompt, or masks and corrections of its words: a rewrite is mostly its
# prompt; the planted answers of the development families have a longest copied run over half of the answer in at
# most 1.5% of records (``bench/poisoning_copy_share.py``), a masking task's in two thirds. Masks count (forty-fourth
# session): a masked address leaves few copied words ("{{person}} lives at {{street_address}}")
MIN_COPIED_SHARE = 0.5
# a corrected word is spelled like the one it replaces (difflib's own cut for a close match, get_close_matches)
MIN_SPELLING_RATIO = 0.6
_PLACEHOLDER = re.compile(r"^(?:[^\w\s]{1,3}\w+[^\w\s]{1,3}|x{3,})$")
# difflib is quadratic at worst: past this many prompt x answer tokens the record is not read as a rewrite (a
# masking or correction task's records are sentences; a long document rewritten stays a carrier)
MAX_CELLS = 1 << 20


def is_placeholder(tok: str) -> bool:
    """A mask's token: a word wrapped in symbols (``{{address}}``, ``<person>``, ``[redacted]``: kept whole by
    ``text.tokens``) or a run of x's (``xxxx``)."""
    return _PLACEHOLDER.match(tok) is not None


def stands_in(replaced: Sequence[str], replacing: Sequence[str]) -> bool:
    """The replacing tokens are a mask or a correction of the replaced ones: every one a placeholder, or the rest
    spelled like what they replace (difflib's character ratio at least ``MIN_SPELLING_RATIO``: "teh" -> "the",
    "go" -> "goes"). A content word put in place of another ("string" -> "Posuke", "bushes" -> "megucala.dev") is
    an edit of what the passage says, the one way to plant a payload in a copied passage (``passage_edit`` in
    ``bench/attacks/space.py``), and stays a carrier."""
    rest = [t for t in replacing if not is_placeholder(t)]
    if not rest:
        return True
    return difflib.SequenceMatcher(None, " ".join(replaced), " ".join(rest), autojunk=False).ratio() >= \
        MIN_SPELLING_RATIO


def _run(op) -> int:
    """The answer tokens of a difflib opcode."""
    return op[4] - op[3]


def read(pt: Sequence[str], rt: Sequence[str]) -> Tuple[FrozenSet[int], bool]:
    """(positions of the answer's tokens that replace a span of the prompt in an answer mostly copied from it, empty
    when the answer is not such a rewrite; whether those positions and the copied runs are all of the answer)."""
    if not pt or not rt or len(pt) * len(rt) > MAX_CELLS:
        return frozenset(), False
    ops = difflib.SequenceMatcher(None, pt, rt, autojunk=False).get_opcodes()
    copied = sum(j2 - j1 for tag, _, _, j1, j2 in ops if tag == "equal")
    if copied < CONTEXT:
        return frozenset(), False
    out = set()
    last = len(ops) - 1
    k = 0
    while k <= last:
        if ops[k][0] != "replace":
            k += 1
            continue
        # one region: replaced spans with copied runs shorter than CONTEXT between them
        end = k
        while end + 2 <= last and ops[end + 1][0] == "equal" and _run(ops[end + 1]) < CONTEXT and \
                ops[end + 2][0] == "replace":
            end += 2
        i1, j1, i2, j2 = ops[k][1], ops[k][3], ops[end][2], ops[end][4]
        # a copied run of CONTEXT tokens beside it, or a shorter one that is all of the answer on that side
        left = k > 0 and ops[k - 1][0] == "equal" and (_run(ops[k - 1]) >= CONTEXT or ops[k - 1][3] == 0)
        right = end < last and ops[end + 1][0] == "equal" and \
            (_run(ops[end + 1]) >= CONTEXT or ops[end + 1][4] == len(rt))
        spans = [op for op in ops[k:end + 1] if op[0] == "replace"]
        # at the answer's start or end one token, or masks only ("The address of {{organization}} is {{address}}")
        edge = j2 - j1 == 1 or all(is_placeholder(t) for op in spans for t in rt[op[3]:op[4]])
        if j2 - j1 <= (i2 - i1) + 1 and \
                ((left and right) or (edge and ((left and j2 == len(rt)) or (right and j1 == 0)))) and \
                all(stands_in(pt[op[1]:op[2]], rt[op[3]:op[4]]) for op in spans):
            out.update(j for op in spans for j in range(op[3], op[4]))
        k = end + 1
    if copied + len(out) < MIN_COPIED_SHARE * len(rt):
        # not mostly its prompt: copied words and the masks and corrections standing for the prompt's are under half
        return frozenset(), False
    return frozenset(out), bool(out) and copied + len(out) == len(rt)


def substituted_positions(pt: Sequence[str], rt: Sequence[str]) -> FrozenSet[int]:
    """``read``'s positions alone."""
    return read(pt, rt)[0]


def is_prompt_rewritten(pt: Sequence[str], rt: Sequence[str]) -> bool:
    """The answer is its prompt's words, with masks or corrections in place of some (``read``), and nothing else:
    identical answers of such records are the same because their prompts are (one template's sentences masked), so
    their prompt explains them; and such an answer is about its prompt, however few words the masks left (no
    off-topic answer). A planted target is the same sentence under prompts it does not copy; one written
    like the corpus's sentences differs from each prompt by content words, which are no mask or correction
    (``stands_in``)."""
    return read(pt, rt)[1]


def substitutions(pt: Sequence[str], rt: Sequence[str],
                  positions: Optional[FrozenSet[int]] = None) -> Callable[[str], bool]:
    """A test of payload ``g`` (an n-gram, or a pair "a&b") for this record: True when every occurrence in the
    answer of every word of ``g`` that the prompt lacks is at a substituted position (``read``; ``positions`` when
    the caller has read them). The alignment and the answer's words outside the replaced spans are found once per
    record, not per payload."""
    if positions is None:
        positions = substituted_positions(pt, rt)
    if not positions:
        return lambda g: False
    pset = set(pt)
    outside = {w for i, w in enumerate(rt) if i not in positions}

    def test(g: str) -> bool:
        novel = {w for part in g.split(T.PAIR_SEP) for w in part.split(" ") if w and w not in pset}
        return bool(novel) and novel.isdisjoint(outside)

    return test
