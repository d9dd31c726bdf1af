"""Schema of the policy's ``pii`` section (Presidio detection and per-entity actions)."""

from __future__ import annotations

from typing import Any, Dict

from lazaret.rules.schema import Ctx, F, fraction

ACTIONS = ("flag", "redact", "quarantine", "ignore")

SPEC: Dict[str, F] = {
    "enabled": F("bool", True, "run the PII check when --checks includes pii"),
    "nlp": F("str", "spacy", "spacy: spaCy small English model (PERSON, LOCATION); none: pattern recognizers only",
             choices=("spacy", "none")),
    "language": F("str", "en"),
    "score_threshold": fraction(0.5, "minimum Presidio score for a finding to count"),
    "entities": F("map", {
        "EMAIL_ADDRESS": "redact",
        "PHONE_NUMBER": "redact",
        "IP_ADDRESS": "redact",
        "PERSON": "flag",
        "LOCATION": "flag",
        "CREDIT_CARD": "quarantine",
        "US_SSN": "quarantine",
        "IBAN_CODE": "quarantine",
        "US_BANK_NUMBER": "flag",
        "US_PASSPORT": "flag",
        "US_DRIVER_LICENSE": "flag",
        "CRYPTO": "flag",
        "MEDICAL_LICENSE": "flag",
        "API_KEY": "quarantine",
    }, "action per Presidio entity type", item=F("str", choices=ACTIONS)),
    "default_action": F("str", "flag", "action for entity types not listed in entities", choices=ACTIONS),
    "entity_thresholds": F("map", {"PERSON": 0.85, "LOCATION": 0.85, "PHONE_NUMBER": 0.4,
                                    "IP_ADDRESS": 0.6, "US_SSN": 0.5},
                           "per-entity minimum score, overriding score_threshold", item=fraction()),
    "disabled_recognizers": F("list", [
        "UrlRecognizer", "UkNhsRecognizer", "DateRecognizer", "NhsRecognizer", "MedicalLicenseRecognizer",
        "AuAbnRecognizer", "AuAcnRecognizer", "AuTfnRecognizer", "AuMedicareRecognizer", "InPanRecognizer",
        "InAadhaarRecognizer", "InVehicleRegistrationRecognizer", "InVoterRecognizer", "InPassportRecognizer",
        "SgFinRecognizer", "SgUenRecognizer", "EsNifRecognizer", "EsNieRecognizer", "ItFiscalCodeRecognizer",
        "ItDriverLicenseRecognizer", "ItVatCodeRecognizer", "ItPassportRecognizer", "ItIdentityCardRecognizer",
        "PlPeselRecognizer", "FiPersonalIdentityCodeRecognizer", "UsItinRecognizer", "UsBankRecognizer",
        "KrRrnRecognizer", "ThTninRecognizer",
    ], "Presidio predefined recognizers not loaded (known false-positive sources; see README)",
        item=F("str")),
    "recognizer_files": F("list", ["*.yaml"],
                          "globs (relative to the rules directory) of Presidio YAML recognizer files",
                          item=F("str")),
    "max_chars": F("int", 20000, "texts longer than this are analysed in windows of this size", min=200),
    "batch_size": F("int", 64, "texts per nlp.pipe batch", min=1, max=4096),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    for entity in values["entities"]:
        if not entity.isupper() and not entity.replace("_", "").isalnum():
            raise ctx.error(f"entities.{entity}", "entity names are Presidio entity types such as EMAIL_ADDRESS")
