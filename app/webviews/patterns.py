"""A hosted form field's ``pattern``: accepted once, when the message is created, and then
matched in linear time (SPEC §6, §14).

A workspace writes the pattern and a customer writes the value, so the value is matched by
RE2 (``google-re2``), which never backtracks: the time is linear in the value's length
and the pattern's compiled size, and both are bounded here. Python's ``re`` never runs a
workspace's pattern.

The browser checks the same pattern as an HTML ``pattern`` attribute, compiled with the
``v`` flag as ``^(?:pattern)$``. A pattern is accepted only in the subset both engines read
the same way: what RE2 cannot compile (backreferences, lookarounds) is refused, and so are
constructs RE2 accepts but a browser reads differently or refuses (``(?i)``, ``(?P<n>``,
``\\A``, ``\\z``, ``\\Q…\\E``, ``\\pL``, ``[[:alpha:]]``, and the characters the ``v`` flag
wants escaped inside a class).
"""

from __future__ import annotations

import functools
from typing import Any

import re2

MAX_PATTERN_CHARS = 200
# RE2's program size is its count of instructions; matching costs at most one step per
# instruction per character. 2,000 leaves room for any realistic format (a card number is
# ~40, an IBAN with \p{L} ~1,300) and refuses the huge ones that \p classes in counted
# repetitions make.
MAX_PROGRAM_SIZE = 2_000
# Values longer than this are not matched at all: they fail the field ("too long for the
# format"), whatever the pattern says. Patterns are for short formatted input.
MAX_MATCHED_CHARS = 1_000

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the workspace's 422, not our stderr

# Escapes both engines read alike: outside a class (and \b, \B there only), inside one.
_ESCAPES = set("dDwWsStnrfv") | set("^$\\.*+?()[]{}|/")
_CLASS_ESCAPES = _ESCAPES | set("-&!#%,:;<=>@`~")
# Two-letter general categories (\p{Lu}); scripts and binary properties are spelled differently.
_CATEGORIES = frozenset({
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
    "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
    "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Co", "Cs",
})  # fmt: skip
# Inside a class the v flag refuses these unescaped, and any doubled "punctuator".
_CLASS_SYNTAX = set("()[]{}/|")
_DOUBLE_PUNCTUATORS = set("&!#$%*+,.:;<=>?@^`~")


class PatternError(ValueError):
    """Why a pattern cannot be used (the text ends up in the 422's message)."""


def check_pattern(pattern: str) -> None:
    """Raise ``PatternError`` unless the pattern is in the common subset and small enough."""
    compile_pattern(pattern)


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    _check_browser_subset(pattern)
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"pattern is not a valid regular expression: {reason}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise PatternError("pattern is too complex (use fewer or smaller repetitions)")
    return compiled


def matches(pattern: str, value: str) -> bool:
    """Whether the whole value matches, in linear time; over ``MAX_MATCHED_CHARS`` never does."""
    if len(value) > MAX_MATCHED_CHARS:
        return False
    try:
        compiled = compile_pattern(pattern)
    except PatternError:
        # Stored before patterns were checked: a pattern we cannot run safely matches nothing.
        return False
    return compiled.fullmatch(value) is not None


def _check_browser_subset(pattern: str) -> None:
    i, n = 0, len(pattern)
    in_class = False
    class_start = 0
    previous_atom = False  # outside a class: can a quantifier follow here?
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i = _check_escape(pattern, i, in_class)
            previous_atom = True
            continue
        if in_class:
            i, in_class = _check_class_char(pattern, i, class_start)
            previous_atom = not in_class
            continue
        if ch == "[":
            in_class, class_start = True, i
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
                class_start = i - 1
            if i < n and pattern[i] == "]":
                raise PatternError("an empty class or a ']' first in a class reads differently in browsers")
            continue
        if ch == "(":
            _check_group(pattern, i)
            previous_atom = False
            i += 3 if pattern.startswith("(?:", i) else 1
            continue
        if ch == "{":
            end = _quantifier_end(pattern, i)
            if end is None or not previous_atom:
                raise PatternError("escape a literal '{' as '\\{'")
            i = end
            previous_atom = False
            continue
        if ch in "}]":
            raise PatternError(f"escape a literal '{ch}' as '\\{ch}'")
        previous_atom = ch not in "|^$*+?"
        if ch in "*+?" and i + 1 < n and pattern[i + 1] in "*+":
            raise PatternError("possessive quantifiers are not supported")
        i += 1
    if in_class:
        raise PatternError("a class '[' is not closed")


def _check_escape(pattern: str, i: int, in_class: bool) -> int:
    """Index after the escape at ``i``; refuses escapes the two engines read differently."""
    if i + 1 >= len(pattern):
        raise PatternError("pattern ends with a lone backslash")
    esc = pattern[i + 1]
    if esc.isdigit() or esc == "k":
        raise PatternError(
            "backreferences are not supported: compare the values in your form callback instead "
            "(a 422 shows its message under the field)"
        )
    if esc in "pP":
        close = pattern.find("}", i)
        if not pattern.startswith("{", i + 2) or close == -1 or pattern[i + 3 : close] not in _CATEGORIES:
            raise PatternError("use \\p{…} with a general category, e.g. \\p{L} or \\p{Nd}")
        return close + 1
    if esc == "x":
        digits = pattern[i + 2 : i + 4]
        if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise PatternError("write \\x with exactly two hex digits")
        return i + 4
    if esc in "bB" and not in_class:
        return i + 2
    if esc not in (_CLASS_ESCAPES if in_class else _ESCAPES):
        if esc in "AzZ":
            raise PatternError(f"\\{esc} is not read the same way by browsers: leave it out, a pattern "
                               "always matches the whole value")
        raise PatternError(f"\\{esc} is not read the same way by browsers: write it as a class, e.g. [a-z]")
    return i + 2


def _check_class_char(pattern: str, i: int, class_start: int) -> tuple[int, bool]:
    """One unescaped character inside a class: ``(next index, still in the class)``."""
    ch = pattern[i]
    if ch == "]":
        return i + 1, False
    if ch in _CLASS_SYNTAX:
        raise PatternError(f"escape '{ch}' inside a class as '\\{ch}'")
    if ch in _DOUBLE_PUNCTUATORS and pattern.startswith(ch * 2, i):
        raise PatternError(f"'{ch}{ch}' inside a class means something else in browsers")
    if ch == "-":
        # Only as a range between two characters: "a-z". A leading or trailing "-" is refused.
        before = pattern[i - 1] if i - 1 > class_start else ""
        after = pattern[i + 1] if i + 1 < len(pattern) else ""
        ends_a_range = i - 2 > class_start and pattern[i - 2] == "-"
        if not before or ends_a_range or after in ("]", "-", ""):
            raise PatternError("escape a literal '-' inside a class as '\\-'")
    return i + 1, True


def _check_group(pattern: str, i: int) -> None:
    if not pattern.startswith("(?", i):
        return
    if pattern.startswith("(?:", i):
        return
    if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
        raise PatternError(
            "lookarounds are not supported: check that rule in your form callback instead "
            "(a 422 shows its message under the field)"
        )
    if pattern.startswith("(?<", i):
        return  # a named group (?<name>…), read alike by both
    raise PatternError(
        "inline flags and (?P<…>) groups are not read the same way by browsers: spell both cases "
        "([Aa]) and name a group (?<name>…)"
    )


def _quantifier_end(pattern: str, i: int) -> int | None:
    """End of a ``{n}``, ``{n,}`` or ``{n,m}`` quantifier at ``i``, else ``None``."""
    close = pattern.find("}", i)
    if close == -1:
        return None
    body = pattern[i + 1 : close]
    low, comma, high = body.partition(",")
    if not low.isdigit() or (high and not high.isdigit()) or (not comma and high):
        return None
    return close + 1
