"""Seeded generator of the PHI dev set: synthetic radiology reports with realistic PHI and gold spans.

    python tests/data/phi/generate.py [N] [SEED] > tests/data/phi/dev.jsonl

Each line: {"id", "text", "spans": [{"start", "end", "type"}]}. Every report, name and number is made up
here (no text of any real report); the name pools are deliberately NOT the de-identifier's lexicons, and
many names appear without a title, so the set measures the rules rather than echoing them. Non-PHI that a
careless de-identifier eats is mixed in: eponyms (Hodgkin, Baker cyst, Smith fracture), measurements,
BI-RADS, vertebral levels, times of day, ages under 90, years alone. See docs/textdeid.md.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from datetime import date, timedelta

GIVEN = [
    "Aaliyah",
    "Bartholomew",
    "Catalina",
    "Desmond",
    "Eleanor",
    "Fitzgerald",
    "Genevieve",
    "Horace",
    "Imogen",
    "Jasper",
    "Katarina",
    "Leopold",
    "Marisol",
    "Nikolai",
    "Ophelia",
    "Percival",
    "Quentin",
    "Rosalind",
    "Sebastian",
    "Thaddeus",
    "Ursula",
    "Valentina",
    "Winifred",
    "Xavier",
    "Yolanda",
    "Zachariah",
    "Mary",
    "John",
    "Linda",
    "Robert",
    "Susan",
    "Michael",
    "Karen",
    "David",
    "Nancy",
    "James",
    "Wei",
    "Priya",
    "Oluwaseun",
    "Siobhan",
    "Bjorn",
    "Anastasia",
    "Rahul",
    "Keiko",
    "Mateo",
    "Ngozi",
]
FAMILY = [
    "Abernathy",
    "Blackwood",
    "Castellanos",
    "Delacroix",
    "Eriksen",
    "Fairweather",
    "Galloway",
    "Hargreaves",
    "Ingersoll",
    "Jablonski",
    "Kowalczyk",
    "Lindqvist",
    "Montgomery",
    "Nakamura",
    "Okonkwo",
    "Pemberton",
    "Quintero",
    "Rutherford",
    "Szymanski",
    "Thibodeaux",
    "Underwood",
    "Vanderberg",
    "Whitfield",
    "Yamamoto",
    "Zielinski",
    "Smith",
    "Johnson",
    "Lee",
    "Garcia",
    "Brown",
    "Nguyen",
    "Patel",
    "O'Sullivan",
    "McAllister",
    "Van Dyke",
    "Al-Rashid",
    "Chen",
    "Kim",
    "Baker",
    "Jones",
    "Wilson",
    "Hill",
    "Ashworth",
    "Bellamy",
    "Crowley",
    "Dunbar",
]
CITIES = [
    "Springfield",
    "Riverside",
    "Franklin",
    "Greenville",
    "Bristol",
    "Clinton",
    "Fairfield",
    "Salem",
    "Madison",
    "Georgetown",
    "Ashland",
    "Burlington",
    "New Haven",
    "San Mateo",
    "Fort Collins",
]
STATES = ["MA", "IL", "NY", "CA", "TX", "OH", "PA", "WA", "GA", "MI", "Ohio", "Texas", "Oregon"]
STREETS = [
    "Main",
    "Oak",
    "Maple",
    "Washington",
    "Lincoln",
    "Highland",
    "Sunset",
    "Park",
    "Cedar",
    "Lake",
    "Hillcrest",
    "Jefferson",
    "Mill",
    "Church",
]
SUFFIXES = [
    "Street",
    "St.",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Boulevard",
    "Blvd",
    "Drive",
    "Lane",
    "Way",
    "Court",
    "Place",
]
INSTITUTIONS = [
    "Massachusetts General Hospital",
    "St. Elizabeth Medical Center",
    "Mercy Hospital",
    "Brigham and Women's Hospital",
    "Lakeside Imaging Center",
    "University of Iowa Hospitals",
    "Cedar Valley Medical Center",
    "Good Samaritan Hospital",
    "Riverbend Health Center",
    "Northshore Cancer Center",
    "St. Jude Children's Research Hospital",
    "Mount Sinai Hospital",
    "Ridgeview Clinic",
    "Pinecrest Rehabilitation Center",
    "University of Michigan Health System",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
CREDENTIALS = ["MD", "M.D.", "RN", "DO", "NP", "PA-C", "RT(R)", "PhD"]


class Doc:
    """A report under construction: text plus gold spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[dict[str, object]] = []
        self.n = 0

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.n += len(s)

    def phi(self, s: str, kind: str) -> None:
        self.spans.append({"start": self.n, "end": self.n + len(s), "type": kind})
        self.add(s)


def _date_text(rng: random.Random, d: date) -> str:
    m, day, y = d.month, d.day, d.year
    mon = MONTHS[m - 1]
    fmts: list[Callable[[], str]] = [
        lambda: f"{m:02d}/{day:02d}/{y}",
        lambda: f"{m}/{day}/{y}",
        lambda: f"{m}/{day}/{y % 100:02d}",
        lambda: f"{y}-{m:02d}-{day:02d}",
        lambda: f"{mon} {day}, {y}",
        lambda: f"{mon[:3]} {day} {y}",
        lambda: f"{day} {mon} {y}",
        lambda: f"{day}-{mon[:3]}-{y}",
        lambda: f"{mon[:3]}. {day}, {y}",
        lambda: f"{mon} {day}",
        lambda: f"{mon} {day}{'th' if 10 < day < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}",
        lambda: f"{m:02d}-{day:02d}-{y}",
        lambda: f"{mon.upper()[:3]} {day:02d}, {y}",
        lambda: f"{y}{m:02d}{day:02d}",
    ]
    return rng.choice(fmts)()


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def person(self) -> tuple[str, str]:
        return self.rng.choice(GIVEN), self.rng.choice(FAMILY)

    def staff_name(self, d: Doc) -> None:
        first, last = self.person()
        style = self.rng.randrange(6)
        if style == 0:
            d.add("Dr. ")
            d.phi(last, "NAME")
        elif style == 1:
            d.add("Dr. ")
            d.phi(f"{first} {last}", "NAME")
        elif style == 2:
            d.phi(f"{first[0]}. {last}", "NAME")
            d.add(f", {self.rng.choice(CREDENTIALS)}")
        elif style == 3:
            d.phi(f"{first} {last}", "NAME")
            d.add(f", {self.rng.choice(CREDENTIALS)}")
        elif style == 4:
            d.add("Dr ")
            d.phi(f"{first[0]}. {last}", "NAME")
        else:
            d.phi(f"{first} {self.rng.choice('ABCDEJKMRST')}. {last}", "NAME")
            d.add(f" {self.rng.choice(['MD', 'M.D.'])}")

    def date(self, d: Doc, base: date) -> None:
        d.phi(_date_text(self.rng, base - timedelta(days=self.rng.randrange(0, 900))), "DATE")

    def phone(self) -> str:
        a, b, c = self.rng.randrange(201, 989), self.rng.randrange(200, 999), self.rng.randrange(0, 9999)
        return self.rng.choice(
            [
                f"({a}) {b}-{c:04d}",
                f"{a}-{b}-{c:04d}",
                f"{a}.{b}.{c:04d}",
                f"+1 {a} {b} {c:04d}",
                f"{a}-{b}-{c:04d} ext. {self.rng.randrange(10, 9999)}",
            ]
        )

    def report(self, i: int) -> dict[str, object]:
        rng = self.rng
        d = Doc()
        base = date(2018, 1, 1) + timedelta(days=rng.randrange(0, 2500))
        first, last = self.person()
        header = rng.random() < 0.6
        if header:
            d.add(rng.choice(["Patient: ", "Patient Name: ", "Name: ", "PATIENT: "]))
            if rng.random() < 0.5:
                d.phi(f"{last.upper()}, {first.upper()}", "NAME")
            else:
                d.phi(f"{first} {last}", "NAME")
            d.add(rng.choice(["   MRN: ", "\nMRN: ", "  MR# ", "\nMedical Record Number: "]))
            d.phi(str(rng.randrange(10**6, 10**9)).zfill(rng.choice([7, 8, 9])), "MRN")
            d.add(rng.choice(["\nDOB: ", "  Date of Birth: ", "\nD.O.B.: "]))
            d.phi(_date_text(rng, date(1925, 1, 1) + timedelta(days=rng.randrange(0, 30000))), "DATE")
            d.add(rng.choice(["\nAccession: ", "\nAcc #: ", "  Accession Number: ", "\nACC: "]))
            acc = rng.choice(
                [
                    f"A{rng.randrange(10**6, 10**8)}",
                    f"RAD{rng.randrange(10**7, 10**9)}",
                    f"{base:%Y%m%d}-{rng.randrange(1, 9999):04d}",
                    f"CT-{rng.randrange(10**5, 10**7)}",
                ]
            )
            d.phi(acc, "ACCESSION")
            if rng.random() < 0.5:
                d.add(rng.choice(["\nOrder #: ", "  Order Number: ", "\nRequisition: "]))
                d.phi(
                    rng.choice([f"ORD-{rng.randrange(10**5, 10**7)}", str(rng.randrange(10**5, 10**8))]),
                    "ORDER",
                )
            d.add(rng.choice(["\nExam date: ", "\nDate of service: ", "\nDate: "]))
            self.date(d, base)
            if rng.random() < 0.4:
                d.add("\nReferring physician: ")
                self.staff_name(d)
            if rng.random() < 0.25:
                d.add(rng.choice(["\nLocation: ", "\nFacility: ", "\nPerformed at "]))
                d.phi(rng.choice(INSTITUTIONS), "INSTITUTION")
            d.add("\n\n")
        modality = rng.choice(
            [
                "CT CHEST WITH CONTRAST",
                "MRI BRAIN WITHOUT CONTRAST",
                "XR CHEST PA AND LATERAL",
                "US ABDOMEN COMPLETE",
                "CT ABDOMEN AND PELVIS",
                "MAMMOGRAM BILATERAL SCREENING",
                "MRI LUMBAR SPINE",
                "XR LEFT KNEE 3 VIEWS",
                "CTA HEAD AND NECK",
            ]
        )
        d.add(f"EXAM: {modality}\n\nCLINICAL HISTORY: ")
        age = rng.choice([rng.randrange(18, 89), rng.randrange(18, 89), rng.randrange(90, 104)])
        age_fmt = rng.choice(["{a}-year-old", "{a} year old", "{a} yo", "{a} y/o", "{a}yo"])
        sex = rng.choice(["female", "male", "woman", "man", "F", "M"])
        age_text = age_fmt.format(a=age)
        if age >= 90:
            d.phi(str(age), "AGE")
            d.add(age_text[len(str(age)) :])
        else:
            d.add(age_text)
        d.add(f" {sex} with {rng.choice(HISTORIES)}.")
        if rng.random() < 0.3:
            d.add(" Age ")
            if rng.random() < 0.5:
                d.phi(str(rng.randrange(90, 100)), "AGE")
            else:
                d.add(str(rng.randrange(20, 89)))
            d.add(".")
        if rng.random() < 0.3:
            d.add(" Prior imaging at ")
            d.phi(rng.choice(INSTITUTIONS), "INSTITUTION")
            d.add(" on ")
            self.date(d, base)
            d.add(".")
        d.add("\n\nCOMPARISON: ")
        c = rng.randrange(5)
        if c == 0:
            d.add("None.")
        elif c == 1:
            d.add("CT dated ")
            self.date(d, base)
            d.add(".")
        elif c == 2:
            d.add("Prior study from ")
            self.date(d, base)
            d.add(" and ")
            self.date(d, base)
            d.add(".")
        elif c == 3:
            d.add("Radiograph of ")
            mm, dd = rng.randrange(1, 13), rng.randrange(1, 29)
            d.phi(f"{mm}/{dd}", "DATE")
            d.add(".")
        else:
            d.phi(f"{rng.choice(MONTHS)} {base.year - 1}", "DATE")
            d.add(" outside study (report only).")
        d.add("\n\nFINDINGS: ")
        for sentence in rng.sample(FINDINGS, rng.randrange(3, 7)):
            d.add(sentence + " ")
        if rng.random() < 0.35:
            d.add(f"Previously measured {rng.randrange(3, 40)} mm on ")
            self.date(d, base)
            d.add(". ")
        d.add("\n\nIMPRESSION:\n")
        for k, sentence in enumerate(rng.sample(IMPRESSIONS, rng.randrange(1, 4)), 1):
            d.add(f"{k}. {sentence}\n")
        self.communication(d, base)
        if rng.random() < 0.25:
            self.family(d, first, last)
        if rng.random() < 0.2:
            self.contact(d)
        self.signature(d, base)
        return {"id": f"phi-{i:04d}", "text": "".join(d.parts), "spans": d.spans}

    def communication(self, d: Doc, base: date) -> None:
        rng = self.rng
        if rng.random() < 0.55:
            d.add(
                rng.choice(
                    [
                        "\nThese findings were discussed with ",
                        "\nCritical result called to ",
                        "\nFindings communicated to ",
                        "\nResults were relayed to ",
                        "\nDiscussed by telephone with ",
                        "\nI spoke with ",
                    ]
                )
            )
            self.staff_name(d)
            d.add(rng.choice([" at ", " on ", " by phone at "]))
            if rng.random() < 0.5:
                d.add(f"{rng.randrange(0, 24):02d}:{rng.randrange(0, 60):02d}")
                if rng.random() < 0.6:
                    d.add(" on ")
                    self.date(d, base)
            else:
                self.date(d, base)
                d.add(
                    f" at {rng.randrange(1, 12)}:{rng.randrange(0, 60):02d} "
                    f"{rng.choice(['AM', 'PM', 'a.m.', 'p.m.'])}"
                )
            d.add(rng.choice([".", " with read-back.", " and he acknowledged receipt."]))
            if rng.random() < 0.3:
                d.add(" Callback number ")
                d.phi(self.phone(), "PHONE")
                d.add(".")

    def family(self, d: Doc, first: str, last: str) -> None:
        rng = self.rng
        rel_first = rng.choice(GIVEN)
        rel = rng.choice(["wife", "husband", "daughter", "son", "mother", "sister"])
        choice = rng.randrange(3)
        if choice == 0:
            d.add(f"\nHistory obtained from the patient's {rel}, ")
            d.phi(f"{rel_first} {last}", "NAME")
            d.add(".")
        elif choice == 1:
            d.add(f"\nPatient accompanied by {rel} ")
            d.phi(rel_first, "NAME")
            d.add(", who can be reached at ")
            d.phi(self.phone(), "PHONE")
            d.add(".")
        else:
            d.add("\nMr. ")
            d.phi(last, "NAME")
            d.add(" tolerated the procedure well.")

    def contact(self, d: Doc) -> None:
        rng = self.rng
        k = rng.randrange(5)
        if k == 0:
            d.add("\nPatient address: ")
            d.phi(f"{rng.randrange(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}", "STREET")
            d.add(", ")
            d.phi(rng.choice(CITIES), "LOCATION")
            d.add(f", {rng.choice(STATES)} ")
            d.phi(f"{rng.randrange(1000, 99999):05d}", "ZIP")
            d.add(".")
        elif k == 1:
            d.add("\nImages available at ")
            d.phi(
                rng.choice(
                    [
                        f"https://pacs.{rng.choice(['hospital', 'imaging', 'rad'])}.org/viewer"
                        f"?study={rng.randrange(10**6)}",
                        f"www.{rng.choice(['mercy', 'stjude', 'lakeside'])}imaging.com/portal",
                    ]
                ),
                "URL",
            )
            d.add(".")
        elif k == 2:
            d.add("\nQuestions: ")
            d.phi(
                f"{rng.choice(GIVEN).lower()}.{rng.choice(FAMILY).lower().replace(' ', '')}"
                f"@{rng.choice(['mgh.org', 'example-health.com', 'uihc.edu'])}",
                "EMAIL",
            )
            d.add(" or fax ")
            d.phi(self.phone(), "PHONE")
            d.add(".")
        elif k == 3:
            d.add("\nWorkstation ")
            d.phi(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", "IP")
            d.add(", pager ")
            d.phi(str(rng.randrange(1000, 99999)), "PHONE")
            d.add(".")
        else:
            d.add("\nSSN on file: ")
            d.phi(f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}", "SSN")
            d.add(".")

    def signature(self, d: Doc, base: date) -> None:
        rng = self.rng
        d.add(
            rng.choice(
                [
                    "\n\nElectronically signed by: ",
                    "\n\nDictated by: ",
                    "\n\nAttending Radiologist: ",
                    "\n\nRead by ",
                    "\n\nSigned: ",
                ]
            )
        )
        self.staff_name(d)
        d.add(rng.choice([" on ", "\nSigned on ", " | "]))
        self.date(d, base)
        d.add(f" {rng.randrange(0, 24):02d}:{rng.randrange(0, 60):02d}")
        if rng.random() < 0.3:
            d.add("\nResident: ")
            self.staff_name(d)
        d.add("\n")


HISTORIES = [
    "cough and fever",
    "shortness of breath",
    "history of Hodgkin lymphoma, restaging",
    "Crohn disease with abdominal pain",
    "fall, knee pain",
    "headache, rule out hemorrhage",
    "known Wilms tumor, follow-up",
    "palpable mass left breast",
    "low back pain radiating to the left leg",
    "status post CABG",
    "history of Paget disease",
    "suspected Baker cyst",
    "chest pain, troponin negative",
    "trauma, motor vehicle collision",
    "history of breast cancer in 2015",
    "smoker, 40 pack-years",
]
FINDINGS = [
    "There is a 1.2 x 0.8 cm nodule in the right upper lobe, series 3 image 45.",
    "No pleural effusion or pneumothorax.",
    "The heart size is normal.",
    "Mild degenerative changes at L4-L5 and L5-S1 with disc bulge.",
    "A 2.3 cm Baker cyst is present in the popliteal fossa.",
    "There is a nondisplaced Smith fracture of the distal radius.",
    "Findings consistent with Monteggia fracture-dislocation.",
    "Kerley B lines are noted bilaterally.",
    "Small amount of fluid in Morison pouch.",
    "The appendix is normal in caliber at 5 mm.",
    "Hounsfield units measure 12 HU, consistent with a simple cyst (Bosniak I).",
    "Scattered fibroglandular densities. BI-RADS 2: benign.",
    "No acute intracranial hemorrhage.",
    "Chiari I malformation with tonsillar ectopia of 7 mm.",
    "Schmorl node at T12.",
    "Stable 4 mm pulmonary nodule, unchanged since 2019.",
    "Grade 2/4 anterolisthesis of L5 on S1.",
    "Mass effect with 3 mm midline shift.",
    "The liver measures 16.5 cm in craniocaudal dimension.",
    "Endotracheal tube tip 4 cm above the carina.",
    "Zenker diverticulum is again seen.",
    "Fleischner Society guidelines apply.",
    "Enlarged lymph nodes in keeping with Hodgkin disease.",
    "No evidence of Crohn's disease activity in the terminal ileum.",
    "Wilms tumor resection bed is clear.",
    "The right kidney measures 11 cm. The left kidney measures 10.8 cm.",
    "Contrast: 100 mL Omnipaque 350 IV. DLP 450 mGy-cm.",
    "Osgood-Schlatter changes of the tibial tubercle.",
]
IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "Right upper lobe nodule; follow-up CT in 3 months recommended.",
    "Baker cyst, 2.3 cm.",
    "BI-RADS 4: suspicious abnormality; biopsy recommended.",
    "Findings compatible with Hodgkin lymphoma, partial response.",
    "Acute appendicitis.",
    "Small left pleural effusion, new since prior.",
    "Lung-RADS 2.",
    "Stable examination.",
    "Smith fracture of the distal radius.",
    "Monteggia fracture.",
]


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 300
    seed = int(argv[2]) if len(argv) > 2 else 13
    gen = Gen(seed)
    for i in range(n):
        sys.stdout.write(json.dumps(gen.report(i)) + "\n")


if __name__ == "__main__":
    main(sys.argv)
