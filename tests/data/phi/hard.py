"""Seeded generator of the adversarial PHI set: short synthetic report passages, one class of hard case each.

    python tests/data/phi/hard.py [N_PER_CLASS] [SEED] > tests/data/phi/hard.jsonl

Each line: {"id", "class", "text", "spans": [{"start", "end", "type"}]} (the gold convention of dev.jsonl:
names without title or credential, ages as the number or the age word only). The classes are the misses
listed at the end of session 14 (docs/textdeid.md): name shapes (particles, hyphens, apostrophes, Mc/Mac,
two surnames), an initial and a surname starting a sentence, a one-word institution after a strong context,
host names, ages over 89 in words or decades, lower-case initials, and non-ASCII names (the dev set is
ASCII). Every passage also carries the look-alikes of its class that must be kept (eponyms with particles:
Le Fort, de Quervain, von Willebrand; "de novo", "Del 5q", "MacIntosh blade", "sats in the low 90s",
"per pt", "seen at the level of"), so each class has a precision as well as a recall. Every name, host and
sentence is made up here; the name pools are not the de-identifier's lexicons.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable

import generate  # the dev set's generator, beside this file (run as a script)

GIVEN = ["John", "Maria", "Ahmed", "Ludwig", "Anne-Marie", "Carlos", "Fatima", "Pieter", "Sofia",
         "Luca", "Hendrik", "Amira", "Jean-Luc", "Giulia", "Youssef", "Ingrid", "Rafael", "Ines",
         "Thaddeus", "Rosalind", "Marisol", "Desmond", "Oluwaseun", "Keiko"]
STEMS = ["Berg", "Cruz", "Rashid", "Trapp", "Santos", "Hoek", "Luca", "Silva", "Amin", "Brink",
         "Rosa", "Maio", "Costa", "Meer", "Bosch", "Haddad", "Wijk", "Pietro", "Vries", "Leon"]
PARTICLES = ["van", "van der", "van den", "von", "de", "de la", "del", "della", "da", "di", "du", "le",
             "la", "bin", "ibn", "ter", "ten", "dos", "das", "Van", "De", "Di", "La", "Le", "Del", "Da"]
JOINED = ["al-", "el-", "Al-", "El-", "Abu-"]  # joined with a hyphen: al-Rashid
APOSTROPHE = ["O'Neil", "D'Angelo", "O'Hara", "D'Souza", "N'Diaye", "O'Dwyer", "L'Estrange", "D'Arcy"]
MAC = ["McDonald", "MacKenzie", "McFadden", "MacLeod", "McGillicuddy", "Macintyre", "McQuarrie",
       "MacAulay"]
HYPHEN = ["Smith-Jones", "Hartley-Ross", "Okafor-Bell", "Lindqvist-Moreau", "Baptiste-Crane"]
SURNAME2 = ["Garcia Lopez", "Fernandez Ruiz", "Moreno Vidal", "Pereira Nunes", "Castro Ortega"]
PLAIN = ["Abernathy", "Pemberton", "Whitfield", "Galloway", "Kowalczyk", "Nakamura", "Okonkwo",
         "Hargreaves", "Thibodeaux", "Ingersoll"]
UNICODE_GIVEN = ["José", "Zoë", "Łukasz", "Søren", "Chloé", "Jürgen", "Björn", "Dvořák", "Agnès", "Iñaki"]
UNICODE_FAMILY = ["Nguyễn", "Müller", "Núñez", "Wójcik", "Ødegård", "Çelik", "Šťastný", "García", "Lefèvre",
                  "Þórsson"]
INSTITUTIONS = ["Lakeshore", "Hillcrest", "Brookhaven", "Fairview", "Riverbend", "Northgate", "Kingsbridge",
                "Stonebrook", "Mercy", "Bayside", "Elmwood", "Pinecrest"]
HOST_WORDS = ["pacs", "ris", "rad", "img", "dicom", "ws", "vna", "archive", "route", "gw"]
DOMAINS = ["mercyhealth.org", "uhs.local", "radnet.example.com", "hosp.internal", "stlukes.org",
           "health.example.net", "lakeshore.corp"]

# look-alikes each class must keep (clinical text, eponyms, roles): never PHI
KEEP: dict[str, list[str]] = {
    "name_particle": [
        "Le Fort II fracture of the maxilla.", "Findings suggest de novo lesion.",
        "History of von Willebrand disease.", "De Quervain tenosynovitis is suspected.",
        "Known del 5q myelodysplasia.", "DI department scheduled the follow-up.",
        "The patient arrived by van.", "Van Wyk-Grumbach syndrome is considered.",
        "DiGeorge syndrome, known.", "Possible von Hippel-Lindau disease.", "La Crosse virus serology sent.",
        "Consistent with de Quervain thyroiditis.",
    ],
    "name_shape": [
        "MacIntosh blade used for intubation.", "McBurney point tenderness.", "McMurray test positive.",
        "O'Donoghue triad is suspected.", "Mallory-Weiss tear is suspected.", "Osgood-Schlatter changes.",
        "Legg-Calve-Perthes disease of the left hip.", "Mac 3 blade at bedside.",
    ],
    "initial_sentence": [
        "M. Avium complex was isolated.", "E. Coli was grown from the urine.", "A. Small effusion.",
        "B. Medial meniscus is intact.", "S. Aureus bacteremia, known.",
    ],
    "institution_word": [
        "Lesion seen at the level of T4.", "Study performed at Bedside.", "Images from Monday are compared.",
        "Transferred from ICU.", "Tube seen at Carina level.", "Performed at 3T.",
        "Records from PACS were reviewed.",
    ],
    "host": [
        "Report.pdf attached.", "Dose 1.5 mGy.", "Series 3.4 image 12.", "See e.g. prior report.",
        "Protocol CT-A used.",
    ],
    "age_words": [
        "O2 saturation in the low 90s.", "Systolic pressures in the 90s.", "Heart rate in the 90s.",
        "Patient is 89 years old.", "In her 80s per history.", "Ninety percent stenosis.",
    ],
    "initials_lower": [
        "Plan d/w pt and family.", "Per pt, pain began yesterday.", "Per ct, no bleed.",
        "D/w him at bedside.", "Per report of the outside study.", "D/w icu team.", "Per ed, stable.",
    ],
    "unicode_name": ["Sjögren syndrome, known.", "Ménière disease history.", "Kienböck disease, stage 2."],
    # session 15 (r6 review): each leak class of the new name rules, with its look-alikes
    "title_joined": [
        "Sequela of al-Anon meeting noted by history.", "Drain placed by IR.", "El Escorial criteria met.",
        "Dr. notified.", "Possible Al artifact from the foil.", "Known el-Tor cholera exposure.",
    ],
    "dr_lower_particle": [
        "Prior dr radiograph reviewed.", "Chest dr obtained portably.", "Contrast given per os.",
        "Plan d/w pt and family.", "Findings suggest de novo lesion.", "Known del 5q myelodysplasia.",
    ],
    "initial_verb": [
        "A. Small effusions persist.", "C. Bones demineralized.", "D. Lungs hyperinflated.",
        "B. Tubes removed.", "E. Coli isolated from the urine.", "Dissection type B. Flap extends distally.",
        "Vitamin D. Levels remain low.", "M. Avium complex was isolated.",
    ],
    "double_barrel": [
        "Van Neck-Odelberg disease is considered.", "Possible von Hippel-Lindau disease.",
        "Kasabach-Merritt phenomenon.", "Cornelia de Lange syndrome, known.", "Le Fort II fracture.",
        "Osgood-Schlatter changes.",
    ],
    "host_product": [
        "Images sent to syngo.via for 3D reconstruction.", "Volumes sent to AW4.7 server.",
        "CTA pushed to viz.ai for LVO triage.", "Dictated in PS360.", "Perfusion maps sent to rapid.ai.",
        "Reviewed on syngo.via.",
    ],
    # session 16 (the misses listed after session 15): each class with its look-alikes
    "initial_person_verb": [
        "CT showed a nodule.", "Patient saw improvement after drainage.", "C. Hemoglobin declined to 7.1.",
        "A. Small effusion persists.", "D. Levels declined further.", "B. Abdomen examined supine.",
        "E. Coli was grown from the urine.",
    ],
    "name_after_and": [
        "Nodule and effusion are unchanged.", "Crohn and Paget disease are not suspected.",
        "Graves and Hashimoto thyroiditis are in the differential.",
        "Le Fort and zygomatic fractures excluded.",
        "Atelectasis and Effusion, unchanged.",
    ],
    "institution_weak": [
        "Seen at 3 months.", "Nodule seen at Apex.", "Patient returned from Surgery.",
        "Patient was seen at Bedside.", "Patient returned from Recovery.", "Lesion seen at the level of T4.",
        "Previously followed at Clinic.",
    ],
    "initials_lower_list": [
        "Plan d/w pt and family.", "Per ct and us, no abscess.", "Dose per kg and day.", "D/w ed and icu.",
        "Contrast per os and ng tube.",
    ],
    "host_label": [
        "Host: unknown.", "Server: down.", "Images sent to PACS.", "Workstation: reading room.",
        "Images sent to syngo.via.", "Station 4R lymph node.",
    ],    # session 16, review r14: clinical words in the weak contexts of the classes above
    "clinical_guard": [
        "Mass was seen at Bronchoscopy in 2018.", "Fluid was seen at Pericardiocentesis.",
        "Nodule was seen at Hilum.", "Patient returned from Dialysis.", "Patient is followed at Cardiology.",
        "Stable per mri and cea.", "Per ecg and tee, no change.", "Discussed with pt and sis.",
        "ALT and T. Bili declined.", "Host: neutropenic.",
    ],
    # session 17 (the misses listed after session 16): each class with its look-alikes
    "initials_slash": [
        "Chest PA/lat views.", "AP/lat views of the knee.", "CT/MR correlation is advised.",
        "Drainage per ACR/SIR guidelines.", "PA/lat", "RUQ/LUQ", "Hx/dx reviewed.", "ER/PR positive.",
        "T1/T2 hyperintense focus.", "Scan w/wo contrast.",
    ],
    "institution_more": [
        "Patient was seen at Bedside today.", "Nodule seen at Apex bilaterally.",
        "Patient returned from Dialysis this morning.", "Host: Immunocompromised patient.",
        "Server: Down for maintenance.", "Station: Ward 4 nurse.", "Workstation: Reading room 3.",
        "Host: Transplant recipient on tacrolimus.", "Station 4R node measures 9 mm.",
        "Patient was seen at Clinic today.",
    ],
    "joined_propagate": [
        "Heparin was held.", "Nodule and effusion unchanged.", "Effusion is stable.",
        "Discussed with the team and Nephrology.", "Agreed with the plan.",
    ],
    "list_person_verb": [
        "(c) Radiology notified.", "(d) Family notified.", "A. Hematoma displaced the bowel.",
        "B. Kidneys enhance normally.", "(a) Patient agreed to proceed.", "b) Pharmacy notified.",
        "c) Surgery paged.", "(e) Oncology aware.",
    ],
    "joined_clinical": [
        "Effusion is unchanged.", "Heparin was held.", "Follow-up CT is advised.",
    ],
    # session 18 (the misses listed after review R18): each class with its look-alikes
    "joined_thing": [
        "Effusion is unchanged.", "Heparin was held.", "Nodule and effusion unchanged.",
        "Discussed with the team and Nephrology.",
    ],
    "list_agent": [
        "(b) Interpreter notified.", "(c) Housekeeping paged.", "(b) Parents notified.",
        "1. Dexa recommended.",
        "2. Lipase elevated.", "(b) ICU notified.", "2. RRT paged.", "(d) Security notified.",
        "(b) Transfusion declined.", "3. Nephrology notified.", "(b) Physicist notified.",
    ],
    "initials_line": [
        "INDICATION:\nCHF\nFINDINGS: Mild edema.", "VIEWS:\nPA/LAT\nFINDINGS: Clear.", "HISTORY:\nSOB",
        "Sequences:\nDWI/adc\nNo infarct.", "Reformats:\ncor/sag\nNo fracture.",
        "IMPRESSION:\nII\nNo change.",
        "Result:\nneg",
    ],
    # capitals alone on a line with no signature cue are abbreviations, listed or not (rev3 F4)
    "initials_caps": [
        "Assessment:\nBKA\nStump intact.", "No change.\nMVP", "Diagnosis:\nHCM\nSee echo.",
        "Lungs clear.\nNPO\nCOMPARISON: None.", "IMPRESSION: see below.\ntoa", "Impression:\nSCFE",
        "Findings:\nAVF\nPatent.", "Stable appearance.\nPDA", "Assessment:\nrvh",
    ],
    "initials_run": [
        "Reviewed by: IVC/svc", "Read by: SMA/ima", "cc: RCA/lad", "Views: PA / LAT obtained.",
        "Glucose 110 mg / dl.", "Sequences dwi/adc/swi show no bleed.", "Discussed with pt/fam/sis.",
    ],
    "host_lower": [
        "Server: down for maintenance", "Host: immunocompromised patient with fever.",
        "Host: male patient with cough.", "host: smoker with copd.", "Host: elderly woman with cough.",
        "Server: not responding", "Host: transplant recipient on tacrolimus.", "Server: room 4 console",
    ],
    "trigger_label": [
        "REFERRING DIAGNOSIS: Atrial Fibrillation", "Ordering Diagnosis: Chest Pain, Atypical",
        "Referring Indication: Abdominal Pain", "Requesting Reason: Renal Calculi",
        "REFERRING DX: Pleural Effusion", "Ordering Problem: Hematuria",
    ],
    "name_lower_repeat": [
        "Effusion is unchanged.", "Fischer sign is not seen.", "Plan per pt.", "d/w pt at bedside.",
    ],
}


class Doc(generate.Doc):
    def template(self, t: str, values: dict[str, tuple[str, str]]) -> None:
        """``t`` with {slots} filled: each slot's (text, PHI type)."""
        rest = t
        while "{" in rest:
            before, _, after = rest.partition("{")
            slot, _, rest = after.partition("}")
            self.add(before)
            text, kind = values[slot]
            self.phi(text, kind)
        self.add(rest)


# contexts in which the engine already finds a plain name: the class is the name's shape, not the context
NAME_CONTEXTS = [
    "Findings discussed with {n} at 14:05.",
    "Critical result called to Dr. {n} with read-back.",
    "Electronically signed by: {n}, MD",
    "Referring physician: {n}",
    "Read by {n} M.D. on the same day.",
    "Patient Name: {n}",
    "I spoke with {n}, RN regarding the results.",
    "History obtained from the patient's daughter, {n}.",
]


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, xs: list[str]) -> str:
        return self.rng.choice(xs)

    def keep(self, d: Doc, cls: str) -> None:
        for s in self.rng.sample(KEEP[cls], 2):
            d.add("\n" + s)

    def particle_surname(self) -> str:
        if self.rng.random() < 0.2:
            return self.pick(JOINED) + self.pick(STEMS)
        return f"{self.pick(PARTICLES)} {self.pick(STEMS)}"

    def name_doc(self, d: Doc, surname: Callable[[], str], cls: str) -> None:
        rng = self.rng
        last = surname()
        k = rng.randrange(4)
        if k == 0:  # given + surname in a name context
            d.template(self.pick(NAME_CONTEXTS), {"n": (f"{self.pick(GIVEN)} {last}", "NAME")})
        elif k == 1:  # title + surname, then the surname alone later (propagation)
            d.template("Discussed with Dr. {n} at 09:12.", {"n": (last, "NAME")})
            d.add(" Recommendations per")
            d.template(" Dr. {n} were followed.", {"n": (last, "NAME")})
        elif k == 2:  # LAST, FIRST header, upper case
            d.template("Patient: {n}   MRN: ", {"n": (f"{last.upper()}, {self.pick(GIVEN).upper()}", "NAME")})
            d.phi(str(rng.randrange(10**6, 10**8)), "MRN")
        else:  # initial + surname with a credential
            d.template("Resident: {n}, MD", {"n": (f"{self.pick(GIVEN)[0]}. {last}", "NAME")})
        self.keep(d, cls)

    def name_particle(self, d: Doc) -> None:
        self.name_doc(d, self.particle_surname, "name_particle")

    def name_shape(self, d: Doc) -> None:
        pools = [APOSTROPHE, MAC, HYPHEN, SURNAME2]
        self.name_doc(d, lambda: self.pick(self.rng.choice(pools)), "name_shape")

    def initial_sentence(self, d: Doc) -> None:
        rng = self.rng
        last = self.pick(PLAIN + MAC + APOSTROPHE)
        initial = self.pick(list("ABCDJKLMRST")) + "."
        if rng.random() < 0.3:
            initial += " " + self.pick(list("ABCDEJKLMRST")) + "."
        verb = self.pick(["reviewed the images and agrees.", "called back at 15:10.",
                          "requested a repeat study.", "was paged at 02:14.", "confirmed the plan.",
                          "acknowledged the results.", "will follow up in clinic.",
                          "has been informed of the findings.", "ordered a CT angiogram."])
        d.add(self.pick(["No acute findings. ", "IMPRESSION: Stable. ", "", "Addendum: "]))
        d.template("{n} " + verb, {"n": (f"{initial} {last}", "NAME")})
        self.keep(d, "initial_sentence")

    def institution_word(self, d: Doc) -> None:
        inst = self.pick(INSTITUTIONS)
        t = self.pick(["Images from {i} were reviewed.", "Prior study performed at {i}.",
                       "Patient transferred from {i} for evaluation.", "Outside films from {i} compared.",
                       "CT obtained at {i} on admission.", "Referred from {i}.",
                       "Comparison is made to MRI performed at {i}."])
        d.add("COMPARISON: ")
        d.template(t, {"i": (inst, "INSTITUTION")})
        self.keep(d, "institution_word")

    def host(self, d: Doc) -> None:
        rng = self.rng
        first, sep, second = self.pick(HOST_WORDS), rng.choice(["", "-"]), self.pick(HOST_WORDS)
        short = f"{first}{sep}{second}{rng.randrange(1, 40):02d}"
        fqdn = f"{short}.{self.pick(DOMAINS)}"
        k = rng.randrange(7)
        if k == 6:
            d.template("PACS: {h} down, images queued.", {"h": (short, "ID")})
        elif k == 0:
            d.template("Images pushed to PACS server {h}.", {"h": (fqdn, "URL")})
        elif k == 1:
            d.template("Study archived on {h} after QA.", {"h": (short, "ID")})
        elif k == 2:
            d.template("Viewer: {h}", {"h": (f"{fqdn}/viewer?study={rng.randrange(10**5)}", "URL")})
        elif k == 3:
            d.template(
                "Reconstructions sent from workstation {h} to the archive.", {"h": (short.upper(), "ID")}
            )
        elif k == 4:
            d.template("Key images saved to \\\\{h}\\share\\keyimages.", {"h": (short, "ID")})
        else:
            d.template("Host {h} (RIS) was down; report re-sent.", {"h": (fqdn, "URL")})
        self.keep(d, "host")

    def age_words(self, d: Doc) -> None:
        rng = self.rng
        t = self.pick(["Woman in her {a} with a fall.", "Man in his {a}, dyspnea.",
                       "Patient in their {a} with confusion.", "A {a} man with hip pain.",
                       "Frail {a} with pneumonia.", "{a} female, aged 9{d}.", "Woman aged {w}, fall.",
                       "{w} years of age, male.", "{n}-yo female with cough."])
        a: tuple[str, str]
        if "{a} man" in t:
            a = (self.pick(["90-something", "ninety-something", "nonagenarian", "centenarian"]), "AGE")
        elif t.startswith("Frail") or t.startswith("{a} female"):
            a = (self.pick(["nonagenarian", "centenarian", "Nonagenarian", "Centenarian"]), "AGE")
        else:
            decades = ["90s", "nineties", "late 90s", "early nineties", "mid-90s", "late nineties"]
            a = (self.pick(decades), "AGE")
        ones = ["", "-one", "-two", "-three", "-four", "-five", "-six", "-seven", "-eight", "-nine"]
        vals = {"a": a, "d": (str(rng.randrange(0, 10)), "AGE"), "w": (f"ninety{self.pick(ones)}", "AGE"),
                "n": (str(rng.randrange(90, 105)), "AGE")}
        if "{d}" in t:
            before, _, after = t.partition("9{d}")
            d.template(before, vals)
            d.phi("9" + vals["d"][0], "AGE")
            d.add(after)
        else:
            d.template(t, vals)
        self.keep(d, "age_words")

    def initials_lower(self, d: Doc) -> None:
        rng = self.rng
        ini = self.pick(["jk", "mk", "rt", "ab", "jd", "kl", "sp", "tw", "hb", "jmk", "ejs"])
        t = self.pick(["Findings d/w {i} at 14:0" + str(rng.randrange(10)) + ".", "Plan per {i}.",
                       "Critical result called to {i} at 03:15.", "Discussed with {i}, who agreed.",
                       "Per {i}, the line is to be pulled.", "cc: {i}", "Texted {i} at 22:40.",
                       "Paged {i}; no call back."])
        d.template(t, {"i": (ini, "NAME")})
        self.keep(d, "initials_lower")

    def unicode_name(self, d: Doc) -> None:
        n = f"{self.pick(UNICODE_GIVEN)} {self.pick(UNICODE_FAMILY)}"
        d.template(self.pick(NAME_CONTEXTS), {"n": (n, "NAME")})
        self.keep(d, "unicode_name")


    def title_joined(self, d: Doc) -> None:
        """A title, then a particle joined by a hyphen, in lower case ("Dr. al-Rashid")."""
        last = self.pick(["al-", "el-", "al-", "el-", "ul-", "abu-"]) + self.pick(STEMS)
        t = self.pick(["Discussed with Dr. {n}.", "Findings relayed to Dr. {n} at 11:32.",
                       "Dr. {n} was paged; no answer.", "Case reviewed with Prof. {n} today.",
                       "Ms. {n} was informed by phone.", "Mr. {n} declined sedation."])
        d.template(t, {"n": (last, "NAME")})
        self.keep(d, "title_joined")

    def dr_lower_particle(self, d: Doc) -> None:
        """Lower-case "dr." with a lower-case particle surname ("per dr. van dijk")."""
        particle = self.pick(["van", "van der", "van den", "de", "de la", "del", "da", "di", "von", "ter",
                              "dos", "le", "bin"])
        last = f"{particle} {self.pick(STEMS).lower()}"
        t = self.pick(["Discussed with dr. {n} at 16:4" + str(self.rng.randrange(10)) + ".",
                       "Per dr. {n}, hold anticoagulation.", "per dr. {n}.",
                       "Called to dr {n} with read-back.",
                       "Images shown to dr. {n} who agreed.", "Plan per dr {n}; repeat in 6 weeks."])
        d.template(t, {"n": (last, "NAME")})
        self.keep(d, "dr_lower_particle")

    def initial_verb(self, d: Doc) -> None:
        """An initial and a surname starting a sentence, before a person's verb of any kind."""
        rng = self.rng
        last = self.pick(PLAIN + MAC + APOSTROPHE + HYPHEN)
        initial = self.pick(list("ABDGHJKLMNPRSTW")) + "."
        if rng.random() < 0.25:
            initial += " " + self.pick(list("ACEJMRS")) + "."
        verb = self.pick(["phoned the reading room at 03:20.", "texted back to confirm the plan.",
                          "emailed the ordering team.", "stated the drain was flushed.",
                          "says the pain began after the fall.", "rang back after the second page.",
                          "replied that the patient is NPO.", "answered the overhead page.",
                          "is the covering physician tonight.", "was the ordering clinician.",
                          "notified the charge nurse.", "wrote the order for a repeat film.",
                          "forwarded the images to surgery.", "scheduled the biopsy for Friday.",
                          "explained the risks to the family.", "said the line was pulled back 2 cm."])
        d.add(self.pick(["No pneumothorax. ", "IMPRESSION: Unchanged. ", "", "Addendum:\n", "Note: "]))
        d.template("{n} " + verb, {"n": (f"{initial} {last}", "NAME")})
        self.keep(d, "initial_verb")

    def double_barrel(self, d: Doc) -> None:
        """A double-barrelled surname whose second part has a particle ("O'Brien-van Dijk")."""
        first = self.pick(APOSTROPHE + PLAIN + ["Lopez", "Okafor", "Lindqvist", "Moreau"])
        particle = self.pick(["van", "van der", "de", "de la", "von", "del", "da", "ter"])
        last = f"{first}-{particle} {self.pick(STEMS)}"
        t = self.pick(["Spoke with Mrs. {n}.", "Discussed with Dr. {n} at 08:15.", "Signed by: {n}, MD",
                       "Results called to Mr. {n}, who read back.", "Patient Name: {n}"])
        d.template(t, {"n": (last, "NAME")})
        self.keep(d, "double_barrel")

    def host_product(self, d: Doc) -> None:
        """A host name beside imaging product names (syngo.via, AW4.7) that are not identifiers."""
        rng = self.rng
        short = f"{self.pick(HOST_WORDS)}-{self.pick(HOST_WORDS)}{rng.randrange(1, 40):02d}"
        t = self.pick(["Study archived on {h} after QA.", "Images pushed to {h} for review.",
                       "Series routed to {h} overnight."])
        d.template(t, {"h": (short, "ID")})
        self.keep(d, "host_product")


    def initial_person_verb(self, d: Doc) -> None:
        """An initial and a surname before a person's verb with or without an object ("A. Lund saw the
        patient", "N. Ibe declined contrast"), at a sentence start or after "and"."""
        last = self.pick(PLAIN + MAC + APOSTROPHE + HYPHEN + ["Lund", "Chen", "Ibe", "Tran"])
        # not next to the letters of the look-alikes (A-E): an initial beside them is a lettered list item,
        # which the rules do not take for a name (names.py _lettered_list)
        initial = self.pick(list("GHJKLNPRSTW")) + "."
        verb = self.pick(["saw the patient at the bedside.", "met the family after the scan.",
                          "declined contrast.", "declined.", "prefers MRI for follow-up.",
                          "wants a call back.", "consented to the procedure.", "refused sedation.",
                          "came by at 14:00.", "elected to defer the biopsy.", "sees the patient weekly."])
        d.add(self.pick(["No pneumothorax. ", "IMPRESSION: Unchanged. ", "", "Note: ",
                         "The case was reviewed and "]))
        d.template("{n} " + verb, {"n": (f"{initial} {last}", "NAME")})
        self.keep(d, "initial_person_verb")

    def name_after_and(self, d: Doc) -> None:
        """A name after "and" with no context of its own ("discussed with Dr. Patel and Okonkwo"); a
        second passage joins a name to a team or an eponym, which are kept."""
        first = self.pick(PLAIN + MAC + APOSTROPHE)
        full = f"{self.pick(UNICODE_GIVEN)} {self.pick(PLAIN)}"
        second = self.pick(PLAIN + HYPHEN + UNICODE_FAMILY + [full])
        t = self.pick(["Findings discussed with Dr. {a} and {b} at 10:1" + str(self.rng.randrange(10)) + ".",
                       "Results called to Dr. {a} and {b}, who agreed.", "Reviewed with Dr. {a} and {b}.",
                       "Signed by {a}, MD and {b}."])
        d.template(t, {"a": (first, "NAME"), "b": (second, "NAME")})
        third = self.pick(PLAIN)
        d.add("\n")
        d.template(self.pick(["Discussed with Dr. {c} and the ICU team.",
                              "Discussed with Dr. {c} and Radiology.", "Spoke with Dr. {c} and Nephrology.",
                              "Called to Dr. {c} and CT staff."]),
                   {"c": (third, "NAME")})
        self.keep(d, "name_after_and")

    def institution_weak(self, d: Doc) -> None:
        """A one-word institution after a person's weaker context ("Patient was seen at Mercy",
        "returned from Lakeshore", "followed at Brookhaven")."""
        inst = self.pick(INSTITUTIONS)
        if self.rng.random() < 0.2:
            inst = "St. " + self.pick(["Luke's", "Jude's", "Mary's", "Vincent's"])
        t = self.pick(["Patient was seen at {i} for the same complaint.", "Previously seen at {i}.",
                       "Seen at {i} on the prior visit.", "Followed at {i} for the nodule.",
                       "Patient returned from {i} on the day of the exam.",
                       "She was evaluated at {i} in 2019.",
                       "He was discharged from {i} and returns for follow-up."])
        d.template(t, {"i": (inst, "INSTITUTION")})
        self.keep(d, "institution_weak")

    def initials_lower_list(self, d: Doc) -> None:
        """The second and later of several lower-case initials ("d/w dr. ab and cd", "cc: jk, mk")."""
        pool = ["jk", "mk", "ejs", "ab", "cd", "lm", "tw", "jpr", "kh", "sb", "rk", "jd", "hm"]
        a, b, c = self.rng.sample(pool, 3)
        t = self.pick(["d/w dr. {a} and {b} at 14:0" + str(self.rng.randrange(10)) + ".", "cc: {a}, {b}",
                       "d/w {a} and {b} at 09:3" + str(self.rng.randrange(10)) + ".", "Plan per {a} and {b}.",
                       "Discussed with {a}, {b} and {c}.", "paged {a} & {b} re: the result."])
        values = {"a": (a, "NAME"), "b": (b, "NAME"), "c": (c, "NAME")}
        d.template(t, values)
        self.keep(d, "initials_lower_list")

    def host_label(self, d: Doc) -> None:
        """A host name with no digit and no dot, as the value of a label that names a machine."""
        host = self.pick(HOST_WORDS) + self.pick(["net", "store", "arch", "prime", "hub", "core", "main"])
        t = self.pick(["Hostname: {h}\n", "AE title: {H}.", "PACS server = {h}.", "Calling AET: {H}\n",
                       "Hostname: {h}.", "Study received. AE title: {H}; series 3."])
        d.template(t, {"h": (host, "ID"), "H": (host.upper(), "ID")})
        self.keep(d, "host_label")


    def clinical_guard(self, d: Doc) -> None:
        """A name in the contexts whose clinical look-alikes are kept (review r14): a name after "and",
        an Oxford comma, "and/or" or "+"; lower-case initials joined by ";" or "+"."""
        a, b = self.rng.sample(PLAIN, 2)
        t = self.pick(["Discussed with Dr. {a}, Dr. {b}, and {c}.", "Case reviewed with Dr. {a} and/or {b}.",
                       "Findings relayed to Dr. {a} + {b}.", "Discussed with Dr. {a}, MD, and {b}."])
        c = self.pick([p for p in PLAIN if p not in (a, b)])
        d.template(t, {"a": (a, "NAME"), "b": (b, "NAME"), "c": (c, "NAME")})
        i, j = self.rng.sample(["jk", "mk", "tb", "rw", "lm", "tw", "kh", "sb"], 2)
        d.add("\n")
        d.template(self.pick(["cc: {i}; {j}", "d/w {i} + {j}"]), {"i": (i, "NAME"), "j": (j, "NAME")})
        # a clinical word after "and" following a found name: kept (not gold), and not propagated
        w = self.pick(["Effusion is unchanged", "Pneumothorax is excluded", "Heparin was held",
                       "Biopsy is planned", "Nephrology will see the patient", "Follow-up CT is advised",
                       "Cholecystitis is favored", "Warfarin was stopped"])
        d.add("\n")
        d.template(self.pick(["Discussed with Dr. {n} and ", "Findings relayed to Dr. {n} & "]) + w + ".",
                   {"n": (self.pick([p for p in PLAIN if p not in (a, b, c)]), "NAME")})
        self.keep(d, "clinical_guard")


# session 17: made-up surnames and drug names that none of the de-identifier's lexicons has
UNKNOWN = ["Vandersloot", "Okparaeke", "Brzezinski", "Tallowfield", "Quennell", "Dunmore", "Ashcombe",
           "Feltham", "Okoro", "Marchetti"]
DRUGS = ["Velrafenib", "Zorlatinib", "Quilexa", "Orvenza", "Tirvalo", "Trexomab", "Zentroxa", "Brolvesta",
         "Ketrazumab", "Nomivant"]


class Gen17(Gen):
    def initials_slash(self, d: Doc) -> None:
        """Two sets of initials joined by a slash ("cc: jk/mk", "Dictated by AB/cd", "JK/mk" alone)."""
        up = self.pick(["JK", "TW", "RB", "KLM", "DPS", "HG", "EWJ", "SB", "LKT", "NF"])
        lo = self.pick(["mk", "jb", "tc", "rw", "kh", "ejs", "bf", "nk"])
        lo2 = self.pick([x for x in ["jk", "tw", "rb", "hg", "sb", "nf"] if x != lo])
        k = self.rng.randrange(6)
        v = {"A": (up, "NAME"), "a": (lo2, "NAME"), "b": (lo, "NAME"), "B": (lo.upper(), "NAME")}
        t = ["cc: {a}/{b}", "Dictated by {A}/{b}.", "No acute findings.\n{A}/{b}\nT: 12:20",
             "Findings d/w {a}/{b} at 16:2" + str(self.rng.randrange(10)) + ".", "Transcribed by: {A}/{B}",
             "Stable.\n{A}/{b}  D: 12:14"][k]
        # a pair alone on its line is initials where a typist's stand: before a D:/T: line or a date, or at
        # the end (review R18: "PE/dvt", "DWI/adc" alone on a line mid-report are clinical shorthand)
        d.template(t, v)
        self.keep(d, "initials_slash")

    def institution_more(self, d: Doc) -> None:
        """A one-word institution or a host name with ordinary words after it ("seen at Mercy yesterday",
        "Server: Radnet Main"): the name goes, the words after it may stay."""
        if self.rng.random() < 0.5:
            inst = self.pick(INSTITUTIONS)
            t = self.pick(["Patient was seen at {i} yesterday with the same pain.",
                           "Transferred from {i} last week for further care.",
                           "CT performed at {i} two weeks ago showed a nodule.",
                           "Images from {i} show a stable lesion.", "She was evaluated at {i} earlier today.",
                           "Followed at {i} since childhood."])
            d.template(t, {"i": (inst, "INSTITUTION")})
        else:
            word = self.pick(HOST_WORDS).capitalize() + self.pick(["net", "store", "arch", "prime", "hub"])
            station = self.pick(["CTSCAN3", "MRSUITE2", "USROOM4", "XRAY07", "ANGIO2"])
            t = self.pick(["Server: {h} Main", "Station: {s} room 2", "Hostname: {h} (primary)",
                           "AE title: {H} backup node", "Station: {s} in the ED"])
            d.template(t, {"h": (word, "ID"), "H": (word.upper(), "ID"), "s": (station, "ID")})
        self.keep(d, "institution_more")

    def joined_propagate(self, d: Doc) -> None:
        """A name no lexicon knows found only after "and" ("Dr. Smith and Kowalczyk"), repeated bare later."""
        a, b = self.rng.sample(UNKNOWN, 2)
        t = self.pick(["Dr. {a} and {b} reviewed the images.",
                       "Findings discussed with Dr. {a} and {b} at 10:4" + str(self.rng.randrange(10)) + ".",
                       "Case reviewed with Dr. {a} and {b}, who agreed."])
        d.template(t, {"a": (a, "NAME"), "b": (b, "NAME")})
        d.add(" ")
        d.template(self.pick(["{b} agreed with the plan.", "{b} will call the family.",
                              "Recommendations from {b} were followed.", "{b} to review the MRI."]),
                   {"b": (b, "NAME")})
        self.keep(d, "joined_propagate")

    def list_person_verb(self, d: Doc) -> None:
        """A person's verb in a lettered list ("a) discussed with Nguyen", "(b) Nguyen notified",
        "A. Lund saw the patient. B. Tran prefers MRI.")."""
        n, m = self.rng.sample(UNKNOWN + PLAIN, 2)
        k = self.rng.randrange(6)
        t = ["a) discussed with {n} at 09:1" + str(self.rng.randrange(10)) + ".",
             "(b) {n} notified at 14:2" + str(self.rng.randrange(10)) + ".", "c) {n} agreed with the plan.",
             "{N} saw the patient.\n{M} prefers MRI.", "(a) Dr. {n} paged.\n(b) {m} called back.",
             "b) {n} was informed by phone."][k]
        # "A. Lund saw ...": the letter of a lettered list may be the person's initial ("C. ... D. O'Dwyer
        # rang back", class initial_verb), so it is removed with the name and is part of the gold span
        d.template(t, {"n": (n, "NAME"), "m": (m, "NAME"),
                       "N": (f"A. {n}", "NAME"), "M": (f"B. {m}", "NAME")})
        self.keep(d, "list_person_verb")

    def joined_clinical(self, d: Doc) -> None:
        """A name after "Dr. X and" beside a drug name no list knows in the same place ("Dr. Lee and
        Velrafenib was started"): the name is found, the drug is kept."""
        a, b, c = self.rng.sample(UNKNOWN + PLAIN, 3)
        drug = self.pick(DRUGS)
        d.template(self.pick(["Discussed with Dr. {a} and {b} at 11:0" + str(self.rng.randrange(10)) + ".",
                              "Results called to Dr. {a} and {b}, who agreed.",
                              "Dr. {a} and {b} were informed.",
                              "Discussed with Dr. {a} and {b}; {b} was paged."]),
                   {"a": (a, "NAME"), "b": (b, "NAME")})
        d.add("\n")
        d.template(self.pick(["Reviewed with Dr. {c} and " + drug + " was started.",
                              "Discussed with Dr. {c} and " + drug + " 200 mg daily was advised.",
                              "Discussed with Dr. {c} and " + drug + " therapy is planned.",
                              "Per Dr. {c} and " + drug + " is to be held.",
                              "Discussed with Dr. {c} and " + drug + ". Patient started on " + drug
                              + " in May.",
                              "Discussed with Dr. {c} and " + drug + " levels are pending."]),
                   {"c": (c, "NAME")})
        self.keep(d, "joined_clinical")


# session 18: surnames with a common noun's ending (-er, -or, -ia, -us) and device or drug names that none of
# the de-identifier's lexicons has; word-like surnames whose lower-case form is a word
AGENT = ["Spector", "Kellner", "Trowbridger", "Valdivia", "Backus", "Ostrander", "Aldinger", "Mortimer",
         "Heredia", "Gallaher"]
DEVICES = ["Impella", "Vectra", "Oxyvent", "Cardiomax", "Ravexa", "Quellin"]
WORDLIKE = [("White", "white matter changes are mild."), ("Long", "long segment stenosis of the SFA."),
            ("Moody", "The patient was moody and agitated."), ("Black", "black blood images obtained."),
            ("Young", "young patient with no risk factors."), ("Short", "short segment narrowing noted.")]


class Gen18(Gen17):
    def joined_thing(self, d: Doc) -> None:
        """A word no lexicon knows after "Dr. X and" with what says a thing after it ("and Impella position
        confirmed": kept) beside a second name after "and" with what follows a person ("at 10:15")."""
        a, b, c = self.rng.sample(UNKNOWN + PLAIN, 3)
        d.template(self.pick(["Discussed with Dr. {a} and {b} at 10:1" + str(self.rng.randrange(10)) + ".",
                              "Dr. {a} and {b} were informed.",
                              "Discussed with Dr. {a} and {b} regarding the result.",
                              "Results called to Dr. {a} and {b} by phone.",
                              "Discussed with Dr. {a} and {b} in the reading room."]),
                   {"a": (a, "NAME"), "b": (b, "NAME")})
        dev = self.pick(DEVICES)
        d.add("\n")
        d.template(self.pick(["Discussed with Dr. {c} and " + dev + " position confirmed.",
                              "Reviewed with Dr. {c} and " + dev + " confirmed in good position.",
                              "Per Dr. {c} and " + dev + " flow reduced to P4.",
                              "Discussed with Dr. {c} and " + dev + " weaned overnight.",
                              "Discussed with Dr. {c} and " + dev + " settings unchanged."]),
                   {"c": (c, "NAME")})
        self.keep(d, "joined_thing")

    def list_agent(self, d: Doc) -> None:
        """A list item's surname with a common noun's ending before what only a person does ("(b) Spector
        notified"), a numbered item ("2. Okoro paged") and an all-capitals surname ("(a) SPECTOR notified",
        "A. SPECTOR paged": the letter goes with the name, it may be an initial)."""
        n = self.pick(AGENT)
        m = self.pick([x for x in UNKNOWN + AGENT if x != n])
        k = self.rng.randrange(7)
        t = ["(b) {n} notified at 14:2" + str(self.rng.randrange(10)) + ".", "c) {n} agreed with the plan.",
             "(a) Dr. {m} paged.\n(b) {n} called back.",
             "1. {n} notified at 09:0" + str(self.rng.randrange(10)) + ".\n2. {m} paged.", "2) {N} notified.",
             "A. {NA} paged.\nB. {MA} informed.",
             "IMPRESSION: No bleed.\n3. {n} was informed by phone."][k]
        d.template(t, {"n": (n, "NAME"), "m": (m, "NAME"), "N": (n.upper(), "NAME"),
                       "NA": (f"A. {n.upper()}", "NAME"), "MA": (f"B. {m.upper()}", "NAME")})
        self.keep(d, "list_agent")

    def initials_line(self, d: Doc) -> None:
        """Initials alone on a line mid-report ("JK", "jk/mk" between the report's parts)."""
        i = self.pick(["JK", "ejs", "jk/mk", "RB/tc", "TW", "mkl", "DPS/jb", "hg", "NF/rw"])
        t = self.pick(["FINDINGS: No effusion.\n{i}\nIMPRESSION: Normal.",
                       "Heart size normal.\n{i}\nADDENDUM: Called to the ED.",
                       "{i}\nEXAM: Chest two views.\nNo acute findings.",
                       "Lungs clear.\n{i}\nCOMPARISON: None."])
        # capitals alone are initials only at a typist's place, after a cue or before a D:/T: line (rev3
        # F4: mid-report they are an abbreviation or a heading far more often); dotted ones anywhere (F6).
        # Mapped from the picks, no more draws: the later classes' passages stay the same
        if i == "JK":
            t = {"F": "No acute findings.\nTranscribed by:\n{i}", "H": "Heart size normal.\n{i}\nD: 14:05",
                 "{": "{i}\nT: 09:12\nEXAM: Chest two views.",
                 "L": "Lungs clear.\nTypist:\n{i}\nCOMPARISON: None."}[t[0]]
        elif i == "TW":
            i = "T.R.W."
        parts = [(p, "NAME") for p in i.split("/")]
        if len(parts) == 2:
            d.template(t.replace("{i}", "{p}/{q}"), {"p": parts[0], "q": parts[1]})
        else:
            d.template(t, {"i": parts[0]})
        self.keep(d, "initials_line")

    def initials_caps(self, d: Doc) -> None:
        """Initials in capitals alone on a line at a typist's place (after a "Transcribed by:" cue, before
        a D:/T: line) or dotted; capital abbreviations alone on a line elsewhere are kept (rev3 F4)."""
        i = self.pick(["MKL", "JT", "RBW", "DS", "A.K.", "P.D.Q."])
        t = self.pick(["No acute findings.\nTranscribed by:\n{i}", "Heart size normal.\n{i}\nT: 08:40",
                       "Lungs clear.\nDictated by:\n{i}\nCOMPARISON: None.", "No change.\n{i}"])
        if "." not in i and t.endswith("\n{i}") and "by" not in t:
            t = "No change.\nTypist:\n{i}"
        d.template(t, {"i": (i, "NAME")})
        self.keep(d, "initials_caps")

    def initials_run(self, d: Doc) -> None:
        """Three initials joined by slashes, or two by a spaced slash, after a signature word ("cc:
        jk/mk/rs", "Dictated by jk / mk"); the clinical pairs after a reviewer cue are kept."""
        a, b, c = self.rng.sample(["jk", "mk", "rs", "tw", "ejs", "hg", "nf", "rb", "tc"], 3)
        t = self.pick(["cc: {a}/{b}/{c}", "Dictated by {A}/{b}/{c}.",
                       "Findings d/w {a}/{b}/{c} at 14:0" + str(self.rng.randrange(10)) + ".",
                       "Dictated by {a} / {b}", "Transcribed by: {A} / {B}",
                       "No effusion.\ncc: {a} / {b} / {c}", "Reviewed by: {A}/{b}"])
        d.template(t, {"a": (a, "NAME"), "b": (b, "NAME"), "c": (c, "NAME"), "A": (a.upper(), "NAME"),
                       "B": (b.upper(), "NAME")})
        self.keep(d, "initials_run")

    def host_lower(self, d: Doc) -> None:
        """A host name in lower case as a machine label's value with more words after it ("Server: radnet
        main"): the name goes, the words stay."""
        host = self.pick(HOST_WORDS) + self.pick(["net", "store", "arch", "prime", "hub", "core"])
        t = self.pick(["Server: {h} main", "AE title: {h} backup node", "Hostname: {h} (primary)",
                       "Workstation: {h} reading room 3", "PACS server = {h} secondary"])
        d.template(t, {"h": (host, "ID")})
        self.keep(d, "host_lower")

    def trigger_label(self, d: Doc) -> None:
        """A form's label after a name trigger ("REFERRING DIAGNOSIS: Atrial Fibrillation": kept) beside the
        same trigger before a role and a name ("Referring Physician: Dr. Okoro")."""
        a = self.pick(UNKNOWN + AGENT)
        d.template(self.pick(["Referring Physician: Dr. {a}", "Ordering provider: {a}, MD",
                              "REFERRING PHYSICIAN: {A}", "Requesting clinician: Dr. {a}"]),
                   {"a": (a, "NAME"), "A": (a.upper(), "NAME")})
        self.keep(d, "trigger_label")

    def name_lower_repeat(self, d: Doc) -> None:
        """A name found, repeated in lower case in a person's context ("Dr. Fischer ... fischer agreed");
        a word-like surname's lower-case form elsewhere ("Dr. White ... white matter") is kept."""
        a = self.pick(UNKNOWN + AGENT)
        t = self.pick(["Discussed with Dr. {a} at 10:0" + str(self.rng.randrange(10))
                       + ". {l} agreed with the plan.",
                       "Called to Dr. {a}. Plan per {l}.", "Dr. {a} was paged. {l} called back at 10:2"
                       + str(self.rng.randrange(10)) + ".", "Reviewed with Dr. {a}. d/w {l} again at 11:00."])
        d.template(t, {"a": (a, "NAME"), "l": (a.lower(), "NAME")})
        w, phrase = self.pick(WORDLIKE)
        d.add("\n")
        d.template("Reviewed with Dr. {w}. " + phrase, {"w": (w, "NAME")})
        self.keep(d, "name_lower_repeat")


CLASSES = ["name_particle", "name_shape", "initial_sentence", "institution_word", "host", "age_words",
           "initials_lower", "unicode_name",
           # session 15, r6 review: appended, so the passages of the classes above are unchanged
           "title_joined", "dr_lower_particle", "initial_verb", "double_barrel", "host_product",
           # session 16: appended, so the passages of the 13 classes above are unchanged
           "initial_person_verb", "name_after_and", "institution_weak", "initials_lower_list", "host_label",
           # review r14 (session 16): appended, so the passages of the 18 classes above are unchanged
           "clinical_guard",
           # session 17: appended, so the passages of the 19 classes above are unchanged
           "initials_slash", "institution_more", "joined_propagate", "list_person_verb", "joined_clinical",
           # session 18: appended, so the passages of the 24 classes above are unchanged
           "joined_thing", "list_agent", "initials_line", "initials_run", "host_lower", "name_lower_repeat",
           "trigger_label",
           # session 18 (rev3 F4): appended, so the passages of the 31 classes above are unchanged
           "initials_caps"]


def main(argv: list[str]) -> None:
    per_class = int(argv[1]) if len(argv) > 1 else 40
    seed = int(argv[2]) if len(argv) > 2 else 29
    gen = Gen18(seed)
    for cls in CLASSES:
        for i in range(per_class):
            d = Doc()
            getattr(gen, cls)(d)
            line = {"id": f"hard-{cls}-{i:03d}", "class": cls, "text": "".join(d.parts), "spans": d.spans}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv)
