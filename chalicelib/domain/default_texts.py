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

# What a satisfaction survey says (domain/surveys.py), per language: the question on channels with
# buttons, by SMS ("reply with a number") and by email (`{link}` is the rating page), the email's
# subject, the thanks after a first rating (which also asks for the comment), the thanks after the
# comment, and the five choices' labels ("5" to "1"). Each label starts with its digit, so a label
# can never read as another rating in any language, and fits the shortest button title a channel
# allows (20 characters: Messenger, Instagram and LINE quick replies).
DEFAULT_SURVEY_TEXTS = {
    "en": {
        "question": "How did we do? Rate us from 1 (very poor) to 5 (excellent).",
        "question_sms": "How did we do? Reply with a number from 1 (very poor) to 5 (excellent).",
        "question_email": "How did we do? Rate us in one click: {link}",
        "subject": "How did we do?",
        "thanks": "Thank you! If you like, tell us in one message what we could do better.",
        "thanks_comment": "Thank you for your feedback.",
        "5": "5 Excellent",
        "4": "4 Good",
        "3": "3 OK",
        "2": "2 Poor",
        "1": "1 Very poor",
    },
    "es": {
        "question": "¿Qué tal lo hicimos? Valórenos del 1 (muy mal) al 5 (excelente).",
        "question_sms": "¿Qué tal lo hicimos? Responda con un número del 1 (muy mal) al 5 (excelente).",
        "question_email": "¿Qué tal lo hicimos? Valórenos con un clic: {link}",
        "subject": "¿Qué tal lo hicimos?",
        "thanks": "¡Gracias! Si quiere, cuéntenos en un mensaje qué podríamos mejorar.",
        "thanks_comment": "Gracias por su opinión.",
        "5": "5 Excelente",
        "4": "4 Bien",
        "3": "3 Regular",
        "2": "2 Mal",
        "1": "1 Muy mal",
    },
    "fr": {
        "question": "Êtes-vous satisfait de notre aide ? Notez-nous de 1 (très mauvais) à 5 (excellent).",
        "question_sms": (
            "Êtes-vous satisfait de notre aide ? Répondez par un chiffre de 1 (très mauvais) à 5 (excellent)."
        ),
        "question_email": "Êtes-vous satisfait de notre aide ? Notez-nous en un clic : {link}",
        "subject": "Êtes-vous satisfait de notre aide ?",
        "thanks": "Merci ! Si vous le souhaitez, dites-nous en un message ce que nous pourrions améliorer.",
        "thanks_comment": "Merci pour votre avis.",
        "5": "5 Excellent",
        "4": "4 Bien",
        "3": "3 Correct",
        "2": "2 Mauvais",
        "1": "1 Très mauvais",
    },
    "de": {
        "question": "Wie zufrieden waren Sie mit uns? Bewerten Sie uns von 1 (sehr schlecht) bis 5 (ausgezeichnet).",
        "question_sms": (
            "Wie zufrieden waren Sie mit uns? Antworten Sie mit einer Zahl von 1 (sehr schlecht) bis 5 (ausgezeichnet)."
        ),
        "question_email": "Wie zufrieden waren Sie mit uns? Bewerten Sie uns mit einem Klick: {link}",
        "subject": "Wie zufrieden waren Sie mit uns?",
        "thanks": "Vielen Dank! Wenn Sie möchten, sagen Sie uns in einer Nachricht, was wir besser machen können.",
        "thanks_comment": "Vielen Dank für Ihr Feedback.",
        "5": "5 Ausgezeichnet",
        "4": "4 Gut",
        "3": "3 Okay",
        "2": "2 Schlecht",
        "1": "1 Sehr schlecht",
    },
    "pt": {
        "question": "Como foi o nosso atendimento? Avalie-nos de 1 (muito ruim) a 5 (excelente).",
        "question_sms": "Como foi o nosso atendimento? Responda com um número de 1 (muito ruim) a 5 (excelente).",
        "question_email": "Como foi o nosso atendimento? Avalie-nos com um clique: {link}",
        "subject": "Como foi o nosso atendimento?",
        "thanks": "Obrigado! Se quiser, conte-nos em uma mensagem o que podemos melhorar.",
        "thanks_comment": "Obrigado pela sua opinião.",
        "5": "5 Excelente",
        "4": "4 Bom",
        "3": "3 Razoável",
        "2": "2 Ruim",
        "1": "1 Muito ruim",
    },
}
