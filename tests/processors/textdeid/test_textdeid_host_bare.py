"""After a bare "Host" (the infection or transplant host in clinical text) a value goes only in a host's
shape: letters then digits, a dotted name, or letter parts joined by '-' or '_'; never a clinical word, an
abbreviation or a disease name with a number. "Hostname:", "Host name:", "Server:", "Workstation:",
"AE title:" ... are unambiguous and keep taking one-word values (session 18, deidfix "left undone")."""

from __future__ import annotations

import pytest

from tests.processors.textdeid.helpers import assert_kept, found, removed


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Host: HIV positive male with fever.", "HIV"),
        ("Host: AIDS, CD4 count 35.", "AIDS"),
        ("Host: hiv\nFindings: no consolidation.", "hiv"),
        ("Host: esrd\n", "esrd"),
        ("Host: Neutropenic\n", "Neutropenic"),
        ("Host: covid-19 positive, on room air.", "covid-19"),
        ("Host: COVID-19\nImpression: ground-glass opacities.", "COVID-19"),
        ("host: hiv-1 on antiretrovirals", "hiv-1"),
        ("Host: h1n1 infection last month.", "h1n1"),
        ("Host: HLA-B27 positive, sacroiliitis.", "HLA-B27"),
        ("Host: CD4 count 120", "CD4"),
        ("Host: sars-cov-2 pneumonia", "sars-cov-2"),
        ("Host: hsv2\n", "hsv2"),
        ("Host: ckd4 on dialysis", "ckd4"),
        ("Host: cmv-seronegative recipient", "cmv-seronegative"),
        ("Host: steroid-dependent asthmatic", "steroid-dependent"),
        ("The immunocompromised host covid-19 response was blunted.", "covid-19"),
    ],
)
def test_a_clinical_value_after_a_bare_host_is_kept(text: str, word: str) -> None:
    assert_kept(text, word)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("Host: rad-ws-02 main", "rad-ws-02"),
        ("Host: RADWS14\n", "RADWS14"),
        ("Host: pacs01 down, images queued.", "pacs01"),
        ("Host: imgnet.local\n", "imgnet.local"),
        ("host: reading-ws (room 3)", "reading-ws"),
        ("Host: Dicom_GW7 (backup)", "Dicom_GW7"),
        ("Host: img-archive\n", "img-archive"),
        ("Host vna03 was restarted overnight.", "vna03"),
        ("Hostname: imgcore\n", "imgcore"),
        ("Host name: arch12 (primary)", "arch12"),
        ("Hostname: Imgcore (primary)", "Imgcore"),
        ("Server: vnahub secondary", "vnahub"),
        ("Workstation: READSTATION\n", "READSTATION"),
        ("AE title: IMGVAULT; series 4.", "IMGVAULT"),
    ],
)
def test_a_host_name_after_a_host_label_is_removed(text: str, host: str) -> None:
    assert ("ID", host) in found(text), found(text)
    assert host not in removed(text)
