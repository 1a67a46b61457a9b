"""What a survey says, per language: the customer's language (their `language` attribute), else
the configured default language, else English; the business's own words first, the hub's built-in
words (en, es, fr, de, pt) otherwise."""

from __future__ import annotations

import pytest

from chalicelib.domain.default_texts import DEFAULT_SURVEY_TEXTS
from chalicelib.domain.surveys import RATINGS, TEXT_NAMES, SurveyConfig, choices, rating_in

BUILT_IN = ("en", "es", "fr", "de", "pt")


def test_every_built_in_language_has_every_text_and_label_within_the_button_limits() -> None:
    for language in BUILT_IN:
        texts = DEFAULT_SURVEY_TEXTS[language]
        assert set(texts) == {*TEXT_NAMES, *(str(rating) for rating in RATINGS)}, language
        assert "{link}" in texts["question_email"], language
        for rating in RATINGS:
            label = texts[str(rating)]
            # 20: Messenger, Instagram and LINE quick replies; each label starts with its own digit.
            assert len(label) <= 20 and label.startswith(f"{rating} "), (language, label)


@pytest.mark.parametrize("language", BUILT_IN)
def test_every_built_in_label_reads_as_its_own_rating(language: str) -> None:
    config = SurveyConfig()
    for rating in RATINGS:
        assert rating_in(DEFAULT_SURVEY_TEXTS[language][str(rating)], config) == rating


@pytest.mark.parametrize(
    ("language", "start"),
    [
        ("es", "¿Qué tal lo hicimos?"),
        ("es-MX", "¿Qué tal lo hicimos?"),
        ("ES_mx", "¿Qué tal lo hicimos?"),
        ("fr", "Êtes-vous satisfait"),
        ("de-AT", "Wie zufrieden"),
        ("pt-BR", "Como foi"),
        ("en-GB", "How did we do?"),
        ("tr", "How did we do?"),  # no words in Turkish: the default language's
        (None, "How did we do?"),
    ],
)
def test_the_question_speaks_the_customers_language(language: str | None, start: str) -> None:
    config = SurveyConfig()
    assert config.text("question", language).startswith(start)
    assert config.text("question_sms", language).startswith(start)


def test_the_thanks_and_the_comment_prompt_are_translated_too() -> None:
    config = SurveyConfig()
    assert config.text("thanks", "es").startswith("¡Gracias! Si quiere, cuéntenos")
    assert config.text("thanks_comment", "de") == "Vielen Dank für Ihr Feedback."
    assert config.text("subject", "fr") == "Êtes-vous satisfait de notre aide ?"
    assert "{link}" in config.text("question_email", "pt")


def test_choices_are_labelled_in_the_customers_language() -> None:
    config = SurveyConfig()
    assert [label for _, label in choices(config, "es")] == ["5 Excelente", "4 Bien", "3 Regular", "2 Mal", "1 Muy mal"]
    assert [choice_id for choice_id, _ in choices(config, "de")] == ["csat:5", "csat:4", "csat:3", "csat:2", "csat:1"]


def test_the_default_language_is_the_fallback() -> None:
    config = SurveyConfig(default_language="es")
    assert config.text("question", None).startswith("¿Qué tal")
    assert config.text("question", "tr").startswith("¿Qué tal"), "no Turkish words: the default language's"
    assert config.text("question", "en").startswith("How did we do?"), "English is a language like any other"
    assert config.label(5) == "5 Excelente"
    assert SurveyConfig(default_language=" PT-br ").default_language == "pt-br"


def test_the_business_words_win_in_their_language_only() -> None:
    config = SurveyConfig(
        texts={"question": "How was your chat with Acme?"},
        labels={5: "5 Superb"},
        languages={"es": {"question": "¿Qué tal con Acme?", "5": "5 Genial"}, "PT-BR": {"thanks": "Valeu!"}},
    )
    assert config.text("question") == "How was your chat with Acme?"
    assert config.text("question", "tr") == "How was your chat with Acme?", "falls back to the default language"
    assert config.text("question", "es-AR") == "¿Qué tal con Acme?"
    assert config.text("question", "fr").startswith("Êtes-vous"), "built-in French beats English wording"
    assert config.text("thanks", "pt-br") == "Valeu!" and config.text("thanks", "pt").startswith("Obrigado")
    assert config.text("thanks", "es").startswith("¡Gracias!"), "a text the language does not set: built in"
    assert (config.label(5), config.label(5, "es"), config.label(5, "de")) == (
        "5 Superb",
        "5 Genial",
        "5 Ausgezeichnet",
    )
    assert rating_in("5 superb", config) == 5 and rating_in("5 genial", config) == 5


def test_a_text_switched_off_stays_off_in_every_language_unless_one_sets_it() -> None:
    config = SurveyConfig(texts={"thanks": ""}, languages={"de": {"thanks": "Danke!"}})
    assert config.text("thanks") == "" and config.text("thanks", "es") == ""
    assert config.text("thanks", "de") == "Danke!"
    assert config.text("thanks_comment", "es") == "Gracias por su opinión.", "only the text switched off"


def test_defaults_copied_into_the_config_hide_no_translation() -> None:
    # A config that spells out the English defaults (as the config shows them) still speaks Spanish.
    shown = SurveyConfig().model_dump()
    config = SurveyConfig.model_validate({**shown, "default_language": "en"})
    assert config.text("question", "es").startswith("¿Qué tal") and config.label(4, "es") == "4 Bien"
    spanish_first = SurveyConfig.model_validate({**shown, "default_language": "es"})
    assert spanish_first.text("question").startswith("¿Qué tal") and spanish_first.label(1) == "1 Muy mal"
