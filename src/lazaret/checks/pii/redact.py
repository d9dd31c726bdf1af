"""Write ``<ENTITY>`` placeholders with presidio-anonymizer in linear time, whatever the text's length.

presidio-anonymizer rebuilds the whole output string once per replaced span (``TextReplaceBuilder``), so one
call costs spans x length: a 5.6 MB record holding ~130,000 phone numbers and e-mail addresses never
finished (issue 19, item 9). Its conflict rules (overlapping spans, same-type intersections, same-type
spans separated only by spaces merged into one placeholder) only ever relate spans that overlap, touch or
are separated by spaces. So the text is cut into segments of about ``SEGMENT_CHARS`` between such clusters
of spans, each segment is anonymised on its own by the same engine, and the pieces are joined: the output
is the one a single call would give, at a cost linear in the length. Only a cluster longer than
``HARD_LIMIT_CHARS`` (a hostile run of space-separated values) is cut at a space between two spans, which
writes two placeholders where one call would write one: every value is still replaced.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

SEGMENT_CHARS = 16_000
HARD_LIMIT_CHARS = 64_000


def _segments(text: str, spans: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Cut points (segment start, end) that never fall inside a cluster of related spans (``spans`` sorted
    by start)."""
    cuts: List[Tuple[int, int]] = []
    seg_start = 0
    reach = -1  # furthest end of the spans seen so far
    for start, end in spans:
        if reach >= 0 and start > reach:
            related = not text[reach:start].strip(" ")  # only spaces between: Presidio may merge them
            size = start - seg_start
            if (not related and size >= SEGMENT_CHARS) or size >= HARD_LIMIT_CHARS:
                cut = reach
                cuts.append((seg_start, cut))
                seg_start = cut
        reach = max(reach, end)
    cuts.append((seg_start, len(text)))
    return cuts


def anonymize_text(anonymizer: Any, text: str, spans: Sequence[Tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, entity) replaced by Presidio's default operator (``<ENTITY>``)."""
    from presidio_anonymizer.entities import RecognizerResult

    spans = sorted((s, e, ent) for s, e, ent in spans if 0 <= s < e <= len(text))
    if not spans:
        return text
    if len(text) <= SEGMENT_CHARS:
        results = [RecognizerResult(entity_type=ent, start=s, end=e, score=1.0) for s, e, ent in spans]
        return anonymizer.anonymize(text=text, analyzer_results=results).text
    pieces: List[str] = []
    i = 0
    for seg_start, seg_end in _segments(text, [(s, e) for s, e, _ in spans]):
        results = []
        while i < len(spans) and spans[i][0] < seg_end:
            s, e, ent = spans[i]
            results.append(RecognizerResult(entity_type=ent, start=s - seg_start, end=e - seg_start, score=1.0))
            i += 1
        piece = text[seg_start:seg_end]
        pieces.append(anonymizer.anonymize(text=piece, analyzer_results=results).text if results else piece)
    return "".join(pieces)
