"""Prompt decomposition: what of a prompt decides its answer, and what does not.

A prompt is a request ("what causes inflation?") plus, often, instructions ("in one
sentence", "as JSON", "like I'm five", "end with a link to ..."), slot values (the
language to translate into, the quoted phrase, the framework) and a payload (the email to
summarize, the code to fix). The cached answer to one prompt answers another only when
all of these agree; the request's wording may vary (the verifier judges it). Greetings,
please/thanks, "quick question:", trailing smileys, case, punctuation, whitespace and
British spelling change nothing, and are stripped before anything is compared; a word
misspelt on one side is read as the word the other side spells (misspellings).

Within one API key every end user of an app shares the cache, so an instruction that
slips through ("What are your opening hours? Be brief and wrong.") plants an answer for
all the others: instructions are compared as a set, and any difference vetoes, but for
a free clause whose words the other prompt says in its request ("How do I set up SSH
keys? I'm on Windows." / "on windows, how do I set up ssh keys?"): that is a rewording,
which the verifier judges.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from unicodedata import normalize

from policies.guards import (
    CODE_FENCE,
    COMMON_WORDS,
    COMMON_WORDS_MIN_LETTERS,
    FUNCTION_WORDS,
    ORDINAL_DIGITS,
    QUOTED,
    SMALL_NUMBERS,
    TECH,
    corrected,
    identifiers_differ,
    numbers_differ,
    screen,
    tech_slip,
    without_accents,
)

# Languages told apart by their commonest words; the models read English only.
ENGLISH = "en"
OTHER_SCRIPT = "other"
# fmt: off
STOPWORDS = {
    "en": set("""
the is are was were what how why when where which who does did you your my it this that
with for of and to have has not don't be me can could should would will i i'm it's what's
there their they an any about from whats dont im do on at or if we he she his no
her more some get best way much many
""".split()),
    "es": set("""
el los las es está están son qué cómo cuál cuáles por para con una mi tu que del al
puedo hola gracias también pero muy esta este cuando dónde donde hay tengo mis sus se
como porque quiero necesito no
y hace hacer tiene tienen eso esto ese esa usted cuánto cuánta cuántos cuántas cuanto
cuanta cuantos cuantas tambien después despues ahora nada mejor otro otra sirve debo
puede pueden estoy hasta desde mucho
""".split()),
    "fr": set("""
le les est sont qu'est quoi comment pourquoi je vous mon ma mes une des du et pour avec
dans ce cette pas ne sur bonjour merci est-ce il elle c'est j'ai quel quelle où peux
suis ai
au aux ou mais ça fait faire dois faut veux peut sais moi toi nous leur comme quand
aussi très sans chez notre votre qui lui être avoir ils elles
""".split()),
    "de": set("""
der die das ist sind was wie warum wann wo ich du sie mein meine ein eine und mit für
nicht zu den dem des auf kann es bitte danke hallo hat habe welche welcher mir mich
ich's gibt wird kann man
auch oder aber noch schon wenn dass sich einen einem einer bei nach zum zur vom über
ueber wir ihr kein keine dein sein muss soll viel
""".split()),
    "pt": set("""
os é são como por para com um uma meu minha não do da dos das em no na você olá
obrigado obrigada qual quando onde posso isso está estou tenho meus minhas vocês
ele ela seu sua pra mas também tambem então entao já até depois agora muito fazer tem tá
pelo pela ao aos às numa nao voce quanto quantos quantas devo preciso aqui ainda vou que
faço
""".split()),
    "it": set("""
il lo gli è sono che come perché quando dove io mio mia una di del della con per non
ciao grazie qual posso questo questa sono ho mi ti cosa della nel ed solo
dei delle degli nella nelle alla alle allo anche sei hai voglio vorrei quale quali tuo
suo dopo oggi perche perchè poi più piu molto senza essere ancora devo
""".split()),
}
# fmt: on
# Words no other listed language shares: one of these counts twice.
TELLTALE = {
    "es": {"qué", "cómo", "está", "gracias", "hola", "puedo", "necesito", "quiero"},
    "fr": {"est-ce", "pourquoi", "merci", "bonjour", "c'est", "j'ai", "vous", "avec"},
    "de": {"ich", "nicht", "ist", "bitte", "danke", "warum", "und", "wie"},
    "pt": {"você", "não", "obrigado", "obrigada", "olá", "isso", "vocês"},
    "it": {"perché", "grazie", "ciao", "cosa", "questo", "questa", "sono"},
}

# Benign openers and closers: stripped at the start or the end of the prompt, repeatedly.
GREETING = (
    r"(?:hi|hello|hey|heya|hiya|howdy|yo|greetings|good (?:morning|afternoon|evening|day)"
    r"|dear (?:support|team|sir|madam|all)|hola|buenos d[ií]as|buenas(?: tardes| noches)?"
    r"|bonjour|bonsoir|salut|hallo|guten (?:tag|morgen|abend)|ol[aá]|oi|bom dia|boa tarde"
    r"|ciao|buongiorno|buonasera|fala|e a[ií]|holaa+|holis?|coucou|moin|servus|salve|ehi|bjr)"
    r"(?: there| team| all| everyone| folks| guys| pessoal| galera| zusammen| a todos)?"
)
OPENER = (
    r"(?:quick question|quick q|quick one|a quick question|question|one question|q"
    r"|i have a question"
    r"|i've got a question|i got a question|just wondering|i was wondering|i'm wondering"
    r"|so|ok|okay|um|uh|hmm|well|btw|by the way|sorry to bother you|sorry|excuse me"
    r"|hope you're well|hope you are well|hope you're doing well"
    r"|(?:can|could) you help(?: me)?(?: out)?|(?:i )?need (?:some )?help|help me out"
    # The same in es/fr/de/pt/it: "oye, una duda:", "petite question", "kurze Frage".
    r"|oye|oiga|(?:tengo )?una (?:duda|pregunta)|pregunta r[aá]pida|disculp[ae]|perd[oó]n"
    r"|(?:j'ai )?une (?:petite )?question|petite question|question rapide|excusez-moi|pardon"
    r"|(?:eine |kurze |mal eine )?frage|entschuldigung"
    r"|(?:tenho )?uma (?:d[uú]vida|pergunta)|pergunta r[aá]pida|desculp[ae]"
    r"|(?:ho )?una domanda|domanda (?:veloce|rapida)|piccola domanda|scusa(?:te)?)"
)
ASKING = (
    r"(?:(?:can|could|would) you (?:please |kindly )?(?:tell me|let me know)"
    r"|(?:please )?(?:tell me|let me know)|do you know|i'd like to know|i would like to know"
    r"|i want to know|i need to know|any idea"
    r"|(?:me )?puedes decir(?:me)?|me dices|quisiera saber|me gustar[ií]a saber"
    r"|quiero saber|necesito saber|(?:tu peux|vous pouvez|pouvez-vous) me dire|dis-moi"
    r"|dites-moi|je voudrais savoir|j'aimerais savoir|(?:kannst du|k[öo]nnen sie) mir sagen"
    r"|sag mir|ich m[öo]chte wissen|ich w[üu]rde gerne? wissen|(?:voc[eê] )?pode me dizer"
    r"|me diz|me diga|gostaria de saber|quero saber|(?:mi )?(?:sai|puoi) dir(?:mi|e)"
    r"|dimmi|vorrei sapere)"
)
THANKS = (
    r"(?:thanks|thank you|thank u|thx|thnx|tx|ty|tyvm|cheers|much appreciated|appreciate it"
    r"|i appreciate it|thanks a lot|thanks so much|thank you so much|many thanks"
    r"|thanks in advance|thank you in advance|tia|thanks for your help|thanks for the help"
    r"|regards|best regards|kind regards|gracias|muchas gracias|merci|merci beaucoup"
    r"|danke|vielen dank|danke sch[oö]n|obrigad[oa]|muito obrigad[oa]|grazie|grazie mille"
    r"|(?:danke|vielen dank) im voraus|danke schon ?mal|gru(?:ß|ss)|valeu|vlw"
    r"|obrigad[oa] desde j[aá]|desde j[aá] obrigad[oa]|merci d'avance|merci par avance"
    r"|gracias de antemano|gracias por adelantado|grazie in anticipo|un abrazo"
    r"|thanks a bunch|thanks a ton|lol|lmao|haha|hahaha|ty in advance|un saludo|saludos"
    r"|cordialement|bien [àa] vous|mit freundlichen gr[üu](?:ß|ss)en|viele gr[üu](?:ß|ss)e"
    r"|liebe gr[üu](?:ß|ss)e|atenciosamente|cumprimentos|abra[çc]os|cordiali saluti|saluti"
    r"|distinti saluti|mil gracias|merci bien|danke dir|obg|brigad[oa])"
)
# Separators a benign phrase may be followed by.
SEP = r"[\s,.!?:;\-–—…]*"
# \b: an opener is a word of its own ("Qui a peint ...", "History of ..." keep their start).
EMOJI_JOINERS = frozenset({"\ufe0f", "\u200d"})  # parts of an emoji, not smileys of their own
# Pictographs and symbols, and the parts of one (a joiner, a variation selector, a skin tone).
EMOJI_CHARACTERS = f"\U0001f300-\U0001faff\u2600-\u27bf{''.join(sorted(EMOJI_JOINERS))}"
EMOJI = re.compile(f"[{EMOJI_CHARACTERS}]")
# An emoji may follow a greeting ("holaa ☕ dame 3 ideas ...").
EMOJI_SEP = rf"[\s,.!?:;\-–—…{EMOJI_CHARACTERS}]*"
LEADING = re.compile(rf"^(?:{GREETING}|{OPENER})\b{EMOJI_SEP}(?=\S|$)", re.IGNORECASE)
LEADING_ASK = re.compile(rf"^{ASKING}\b{SEP}", re.IGNORECASE)
# A line of thanks after the sentence that points at the content, before the content.
THANKS_LINE = re.compile(rf"^{THANKS}[^\S\n]*[,.!?:;…]*[^\S\n]*\n", re.IGNORECASE)
# "Best" signs off only after a sentence ("Who is the best" keeps its last word), and so
# does a kiss ("x": "solve for x" keeps it); a sign-off may carry a name ("Regards, Tom").
SIGNED = r"[A-Z][a-z]+"
SIGNED_OFF = r"(?:best |kind |warm )?regards|cheers|sincerely|best wishes"
TRAILING = re.compile(
    rf"(?:(?:^|[\s,.!?:;\-–—…]){THANKS}|(?:^|[\s,.!?])(?:{SIGNED_OFF}),?\s+{SIGNED}"
    rf"|(?:^|[.!?]\s*)(?:best|br|x{{1,3}}|xo(?:xo)?))"
    rf"{SEP}$",
    re.IGNORECASE,
)
POLITE = re.compile(
    r"\b(?:please|pls|plz|plse|kindly|por favor|porfa(?:vor)?|per favore|perfavore"
    r"|s'il (?:te|vous) pla[iî]t|(?-i:stp|svp))\b[,]?\s*",  # "SVP", "STP": a VP, a protocol
    re.IGNORECASE,
)
# Smileys and hand gestures decorate; other emoji may be what is asked about ("🍕"/"🍔").
DECORATIVE = re.compile(
    "[\U0001f600-\U0001f64f\U0001f910-\U0001f92f\U0001f970-\U0001f97a\U0001f44b-\U0001f450"
    "\U0001f495-\U0001f49f\u2764\u263a\ufe0f\u200d]"
)
# The same written in ASCII, standing alone: ":)", ";-)", ":D", "xD".
ASCII_SMILEY = re.compile(r"(?<!\S)(?:[:;=]-?[)(DPp3]|\(:|xD|XD|<3)(?!\S)")
# In this order: an emoji taken out may leave an ASCII smiley standing alone ("😀:)").
SMILEYS = (DECORATIVE, ASCII_SMILEY)

# British spellings written the American way, so the two read as one text.
BRITISH = [
    (re.compile(r"\b(colo|flavo|favo|hono|humo|labo|neighbo|behavio|rumo|harbo|savo|vapo"
                r"|endeavo|armo|odo|tumo|vigo|rigo|splendo|glamo)ur"), r"\1r"),
    (re.compile(r"\b(organi|reali|recogni|apologi|optimi|customi|priori|minimi|maximi"
                r"|summari|categori|utili|speciali|standardi|authori|normali|initiali"
                r"|seriali|visuali|synchroni|emphasi|critici|memori|personali|finali"
                r"|monetti|capitali|digiti|randomi|tokeni|containeri|parameteri"
                r"|modernise|centrali|locali|globali|criticise)s(e|es|ed|ing|ation|ations"
                r"|er|ers)\b"), r"\1z\2"),
    (re.compile(r"\banalys(e|ed|es|ing)\b"), r"analyz\1"),
    (re.compile(r"\b(cent|met|theat|lit|fib|calib|somb|spect|lust|manoeuv)re(s?)\b"), r"\1er\2"),
    (re.compile(r"\b((?:re|un|mis)?(?:travel|cancel|model|label|fuel|signal|total|counsel"
                r"|dial|level|channel|tunnel|marvel|jewel|quarrel))l(ed|ing|er|ers)\b"), r"\1\2"),
]  # fmt: skip
BRITISH_WORDS = {
    "grey": "gray",
    "programme": "program",
    "programmes": "programs",
    "catalogue": "catalog",
    "defence": "defense",
    "licence": "license",
    "offence": "offense",
    "pretence": "pretense",
    "practise": "practice",
    "tyre": "tire",
    "tyres": "tires",
    "aluminium": "aluminum",
    "mum": "mom",
    "maths": "math",
    "jewellery": "jewelry",
    "cheque": "check",
    "cheques": "checks",
    "ageing": "aging",
    "judgement": "judgment",
    "enrol": "enroll",
    "fulfil": "fulfill",
    "plough": "plow",
    "storey": "story",
    "whilst": "while",
    "amongst": "among",
    "towards": "toward",
    "learnt": "learned",
    "spelt": "spelled",
    "burnt": "burned",
    "dreamt": "dreamed",
}

ELIDING = frozenset({"fr", "it"})  # languages whose articles and pronouns elide: "l'", "dell'"

# Ways of writing a request that ask the same thing (on canonical words: lowercase).
COUNT_WORDS = {word: value for word, value in SMALL_NUMBERS.items() if 1 <= value <= 12}
# ("bc" is left alone: BC is a date, a province and a calculator.)
TEXT_SPEAK = {
    "u": "you", "ur": "your", "ppl": "people", "tmrw": "tomorrow", "tmr": "tomorrow",
    "tmrrw": "tomorrow", "abt": "about", "thru": "through", "b / c": "because",
    "cuz": "because", "coz": "because", "tho": "though", "altho": "although",
}  # fmt: skip
REQUEST_FORMS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"\b(what|how|where|who|when|why|that|it|there|here)(?:'s|s)\b"), r"\1 is"),
    (re.compile(r"\b(i|you|we|they)'re\b"), r"\1 are"),
    (re.compile(r"\bi'm\b|\bim\b"), "i am"),
    (re.compile(r"\b(i|you|we|they)'?ve\b"), r"\1 have"),
    (re.compile(r"\b(i|you|we|they|it)'ll\b"), r"\1 will"),
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|should|could|would)n'?t\b"), r"\1 not"),
    (re.compile(r"\bcan'?t\b|\bcannot\b"), "can not"),
    (re.compile(r"\bwon'?t\b"), "will not"),
    (
        re.compile(r"^(?:how (?:do|can|could|would|should|might) (?:i|you|we|one)|how does one)\b"),
        "how to",
    ),
    # The same "how do I" in French, Spanish, Portuguese and Italian.
    (
        re.compile(
            r"^comment (?:je fais|on fait|faire|je peux|puis-je|peut-on|est-ce que je peux)"
            r"(?: pour)?\b"
        ),
        "comment",
    ),
    (
        re.compile(r"^c[oó]mo (?:hago para|puedo|se puede|fa[cç]o (?:para|pra)|posso|consigo)\b"),
        "como",
    ),
    (re.compile(r"^come (?:faccio (?:a|per)|posso|si pu[oò])\b"), "come"),
    (re.compile(r"\b(?:a|an|the)\b"), " "),
    # Hedges that ask nothing more ("what exactly is", "have you ever", "is it really"),
    # in es/fr/de/pt/it too ("wann benutzt man eigentlich ...").
    (
        re.compile(
            r"\b(?:actually|exactly|really|basically|ever|eigentlich|en realidad|en fait"
            r"|na verdade|in realt[aà]|realmente|vraiment|davvero|exactamente|exactement"
            r"|esattamente|exatamente)\b"
        ),
        " ",
    ),
    # Text-speak spelt out ("can u", "how many ppl"), and "#" before a number ("order #5").
    (re.compile(rf"\b(?:{'|'.join(map(re.escape, TEXT_SPEAK))})\b"), lambda m: TEXT_SPEAK[m[0]]),
    (re.compile(r"(?<!\S)# (?=\d)"), ""),
    # A temperature however written ("180 °C", "180°c", "180 degrees C", "180C").
    (re.compile(r"\b(\d+) ?(?:°|degrees?|deg) ?([cf])(?:elsius|ahrenheit)?\b"), r"\1\2"),
    # A time of day however spaced ("7 pm", "7pm", "7 p.m.").
    (re.compile(r"\b(\d{1,2}) ?([ap]) ?m\b"), r"\1\2m"),
    # Counts to twelve in words are the digits ("for four people" / "for 4 people"), and a
    # rank in digits is its word, as the lexical guards read it ("2nd" / "second").
    (re.compile(rf"\b(?:{'|'.join(COUNT_WORDS)})\b"), lambda m: str(COUNT_WORDS[m[0]])),
    (re.compile(rf"\b(?:{'|'.join(ORDINAL_DIGITS)})\b"), lambda m: ORDINAL_DIGITS[m[0]]),
    # A share however written ("10%", "10 percent"), and a possessive typed without its
    # apostrophe ("my companys VAT number").
    (re.compile(r"\b(\d+) ?(?:%|percent|per cent|pct)\.?(?!\S)"), r"\1 %"),
    (re.compile(r"(?<=\w)'s\b"), "s"),
]
BRITISH_WORD = re.compile(rf"\b(?:{'|'.join(BRITISH_WORDS)})\b")

# -- instructions ---------------------------------------------------------------------
NUMBER_WORD = {
    "a": "1", "an": "1", "one": "1", "single": "1", "a single": "1", "two": "2", "a couple of": "2",
    "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
    "ten": "10", "twenty": "20", "fifty": "50", "hundred": "100", "a hundred": "100",
}  # fmt: skip
COUNT = (
    r"(?P<n>\d+|a single|a couple of|single|one|two|three|four|five|six|seven|eight|nine|ten"
    r"|twenty|fifty|a hundred|hundred|a|an)"
)
UNIT = (
    r"(?P<unit>sentences?|lines?|paragraphs?|words?|characters?|chars|bullet points?|bullets?"
    r"|points|tweets?|steps|items|examples|reasons|tips|ideas|sentence summary)"
)
# Read on lowercase text; taken out of the request in any case ("Two sentences max.").
# A count of points is a length only when asked for ("in 3 points"): "10 points and 12
# rebounds" is a score. A count of lines "at a time" is how to read, not how long to write.
# A range is one length: "2-3 sentences", "two or three sentences".
RANGE_LOW = r"(?:(?P<low>\d+|one|two|three|four|five|six|seven|eight|nine|ten)\s*(?:-|–|to|or)\s*)?"
LENGTH_COUNT = re.compile(
    rf"\b(?:(?P<lead>in|using|with|within|as|give me|list|only)\s*)?{RANGE_LOW}{COUNT}[\s-]+"
    rf"(?:(?:short|brief|concise|quick|simple)\s+)?{UNIT}"
    r"(?(lead)|(?<!\d points))(?!\s+at\s+a\s+time)\b"
)
LENGTH_LIMIT = re.compile(
    rf"(?:\b(?:in\s+)?(?:under|fewer than|less than|at most|no more than|max(?:imum)?|up to|within|"
    rf"not more than|below|limit(?:ed)? to|fits? (?:in(?:to)?|within))\s+|[≤<]\s*)"
    rf"(?P<n>\d+|[a-z]+)\s+{UNIT}"
)
LENGTH_COUNT_ANY_CASE = re.compile(LENGTH_COUNT.pattern, re.IGNORECASE)
LENGTH_LIMIT_ANY_CASE = re.compile(LENGTH_LIMIT.pattern, re.IGNORECASE)
# What is written short when a "brief" or "quick" one is asked for ("a quick email").
WRITTEN_PIECES = (
    "e-?mail|emial|message|msg|note|text|reply|response|letter|post|caption|bio"
    "|explanation|description|paragraph|intro|introduction|apology|speech|toast|blurb"
    "|announcement|memo"
)
# What a task gives back by itself, so asking for it adds nothing: "proofread this and give
# me the corrected version", "... and give it to me in JSON" (the format is read apart).
DELIVERED = (
    r"(?:me |it |them )?(?:back )?(?:to me )?(?:back )?"
    r"(?:(?:the |a |an )?(?:corrected|fixed|edited|revised|updated|improved|cleaned|proofread"
    r"|rewritten|polished|final|result)\b|(?:it|them) (?:back )?(?:to me )?(?:in|as)\b)"
)
# Where an order ends: "no intro, just the answer", not "no introduction fee".
ORDER_ENDS = r"(?=\W*$|\s*[,.;!)—-]|\s+(?:please|pls|just|only|and)\b)"
# Each group of phrases (regular expressions, one a line) means one instruction; the
# label names what it asks for.
PHRASES: dict[str, str] = {
    "length:short": rf"""
be brief
briefly
brief answer
(?:keep|make) it (?:short|brief)
short answer
(?:in )?short(?:ly)?[.!]?$
concise(?:ly)?
be concise
tl;?dr
in a nutshell
succinct(?:ly)?
in (?:a )?few words
short and sweet
keep it simple
quick answer
one[- ]liner
short version
\b(?:short|brief|quick|concise)(?=,? (?:[a-z-]+ ){{0,2}}(?:{WRITTEN_PIECES})s?\b)
very short summary
less wordy
cut (?:out )?the fluff
(?:get|gets|straight) to the point
""",
    "length:long": r"""
in (?:great |more |full )?detail
detailed
in[- ]depth
elaborate
comprehensive(?:ly)?
thorough(?:ly)?
long answer
at length
exhaustive(?:ly)?
be verbose
essay
""",
    "format:json": r"""
\bjson\b
""",
    "format:yaml": r"""
\byaml\b
""",
    "format:xml": r"""
\bxml\b
""",
    "format:csv": r"""
\bcsv\b
""",
    "format:markdown": r"""
\bmarkdown\b
""",
    "format:html": r"""
as html
in html
html format
""",
    "format:table": r"""
(?:as|in|into) a (?:markdown )?table
\bmarkdown table\b
in table form
tabular
table format
as a grid
""",
    "format:list": rf"""
bullet(?:ed)?(?: points?| list)?
as a list
in a list{ORDER_ENDS}
numbered list
as bullets
list form
listicle
checklist
to-?do list
""",
    "format:order": r"""
timeline
chronological(?:ly)?
in (?:the )?order (?:of|they)
(?:sorted|ordered|ranked) by
in date order
(?:earliest|oldest|soonest|newest|latest|most recent|most urgent)(?: \w+)? (?:first|on top)
(?:earliest|oldest|soonest) to (?:the )?(?:newest|latest)
""",
    "format:steps": r"""
step[- ]by[- ]step
in steps
""",
    "format:poem": r"""
\bpoem\b
in verse
\brhym(?:e|es|ing)\b
""",
    "format:haiku": r"""
haiku
5-7-5
""",
    "format:limerick": r"""
limerick
""",
    "format:sonnet": r"""
sonnet
""",
    "format:story": r"""
as a story
short story
as a narrative
fairy ?tale
""",
    "format:bare": rf"""
(?:only|just) (?:the )?code
code only
no explanation
without (?:any )?explanation
nothing else(?=\W*$|\))
no (?:prose|commentary|chit-?chat|chatter|talk|reasoning|extra (?:text|words))
without (?:any )?(?:commentary|prose)
skip (?:the )?(?:commentary|explanations?|prose|chit-?chat)
(?:don'?t|do not) explain(?: (?:it|them|anything))?\b
no (?:intro(?:duction)?|preamble|fluff)\b{ORDER_ENDS}
(?:skip|without) (?:the |any |an )?(?:intro(?:duction)?|preamble|fluff)\b{ORDER_ENDS}
""",
    "format:tweet": r"""
as a tweet
tweet
""",
    "format:email": r"""
as an email
in an email
email format
""",
    "format:outline": r"""
outline
""",
    "audience:child": r"""
(?:explain (?:it )?)?like i'?m (?:five|5|a child|a kid|ten|10|six|6|seven|eight|a toddler)
(?:explain (?:it )?)?like (?:i am|you'?re talking to) (?:five|5|a child|a kid)
eli5
(?:for|to) a (?:child|kid|toddler)(?! (?:component|process|node|element|class|thread|window)s?\b)
(?:for|to) a (?:\d+|five|six|seven|eight|ten)[- ]year[- ]old
for (?:kids|children)
for \d+[- ]?(?:year[- ]olds|yos?)\b
(?:five|5|ten|10)[- ]year[- ]old
\bfor (?:a|my|our) (?:\d+|two|three|four|five|six|seven|eight|nine|ten)[- ]?(?:years?|yrs?)[- ]old\b
\bfor (?:a|my|our) (?:\d+|two|three|four|five|six|seven|eight|nine|ten)[- ]?y/?o\b
\b(?:kindergart[ae]ners?|preschoolers?)\b
\b(?:first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th)[- ]grade(?:rs?| kids?| class)\b
\b(?:first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th)[- ]grade (?:students?|level)\b
\b(?:little kid|kid[- ]level)\b
\b(?:small|young|little) (?:child|children|kids?)\b
\b(?:so|that) (?:a|my) (?:[1-9]|1[0-2]|two|three|four|five|six|seven|eight|ten)[- ]year[- ]old\b
\beli(?:[1-9]|1[0-2])\b
""",
    "audience:beginner": r"""
(?:for|to) (?:a |an |absolute )?(?:beginners?|novices?|newbies?|noobs?|dummies|laym[ae]n|layperson)
i'?m (?:a |an )?(?:total |complete |absolute )?(?:beginner|novice|newbie|noob)
an? (?:total|complete|absolute) (?:beginner|novice|newbie|noob)
for (?:non[- ]?technical (?:people|person|audience)|someone new)
for (?:my )?(?:grandma|granny|grandmother|grandpa|grandfather)\b
(?:in )?(?:simple|plain|layman'?s?) (?:terms|english|words|language)
\b(?:simple,? )?(?:everyday|normal|plain)(?:,? simple)? (?:words|wording|language|terms)
plain-english
simply put
explain (?:it )?simply
\bsimply[.!?]*$
dumb(?:ed)? (?:it )?down
non[- ]?technical
non[- ](?:tech|techie|scientist|expert|specialist)s?\b
\bno (?:\w+ )?jargon
\bjargon[- ]free
(?:without|skip(?:ping)?|avoid(?:ing)?) (?:the |any )?(?:\w+ )?(?:jargon|legalese|technical terms)
\bno legalese
(?:no|without (?:a|any)) (?:\w+ )?background
assume i know nothing
\b(?:an? )?(?:easy|simple|layman'?s) explanation
new (?:coder|programmer|developer) here
(?:aren'?t|not) (?:very )?(?:techy|tech[- ]savvy|technical)
""",
    "audience:expert": r"""
for (?:an? )?(?:experts?|phd|professionals?|specialists?|scientists?|engineers?|developers?)
for (?:an? )?(?:advanced (?:users?|readers?|audience)|senior)
(?<!non-)(?<!non )technical (?:detail|depth|audience)
(?:at|on) a (?:phd|graduate|expert) level
for an? (?:economics |physics |cs )?(?:phd|grad(?:uate)?) student
""",
    "tone:formal": r"""
\bformal(?:ly)?\b
professional (?:tone|style|way|e-?mail|letter|message)
more professional
sound professional
professionally
(?:professional|official)[- ]sounding
\btone (?:is |should be |to be |must be )?(?:formal|professional)\b
(?:keep|make) (?:it|the tone|things) (?:formal|professional)\b
""",
    "tone:casual": r"""
\bcasual(?:ly)?\b
\bchill (?:e-?mail|message|note|text|reply|tone|vibe)
laid[- ]back
informal(?:ly)?
friendly tone
conversational
""",
    "tone:funny": r"""
\bfunny\b
humou?rous(?:ly)?
hilarious
make (?:it|me) laugh
\bjokes?\b
witty
sarcastic(?:ally)?
snarky
""",
    "tone:persona": r"""
in the (?:style|voice|tone|manner) of
as if you (?:were|are)
pretend (?:you'?re|you are|to be)
\bact as\b
role-?play
like a pirate
pirate
shakespeare
in character
""",
    "tone:other": r"""
\byou are an?\b
angry
rude
passive[- ]aggressive
enthusiastic(?:ally)?
dramatic(?:ally)?
poetic(?:ally)?
cheerful
sad tone
motivational
inspirational
romantic(?:ally)?
academic tone
""",
    # A tone asked for without naming one ("watch the tone"); a named tone says more.
    "tone:some": r"""
\btone\b
""",
    "extra:examples": r"""
(?:with|w/|using) (?:an? |some )?(?:step by step |[\w-]+ )?examples?
give (?:me )?(?:an? )?examples?
include (?:an? |some )?(?:[\w-]+ )?examples?
for example
show (?:me )?(?:an? )?examples?
example code
code samples?
with code
""",
    "extra:sources": r"""
sources
citations?
\bcite\b
references
with links?
footnotes
""",
    "extra:compare": r"""
\band compare\b
compare (?:it|them|this) (?:with|to)
and contrast
pros (?:and|&|vs\.?|/) cons
pros/cons
advantages and disadvantages
upsides and downsides
""",
    "extra:why": r"""
and (?:explain )?why
explain (?:your|the) reasoning
show (?:your|the) (?:work|reasoning)
justify
with (?:an? )?explanation
explain your answer
""",
    "extra:more": rf"""
(?:,|\band|\bthen|\balso) (?:then )?(?:explain|describe|list|include|add|show)\b
(?:,|\band|\bthen|\balso) (?:then )?give\b(?! {DELIVERED})
(?:,|\band|\bthen|\balso) (?:then )?(?:compare|summari[sz]e|rank|sort)\b
(?:,|\band|\bthen|\balso) (?:then )?(?:rewrite|turn|translate|format)\b
(?:,|\band|\bthen|\balso) (?:then )?make\b(?! it (?:short|brief|casual|formal|funny|simple)\b)
""",
    "extra:summary": r"""
with a summary
summari[sz]e at the end
and a summary
tl;?dr at the end
""",
    "directive:ignore": r"""
ignore (?:all |any |the |your )?(?:previous|prior|above|earlier|other|system)
disregard
forget (?:all |your |the )?(?:previous|prior|instructions)
jailbreak
developer mode
\byou are (?:now )?dan\b
\bdan mode\b
do anything now
new instructions
override
""",
    "directive:false": r"""
\bwrong(?:ly)?\b
incorrect(?:ly)?
\bfalse(?:ly)?\b
\blie\b
\blies\b
\blying\b
\bfake\b
made[- ]up
make (?:it|something|stuff) up
misleading
mislead
inaccurate
untrue
""",
    "directive:say": r"""
(?:say|tell (?:me|them|everyone|users?)|claim|insist|state) (?:that|it'?s|it is|they'?re)
(?:confirm|assure me|reply|respond|answer) (?:that|it'?s|it is|they'?re)
(?:say|reply|respond|answer) (?:with (?:only|just)?|only|yes|no\b)
always (?:say|answer|reply|respond)
only (?:say|answer|reply|respond)
""",
    "directive:link": r"""
https?://
www\.
\b(?:a|the|your|with|include|add|insert|put|share|drop) (?:\w+ )?(?:links?|urls?) (?:to|at|for)\b
\bvisit (?:\S+\.\S+|(?:our|my|the|this|their) (?:site|website|page|store|shop|blog|channel))
\bclick\b
promo(?:tion)? code
coupon
discount code
\bsubscribe\b
follow (?:me|us)
sponsored
advert
""",
    "directive:end": r"""
\bend (?:with|by|your|it with|the answer)
\bstart (?:with|by|your)
\bbegin (?:with|by|your)
sign (?:off|it)
finish (?:with|by)
conclude with
close with
\bp\.s\.
\bps:
add (?:a|the) line
""",
    "directive:mention": r"""
\bmention\b
don'?t mention
do not mention
never mention
recommend(?:ing)? (?:our|my|\w+'s)
\bpromote\b
\bplug\b
advertis
""",
    "directive:restrict": r"""
\bdon'?t\b(?! (?:get|understand|know|see|remember)\b)
\bdo not\b
\bnever\b
\bwithout\b
\bno more\b(?! than)
\bavoid\b
\bexclude\b
\bexcept\b
(?<!\bthe )(?<!\bmy )(?<!\bour )(?<!\bi )(?<!\bwe )(?<!\bit )\bonly\b
\bjust\b(?! (?:got|[a-z]+ed|[a-z]+ing|(?:a |an )?(?:short|brief|quick|simple|rough|few)|one|1)\b)
\bmust\b
\balways\b
""",
    "directive:persona": r"""
\bas an? (?:\w+ )?(?:assistant|ai|expert|doctor|lawyer|teacher|chef|pirate|robot|cat|dog)\b
\bas an? (?:\w+ )?(?:poet|comedian|ceo|salesperson|friend)\b
""",
}
INSTRUCTION = {
    label: re.compile("|".join(phrases.strip().splitlines()), re.IGNORECASE)
    for label, phrases in PHRASES.items()
}
# All of them at once, on lowercase text, from word starts only: five times quicker.
ANY_INSTRUCTION = re.compile(rf"\b(?:{'|'.join(p.pattern for p in INSTRUCTION.values())})")
# Asking about a fault ("what am I doing wrong?") is no order to answer wrongly.
FAULT_QUESTION = re.compile(
    r"\b(?:what'?s|what is|doing|did|went|go|goes|gone|anything|something|nothing|spel(?:led|t))"
    r" wrong\b|\bwrong with\b",
    re.IGNORECASE,
)
# Instructions in the request itself are a property of the request ("What does 'not'
# mean?" asks about a word): "directive:restrict" is only read in clauses outside it.
CLAUSE_ONLY = {"directive:restrict", "tone:other", "tone:some", "format:tweet", "format:outline"}

# A clause is a directive when it starts with one of these (after "and", "but", "also").
DIRECTIVE_VERBS = set("""
be answer reply respond write keep make say tell end start begin include add ignore use
format give list mention sign pretend act lie insist claim output return limit avoid
translate explain describe summarize summarise rewrite put provide show focus assume
remember only just never always don't dont stay speak talk use sound recommend
respond append prepend finish conclude close mark label cite compare contrast skip omit
""".split())  # fmt: skip
CLAUSE_LEAD = re.compile(r"^(?:and|but|also|then|so|plus|oh and|and also|and then)\s+", re.I)

# Task words before a colon that make what follows it content, not a question.
CONTENT_TASK = re.compile(
    r"\b(?:translate|translation|summari[sz]e|summary|tl;?dr|proofread|rewrite|rephrase|"
    r"paraphrase|fix|correct|shorten|simplify|classify|categori[sz]e|extract|tag|detect|grade|"
    r"reply to|respond to|debug|refactor|review|convert|reformat|edit|improve|polish|"
    r"analy[sz]e|sentiment of|this|these|following|below)\b",
    re.IGNORECASE,
)
DEICTIC = re.compile(r"\b(?:this|these|following|below)\b", re.IGNORECASE)
# A first sentence that points at content ("this", "the following"), then the content.
POINTED_CONTENT = re.compile(
    r"(?P<head>[^\n]{0,200}?\b(?:this|these|the following|following|below)\b"
    r"(?!\s+(?:morning|week|year|month|time|weekend|evening|afternoon|summer|winter|spring|"
    r"season|semester|quarter)\b)[^\n?:!]{0,80}?(?:[?:!]+|\.(?=\s)))\s+(?P<rest>\S.*)",
    re.DOTALL | re.IGNORECASE,
)
POINTER = re.compile(r"\b(?:above|that|this|these|it|here)\b", re.IGNORECASE)
FENCE = re.compile(r"```.*?(?:```|$)|~~~.*?(?:~~~|$)", re.DOTALL)
LONG_QUOTE = re.compile(r"[\"“«]([^\"”»]{40,})[\"”»]")

# -- slots ------------------------------------------------------------------------------
# fmt: off
# The five languages' names in those languages (with and without accents, German's
# inflected forms), read as the English name: "en inglés" and "en ingles" ask alike.
LANGUAGE_IN_ENGLISH = {
    name: english
    for english, names in {
        "english": "inglés ingles anglais anglaise englisch englische englischen inglês"
        " inglese",
        "spanish": "español espanol espagnol espagnole spanisch spanische spanischen"
        " espanhol spagnolo",
        "french": "francés frances français francais française francaise französisch"
        " franzosisch französische franzosische französischen francês francese",
        "german": "alemán aleman allemand allemande deutsch deutsche deutschen alemão alemao"
        " tedesco",
        "portuguese": "portugués portugues portugais portugaise portugiesisch portugiesische"
        " portugiesischen português portoghese",
        "italian": "italiano italien italienne italienisch italienische italienischen",
    }.items()
    for name in names.split()
}
HUMAN_LANGUAGES = frozenset(LANGUAGE_IN_ENGLISH) | frozenset("""
english spanish french german portuguese italian dutch russian chinese mandarin cantonese
japanese korean arabic hindi bengali urdu turkish polish swedish norwegian danish finnish
greek hebrew thai vietnamese indonesian malay tagalog filipino swahili ukrainian czech
romanian hungarian persian farsi latin catalan irish welsh croatian serbian bulgarian
slovak slovenian estonian latvian lithuanian icelandic afrikaans zulu amharic punjabi
tamil telugu marathi gujarati nepali sinhala burmese khmer lao mongolian esperanto
""".split())

# fmt: on
# Days and months by name in the six languages (accents left out), to one name each: a
# date is a slot ("Friday off" / "Monday off", "el viernes" / "el lunes"), which the
# cross-encoder served at 0.986 in Spanish. Portuguese weekdays are read with their
# "-feira" ("segunda" alone is "second"); "may" is a month only beside a number.
CALENDAR = {
    word: name
    for name, words in {
        "monday": "monday mondays lunes lundi lundis montag montags lunedi segundafeira",
        "tuesday": "tuesday tuesdays martes mardi mardis dienstag dienstags martedi tercafeira",
        "wednesday": "wednesday wednesdays miercoles mercredi mercredis mittwoch mittwochs"
        " mercoledi quartafeira",
        "thursday": "thursday thursdays jueves jeudi jeudis donnerstag donnerstags giovedi"
        " quintafeira",
        "friday": "friday fridays viernes vendredi vendredis freitag freitags venerdi sextafeira",
        "saturday": "saturday saturdays sabado sabados samedi samedis samstag samstags sonnabend",
        "sunday": "sunday sundays domingo domingos dimanche dimanches sonntag sonntags domenica",
        "january": "january enero janvier januar janner janeiro gennaio",
        "february": "february febrero fevrier februar fevereiro febbraio",
        "march": "march marzo mars marz maerz marco",
        "april": "april abril avril aprile",
        "may": "maydated mayo mai maio maggio",
        "june": "june junio juin juni junho giugno",
        "july": "july julio juillet juli julho luglio",
        "august": "august agosto aout",
        "september": "september septiembre setiembre septembre setembro settembre",
        "october": "october octubre octobre oktober outubro ottobre",
        "november": "november noviembre novembre novembro",
        "december": "december diciembre decembre dezember dezembro dicembre",
    }.items()
    for word in words.split()
}
CALENDAR_PHRASES = (
    (re.compile(r"\b(segunda|terca|quarta|quinta|sexta)[- ]feiras?\b"), r"\1feira"),
    (re.compile(r"\bmay(?=\s+\d)|(?<=\d )may\b|(?<=\d(?:st|nd|rd|th) )may\b"), "maydated"),
)
TECH_TOKEN = re.compile(r"(?<![\w#+])(?:[a-z][a-z0-9]*(?:\.js)?|c\+\+|c#)(?![\w#+])")
URL_OR_EMAIL = re.compile(
    r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+\.[\w.]+"
)  # "English please", "french translation of": the answer's language, as a whole clause.
LANGUAGE_ALONE = re.compile(
    r"^\W*(?P<language>[a-z]+)(?: translation| version)?(?: of)?(?: please| pls| only)?\W*$",
    re.IGNORECASE,
)
# "Arabic translation of ...", "Spanish for '...'", "Japanese: '...'": the language asked
# for, named before what is to be translated.
LANGUAGE_NAMED = re.compile(r"\b(?P<language>[a-z]+) (?:translation|version)\b", re.IGNORECASE)
# "What's the Korean for '...'?", "the Vietnamese way to say: ...".
LANGUAGE_FOR = re.compile(
    r"\bthe (?P<language>[a-z]+) (?:for|word for|phrase for|way to say)\b", re.IGNORECASE
)
LANGUAGE_LEADING = re.compile(
    r"^\W*(?P<language>[a-z]+)(?: please| pls| plz)?(?: for\b|:)", re.IGNORECASE
)
PLAIN_ENGLISH = re.compile(r"\b(?:plain|simple) english\b")
# "in French" closing a clause (or before "please", "asap", a dash or "for our sign") asks
# for the answer in French ("the French Revolution" is a subject, a slot).
ANSWER_LANGUAGE = re.compile(
    r"\b(?:in|into|to) (?P<language>[a-z]+)"
    r"(?=\s*(?:$|[.,!?;:—–→]|- |please\b|pls\b|plz\b|asap\b|thx\b|thanks\b|and\b|only\b"
    r"|for (?:me|us|my|our|an?|the)\b))",
    re.IGNORECASE,
)
# The answer's language in the prompt's own language ("en inglés", "auf Englisch", "ins
# Englische", "em inglês", "in inglese"), anywhere in a sentence: German puts the verb
# after it ("Fasse den Text auf Englisch zusammen").
ANSWER_LANGUAGE_ABROAD = re.compile(
    rf"\b(?:en|em|in|auf|ins|al|ao|a|à|pro|pra|para(?: o| el)?|vers(?: l')?|nell'|nel)\s*"
    rf"(?P<language>{'|'.join(sorted(LANGUAGE_IN_ENGLISH, key=len, reverse=True))})\b",
    re.IGNORECASE,
)
# Each names the answer's language in its group "language" (when it is one).
ANSWER_LANGUAGES = (
    ANSWER_LANGUAGE,
    LANGUAGE_ALONE,
    LANGUAGE_NAMED,
    LANGUAGE_FOR,
    LANGUAGE_LEADING,
    ANSWER_LANGUAGE_ABROAD,
)

# A word's letters: no digits, no underscores.
LETTERS = re.compile(r"[^\W\d_]+")
SENTENCE_MARKS = r".,!?;:'\"()\[\]¿¡…“”‘’«»–—"
# A word, a run of symbols other than sentence punctuation ("x != y" is not "x = y"), or
# marks standing alone between spaces, an operator ("!! and ?." / "?. and ?:" in Kotlin).
WORD = re.compile(
    rf"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]*[^\w\s{SENTENCE_MARKS}][^\w\s]*"
    rf"|(?<=\s)(?!\.+\s)[{SENTENCE_MARKS}]{{2,}}(?=\s)"
)
# Sentence ends; and a capitalized order in mid-sentence starts one ("... work Just say").
SENTENCE_END = re.compile(
    r"(?<=[.?!;])\s+|\n+|(?<=[?!])(?=[A-Z¿¡])|\s+[-–—]\s+|\s+(?=(?:Be|Answer|Reply|Respond|"
    r"Keep|Say|Tell|Ignore|Just|Only|Never|Always|Don't|Do not|Pretend|Forget|Disregard)\b)"
)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt taken apart. Two prompts with equal parts have one answer."""

    language: str  # "en", "es", "fr", "de", "pt", "it", or OTHER_SCRIPT
    request: str  # the request's words, benign noise and instruction phrases removed
    instructions: frozenset[str]  # what the answer must be like ("length:short", ...)
    slots: frozenset[str]  # values the answer depends on ("lang:french", "tech:python", ...)
    payload: str  # inline content, normalized; "" when there is none
    # The whole text normalized as the payload is: where the other prompt's payload must
    # appear when the two drew the line between request and content in other places.
    content: str = field(default="", compare=False)
    # The text without greetings, thanks and smileys, as the lexical guards read it (counts
    # spelt in es/fr/de/pt/it written in digits).
    stripped: str = field(default="", compare=False)
    # The smileys taken out: one side's are benign, two different ones are not.
    smileys: frozenset[str] = field(default=frozenset(), compare=False)
    # What a question in another language than English asks for ("when", "how", ...):
    # the models read those languages through an English vocabulary and see it least.
    asks: str | None = field(default=None, compare=False)
    # Languages the request's words tell apart no better than `language`.
    tied: frozenset[str] = field(default=frozenset(), compare=False)
    # What a prompt with inline content asks done to it ("summarize", "translate", ...).
    tasks: frozenset[str] = field(default=frozenset(), compare=False)
    # The request came after the content ("<notes>\n\naction items?").
    asked_below: bool = field(default=False, compare=False)


def benign_stripped(text: str) -> str:
    """The text without what never changes an answer: greetings, openers ("quick
    question:"), please, thanks and sign-offs, smileys, and extra whitespace."""
    text = without_please(without_smileys(text)[0])
    text = " ".join(text.split()) if "\n" not in text.strip() else text.strip()
    previous = None
    while previous != text:
        previous = text
        text = LEADING.sub("", text, count=1).strip()
        text = LEADING_ASK.sub("", text, count=1).strip()
        text = TRAILING.sub("", text, count=1).strip()
    return text


def without_please(text: str) -> str:
    """The text without please, but for a quoted one: that is what is asked about
    ("Translate 'please sit down'" / "Translate 'sit down'")."""
    kept, end = [], 0
    for quote in QUOTED.finditer(text):
        kept += [POLITE.sub("", text[end : quote.start()]), quote.group(0)]
        end = quote.end()
    return "".join([*kept, POLITE.sub("", text[end:])])


def without_smileys(text: str) -> tuple[str, frozenset[str]]:
    """The text in NFKC with each smiley replaced by a space, and the smileys taken out;
    an emoji that closes the text after a sentence or a word that carries meaning is one
    too ("carbonara for 2 🍝"), but not one a function word asks for ("a slice of 🍕")."""
    text, found = normalize("NFKC", text), []
    for smiley in SMILEYS:
        found += smiley.findall(text)
        text = smiley.sub(" ", text)
    start = closing_emoji(text)
    said = text[:start].rstrip()
    last = said.rsplit(maxsplit=1)[-1].lower() if said else ""
    if start < len(text) and (
        said.endswith((".", "!", "?")) or (last.isalpha() and last not in FUNCTION_WORDS)
    ):
        found.append("".join(text[start:].split()))
        text = said
    return text, frozenset(found) - EMOJI_JOINERS


def closing_emoji(text: str) -> int:
    """Where the emoji that close a text start (with their modifiers and the spaces between
    them), or the text's length where none does. A walk back, not a pattern searched from
    every position: that took seconds on a long run of spaces."""
    start = end = len(text.rstrip())
    while start > 0 and (is_emoji(text[start - 1]) or text[start - 1].isspace()):
        start -= 1
    while start < end and text[start].isspace():
        start += 1
    return start if start < end else len(text)


def is_emoji(character: str) -> bool:
    """A pictograph or symbol, or a part of one (a joiner, a variation selector, a skin tone)."""
    return EMOJI.match(character) is not None


def americanized(words: str) -> str:
    words = BRITISH_WORD.sub(lambda m: BRITISH_WORDS[m.group(0)], words)
    for pattern, replacement in BRITISH:
        words = pattern.sub(replacement, words)
    return words


def canonical_words(text: str) -> str:
    """Lowercase words, British spelling written the American way, punctuation gone
    (but symbols between words kept: "x != y" is not "x = y"), and a hyphen between two
    words read as a space ("git-commit" / "git commit", "Firmen-VPN" / "Firmen VPN")."""
    plain = COMPOUND_HYPHEN.sub(" ", without_accents(text.lower()))
    return americanized(" ".join(WORD.findall(plain.replace("’", "'"))))


# A hyphen between two words of two letters or more ("ENFP-A" keeps its letter).
COMPOUND_HYPHEN = re.compile(r"(?<=[^\W\d_]{2})-(?=[^\W\d_]{2})")


def split_payload(text: str) -> tuple[str, str, bool]:
    """(the request with its instructions, the inline content, whether the request came
    after the content) of a benign-stripped text."""
    payload_parts = [m.group(0) for m in FENCE.finditer(text)]
    text = FENCE.sub(" ", text)
    for m in LONG_QUOTE.finditer(text):
        payload_parts.append(m.group(1))
    text = LONG_QUOTE.sub(" ", text)
    pointed = DEICTIC.search(text) and POINTED_CONTENT.match(text)
    lines = [line for line in text.split("\n") if line.strip()]
    content_first = asked_below(text)
    if content_first:
        # "<blog post>\n\nneed a title for this": the content first, then the request.
        payload_parts.append(content_first[0])
        text = content_first[1]
    elif pointed and len(pointed.group("rest").split()) >= 4:
        # "Summarize this email: ...", "What does this do?\n...": what follows is the content.
        head, rest = pointed.group("head"), THANKS_LINE.sub("", pointed.group("rest"), count=1)
        said, _, below = rest.partition("\n")
        if not head.endswith(":") and below.strip() and (is_directive(said) or is_question(said)):
            # "What is the sentiment of this tweet? Answer positive or negative.\n<tweet>"
            head, rest = f"{head} {said}", below
        payload_parts.append(rest)
        text = head
    elif len(lines) > 1 and points_back(lines[-1]):
        # "<content>\n\n^ translate that to Spanish": the request after what it works on.
        payload_parts.append("\n".join(lines[:-1]))
        text = lines[-1]
    elif len(lines) > 1:
        # What follows the first line of a prompt with several is what it works on.
        head, rest = lines[0], "\n".join(lines[1:])
        payload_parts.append(rest)
        text = head
    else:
        text = " ".join(text.split())
        colon = text.find(": ")
        if colon > 0:
            # "Translate to French: ..." and "French pls: ..." are content; "one sentence:
            # what is X?" a question.
            head, rest = text[:colon], text[colon + 2 :]
            asked = rest.rstrip().endswith("?") and not DEICTIC.search(head)
            task = (
                (CONTENT_TASK.search(head) or language_alone(head))
                and len(head.split()) <= 15
                and not asked
            )
            if (task and len(rest.split()) >= 4) or (len(rest.split()) >= 25 and not asked):
                payload_parts.append(rest)
                text = head
    return text.strip(), "".join(payload_key(part) for part in payload_parts), bool(content_first)


def language_alone(text: str) -> bool:
    """Whether a text only names a language ("Japanese", "italian pls"): one to translate
    into, before the text to translate."""
    named = LANGUAGE_ALONE.match(text)
    return named is not None and named.group("language").lower() in HUMAN_LANGUAGES


def asked_below(text: str) -> tuple[str, str] | None:
    """(the content, the request) of a text that gives its content first and asks in a
    last short paragraph ("<meeting notes>\n\naction items w/ owners?"), or None: where
    the first line asks or points ("Summarize this:", "What does this do?") the request
    comes first, and a short last paragraph is more of the content ("Thanks, Joe"); a
    first line that only opens the content ("Traceback (most recent call last):") asks
    nothing."""
    *before, last = re.split(r"\n[^\S\n]*\n", text.strip())
    if not before or "\n" in last or len(last.split()) > ASKED_BELOW_MAX_WORDS:
        return None
    first = before[0].split("\n", 1)[0].rstrip()
    if first.endswith("?") or is_directive(first):
        return None
    # "Translate to French:", "Fix:" ask; "Traceback (most recent call last):" does not.
    if first.endswith(":") and CONTENT_TASK.search(first):
        return None
    if POINTER.search(first) and len(first.split()) <= ASKED_BELOW_MAX_WORDS:
        return None
    return "\n\n".join(before), last


# The most words of a request that follows its content ("rewrite that to be courteous").
ASKED_BELOW_MAX_WORDS = 20


def points_back(line: str) -> bool:
    """A last line that asks about the lines above it: "^ translate that to Spanish",
    "what does that come to per month", "make this valid json"."""
    if len(line.split()) > 15:
        return False
    return line.lstrip().startswith("^") or (
        POINTER.search(line) is not None and (is_question(line) or is_directive(line))
    )


def payload_key(content: str) -> str:
    """Inline content as compared: without code fences and their language tag, quotes,
    backticks, whitespace and commas (a list written on lines or with commas)."""
    content = CODE_FENCE.sub("", normalize("NFKC", content))
    return re.sub(r"[\s,;`\"“”'‘’«»]+", "", content)


def clauses(text: str) -> list[str]:
    return [c.strip() for c in SENTENCE_END.split(text) if c and c.strip()]


def is_question(clause: str) -> bool:
    return clause.rstrip().endswith(("?", "？")) or bool(
        re.match(
            r"(?:what|how|why|when|where|which|who|whom|whose|is|are|can|could|should|would|"
            r"do|does|did|will|was|were|has|have|may|qu[eé]|c[oó]mo|por qu[eé]|cu[aá]l|d[oó]nde|"
            r"comment|pourquoi|quel|wie|warum|was|wo|welche|come|perch[eé]|dove|quando|onde)\b",
            clause,
            re.IGNORECASE,
        )
    )


def is_directive(clause: str) -> bool:
    words = CLAUSE_LEAD.sub("", clause.lower()).split()
    return bool(words) and words[0].strip(",.:;!") in DIRECTIVE_VERBS and not is_question(clause)


def instruction_labels(text: str, whole_clause: bool) -> set[str]:
    text = FAULT_QUESTION.sub(" ", text)
    found = set()
    if ANY_INSTRUCTION.search(text.lower()):  # one pass rules out most texts
        for label, pattern in INSTRUCTION.items():
            if label in CLAUSE_ONLY and not whole_clause:
                continue
            if pattern.search(text):
                found.add(label)
    if "extra:more" in found and not adds_to_request(text):
        found.discard("extra:more")
    for m in LENGTH_COUNT.finditer(text.lower()):
        found.add(f"length:{length_of(m)}")
    for m in LENGTH_LIMIT.finditer(text.lower()):
        found.add(f"length:max {length_of(m)}")
    if ONE_TWEET.search(text):
        found.add("length:1 tweet")  # as "a tweet" reads in LENGTH_COUNT
    for pattern in ANSWER_LANGUAGES:
        for m in pattern.finditer(text):
            if (language := m.group("language").lower()) in HUMAN_LANGUAGES:
                found.add(f"answer:{LANGUAGE_IN_ENGLISH.get(language, language)}")
    return found


# A tweet's own length, said of a tweet.
TWEET_LENGTHS = frozenset({"length:280 character", "length:max 280 character"})
# A tweet to write named otherwise than "a tweet": "tweet for our launch", "the announcement
# tweet", "a post for Twitter/X", "an X post", "tweet-length" (not "Tweet sentiment:", a
# tweet to read).
ONE_TWEET = re.compile(
    r"^\W*tweet (?:for|about|announcing|saying|on)\b|\b(?:announcement|launch|promo) tweet\b"
    r"|\b(?:twitter|x)(?: ?/ ?(?:twitter|x))? post\b|\bpost for (?:twitter|x)\b"
    r"|\btweet[- ]length\b",
    re.IGNORECASE,
)


def adds_to_request(text: str) -> bool:
    """Whether an order read as "extra:more" comes after a request it adds to: "Write a poem,
    and explain its meter" adds one; after a comma that follows no question and no order
    it is the request itself ("From the notes below, give me a list of tasks",
    "photosynthesis, explain like I'm five", "charged 35 for overdraft, explain"), unless
    it says it adds ("recipe for guacamole, give the calories too")."""
    for m in INSTRUCTION["extra:more"].finditer(text):
        before, after = text[: m.start()], text[m.end() :]
        if not m.group(0).startswith(",") or ASKS.search(before) or ordered(before):
            return True
        if ADDED.search(after):
            return True
    return False


# A question anywhere before the order ("In pandas, how do I group by region, then sort").
ASKS = re.compile(r"\?|\b(?:how|what|why|which|when|where|who|whom|whose)\b", re.IGNORECASE)
ADDED = re.compile(r"\b(?:too|as well|also|in addition|besides)\b", re.IGNORECASE)


def ordered(text: str) -> bool:
    """Whether a text gives an order: a directive verb or a content task among its words."""
    words = set(LETTERS.findall(text.lower()))
    return bool(words & DIRECTIVE_VERBS) or CONTENT_TASK.search(DEICTIC.sub(" ", text)) is not None


# A clause that asks for the answer and nothing around it, however it says so: "Just the
# regex, nothing else." / "Output only the pattern." / "city name only" / "Reply with the
# SQL alone." It names the answer's form, with words that only deliver it.
ALONE = re.compile(r"\b(?:only|just|alone|solely|strictly|purely|pure)\b")
ANSWER_FORMS = frozenset("""
answer code snippet regex regexp pattern expression command query sql formula function
script name number value result output json csv yaml
""".split())  # fmt: skip
# Words that only deliver the answer or qualify its form ("the final answer", "the city
# name", "the shell command").
ANSWER_DELIVERY = frozenset("""
return print send provide show must format formatted pls plz need want
final actual raw exact full city shell bash terminal file
""".split())  # fmt: skip
POEM_FORMS = frozenset({"format:haiku", "format:limerick", "format:sonnet"})
DATA_FORMATS = frozenset({"format:json", "format:yaml", "format:xml", "format:csv"})
# What a clause read as asking for the answer alone no longer says besides.
ANSWER_ALONE_READS = frozenset({"directive:restrict", "directive:say"})


def asks_answer_alone(clause: str) -> bool:
    """Whether a clause only asks for the bare answer: "only", "just", "alone" and the
    like with words that name the answer's form or deliver it, or a "nothing else"."""
    lowered = clause.lower()
    alone = ALONE.search(lowered) is not None
    if not alone and not INSTRUCTION["format:bare"].search(clause):
        return False
    rest = ALONE.sub(" ", instruction_spans(clause).lower())
    words = (
        set(LETTERS.findall(rest)) - ((STOPWORDS[ENGLISH] | FILLER) - REVERSING) - ANSWER_DELIVERY
    )
    if words - ANSWER_FORMS:
        return False
    # "Only" must say of what: a form ("the query") or a format ("JSON only").
    return (
        not alone
        or bool(words)
        or any(label.startswith("format:") for label in instruction_labels(clause, True))
    )


def bare_orders_apart(parts: list[str]) -> None:
    """Set an order for the bare answer given before the request's colon ("Only the YAML
    please: a GitHub Actions config ...") or after its last comma ("who painted the mona
    lisa, name only pls") apart in `parts`, as a clause of its own."""
    if not parts:
        return
    lead, colon, asked = parts[0].partition(":")
    if colon and asked.strip() and asks_answer_alone(lead):
        parts[:1] = [lead, asked.strip()]
    asked, comma, tail = parts[-1].rpartition(",")
    if comma and asked.strip() and asks_answer_alone(tail):
        parts[-1:] = [asked.strip(), tail.strip()]


UNIT_NAMES = {
    "sentence summary": "sentence",
    "bullet point": "point",
    "bullet": "point",
    "char": "character",
}


def length_of(count: re.Match[str]) -> str:
    """A length read by LENGTH_COUNT or LENGTH_LIMIT, as "3 point" or "2-3 sentence": a
    bullet, a bullet point and a point are one unit, and so are a sentence and a sentence
    summary, a character and a char, one line and one sentence."""
    unit = UNIT_NAMES.get(unit := count.group("unit").removesuffix("s"), unit)
    n = NUMBER_WORD.get(count.group("n"), count.group("n"))
    if low := count.groupdict().get("low"):
        n = f"{NUMBER_WORD.get(low, low)}-{n}"
    if n == "1" and unit == "line":  # "in one line" asks what "in one sentence" asks
        unit = "sentence"
    return f"{n} {unit}"


def instruction_spans(text: str, kinds: tuple[str, ...] = ("",)) -> str:
    """The text with its instruction phrases (of labels starting with one of `kinds`)
    taken out (what is left is the request), and its length limits and answer language."""
    # Lengths first, a limit before a count: "no more than 5 bullet points" holds both,
    # and "bullet points" alone is a format.
    text = LENGTH_COUNT_ANY_CASE.sub(" ", LENGTH_LIMIT_ANY_CASE.sub(" ", text))
    for label, pattern in INSTRUCTION.items():
        if label not in CLAUSE_ONLY and label.startswith(kinds):
            text = pattern.sub(" ", text)
    for pattern in ANSWER_LANGUAGES:
        text = pattern.sub(
            lambda m: " " if m.group("language").lower() in HUMAN_LANGUAGES else m.group(0), text
        )
    return text


def plain_request(words: str) -> str:
    """Request words with contractions and text-speak spelt out, "how do I" / "how can I"
    read as "how to", counts to twelve as digits, and no articles: ways of asking that
    never change what is asked."""
    for pattern, replacement in REQUEST_FORMS:
        words = pattern.sub(replacement, words)
    return " ".join(words.split())


def request_words(text: str, language: str) -> str:
    """A text's words as requests are compared (canonical_words, then plain_request), with
    French and Italian elided articles and pronouns set apart, as users who skip the
    apostrophe type them ("l'australie" / "l australie", "c'est" / "c est"), the text-speak
    of the prompt's language spelt out ("q hago" / "que hago"), and German umlauts typed
    as two letters read as the one ("muenchen" / "münchen", "grösser" / "groesser")."""
    # Counts first, while "dix-sept" and "5.000" are still one word.
    words = plain_request(canonical_words(counted_in_digits(text, language)))
    if language == "de":
        words = UMLAUT_TYPED.sub(lambda m: m[0][0], words.replace("ß", "ss"))
    if spelt := SPELT_ABROAD.get(language):
        words = " ".join(spelt.get(w, w) for w in words.split())
    return words.replace("'", " ") if language in ELIDING else words


def counted_in_digits(text: str, language: str) -> str:
    """The text with the counts that its language spells written in digits, and its
    thousands without their dots, as the lexical guards read numbers ("per quattro
    persone" / "per 4 persone", "trenta giorni" / "30 giorni", "5.000 €" / "5000 €")."""
    counts = COUNTS_ABROAD.get(language)
    if counts is None:
        return text
    text = DOTTED_THOUSANDS.sub(lambda m: m[0].replace(".", ""), text)
    return COUNT_ABROAD[language].sub(lambda m: counts[m[0].lower()], text)


def counts_from_two(words: str, unit: int = 1) -> dict[str, str]:
    """Each word read as its count in `unit`s, the first as two: the tens with `unit` 10."""
    return {word: str(unit * value) for value, word in enumerate(words.split(), 2)}


# The counts from two to nineteen and the tens to ninety of es/fr/de/pt/it ("one" is also
# the article there; hundreds are left out: "per cento" is a percent), with and without
# their accents.
COUNTS_ABROAD = {
    "es": counts_from_two(
        "dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince"
        " dieciséis diecisiete dieciocho diecinueve",
    )
    | counts_from_two("veinte treinta cuarenta cincuenta sesenta setenta ochenta noventa", unit=10)
    | {"dieciseis": "16"},
    "fr": counts_from_two(
        "deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze"
        " seize dix-sept dix-huit dix-neuf",
    )
    | counts_from_two("vingt trente quarante cinquante soixante", unit=10)
    | {"soixante-dix": "70", "quatre-vingt": "80", "quatre-vingts": "80", "quatre-vingt-dix": "90"},
    "de": counts_from_two(
        "zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn"
        " fünfzehn sechzehn siebzehn achtzehn neunzehn",
    )
    | counts_from_two("zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig", unit=10)
    | {"funf": "5", "zwolf": "12", "funfzehn": "15", "dreissig": "30", "funfzig": "50"},
    "pt": counts_from_two(
        "dois três quatro cinco seis sete oito nove dez onze doze treze catorze quinze"
        " dezesseis dezessete dezoito dezenove",
    )
    | counts_from_two("vinte trinta quarenta cinquenta sessenta setenta oitenta noventa", unit=10)
    | {"tres": "3", "duas": "2", "quatorze": "14", "dezasseis": "16", "dezassete": "17"},
    "it": counts_from_two(
        "due tre quattro cinque sei sette otto nove dieci undici dodici tredici quattordici"
        " quindici sedici diciassette diciotto diciannove",
    )
    | counts_from_two("venti trenta quaranta cinquanta sessanta settanta ottanta novanta", unit=10),
}
# A thousands separator as these languages write it: "5.000", "1.500.000" (not "1.5").
DOTTED_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:\.\d{3})+(?![\d.,]*\d)")
COUNT_ABROAD = {  # the longest first: "dix-sept" before "dix"
    language: re.compile(rf"\b(?:{'|'.join(sorted(counts, key=len, reverse=True))})\b", re.I)
    for language, counts in COUNTS_ABROAD.items()
}
# "ae", "oe", "ue" for "ä", "ö", "ü" (whose accents canonical_words has left out).
UMLAUT_TYPED = re.compile(r"(?<=\w)(?:ae|oe|ue)|(?<!\w)(?:ae|oe|ue)(?=\w)")
# Text-speak of es/pt/it/fr/de, word for word.
TEXT_SPEAK_ABROAD = {
    "es": {"q": "que", "pq": "porque", "xq": "porque", "tb": "tambien", "tmb": "tambien"},
    "pt": {"q": "que", "pq": "porque", "vc": "voce", "vcs": "voces", "pra": "para",
           "tb": "tambem", "tbm": "tambem", "td": "tudo", "hj": "hoje"},
    "it": {"x": "per", "ke": "che", "cmq": "comunque", "nn": "non", "xke": "perche",
           "xche": "perche"},
    "fr": {"pk": "pourquoi", "pq": "pourquoi", "qd": "quand", "bcp": "beaucoup", "tt": "tout"},
    "de": {"nich": "nicht", "is": "ist", "hab": "habe"},
}  # fmt: skip
# Each word of es/fr/de/pt/it text-speak or counts, as request_words writes it.
SPELT_ABROAD = {
    language: TEXT_SPEAK_ABROAD[language] | counts for language, counts in COUNTS_ABROAD.items()
}


def language_of(text: str, fallback: str = "") -> str:
    """The language of a text by its commonest words: en, es, fr, de, pt, it, or
    OTHER_SCRIPT for letters outside the Latin script. Where none of its words tells
    ("Estrai nome ed email in JSON"), the language of `fallback`; else English."""
    return reading_of(text, fallback)[0]


def reading_of(text: str, fallback: str = "") -> tuple[str, frozenset[str]]:
    """The language of a text (see language_of), and the languages its words tell apart
    no better than the best one ("comment on conjugue aller": "comment" is French, "on"
    English): either may be the text's. One scoring of the words serves both."""
    scores = language_scores(text)
    if scores is None:
        return OTHER_SCRIPT, frozenset()
    top = max(scores.values())
    if top == 0:
        if fallback:
            return language_of(fallback), frozenset()
        return common_language(text), frozenset()
    tied = frozenset(lang for lang, score in scores.items() if score == top)
    best = max(scores, key=lambda lang: (scores[lang], lang == ENGLISH))
    if best != ENGLISH and scores[best] <= scores[ENGLISH]:
        return ENGLISH, tied
    return best, tied


def common_language(text: str) -> str:
    """The language most of a text's longer words are common in, English on a tie: a
    terse prompt no common word tells ("recette pate a crepe 4 pers", "valori normali
    pressione adulto?") is not English for want of "the"; the models cannot judge it."""
    words = LETTERS.findall(without_accents(text).lower())
    counts = {
        lang: sum(w in common for w in words if len(w) >= COMMON_WORDS_MIN_LETTERS)
        for lang, common in COMMON_WORDS.items()
    }
    best = max(counts, key=lambda lang: (counts[lang], lang == ENGLISH))
    return best if counts[best] > counts[ENGLISH] else ENGLISH


def language_scores(text: str) -> dict[str, int] | None:
    """How many of a text's words (and marks) are each language's; None for letters
    outside the Latin script."""
    letters = [c for c in text if c.isalpha()]
    if letters:
        latin = sum(normalize("NFD", c)[0].isascii() for c in letters)
        if latin < 0.8 * len(letters):
            return None
    lowered = text.lower()
    words = re.findall(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", lowered.replace("’", "'"))
    scores = {
        lang: sum(w in stop for w in words) + sum(w in TELLTALE.get(lang, ()) for w in words)
        for lang, stop in STOPWORDS.items()
    }
    if "¿" in text or "¡" in text or "ñ" in lowered:
        scores["es"] += 2
    if re.search(r"[ãõ]", lowered):
        scores["pt"] += 2
    if re.search(r"[äöüß]", lowered):
        scores["de"] += 2
    if "ç" in lowered:  # "diferença", "français": neither Spanish nor Italian
        scores["pt"] += 1
        scores["fr"] += 1
    if re.search(r"[ìò]", lowered):  # "così", "però"
        scores["it"] += 1
    return scores


def slot_values(text: str) -> set[str]:
    """The languages and technologies a text names, the days and months, and its links
    and addresses."""
    lowered = PLAIN_ENGLISH.sub(" ", text.lower().replace("’", "'"))
    found = {
        f"lang:{LANGUAGE_IN_ENGLISH.get(w, w)}"
        for w in LETTERS.findall(lowered)
        if w in HUMAN_LANGUAGES
    }
    found |= {f"tech:{TECH[w]}" for w in TECH_TOKEN.findall(lowered) if w in TECH}
    found |= {f"ref:{m.group(0).rstrip('.,;:!?)').lower()}" for m in URL_OR_EMAIL.finditer(text)}
    dated = without_accents(lowered)
    for pattern, replacement in CALENDAR_PHRASES:
        dated = pattern.sub(replacement, dated)
    found |= {f"date:{CALENDAR[w]}" for w in LETTERS.findall(dated) if w in CALENDAR}
    return found


def other_slots(a: frozenset[str], b: frozenset[str]) -> bool:
    """A link or address on one side only, or a language, technology, day or month
    swapped for another ("in Python" / "in JavaScript", "on Friday" / "in March"). One
    named on one side only is a detail the other leaves open ("... in Go?" / "... with
    goroutines?"), and passes."""
    if {v for v in a ^ b if v.startswith("ref:")}:
        return True
    return any(
        any(v.startswith(kind) for v in a - b) and any(v.startswith(kind) for v in b - a)
        for kind in ("lang:", "tech:", "date:")
    )


def decompose(text: str) -> Prompt:
    """Take a prompt apart into its language, request, instructions, slots and payload."""
    stripped = benign_stripped(text)
    head, payload, content_first = split_payload(stripped)
    # A clause of thanks or a lone emoji after the question is no instruction.
    parts = [c for c in map(benign_stripped, clauses(head)) if any(ch.isalnum() for ch in c)]
    # The request: up to its first question (context before it belongs to the request).
    # A clause after the question, or one that gives an order, is an instruction.
    bare_orders_apart(parts)
    request_parts, instructions = [], set()
    language, tied = reading_of(head, fallback=stripped)
    core_end = next((i + 1 for i, c in enumerate(parts) if is_question(c)), len(parts))
    for i, clause in enumerate(parts):
        bare = (i > 0 or len(parts) > 1) and not is_question(clause) and asks_answer_alone(clause)
        trailing = bare or i >= core_end or (i > 0 and is_directive(clause))
        # Counts spelt in the prompt's language are counts ("tres ideas" / "3 ideas").
        labels = instruction_labels(counted_in_digits(clause, language), whole_clause=trailing)
        if bare:  # "Only output the query." / "Command only.": no other order
            instructions |= labels - ANSWER_ALONE_READS | {"format:bare"}
            continue
        instructions |= labels
        # A further question ("How do I fix it?") is more of the request, for the verifier.
        if trailing and not is_question(clause):
            said = plain_request(canonical_words(instruction_spans(clause)))
            leftover = said.replace("'", "").split()
            if any(w not in DIRECTIVE_VERBS | FILLER | HUMAN_LANGUAGES for w in leftover):
                instructions.add("clause:" + " ".join(leftover))
        else:
            request_parts.append(instruction_spans(clause) if labels else clause)
    request = request_words(" ".join(request_parts), language)
    if "audience:child" in instructions:  # "in simple words a 10 year old would get"
        instructions.discard("audience:beginner")
    if "length:1 tweet" in instructions:  # "a tweet under 280 characters" says it twice
        instructions -= TWEET_LENGTHS
    if instructions & POEM_FORMS:  # "a 5-7-5 poem" is a haiku
        instructions.discard("format:poem")
    if any(i.startswith("tone:") and i != "tone:some" for i in instructions):
        instructions.discard("tone:some")  # "keep the tone professional" names it
    tasks = tasks_named(head, instructions) if payload else frozenset()
    if "summarize" in tasks:
        instructions.discard("length:short")  # a summary is short: "tl;dr", "briefly"
    lexical = stripped
    if "format:bare" in instructions:  # "no explanation" negates nothing the answer says
        lexical = INSTRUCTION["format:bare"].sub(" ", stripped)
        if instructions & DATA_FORMATS:  # "JSON only" is JSON: data comes bare
            instructions.discard("format:bare")
    return Prompt(
        stripped=counted_in_digits(lexical, language),
        smileys=without_smileys(text)[1],
        content=payload_key(stripped),
        language=language,
        tied=tied,
        asks=asked_for(head) if language != ENGLISH or tied - {ENGLISH} else None,
        tasks=tasks,
        request=request,
        instructions=frozenset(instructions),
        slots=frozenset(slot_values(head)),
        payload=payload,
        asked_below=content_first,
    )


# Words left of an instruction clause once its phrases are out: "answer it in one sentence".
FILLER = set("""
it its the a an to in on with me my your you answer this that all please of as and or
for is are be so keep make give write use reply respond also then your answer response
output text under less fewer than below exactly most max maximum only just looking am
""".split())  # fmt: skip


# Thanks and greetings as payload_key writes them (no whitespace), when they are taken
# into the payload.
COMPACT_THANKS = re.compile(rf"[\W_]*(?:{THANKS.replace(' ', '')})[\W_]*", re.IGNORECASE)
COMPACT_GREETING = re.compile(rf"(?:{GREETING.replace(' ', '')})[\W_]*", re.IGNORECASE)


# Tasks whose answer does not depend on how the text was cased: a text retyped in
# lowercase has one translation, summary, rewording, reply or label (not so a text to
# proofread: its capitals may be the fault).
CASE_FREE_TASKS = frozenset({"translate", "summarize", "rewrite", "reply", "classify"})


def cased_alike(a: str, b: str) -> bool:
    """Two texts that differ only in case and a closing mark."""
    return a.rstrip(".!?").lower() == b.rstrip(".!?").lower()


def same_payload(new: Prompt, cached: Prompt) -> bool:
    """The same inline content: equal (in any case for a task whose answer is case-free:
    CASE_FREE_TASKS), each in the other's text (the request put after the content), or
    one inside the other with only thanks left over ("as JSON. thank you! Booking ref:
    ..." took the thanks for content).

    Two prompts that both ask after the content ask in a few words below a long text they
    share, and the verifier, which reads the whole texts, cannot weigh those few words (it
    served 2 of 15 such pairs that asked other things): their asks are compared with the
    content, as one."""
    if new.asked_below and cached.asked_below and new.request != cached.request:
        return False
    if new.payload == cached.payload:
        return True
    if new.tasks & cached.tasks & CASE_FREE_TASKS and cased_alike(new.payload, cached.payload):
        return True
    if new.payload in cached.content and cached.payload in new.content:
        return True
    short, long = sorted((new.payload, cached.payload), key=len)
    left = long.replace(short, "", 1) if short else None
    if left is None or left == long:
        return False
    # Content pasted first loses its opening "Hi all," to the prompt's greeting.
    lost_greeting = (new.asked_below or cached.asked_below) and long.startswith(left)
    return bool(
        COMPACT_THANKS.fullmatch(left) or (lost_greeting and COMPACT_GREETING.fullmatch(left))
    )


# What each interrogative of es/fr/de/pt/it asks for, accents left out (but for "où":
# "ou" is "or"), and the verbs that ask for a text to be written. Two questions that ask
# for different things ("Wann fiel die Mauer?" / "Wie lang war die Mauer?") have two
# answers; the cross-encoder, reading these languages through an English vocabulary,
# served such pairs at 0.89-0.93.
QUESTION_WORDS = {
    word: asks
    for asks, words in {
        "who": "qui quien quienes wer wen wem wessen quem chi",
        "where": "où donde wo woher wohin onde dove",
        "when": "quand cuando wann quando",
        "how": "comment como wie come",
        "why": "pourquoi warum weshalb wieso porque perche",
        "how-long": "howlong",
        "how-much": "combien cuanto cuanta cuantos cuantas wieviel quanto quanta quanti quantos"
        " quantas quante",
        "what": "quoi quel quelle quels quelles lequel laquelle que cual cuales was welche"
        " welcher welches welchen qual quais cosa che quale quali",
        "write": "redige redigez ecris ecrivez escribe escribeme redacta schreib schreibe"
        " verfasse escreve escreva redija scrivi redigi",
    }.items()
    for word in words.split()
}
# Interrogatives of two words, read as one; "what year" asks when, "wie lange" how long.
QUESTION_PHRASES = (
    (re.compile(r"\bpor qu[eé]\b"), "porque"),
    (re.compile(r"\b(?:wie lange?|cu[aá]nto tiempo|combien de temps|quanto tempo)\b"), "howlong"),
    (re.compile(r"\bwie viel"), "wieviel"),
    (
        re.compile(
            r"\b(?:quel(?:le)?|qu[eé]|cu[aá]l|qual|welche[mns]?|che|quale|que)"
            r" (?:ann[eé]e|a[nñ]o|ano|jahr|anno|date|fecha|data|datum|jour|d[ií]a|tag|giorno"
            r"|heure|hora|uhrzeit|ora)\b"
        ),
        "cuando",
    ),
)


def asked_for(text: str) -> str | None:
    """What a question asks for, by its first interrogative (or writing verb), or None."""
    lowered = text.lower()
    for pattern, replacement in QUESTION_PHRASES:
        lowered = pattern.sub(replacement, lowered)
    for word in LETTERS.findall(lowered):
        if word != "où":
            word = without_accents(word)
        if word in QUESTION_WORDS:
            return QUESTION_WORDS[word]
    return None


# "what" asks for anything but a reason or a time ("qual o comando" asks how; "in che
# anno" is read as "when"), "how do I" and "where do I" ask for one way to do a thing, and
# "how long" is "how many minutes" ("combien de temps" / "combien de minutes").
ASKED_ALIKE = (frozenset({"how", "where"}), frozenset({"how-long", "how-much"}))
# What a yes-or-no question about the same thing does not answer: "Kann ich ... umtauschen?"
# / "Bis wann kann ich ... umtauschen?".
ASKS_A_DETAIL = frozenset({"when"})


def asked_apart(new: str | None, cached: str | None) -> bool:
    """Two questions that ask for different things (who / when / why / how much ...)."""
    asks = frozenset({new, cached})
    if len(asks) == 1:
        return False
    if None in asks:  # a yes-or-no question (or no question) beside one asking for a detail
        return bool(asks & ASKS_A_DETAIL)
    return bool(asks & {"why", "when"}) or ("what" not in asks and asks not in ASKED_ALIKE)


# What a task on inline content does, by the words that ask for it (accents left out;
# English, es, fr, de, pt, it). The same content summarized, answered or translated gets
# three answers, and the cross-encoder, reading mostly the content, saw one request.
TASK_WORDS = {
    task: re.compile(rf"(?:{words})", re.IGNORECASE)
    for task, words in {
        "summarize": r"summar|\btl;?dr|\bsum (?:it )?up|\bgist\b|\brecap|\bresum|riassum"
        r"|\bshort version\b|zusammenfass|fasse\b.*\bzusammen|\bcondense|\bshorten|\bshorter\b",
        "translate": r"translat|\btradu[cizs]|ubersetz|\bhow do (?:i|you) say\b",
        "explain": r"\bexplain|\bwhat does (?:this|it|the)\b.*\bdo\b|\bwalk me through|line by line"
        r"|\berklar|\bexpli[cq]|\bspiega",
        "fix": r"\bfix|\bcorrect|proofread|\btypos?\b|\bspelling|\bgrammar|\bcorrig|korrigier"
        r"|\bsistema|\bcorreg",
        "rewrite": r"\brewrite|\brephrase|\breword|paraphrase|\bpolish|\bimprove|\breformul"
        r"|umformulier|\briscriv|\breescrib|\breecri",
        "reply": r"\breply|\brespon[ds]|\bantwort|\brispond|\brepond|\bresponde",
        "classify": r"classif|categori|\bsentiment|positive or negative|\blabel\b|\bklassifi"
        r"|\bclasific",
        "extract": r"\bextract|\bpull out|\bestra[ei]|\bextra[ei]|\bfind (?:all|every)",
        "refactor": r"refactor|optimi[sz]|\bclean (?:it |this )?up|idiomatic"
        r"|\bspeed (?:it |this )?up",
        "test": r"\bunit tests?\b|\btest cases?\b|\bpytest|\bwrite tests\b",
        "review": r"\breview|\bbugs?\b|\bissues?\b|\banything wrong|\bwhat'?s wrong|\bsecurity"
        r"|vulnerab",
        "calculate": r"\bcalcul|\badd (?:it |them |this )?up|\baverage|\bsplit\b",
        "expand": r"\bexpand|\belaborate|\bflesh (?:it |this )?out|\blengthen"
        r"|\bturn (?:it |this )?into a (?:full|longer)\b",
    }.items()
}


# What a rewrite makes its text ("make this email firmer" / "... friendlier"): a rewrite,
# and its end ("rewrite:firmer"), told apart from another end, not from another task.
REWRITTEN_TO = re.compile(
    r"\bmake (?:this|it|the \w+|my \w+|this \w+) (?:sound |look )?"
    r"((?:more |less )?\w+er|(?:more|less) \w+)\b"
)


# Explained, rewritten or summarized for an audience ("so a 10-year-old gets it"): one task.
RETOLD = frozenset({"explain", "rewrite", "summarize"})


def tasks_named(head: str, instructions: set[str]) -> frozenset[str]:
    """The tasks a prompt's request (the text before its inline content) names."""
    plain = without_accents(head.lower()).replace("’", "'")
    tasks = {task for task, words in TASK_WORDS.items() if words.search(plain)}
    ends = {f"rewrite:{target}" for target in REWRITTEN_TO.findall(plain)}
    tasks |= ends | ({"rewrite"} if ends else set())
    if tasks & RETOLD and any(i.startswith("audience:") for i in instructions):
        tasks = (tasks - RETOLD) | {"retell"}
    return frozenset(tasks)


# A refactoring is code rewritten: "refactor this to be idiomatic" / "make this python
# more pythonic" name one task.
KIN = {"refactor": "rewrite"}


def tasks_apart(new: frozenset[str], cached: frozenset[str]) -> bool:
    """Two tasks on one content: no task named on both sides, or a text rewritten to two
    different ends ("rewrite:firmer" / "rewrite:friendlier"), each compared on its own."""

    def named(side: frozenset[str]) -> set[str]:
        return {KIN.get(t, t) for t in side if ":" not in t}

    def ends(side: frozenset[str]) -> set[str]:
        return {t for t in side if ":" in t}

    pairs = ((named(new), named(cached)), (ends(new), ends(cached)))
    return any(a and b and not a & b for a, b in pairs)


def same_language(new: Prompt, cached: Prompt) -> bool:
    """One language, or a text whose words tell its language no better than the other
    text's: "comment on conjugue aller" ("comment" is French, "on" English) beside a French
    text, "meu pedido ta atrasado o que eu faço" (as Spanish as Portuguese) beside a
    Portuguese one."""
    if new.language == cached.language:
        return True
    return new.language in cached.tied or cached.language in new.tied


def mismatch(new: Prompt, cached: Prompt) -> str | None:
    """The name of the first part on which two prompts disagree, or None."""
    if not same_language(new, cached):
        return "prompt-language"
    if not same_payload(new, cached):
        return "payload"
    if tasks_apart(new.tasks, cached.tasks):
        return "task"
    if not same_instructions(new, cached):
        return "instructions"
    if other_slots(new.slots, cached.slots):
        return "slots"
    if asked_apart(new.asks, cached.asks):
        return "question-word"
    return None


# Words whose presence never tells two requests apart (contractions are read without '").
SAID_FILLER = frozenset(
    w.replace("'", "") for w in FILLER | STOPWORDS[ENGLISH] | DIRECTIVE_VERBS
) | {"thanks", "thank", "thx", "ty", "cheers"}
# Words that turn what a clause says around: they must be said on both sides.
REVERSING = frozenset({"not", "don't", "dont", "never", "no", "without", "except"})
CLAUSE = "clause:"


def clause_words(prompt: Prompt, orders_only: bool = False) -> set[str]:
    """What the free instruction clauses of a prompt say (only those that give an order,
    "show the code", when `orders_only`), without filler and the verbs and function words
    of an order ("i'm on windows" says "windows")."""
    said = {
        w
        for i in prompt.instructions
        if i.startswith(CLAUSE) and (not orders_only or is_directive(i[len(CLAUSE) :]))
        for w in i[len(CLAUSE) :].split()
    }
    return said - ((FILLER | DIRECTIVE_VERBS | STOPWORDS[ENGLISH]) - REVERSING)


def same_instructions(new: Prompt, cached: Prompt) -> bool:
    """The same named instructions (format, length, audience, ...), and free clauses that
    only restate what the other prompt asks: every word of the cached prompt's clauses is
    in the new one's request or clauses, and so is every word of the new prompt's orders
    in the cached one's. A clause of the new prompt that tells rather than orders ("uk
    citizen, 2 week holiday", "my oven only shows C") is context for the verifier to
    weigh: the cached answer may still answer it. The cached prompt's context stays a
    veto: its answer was written for that context, and a planted "btw we're closed" must
    not reach the others who ask."""
    if new.instructions == cached.instructions:
        return True
    named = {i for i in new.instructions if not i.startswith(CLAUSE)} ^ {
        i for i in cached.instructions if not i.startswith(CLAUSE)
    }
    if any(not said_in_request(label, new, cached) for label in named):
        return False
    new_said, cached_said = clause_words(new), clause_words(cached)
    # Clauses are read without apostrophes ("im" / "i'm"), and so are requests beside them.
    new_asked, cached_asked = (set(p.request.replace("'", "").split()) for p in (new, cached))
    new_orders = clause_words(new, orders_only=True)
    return new_orders <= cached_asked | cached_said and cached_said <= new_asked | new_said


BEGINNERS = re.compile(r"\b(?:beginners?|novices?|newbies?)\b")


def said_in_request(label: str, new: Prompt, cached: Prompt) -> bool:
    """An instruction read only in clauses after the request (CLAUSE_ONLY) that the other
    prompt gives inside its request: the same order, put elsewhere ("Find duplicate emails
    with SQL. Only output the query." / "Only give me the query: find duplicate emails").
    Likewise a task added to the request ("..., and explain the science behind it") that
    the other prompt orders in a clause of its own ("... Explain the science."), and
    beginners named in the other prompt's request ("a beginner workout plan")."""
    lacking = cached if label in new.instructions else new
    if label == "audience:beginner" and BEGINNERS.search(lacking.request):
        return True  # "a workout plan for beginners" / "a beginner workout plan"
    if label == "extra:more":
        having = new if lacking is cached else cached
        said = clause_words(lacking, orders_only=True)
        return bool(said) and said <= set(having.request.replace("'", "").split())
    return label in CLAUSE_ONLY and INSTRUCTION[label].search(lacking.request) is not None


# Requests sharing fewer of their words than this (Jaccard) are rewordings, where a
# negation (or, in es/fr/de/pt/it, a name) on one side only is weighed by the verifier,
# not vetoed (see judge). Of the prompt pairs the guards are tuned on, those the negation
# guard vetoed were 165 rewordings and 68 other asks under 0.3, and 84 rewordings and 324
# other asks above it; the names guard vetoed as many rewordings as other asks in German
# (164 / 157).
REWORDED_BELOW = 0.3


@dataclass(frozen=True, slots=True)
class Verdict:
    same: bool  # only what never changes an answer differs: the cached answer is right
    guard: str | None  # the guard that vetoes the pair, if any; else the verifier decides
    overlap: float = 1.0  # request words in common (see request_overlap), for the verifier
    swapped: bool = False  # one meaningful word swapped for another: weighed, not vetoed


def judge(new: Prompt, cached: Prompt) -> Verdict:
    """What the guards say of a candidate (both prompts decomposed): the same request,
    vetoed (by which guard), or left to the verifier. A rewording in a language the
    decomposition cannot read (OTHER_SCRIPT) is vetoed: a guess there would serve wrong
    answers; es/fr/de/pt/it rewordings go on to the verifier once they ask the same thing
    ("question-word"). Requests that differ only by slips ("subcription" / "subscription")
    are the same request. The lexical guards read the texts without greetings, thanks, smileys;
    a smiley on one side only is benign, one swapped for another may be what is asked about
    ("What does 😀 mean?" / "... 😢 ...")."""
    if new.smileys - cached.smileys and cached.smileys - new.smileys:
        return Verdict(False, "unseen-characters", request_overlap(new, cached))
    fixes = misspellings(new, cached)
    respelled, compared = new, cached
    if fixes:
        # A language's or technology's name spelt right names its slot too ("pyhton").
        named = frozenset(slot_values(" ".join(fixes.values())))
        respelled = replace(new, request=cached.request, slots=new.slots | named)
        compared = replace(cached, slots=cached.slots | named)
    if (
        (respelled == compared or reordered(respelled, compared))
        and said_words(new, fixes) == said_words(cached, fixes)
        and not numbers_differ(new.stripped, cached.stripped)
        and not identifiers_differ(new.stripped, cached.stripped)
    ):
        return Verdict(True, None)
    guard = mismatch(new, cached)
    if guard is None and new.language not in STOPWORDS:
        guard = "unjudged-language"
    if guard is not None:
        return Verdict(False, guard, request_overlap(new, cached))
    overlap = request_overlap(new, cached)
    # A negation on one side of a rewording is more often the same ask put another way
    # ("still hasn't arrived" / "still waiting on it", "no ha llegado" / "sigue sin llegar")
    # than another ask: there the verifier weighs it. Where the requests share most words,
    # one "not" is what differs, and it vetoes. So with a name in es/fr/de/pt/it: a
    # rewording names things its own way ("Erkältung" / "Schnupfen": German capitalizes
    # every noun), and a name swapped for one word is vetoed there anyway. In English the
    # guard still vetoes: lifted, it let Quora negatives through and raised the default.
    reworded = overlap < REWORDED_BELOW
    guard, swapped = screen(
        americanized(new.stripped),
        americanized(cached.stripped),
        negation_vetoes=not reworded,
        names_vetoes=not reworded or new.language == ENGLISH,
    )
    if new.language != ENGLISH and len(swapped) == 2:
        # The cross-encoder weighs an English swap ("remove" / "delete" alike, "sort" /
        # "filter" not); through its English vocabulary it cannot weigh one word for another
        # ("ordeno" / "filtro"). Two or more moved are more often a rewording.
        guard = guard or "swapped-word"
    return Verdict(False, guard, overlap, bool(swapped))


def reordered(new: Prompt, cached: Prompt) -> bool:
    """The same prompt but for the two things a request joins, in the other order: "the
    difference between == and ===" / "... === and ==", "an interface vs a type alias" /
    "a type alias vs an interface". Both sides of the "and", "or" or "vs" trade places
    whole, with no word beside them that gives a direction ("from Boston to NYC" / "from
    NYC to Boston", "A better than B", "10 divided by 2"); words that trade places across
    it are another request ("return the shoes and keep the shirt" / "return the shirt and
    keep the shoes")."""
    if replace(new, request=cached.request) != cached:
        return False
    words, cached_words = new.request.split(), cached.request.split()
    if len(words) != len(cached_words) or words == cached_words:
        return False
    apart = [i for i, (a, b) in enumerate(zip(words, cached_words, strict=True)) if a != b]
    first, last = apart[0], apart[-1]
    # Sides that trade places whole hold the same words between the first and last change.
    if sorted(words[first : last + 1]) != sorted(cached_words[first : last + 1]):
        return False
    return any(
        cached_words[start:end] == [*words[joint + 1 : end], words[joint], *words[start:joint]]
        and not DIRECTED & set(words[max(0, start - 1) : end + 1])
        for joint in range(first, last + 1)
        if words[joint] in COORDINATORS
        for start in range(first + 1)
        for end in range(last + 1, len(words) + 1)
    )


COORDINATORS = frozenset({"and", "or", "vs", "versus", "&", "nor"})
# Words that make the order of two things mean something: "from A to B", "A than B".
DIRECTED = frozenset(
    """to into from than before after then over under instead by of minus divided per times
    against onto toward towards""".split()
)


def misspellings(new: Prompt, cached: Prompt) -> dict[str, str]:
    """Each word misspelt in one request where the other spells it ("subcription" /
    "subscription", "persne" / "persone"), to the word it misspells, when those are all
    that tells the two requests apart; else none. A technology's name is a value, not a
    slip ("scss" / "sass", "mssql" / "mysql"), unless two of its letters only traded
    places ("pyhton")."""
    words, cached_words = new.request.split(), cached.request.split()
    if len(words) != len(cached_words):
        return {}
    fixes = {}
    for a, b in zip(words, cached_words, strict=True):
        if a != b:
            if a in members(new.stripped) or b in members(cached.stripped):
                return {}  # code: "array.slice" / "array.splice" are two methods
            right = tech_slip(a, b) if a in TECH or b in TECH else corrected(a, b, new.language)
            if right is None:
                return {}
            fixes[b if right == a else a] = right
    return fixes


MEMBER = re.compile(r"(?<=\w)\.([A-Za-z_]\w*)")


def members(text: str) -> set[str]:
    """The names a text writes after a dot, as code does ("array.slice"), lowercased."""
    return {name.lower() for name in MEMBER.findall(text)} if "." in text else set()


def said_words(prompt: Prompt, fixes: dict[str, str] | None = None) -> set[str]:
    """The words of a prompt that can carry meaning, without filler and without the
    phrases of length, format and answer language (read alike: "in one sentence" / "in a
    single sentence"), misspelt ones read as `fixes` spells them. Two prompts the
    decomposition reads alike are the same request only if they also say the same words:
    a pattern of another kind must not hide what it matched ("gift ideas for my dad" /
    "for my mom")."""
    text = instruction_spans(prompt.stripped, kinds=("length:", "format:"))
    words = request_words(text, prompt.language).replace("'", "").split()
    fixes = fixes or {}
    return {fixes.get(w, w) for w in words if w.isalnum()} - SAID_FILLER


def request_overlap(new: Prompt, cached: Prompt) -> float:
    """The share of the two requests' distinct words that both have (Jaccard)."""
    a, b = set(new.request.split()), set(cached.request.split())
    return len(a & b) / len(a | b) if a | b else 1.0
