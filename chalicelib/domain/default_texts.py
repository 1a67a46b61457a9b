"""What the hub says by itself until the business configures its own words, per language."""

from __future__ import annotations

DEFAULT_OUT_OF_HOURS = {
    "en": "Thanks for your message. We are closed right now and will answer from {next_opening}.",
    "tr": "Mesajınız için teşekkürler. Şu anda kapalıyız; {next_opening} itibarıyla yanıtlayacağız.",
}

DEFAULT_ASSISTANT_TEXTS = {
    "en": {
        "offer_person": 'Type "agent" to talk to a person.',
        "not_understood": "Sorry, I could not find an answer to that.",
        "handing_off": "I am passing you to a person now; they will see everything you wrote.",
        "closed": "A person will answer from {next_opening}.",
    },
    "tr": {
        "offer_person": 'Bir temsilciyle görüşmek için "temsilci" yazın.',
        "not_understood": "Üzgünüm, buna bir yanıt bulamadım.",
        "handing_off": "Sizi şimdi bir temsilciye aktarıyorum; yazdığınız her şeyi görecek.",
        "closed": "Bir temsilci {next_opening} itibarıyla yanıtlayacak.",
    },
}

DEFAULT_HANDOFF_KEYWORDS = {
    "en": ["agent", "human", "person", "representative", "operator"],
    "tr": ["temsilci", "müşteri temsilcisi", "insan", "yetkili", "operatör"],
}
