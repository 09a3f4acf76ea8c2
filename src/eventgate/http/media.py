"""Media types: parsing Content-Type, negotiating Accept, and 5LMT response types.

"Five levels of media type" (reference 004): a response names its format, its domain model
and the model's version as parameters; a request names its command in `domain-model`.
Parameter values are percent-encoded where they hold characters a token cannot (RFC 9110
§8.3.1), so `format=application%2Fjson`, and never empty (`version=1`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

__all__ = ["JSON", "XML", "MediaType", "negotiate", "parse_media_type", "response_type"]

JSON = "application/json"
XML = "application/xml"
_XML_ALIASES = {"application/xml": XML, "text/xml": XML}


@dataclass(frozen=True)
class MediaType:
    """A media type with lower-cased type and parameter names, values percent-decoded."""

    type: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def is_json(self) -> bool:
        return self.type == JSON or self.type.endswith("+json")


def parse_media_type(header: str) -> MediaType | None:
    """Parse one media type; None when it is malformed."""
    main, *rest = header.split(";")
    kind = main.strip().lower()
    if kind.count("/") != 1 or not all(kind.split("/")):
        return None
    params: dict[str, str] = {}
    for item in rest:
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            return None
        params[name.strip().lower()] = unquote(value.strip().strip('"'))
    return MediaType(kind, params)


def negotiate(accept: str | None, offers: tuple[str, ...] = (JSON, XML)) -> str | None:
    """The offer with the highest q-value (RFC 9110 §12.5.1); the first offer wins ties and
    answers a missing Accept. For each offer the most specific matching range decides."""
    if not accept or not accept.strip():
        return offers[0]
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media = parse_media_type(item)
        if media is None:
            continue
        try:
            ranges.append((media.type, float(media.params.get("q", "1"))))
        except ValueError:
            continue
    best: tuple[float, str] | None = None
    for offer in offers:
        matching = [(_specificity(kind), q) for kind, q in ranges if _matches(kind, offer)]
        if not matching:
            continue
        q = max(matching)[1]
        if q > 0 and (best is None or q > best[0]):
            best = (q, offer)
    return None if best is None else best[1]


def _matches(pattern: str, offer: str) -> bool:
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return offer.startswith(pattern[:-1])
    return _XML_ALIASES.get(pattern, pattern) == offer


def _specificity(pattern: str) -> int:
    return 0 if pattern == "*/*" else 1 if pattern.endswith("/*") else 2


def response_type(fmt: str, domain_model: str, version: int = 1) -> str:
    """The 5LMT Content-Type of a response in `fmt` carrying `domain_model`."""
    encoded = quote(fmt, safe="")
    return (
        f"{fmt}; charset=utf-8; domain-model={quote(domain_model, safe='')}; version={version};"
        f" format={encoded}; schema={encoded}; is-text=true"
    )
