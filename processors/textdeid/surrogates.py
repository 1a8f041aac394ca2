"""Stand-ins for the identifiers found ("hide in plain sight") or typed tags.

Every choice is keyed: HMAC-SHA256 of the secret key, the patient and the original value, so the same
original gets the same surrogate everywhere in the patient's reports (a name repeated in a report stays
one person) and nobody without the key can go back. Shapes are kept (digits for digits, letters for
letters, punctuation as is) so downstream parsing of a report's layout still works.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import cache

from processors.textdeid.rules import rules, words
from processors.textdeid.types import Mode


@cache
def _name_word() -> re.Pattern[str]:
    """A word of a name in any script, with combining marks, so "Dvořák" is one word, not "Dvo" + "řák"
    (character classes of rules.py: as fast as the ASCII ones were)."""
    d = rules().defs
    word_char = d["LETTER"][:-1] + "'\u2019]"
    return re.compile(rf"{d['LETTER']}{word_char}*(?:-{d['LETTER']}+)*\.?")


@cache
def _lists() -> dict[str, tuple[str, ...]]:
    r = rules()
    return {
        "first": tuple(sorted(w.capitalize() for w in r.first_names)),
        "last": tuple(sorted(w for w in words("surnames.txt") if w.lower() not in r.eponyms)),
        "city": tuple(words("surrogate_cities.txt")),
        "street": tuple(words("surrogate_streets.txt")),
        "institution": tuple(words("surrogate_institutions.txt")),
    }


class Surrogates:
    def __init__(self, key: bytes, patient: str, mode: Mode) -> None:
        self.key = key
        self.patient = patient
        self.mode = mode

    def _n(self, kind: str, value: str) -> int:
        msg = f"{kind}\x1f{self.patient}\x1f{value}".encode()
        return int.from_bytes(hmac.new(self.key, msg, hashlib.sha256).digest()[:8], "big")

    def number(self, kind: str, value: str) -> int:
        """A keyed number for ``value`` (same key, patient and value: same number)."""
        return self._n(kind, value)

    def _pick(self, kind: str, value: str, options: tuple[str, ...]) -> str:
        n = self._n(kind, value.lower())
        choice = options[n % len(options)]
        if choice.lower() == value.lower() and len(options) > 1:
            choice = options[(n + 1) % len(options)]
        return choice

    def shape(self, kind: str, value: str, letters: bool = True) -> str:
        """Same shape: each digit -> a keyed digit, each letter -> a keyed letter of the same case (kept
        when ``letters`` is False: "ext." of a phone number)."""
        n = self._n(kind, value)
        out = []
        for i, ch in enumerate(value):
            r = (n >> (i % 56)) + i * 7919
            if ch.isdigit():
                out.append(str((int(ch) + 1 + r % 9) % 10))
            elif letters and ch.isalpha():  # any script: an ID's non-ASCII letter is replaced too
                letter = chr(ord("a") + (r % 26))
                out.append(letter.upper() if ch.isupper() else letter)
            else:
                out.append(ch)
        return "".join(out)

    def name(self, value: str) -> str:
        def one(m: re.Match[str]) -> str:
            w = m.group()
            if len(w.rstrip(".")) == 1:  # an initial
                return chr(ord("A") + self._n("initial", w[0].upper()) % 26) + w[1:]
            kind = "first" if w.lower() in rules().first_names else "last"
            new = self._pick(kind, w, _lists()[kind])
            return new.upper() if w.isupper() and len(w) > 1 else new

        return _name_word().sub(one, value)

    def replace(self, phi_type: str, value: str) -> str:
        """The stand-in for ``value`` of ``phi_type`` (dates are shifted elsewhere; this is the fallback)."""
        if self.mode == "tag":
            return f"[{phi_type}]"
        if phi_type == "NAME":
            return self.name(value)
        if phi_type == "AGE":
            return "90+"
        if phi_type == "EMAIL":
            return (
                f"{self._pick('first', value, _lists()['first']).lower()}.{self._n('email', value) % 1000}"
                "@example.org"
            )
        if phi_type == "URL":
            if "://" not in value and not value.lower().startswith("www."):  # a host name: stays one
                return f"host-{self._n('url', value) % 100000:05d}.example.org"
            return f"https://www.example.org/{self._n('url', value) % 100000:05d}"
        if phi_type == "IP":
            return f"192.0.2.{1 + self._n('ip', value) % 254}"  # TEST-NET-1 (RFC 5737)
        if phi_type == "STREET":
            m = re.match(r"\s*(\d+)", value)
            number = str(1 + self._n("number", value) % 9899) if m else ""
            suffix = re.search(r"([A-Z][a-z]*\.?)\s*$", value.split(",")[0])
            street = self._pick("street", value, _lists()["street"])
            return " ".join(p for p in (number, street, suffix.group(1) if suffix else "Street") if p)
        if phi_type == "LOCATION":
            return self._pick("city", value, _lists()["city"])
        if phi_type == "INSTITUTION":
            return self._pick("institution", value, _lists()["institution"])
        if phi_type in ("PHONE", "ZIP"):
            return self.shape(phi_type, value, letters=False)
        return self.shape(phi_type, value)  # MRN, ACCESSION, ORDER, ID, SSN, PHONE, ZIP, DATE (fallback)
