"""Person names (patients, relatives, staff) in report text.

Radiology reports name people in a few typed contexts, which is what this looks for (the words are
data, ``rules.json`` "names" and ``lexicons/``):

- after a title: "Dr. Lee", "Mrs. J. Doe";
- before a credential: "Jane Doe, RN", "John A. Smith MD", signatures;
- after a trigger: "discussed with Lee", "read by", "Attending:", "Patient: DOE, JOHN", "his wife Mary";
- a known given name followed by a capitalised word ("Maria Gonzalez was informed");
- initials joined by slashes or a backslash after a signature word or alone on a line ("dictated by AB/cd",
  "cc: jk/mk/rs", "jk / mk", "JK/mk", "trw\\kl"), lower-case or dotted initials alone on a line ("jk",
  "T.R.W."), capitals alone on a line only at a typist's place ("Transcribed by:\nJK"), never clinical
  shorthand ("CHF", "PA/LAT", "Impression:\nGGO");
- a surname after a list marker before a person's verb ("(b) Nguyen notified", "2. Okonkwo paged",
  "(a) SMITH notified", "- Marchetti notified");
- a name joined by "and" to one found ("Dr. Patel and Okonkwo"), unless what follows says a thing (a drug,
  a device: "and Impella position confirmed");
- any other occurrence, in the same report, of a surname found by the rules above (in lower case only in a
  person's context: "fischer agreed").

Eponyms (Hodgkin, Baker cyst, Smith fracture) are not names unless a title, credential or trigger says
so: a lexicon or propagated match followed by an eponym head word ("disease", "fracture", "'s", ...) or
made only of eponym words is dropped. Capitalised non-names (headings, roles, anatomy) stop a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache, lru_cache

from processors.textdeid.rules import Rules, expand, is_clinical, nlp_abbreviations, nlp_short_words, rules

Found = tuple[int, int]


@cache
def _compiled() -> dict[str, re.Pattern[str]]:
    r = rules()
    tok = r.token
    up, low, letter = r.defs["UPPER"], r.defs["LOWER"], r.defs["LETTER"]
    particles = r.raw["names"]["particles"]
    # lower-case particles only between the words of a name, or before its first word after a trigger
    # ("discussed with van der Berg"): always followed by a capitalised word ("de novo" is no name)
    part = rf"(?:{particles}[ \t]+){{0,3}}"
    # a double-barrelled surname whose second part has particles: "O'Brien-van Dijk", "Lopez-de la Cruz"
    barrel = rf"(?:-(?:{particles}[ \t]+){{1,3}}{up}{low}+(?:-{up}{low}+)*)?"
    seq = rf"{part}(?:{tok}){barrel}(?:[ \t]+{part}(?:{tok}){barrel}){{0,3}}"
    prefix = rf"(?:Mc|Mac|{up}['\u2019])"
    surname = rf"{part}(?:{prefix}|(?:al|el)-)?{up}{low}+(?:-{prefix}?{up}{low}+)*{barrel}"
    title = r.title.pattern
    return {
        "seq": re.compile(seq),
        "seq_end": re.compile(rf"(?<![\w'-])({seq})$"),
        # a title before a capital, or before lower-case surname particles ("Dr. van der Berg"), or before
        # a particle joined with a hyphen ("Dr. al-Rashid", "Dr. el-Amin": the token's joined forms)
        "title": re.compile(rf"(?<![\w.])(?i:{title})(?={up}|{particles}[ \t]|(?:al|el|ul|abu)-{up})"),
        "particles": re.compile(rf"(?:{particles}[ \t]+){{1,3}}(?={up})"),
        "particle": re.compile(particles),
        # a known given name, then lower-case particles, then the surname ("Maria de la Cruz")
        "particle_gap": re.compile(rf"[ \t]+(?:{particles}[ \t]+){{1,3}}"),
        "cred_comma": re.compile(rf",[ \t]*(?:{r.credential_any})(?![\w-])"),
        "cred_bare": re.compile(rf"[ \t]+(?:{r.credential_bare})(?![\w-])"),
        # a credential with dots starts like an initial: "Jane Doe M.D." must not end in "M."
        "cred_dotted": re.compile(rf"{up}{low}?\.{up}\.?(?:{up}\.?)?(?!\w)"),
        # run on the lower-cased text: a case-sensitive alternation of literals is scanned much faster
        "trigger": re.compile(rf"(?<![\w/-])(?:{r.trigger.lower()})(?![\w-])"),
        "capword": re.compile(rf"(?<![\w'\u2019-])(?:{up}{low}+|{up}{{2,}})(?![\w'\u2019-])"),
        "first_after_comma": re.compile(rf",[ \t]*({tok})(?:[ \t]+{up}\.?)?(?![\w-])"),
        "skip": re.compile(r"[ \t]*(?:[:,(-][ \t]*)?(?:(?:the|The|THE|a|an)[ \t]+)?"),
        "last_comma": re.compile(rf"(?<![\w'-])({tok}),[ \t]*$"),
        "role": re.compile(rf"{letter}+(?=[\s:,])"),
        "initial": re.compile(rf"{up}\.?"),
        "initials": re.compile(rf"{up}{{2,3}}"),
        "middle": re.compile(rf" {up}\.? "),
        "word": re.compile(rf"{letter}+"),
        "propagate": re.compile(rf"{up}{r.defs['NAME_CHAR']}{{2,}}"),
        # a word shaped as a surname whatever the lexicons say: "O'Malley", "McAllister", "Nguyen-Tran"
        # a common noun's ending ("Sedation", "Interpreter", "Criteria", "Bolus", "Medications",
        # "Oncologist", "Security"): a list item's subject with one is a noun unless a lexicon knows it
        "noun_shape": re.compile(
            r"(?i:\w+(?:tion|sion|ment|ness|ity|ance|ence|ist|er|or|ing|ure|ics|ia|us|ies|ions|ents|ers|ors|ists))"
        ),
        "name_shape": re.compile(rf"{up}['\u2019]{up}{low}+|(?:Mc|Mac){up}{low}+|{up}{low}+(?:-{up}{low}+)+"),
        # "J. Smith" with no title: an initial and a capitalised word, a name only in a name's context
        # (initial_name_before / _after, rules.json): "type A. Aortic root", "M. Avium" are not names
        "initial_name": re.compile(rf"({up}\.[ \t]?(?:{up}\.[ \t]?)?{surname})(?![\w'\u2019-])"),
        "initial_before": re.compile(r.raw["names"]["initial_name_before"]),
        "initial_after": re.compile(r.raw["names"]["initial_name_after"]),
        # at the start of a sentence, a verb of communication ("K. Okafor texted"), or a person's verb by
        # its shape with what it takes ("scheduled the biopsy", "is the referring physician"): rules.json defs
        "initial_comm": re.compile(r.defs["INITIAL_NAME_COMM_VERB"]),
        "initial_verb": re.compile(r.defs["INITIAL_NAME_VERB_LIKE"]),
        # a verb whose subject is a person, with or without an object ("A. Lund saw the patient")
        "initial_person": re.compile(r.defs["INITIAL_NAME_PERSON_VERB"]),
        "joined_not_before": re.compile(r.raw["names"]["joined_not_before"], re.IGNORECASE),
        # "(b) Nguyen notified", "a) Lee paged at 14:05": a passive of communication without "was"
        "list_passive": re.compile(
            r"[ \t]+(?:notified|paged|informed|called|contacted|updated|texted|messaged|emailed|aware)\b"
        ),
        # what a person's verb takes as its object (not a stop, not an adverb: "arrived late.", "met.")
        "verb_object": re.compile(
            r"[ \t]+(?!(?:late|early|again|today|tonight|yesterday|now|later|soon|promptly|at|on|in|by|"
            r"for|with|from|to|and|but|or|as)\b)[A-Za-z]"
        ),
        # what names a person after it, on the lower-cased text ("recommendations from Ostrowski")
        "person_before": re.compile(
            r"(?<![\w-])(?:recommendations?|advice|input|opinion|message|call|page|note|consult)[ \t]+"
            r"(?:from|of|by)[ \t]+(?:dr\.?[ \t]+)?$"
        ),
        # "OSTROWSKI to review the MRI", "Lee to call the family": a person's task
        "to_act": re.compile(
            r"[ \t]+to[ \t]+(?:review|call|contact|discuss|see|follow|page|notify|decide)\b"
        ),
        "declined_stop": re.compile(r",?[ \t]+declined[ \t]*(?:[.;,\n]|$)"),
        "stop_after": re.compile(r"[ \t]*(?:[.,;:)\n]|$)"),
        "and_end": re.compile(r"(?<![\w-])(?:and|&)[ \t]+$"),
        # a second name joined to one found in a name's context ("Dr. Patel and Okonkwo")
        # (an Oxford comma, "and/or", "+": "Dr. Patel, Dr. Okonkwo, and Ibe", "Dr. Patel + Okonkwo")
        "and_next": re.compile(
            rf"(?:,[ \t]*(?:{r.credential_any})(?![\w-]))?,?[ \t]+(?:and/or|and|&|\+)[ \t]+"
        ),
        # a sentence, line or list item starts here ("(b) J. Nguyen", "c) K. Lund")
        "sentence_end": re.compile(r"(?:^|[.!?;:\n])[ \t]*(?:\(?[A-Za-z0-9]{1,3}\)[ \t]*)?$"),
        # a surname alone as the subject of a list item ("(b) Nguyen notified", "a) Okafor agreed"): the
        # marker is "(x)", "x)" or a lower-case "x." at the start of a line or sentence
        # (the class first, not a look-behind: re scans for a leading character class fast; the text's
        # first item is "list_item_first", matched at 0)
        "list_item_name": re.compile(
            rf"[\n.!?;:][ \t]*(?:\(?[A-Za-z0-9]{{1,3}}\)|[a-z]{{1,3}}\.)[ \t]+({surname})(?![\w'\u2019-])"
        ),
        "list_item_first": re.compile(
            rf"[ \t]*(?:\(?[A-Za-z0-9]{{1,3}}\)|[a-z]{{1,3}}\.)[ \t]+({surname})(?![\w'\u2019-])"
        ),
        # a numbered item ("2. Okonkwo notified") or an all-capitals surname after any marker ("(a) SMITH
        # notified", "A. SMITH paged"): group 1 the marker, group 2 the word; only before list_person_only
        # a bullet ("- Marchetti notified", "* Kessler paged": rev3 F6) is a numbered item's kind, only at
        # the start of a line (after a stop a hyphen is a dash)
        "list_item_more": re.compile(
            rf"(?:[\n.!?;:][ \t]*(?![-*\u2022\u2013])|\n[ \t]*)"
            rf"(\d{{1,2}}\.|[A-Z]\.|\(?[A-Za-z0-9]{{1,3}}\)|[a-z]{{1,3}}\.|[-*\u2022\u2013])[ \t]+"
            rf"({surname}|{up}{{2,}}(?:[-'\u2019]{up}{{2,}})*)(?![\w'\u2019-])"
        ),
        "list_item_more_first": re.compile(
            rf"[ \t]*(\d{{1,2}}\.|[A-Z]\.|\(?[A-Za-z0-9]{{1,3}}\)|[a-z]{{1,3}}\.|[-*\u2022\u2013])[ \t]+"
            rf"({surname}|{up}{{2,}}(?:[-'\u2019]{up}{{2,}})*)(?![\w'\u2019-])"
        ),
        "list_person_only": re.compile(r.raw["names"]["list_person_only"]),
        "list_abstract_noun": re.compile(r.raw["names"]["list_abstract_noun"]),
        "joined_person_after": re.compile(r.raw["names"]["joined_person_after"]),
        # a run of initials joined by slashes, spaces around them allowed ("cc: jk/mk/rs", "jk / mk")
        # a backslash for the slash too ("trw\\kl"), never inside a path ("C:\\rad\\img")
        "slash_run": re.compile(
            r"(?<![\w/\\.'\u2019@-])(?:[A-Z]{2,3}|[a-z]{2,3})"
            r"(?:[ \t]*[/\\][ \t]*(?:[A-Z]{2,3}|[a-z]{2,3})){1,4}"
            r"(?![\w'\u2019/\\@-]|\.\w)"
        ),
        # two or three letters alone on a line ("JK", "jk"): found from the line break (a literal: fast)
        "line_end": re.compile(r"[ \t]*(?:\n|$)"),
        "initials_line": re.compile(r"\n[ \t]*((?:[A-Z]\.){2,3}|[A-Z]{2,3}|[a-z]{2,3})[ \t]*(?=\n|$)"),
        "initials_line_first": re.compile(r"[ \t]*((?:[A-Z]\.){2,3}|[A-Z]{2,3}|[a-z]{2,3})[ \t]*(?=\n|$)"),
        # where a lone token is a person's initials or content: rules.json names initials_line_*
        **{k: re.compile(r.raw["names"][k]) for k in (
            "initials_line_cue", "initials_line_content", "initials_line_dictation")},
        "credential_line": re.compile(rf"(?:{r.credential_any})"),
        # initials joined by a slash ("dictated by AB/cd", "JK/mk" alone on a line): rules.json names
        **{k: re.compile(expand(r.raw["names"][k], r.defs)) for k in (
            "slash_pair", "slash_pair_before", "slash_pair_after", "slash_line_before", "slash_line_after")},
        # all lower-case "dr. smith": the title is lower-case too, so the name is the next word; without
        # the dot only right after a trigger ("called to dr patel"): "chest dr obtained" is a DR radiograph
        "dr_lower": re.compile(
            # the literal first (not the look-behind): re finds "dr" by its fast literal-prefix scan
            # lower-case particles belong to the name: "dr. van der berg", "per dr. de la cruz"
            rf"dr(?<![\w.]dr)(\.)?[ \t]+((?:{particles}[ \t]+){{0,3}})"
            rf"({low}(?:{low}|['\u2019-](?={low}))+)(?![\w'\u2019-])"
        ),
        "trigger_end": re.compile(rf"(?<![\w/-])(?:{r.trigger.lower()})[ \t]+$"),
        # "per dr smith", "d/w dr smith": words that name a person after them only with a title
        "per_end": re.compile(r"(?<![\w/-])(?:per|d/w)[ \t]+$"),
    }


# triggers after which two or three capitals are a person's initials ("Tech: JD", "transcribed by mk")
_INITIALS_AFTER = re.compile(r"tech|technologist|sonographer|by|cc|copy|resident|fellow|attending|"
                             r"radiologist")
# a second set of initials joined by a hyphen to the first ("TRW-kl"), one case, then no word
_HYPHEN_INITIALS = re.compile(r"-([A-Z]{2,3}|[a-z]{2,3})(?![\w'\u2019/-])")
_MASK = re.compile(r"(.)\1{2,}", re.IGNORECASE)  # a mask left by earlier de-identification (XXXX)


def _is_not_name(word: str, r: Rules) -> bool:
    return _not_name(word)


@lru_cache(maxsize=65536)
def _not_name(word: str) -> bool:
    if _compiled()["initial"].fullmatch(word):  # an initial, never an article
        return False
    if _MASK.fullmatch(word):
        return True
    if word.islower() and _compiled()["particle"].fullmatch(word):  # "al" in "Ahmed al Rashid"
        return False
    return word.lower().rstrip(".,:;") in rules().not_names


def _trim(text: str, start: int, end: int, r: Rules) -> Found | None:
    """The name tokens of text[start:end] without leading/trailing non-name words; None if nothing is left."""
    toks = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    while toks and _is_not_name(text[toks[0][0] : toks[0][1]], r):
        toks.pop(0)
    # a non-name word inside a sequence ends it ("Smith Radiology")
    for i, (s, e) in enumerate(toks):
        if _is_not_name(text[s:e], r):
            toks = toks[:i]
            break
    if len(toks) > 1 and _compiled()["cred_dotted"].match(text, toks[-1][0]):
        toks.pop()  # "M." of "M.D.", "R." of "R.N.", "P." of "Ph.D."
    if not toks:
        return None
    s, e = toks[0][0], toks[-1][1]
    if e - s == 1 and not text[s].isupper():
        return None
    return s, e


def _lettered_list(text: str, pos: int) -> bool:
    """The letter at ``pos`` ("B.") is an item of a lettered list: the letter before or after it also
    starts a sentence or line with a dot ("A. ... B. ..."); names are not numbered in sequence."""
    letter = ord(text[pos])
    for near in (letter - 1, letter + 1):
        if chr(near).isupper() and re.search(rf"(?:^|[.!?;:\n])[ \t]*{chr(near)}\.[ \t]", text):
            return True
    return False


def _eponym_use(text: str, start: int, end: int, r: Rules) -> bool:
    """An eponym used as one: it has an eponym word and an eponym head word follows ("Baker cyst",
    "Hodgkin's", "Wells score"); "Mary Anderson was informed" stays a name."""
    words = _compiled()["word"].findall(text[start:end])
    return any(w.lower() in r.eponyms for w in words) and bool(r.eponym_head.match(text, end))


@cache
def _label_stop() -> frozenset[str]:
    return frozenset(w.lower() for w in rules().raw["names"].get("trigger_label_stop", ()))


def _after(text: str, pos: int, r: Rules) -> Found | None:
    """The name that starts at ``pos`` (after a trigger or title), skipping punctuation, an article, a
    title and up to two role words ("Attending Radiologist: Dr. Lee")."""
    c = _compiled()
    for _ in range(4):
        pos = c["skip"].match(text, pos).end()  # type: ignore[union-attr]
        t = c["title"].match(text, pos)
        if t:
            pos = t.end()
            continue
        w = c["role"].match(text, pos)
        if w and w.group().lower() in _label_stop():
            return None  # "REFERRING DIAGNOSIS: Syncope": a form's label, no person after it
        if w and _is_not_name(w.group(), r) and w.group()[0].isupper():
            pos = w.end()
            continue
        break
    m = c["seq"].match(text, pos)
    if not m:
        return None
    found = _trim(text, m.start(), m.end(), r)
    if found is None:
        return None
    # "DOE, JOHN" / "Van Dyke, John A." after a header trigger
    lf = c["first_after_comma"].match(text, found[1])
    if lf and not _is_not_name(lf.group(1), r):
        found = (found[0], lf.end())
    return found


def find_names(text: str, lower: str | None = None) -> Iterator[Found]:
    """Name spans (may overlap; the caller merges them). ``lower``: ``text.lower()`` if already made."""
    r = rules()
    c = _compiled()
    found: list[Found] = []
    for t in c["title"].finditer(text):
        p = c["particles"].match(text, t.end()) if text[t.end()].islower() else None
        m = c["seq"].match(text, p.end() if p else t.end())
        if m:
            span = _trim(text, m.start(), m.end(), r)
            if span:
                found.append((t.end(), span[1]) if p and span[0] == m.start() else span)
    for key in ("cred_comma", "cred_bare"):  # credentials are rare: find them, then the name before
        for m in c[key].finditer(text):
            before = c["seq_end"].search(text, max(0, m.start() - 80), m.start())
            if before is None:
                continue
            span = _trim(text, before.start(1), before.end(1), r)
            if span and not _eponym_use(text, *span, r):
                last = c["last_comma"].search(text, max(0, span[0] - 40), span[0])  # "DOE, JANE MD"
                if last and not _is_not_name(last.group(1), r):
                    span = (last.start(1), span[1])
                found.append(span)
    lower = text.lower() if lower is None or len(lower) != len(text) else lower
    for m in c["trigger"].finditer(lower):
        span = _after(text, m.end(), r)
        if span and not _eponym_use(text, *span, r):
            if c["initials"].fullmatch(text[span[0] : span[1]]) and (
                not _INITIALS_AFTER.search(m.group()) or _clinical_run(text, span[0], r)
            ):
                continue  # "Pt POD 6": a short upper-case word is initials only after a staff role; and
                # never the first of a run of clinical abbreviations ("Reviewed by: IVC/svc")
            if c["initials"].fullmatch(text[span[0] : span[1]]):
                hy = _HYPHEN_INITIALS.match(text, span[1])  # "transcribed by: TRW-kl": both sets (rev3 F6)
                if hy and not _clinical_abbreviation(hy.group(1), r):
                    span = (span[0], hy.end())
            found.append(span)
    for m in c["initial_name"].finditer(text):
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in ".'\u2019-_"):
            continue
        named = bool(
            c["initial_before"].search(lower, max(0, m.start() - 40), m.start())
            or c["initial_after"].match(text, m.end())
        )
        sentence = bool(c["sentence_end"].search(text, max(0, m.start() - 8), m.start()))
        if not named and (sentence or c["and_end"].search(text, max(0, m.start() - 6), m.start())):
            # only where a sentence starts (or after "and": "... and J. Okafor saw the patient"); the
            # verb's shape alone not in a lettered list ("A. Hematoma displaced the bowel. B. ..."), a
            # verb of communication or a person's verb in one too ("A. Lund saw the patient. B. Tran prefers
            # MRI.": the letter goes with the name, it may be an initial: "C. ... D. O'Dwyer rang back"), and
            # never after a clinical word that starts a list item
            person = bool(
                (sentence and c["initial_comm"].match(text, m.end()))
                or (
                    c["initial_person"].match(text, m.end())
                    # after "and", "declined" must take an object: "AST and T. Bili declined." is a lab
                    and (sentence or not c["declined_stop"].match(text, m.end()))
                )
            )
            named = person or bool(
                sentence and c["initial_verb"].match(text, m.end()) and not _lettered_list(text, m.start())
            )
            words = c["word"].findall(m.group(1))
            named = named and not any(
                w.lower() in r.initial_not_subject or is_clinical(w, r) for w in words[1:]
            )
            # in a lettered list the letter may be the item's ("B. Sedation declined", "B. Criteria met"):
            # the word must then be a known name or shaped as one ("B. Tran prefers MRI", "D. O'Dwyer")
            # a verb of communication or a role ("D. O'Dwyer rang back", "B. Okonkwo is the covering
            # physician"), or a person's verb with its object ("A. Abernathy saw the patient"), else a
            # known name or a name's shape ("B. Tran declined.")
            if named and _lettered_list(text, m.start()) and not c["initial_comm"].match(text, m.end()):
                v = c["initial_person"].match(text, m.end())
                subject = re.sub(r"^(?:\w\.[ \t]?)+", "", m.group(1))
                named = _known_name(subject, r) or bool(
                    v and c["verb_object"].match(text, v.end()) and _list_subject(subject, r)
                )
        if not named:
            continue
        span = _trim(text, m.start(1), m.end(1), r)
        if span and span[1] - span[0] > 3 and not _eponym_use(text, *span, r):
            found.append(span)
    first = c["list_item_first"].match(text)
    for m in ([first] if first else []) + list(c["list_item_name"].finditer(text)):
        # a surname alone after a list marker, before a person's verb ("(b) Nguyen notified")
        w = m.group(1)
        if (
            (c["initial_comm"].match(text, m.end()) or c["initial_person"].match(text, m.end())
             or c["initial_after"].match(text, m.end()) or c["list_passive"].match(text, m.end())
             # what only a person does ("(c) Tanaka made aware", "3) Lindqvist replied": rev3 F6)
             or c["list_person_only"].match(text, m.end()))
            and not _is_not_name(w, r)
            and not _role_plural(w)  # "(b) Nurses paged"
            and not any(x.lower() in r.initial_not_subject or is_clinical(x, r) for x in c["word"].findall(w))
            # the marker is a weak context: a common noun starts list items too ("(b) Interpreter notified",
            # "(a) Bolus given"), so the word must be a known name, shaped as one, or not shaped as a noun;
            # before what only a person does ("notified", "agreed"), any word but a role, a service or an
            # abstract noun ("(b) Spector notified"; "(b) Interpreter notified", "(b) Administration paged")
            and (_list_subject(w, r) or (c["list_person_only"].match(text, m.end()) and _list_agent(w, r)))
            and not _eponym_use(text, m.start(1), m.end(1), r)
        ):
            found.append((m.start(1), m.end(1)))
    found.extend(_list_items_more(text, r))
    for m in c["dr_lower"].finditer(text):
        if _is_not_name(m.group(3), r):
            continue
        if m.group(1) or any(c[k].search(lower, max(0, m.start() - 60), m.start())
                             for k in ("trigger_end", "per_end")):
            found.append((m.start(2), m.end(3)))
    # a word found only by "and" after a name, unless the report uses it as a thing elsewhere (a drug no
    # list knows: "Dr. Lee and Velrafenib ... started on Velrafenib", "and Impella ... Impella tip")
    found.extend(_slash_initials(text))
    found.extend(_initials_lines(text))
    joined = [j for j in _joined(text, found, r) if not _used_as_thing(text, j, r)]
    found.extend(_lexicon(text, c, r))
    yield from found
    yield from joined
    # it is carried to the other occurrences only if a name lexicon knows it or it is shaped as a name
    # ("Dr. Patel and Nguyen. Nguyen agreed.", "and O'Malley"): its context is weak, and a clinical word
    # taken by it would be wiped from the whole report ("and Possible drainage ... IMPRESSION: Possible")
    # another word is carried only to an occurrence that a person's predicate follows ("Dr. Pell and
    # Ostrowski ... Ostrowski was paged", "... OSTROWSKI to review the MRI")
    known = [j for j in joined if _known_name(text[j[0] : j[1]], r)]
    yield from _propagate(text, found, r)
    yield from _propagate(text, known, r, thing_stop=True)
    yield from _propagate(text, [j for j in joined if j not in known], r, thing_stop=True, person_only=True)


def _list_subject(span: str, r: Rules) -> bool:
    """A list item's subject may be a name: a known one or one shaped as a name, or a word without a
    common noun's ending ("Ostrowski", not "Interpreter", "Sedation")."""
    return _known_name(span, r) or not any(
        _compiled()["noun_shape"].fullmatch(w) for w in _compiled()["word"].findall(span)
    )


def _known_name(span: str, r: Rules) -> bool:
    """Every word is in a name lexicon, or the whole is shaped as a surname (apostrophe, Mc/Mac, a
    hyphen between capitalised parts)."""
    c = _compiled()
    words = c["word"].findall(span)
    if words and all(w.lower() in r.surnames or w.lower() in r.first_names for w in words):
        return True
    return any(c["name_shape"].fullmatch(t) for t in re.findall(r"\S+", span))


def _list_agent(word: str, r: Rules) -> bool:
    """A list item's subject before what only a person does may be a surname with a common noun's ending
    ("Spector", "Brenner", "Fleming"): not an abstract noun ("Administration", "Security"), a role or a
    service of the lexicons, also in the plural ("Interpreters", "Parents"), nor a clinical word."""
    c = _compiled()
    words = c["word"].findall(word)
    return bool(words) and not any(
        c["list_abstract_noun"].fullmatch(w) or is_clinical(w, r) or _role_plural(w) for w in words
    )


def _role_plural(word: str) -> bool:
    """The plural of a role or service of the lexicons ("Nurses", "Interpreters", "Parents")."""
    return any(
        _not_name(word[: -len(x)]) for x in ("s", "es") if word.lower().endswith(x) and len(word) > len(x) + 2
    )


def _clinical_abbreviation(part: str, r: Rules) -> bool:
    """A short part that is a clinical abbreviation or word ("CHF", "lat", "IVC", "dvt", "hx")."""
    p = part.lower()
    return (
        p in r.clinical_abbreviations
        or p in r.initials_not
        or p in nlp_abbreviations()
        or p in nlp_short_words()
        or is_clinical(p, r)
    )


def in_clinical_run(text: str, start: int, end: int) -> bool:
    """text[start:end] is a part of a slash run of clinical abbreviations ("Read by: SMA/ima", "cc: RCA/lad"):
    for the lower-case initials detectors (rules.json ``slash_clinical``), which see one part at a time."""
    if "/" not in text[max(0, start - 1) : end + 1]:
        return False
    s = start
    while s > 0 and (text[s - 1].isalpha() or text[s - 1] in "/ \t") and start - s < 24:
        s -= 1
    while s < start and not text[s].isalpha():
        s += 1
    for m in _compiled()["slash_run"].finditer(text, s, min(len(text), end + 24)):
        if m.start() <= start and end <= m.end():
            return _clinical_run(text, m.start(), rules())
    return False


def _clinical_run(text: str, start: int, r: Rules) -> bool:
    """A slash run of clinical abbreviations starts at ``start`` ("IVC/svc", "PA/LAT")."""
    m = _compiled()["slash_run"].match(text, start)
    return m is not None and all(_clinical_abbreviation(p.strip(), r) for p in re.split(r"[/\\]", m.group()))


def _list_items_more(text: str, r: Rules) -> Iterator[Found]:
    """A surname after a numbered marker ("2. Okonkwo notified") or an all-capitals one after any marker
    ("(a) SMITH notified", "1) OKONKWO paged", "A. SMITH paged"), only before what a person alone does
    (rules.json list_person_only): numbered items are an impression's findings too ("2. Dexa recommended")."""
    c = _compiled()
    first = c["list_item_more_first"].match(text)
    for m in ([first] if first else []) + list(c["list_item_more"].finditer(text)):
        marker, w = m.group(1), m.group(2)
        caps = w.isupper()
        if not caps and not (marker[0].isdigit() or marker in "-*\u2022\u2013"):
            continue  # a capitalised surname after "(b)" / "b." is list_item_name's, "A." initial_name's
        if not c["list_person_only"].match(text, m.end()) or _is_not_name(w, r) or not _list_agent(w, r):
            continue
        if caps and (
            any(_clinical_abbreviation(x, r) for x in c["word"].findall(w))
            or not (len(w) >= 4 or w.lower() in r.surnames)
        ):
            continue  # "(b) ICU notified", "1. RRT paged": a unit or a team, not a name
        if _eponym_use(text, m.start(2), m.end(2), r):
            continue
        # after a capital letter the letter goes with the name: it may be an initial ("A. SMITH")
        yield (m.start(1) if marker[0].isupper() else m.start(2)), m.end(2)


def _slash_initials(text: str) -> Iterator[Found]:
    """Initials joined by slashes after a signature word ("dictated by AB/cd", "cc: jk/mk/rs", "Dictated
    by jk / mk") or alone on a line ("JK/mk"): tried at each slash of the text (a pattern tried at every
    position of a long report cost some 2 ms). The span is the whole run, slashes included."""
    c = _compiled()
    r = rules()
    done = 0
    pos = _next_slash(text, 0)
    while pos >= 0:
        if pos >= done:
            b = pos
            while b > 0 and text[b - 1] in " \t":
                b -= 1
            s = b
            while s > 0 and s > b - 4 and text[s - 1].isalpha():
                s -= 1
            m = c["slash_run"].match(text, s) if 2 <= b - s <= 3 else None
            if m is not None:
                done = m.end()
                found = _slash_run_initials(text, m.start(), m.end(), r)
                if found:
                    yield found
        pos = _next_slash(text, pos + 1)


def _next_slash(text: str, start: int) -> int:
    """The next slash or backslash at or after ``start`` (-1 if none)."""
    a, b = text.find("/", start), text.find("\\", start)
    return a if b < 0 else b if a < 0 else min(a, b)


def _slash_run_initials(text: str, s: int, e: int, r: Rules) -> Found | None:
    """A run of slash-joined parts (text[s:e]) that are initials by their place: after a signature or
    communication word and before a stop or a small word, or alone on a line (or before a D:/T: reference
    or a date on it). Clinical shorthand is kept: after a signature word a part that is a word, a unit or
    one of the NLP's short synonyms, or every part a clinical abbreviation ("Reviewed by: IVC/svc"); alone
    on a line any part that is one ("PE/dvt", "PA/LAT", "DWI/adc", "cor/sag")."""
    c = _compiled()
    parts = [p.strip() for p in re.split(r"[/\\]", text[s:e])]
    low = [p.lower() for p in parts]
    if (
        c["slash_pair_before"].search(text, max(0, s - 40), s)
        and c["slash_pair_after"].match(text, e)
        and not any(p in r.initials_not or p in nlp_abbreviations() or is_clinical(p, r) for p in low)
        and not all(_clinical_abbreviation(p, r) for p in parts)
    ):
        return s, e
    if not c["slash_line_before"].search(text, max(0, s - 8), s):
        return None
    if c["slash_line_after"].match(text, e):  # where a typist's initials stand: last, or before D:/T:
        old = any(p in r.initials_not or p in nlp_abbreviations() or is_clinical(p, r) for p in low)
        return None if old or all(_clinical_abbreviation(p, r) for p in parts) else (s, e)
    if c["line_end"].match(text, e) and not any(_clinical_abbreviation(p, r) for p in parts):
        return s, e  # alone on a line mid-report: any clinical part keeps it
    return None


def _initials_lines(text: str) -> Iterator[Found]:
    """Two or three letters alone on a line that are a person's initials by their shape or their place:
    lower case ("jk", "ejs") or dotted ("T.R.W.") anywhere; in capitals ("JK") only after a signature or
    dictation cue ("Transcribed by:") or before a D:/T:/date line, since a capital token alone on a line
    mid-report is far more often an abbreviation or a heading ("Impression:\nGGO", "No change.\nRFA").
    Never after a line that introduces content ("IMPRESSION:", "see below."), never a clinical abbreviation
    or a word ("CHF", "PA", "neg"), a Roman numeral ("II") or a credential ("M.D.")."""
    c = _compiled()
    r = rules()
    first = c["initials_line_first"].match(text)
    for m in ([first] if first else []) + list(c["initials_line"].finditer(text)):
        w = m.group(1)
        s = m.start(1)
        line_start = text.rfind("\n", 0, s) + 1
        before = text[max(0, line_start - 80) : line_start]
        if c["initials_line_cue"].search(before):
            pass  # "Transcribed by:\nJK": a person's initials whatever their case
        elif c["initials_line_content"].search(before):
            continue  # "Impression:\nrcc", "see below.\nggo": the line is the content
        elif w.isupper() and "." not in w and not c["initials_line_dictation"].match(text, m.end(1)):
            continue
        if "." in w:
            if c["credential_line"].fullmatch(w) or c["credential_line"].fullmatch(w.rstrip(".")):
                continue
        elif _clinical_abbreviation(w, r) or re.fullmatch(r"(?i)[ivxlc]+", w):
            continue
        yield s, m.end(1)


def _used_as_thing(text: str, span: Found, r: Rules) -> bool:
    """A word of a name found only after "and" occurs in the report after what a drug's name follows
    ("started on", "dose of", "held") or before what says a thing ("10 mg", "therapy", "was started")."""
    c = _compiled()
    for w in c["word"].findall(text[span[0] : span[1]]):
        if w.lower() in r.surnames or w.lower() in r.first_names:
            continue
        for m in re.finditer(rf"(?<![\w'\u2019-]){re.escape(w)}(?![\w'\u2019])", text):
            if (
                r.joined_not_after.search(text, max(0, m.start() - 40), m.start())
                or c["joined_not_before"].match(text, m.end())
            ):
                return True
    return False


def _joined(text: str, found: list[Found], r: Rules) -> Iterator[Found]:
    """A name joined by "and" to a name found in a name's context ("discussed with Dr. Patel and
    Okonkwo", "Dr. Lee and Zoë Nguyễn", "Lee, MD and Okafor"), and the next one of a chain: its own
    context is the first's.
    The weak context asks more of it: capitalised, not a non-name ("and Radiology"), not an eponym
    used as one ("and Graves disease", "and Le Fort I"), not two or three capitals ("and CT", "and PA")."""
    c = _compiled()
    todo = sorted(set(found))
    seen = set(todo)
    while todo:
        _, end = todo.pop(0)
        a = c["and_next"].match(text, end)
        if a is None or c["title"].match(text, a.end()):
            continue  # "and Dr. Okafor" is found by its title
        m = c["seq"].match(text, a.end())
        if m is None:
            continue
        span = _trim(text, m.start(), m.end(), r)
        if span is None or span != (m.start(), m.end()) or c["joined_not_before"].match(text, span[1]):
            continue  # a role or a service ("and Emergency Physician Lee", "and Thoracic Surgery", "team")
        words = c["word"].findall(text[span[0] : span[1]])
        # an eponym word that is not a common surname, with more after it than a stop ("and Le Fort I",
        # "and Graves ophthalmopathy"); "and Smith-Jones", "and Müller." stay names
        eponym = any(w.lower() in r.eponyms and w.lower() not in r.surnames for w in words)
        if (
            not text[span[0]].isupper()
            # a finding, drug, procedure or service ("and Effusion is stable", "and Warfarin was held")
            or any(is_clinical(w, r) for w in words)
            or (eponym and not c["stop_after"].match(text, span[1]))
            or c["initials"].fullmatch(text[span[0] : span[1]])
            # a cue of two letters ("and Hx of ...", "and Vs ..."; "and Wu" stays a name)
            or text[span[0] : span[1]].lower() in nlp_short_words()
            or _eponym_use(text, *span, r)
            or span in seen
            # a word no lexicon knows, not shaped as a name, with what follows a thing after it ("and Impella
            # position confirmed", "and Vectra weaned overnight"): a person has a stop, a preposition, a
            # plural verb or a person's predicate after the name (rules.json joined_person_after)
            or not (
                _known_name(text[span[0] : span[1]], r)
                or c["joined_person_after"].match(text, span[1])
                or _person_after(text, span[1])
            )
        ):
            continue
        seen.add(span)
        todo.append(span)
        yield span


def _person_context(text: str, start: int, end: int, per: bool = False) -> bool:
    """A person's context around text[start:end]: a name trigger or "recommendations from" before it (with
    ``per``, "per" / "d/w" too), or a person's predicate after it (a verb of communication, a person's
    verb, "was paged", "to review")."""
    c = _compiled()
    lower = text[max(0, start - 60) : start].lower()
    if c["trigger_end"].search(lower) or c["person_before"].search(lower):
        return True
    if per and c["per_end"].search(lower):
        return True
    return _person_after(text, end)


def _person_after(text: str, end: int) -> bool:
    """A person's predicate at ``end``: a verb of communication, a person's verb, "was paged", "to review",
    a possessive ("Kowalczyk's pager": an eponym's "'s" is dropped before)."""
    c = _compiled()
    if text.startswith(("'s ", "\u2019s "), end):
        return True
    return any(
        c[k].match(text, end)
        for k in ("initial_comm", "initial_person", "initial_after", "list_passive", "to_act")
    )


def _lexicon(text: str, c: dict[str, re.Pattern[str]], r: Rules) -> Iterator[Found]:
    """ "Maria Gonzalez", "Maria T. Gonzalez", "GONZALEZ, MARIA": a known given name with a capitalised
    word (not a non-name, not an eponym used as one)."""
    words = [(m.start(), m.end(), m.group()) for m in c["capword"].finditer(text)]
    for i, (s, e, w) in enumerate(words):
        if w.lower() not in r.first_names:
            continue
        for j in (i + 1, i + 2):  # the next word, or the one after a middle initial
            if j >= len(words):
                break
            s2, e2, w2 = words[j]
            gap = text[e:s2]
            if (j == i + 1 and (gap == " " or c["particle_gap"].fullmatch(gap))) or (
                j == i + 2 and c["middle"].fullmatch(gap)
            ):
                if len(w2) > 1 and not _is_not_name(w2, r) and not _eponym_use(text, s2, e2, r):
                    yield s, e2
                break
        if i > 0:  # "Surname, Given"
            s0, e0, w0 = words[i - 1]
            if re.fullmatch(r",[ \t]*", text[e0:s]) and w0.lower() in r.surnames and not _is_not_name(w0, r):
                yield s0, e


def _propagate(
    text: str, found: list[Found], r: Rules, thing_stop: bool = False, person_only: bool = False
) -> Iterator[Found]:
    """Other occurrences of the words of names already found (a surname repeated without its title).
    ``thing_stop``: not an occurrence before a thing's noun ("Hartmann pouch", "Hickman catheter");
    ``person_only``: only an occurrence before a person's predicate ("Ostrowski was paged")."""
    c = _compiled()
    seen: set[str] = set()
    for s, e in found:
        for w in _compiled()["propagate"].findall(text[s:e]):
            # a capitalised particle ("Van", "Del", "Ter") names nobody alone: "Van Wyk-Grumbach syndrome"
            if not _is_not_name(w, r) and not _compiled()["particle"].fullmatch(w.lower()):
                seen.add(w)
    for w in sorted(seen):
        # the lower-case form too, only in a person's context ("Dr. Fischer ... fischer agreed", "per
        # fischer"): a lower-case surname is often a word ("dr. white ... white matter")
        lower_ok = not (is_clinical(w, r) or w.lower() in r.eponyms or w.lower() in r.initials_not)
        for variant in {w, w.upper()} | ({w.lower()} if lower_ok else set()):
            lowered = variant != w and variant == w.lower()
            pos = text.find(variant)
            while pos >= 0:
                end = pos + len(variant)
                before = text[pos - 1] if pos else " "
                after = text[end] if end < len(text) else " "
                if (
                    not (before.isalnum() or before in "'-_")
                    and not (after.isalnum() or after in "-_")
                    and not _eponym_use(text, pos, end, r)
                    and not (thing_stop and c["joined_not_before"].match(text, end))
                    and (not (person_only or lowered) or _person_context(text, pos, end, per=lowered))
                ):
                    yield pos, end
                pos = text.find(variant, pos + 1)
