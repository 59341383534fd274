"""Container image references, checked by the grammar every container runtime parses them
with (github.com/distribution/reference, the OCI/Docker one):

    reference := name [":" tag] ["@" digest]
    name      := [domain[":" port] "/"] path-component ["/" path-component]*   (at most 255 characters)
    path-component := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
    tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest    := algorithm ":" hex                 (algorithm [A-Za-z][A-Za-z0-9]* joined by + . _ -;
                                                    at least 32 hex digits)

A reference the grammar refuses would only fail later, on the node, as InvalidImageName;
`problem` says what is wrong with it in words, before any Job exists.
"""

from __future__ import annotations

import re
from typing import Final

NAME_MAX: Final = 255
TAG_MAX: Final = 128

_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"


def _name(alnum: str) -> re.Pattern[str]:
    component = rf"{alnum}(?:(?:[._]|__|-+){alnum})*"
    return re.compile(rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{component}(?:/{component})*)")


_NAME: Final = _name("[a-z0-9]+")
_NAME_ANY_CASE: Final = _name("[a-zA-Z0-9]+")  # tells an uppercase letter from a broken name
_TAG: Final = re.compile(r"[\w][\w.-]*", re.ASCII)
_DIGEST: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHOWN_MAX: Final = 300  # a quoted part of a message is cut to this many characters


def shown(text: str) -> str:
    """`text` quoted for a message, cut when long: the message goes to Colonies as an error."""
    return repr(text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX - 3] + "...")


def _split(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest). Unambiguous: no part but the digest holds "@", and the tag is
    after the last ":" that follows the last "/" (an earlier ":" is the registry's port)."""
    rest, at, digest = image.partition("@")
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        return rest[:colon], rest[colon + 1:], digest if at else None
    return rest, None, digest if at else None


def _name_problem(name: str) -> str | None:
    if len(name) > NAME_MAX:
        return f"the repository name is {len(name)} characters long, at most {NAME_MAX}"
    if _NAME.fullmatch(name):
        return None
    if found := _NAME_ANY_CASE.fullmatch(name):
        domain = f"{found['domain']}/" if found["domain"] else ""
        return f"uppercase letters in the repository name are not allowed: write {domain + found['path'].lower()!r}"
    return (f"the repository name {shown(name)} must be [registry[:port]/]path/to/repository, each part of the path "
            "lowercase letters and digits, separated by '.', '_', '__' or '-'")


def _tag_problem(tag: str) -> str | None:
    if not tag:
        return "the tag after ':' is empty"
    if not _TAG.fullmatch(tag):
        return f"the tag {shown(tag)} must be letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    if len(tag) > TAG_MAX:
        return f"the tag is {len(tag)} characters long, at most {TAG_MAX}"
    return None


def problem(image: str) -> str | None:
    """What makes `image` an invalid reference, in words; None for a valid one."""
    name, tag, digest = _split(image)
    if digest is not None and not _DIGEST.fullmatch(digest):
        return f"the digest {shown(digest)} must be <algorithm>:<at least 32 hex digits>, e.g. 'sha256:<64 hex>'"
    return _name_problem(name) or (_tag_problem(tag) if tag is not None else None)
