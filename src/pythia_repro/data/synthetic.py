"""The synthetic "mini-Pile": a small, seeded, Pile-format corpus with planted ground truth.

It stands in for the Pile in the default config, so every stage and case study runs on a laptop
and shows real effects on tiny models. Ten domains named after Pile sets, each with its own
templates and vocabulary, plus what the analyses measure, recorded in `manifest.json`:

- exact and near duplicates (a word per 250 changed, Jaccard on 5-word shingles >= 0.92): the pairs;
- arithmetic statements (`Q:What is 12 plus 7? A:19`) and other small numbers drawn from one
  Zipf distribution over 0..99 (ranked by a seeded permutation, so frequency is not magnitude):
  the weights and the counts in the written text;
- occupation/pronoun sentences over WinoBias's 40 occupations with a known share of "she": the
  planned share and the realised counts;
- narrative documents (LAMBADA-style) whose last word is fixed by their context: an object or
  name met earlier, or the end of an idiom. The held-out file is made of these only (of at
  most HELDOUT_MAX_WORDS words, so a small model's context holds the cue);
- a few empty documents, which every stage must count and survive;
- optionally (`planted_repeats` x `planted_copies`, off by default) boilerplate documents
  (licence headers, disclaimers) repeated verbatim at seeded positions: the memorization study's
  ground truth, recorded with every copy's position. Deduplication keeps one copy of each.

Same spec -> byte-identical files: one `random.Random(seed)`, no set or hash ordering.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zstandard

from pythia_repro.atomic import atomic_file, write_json
from pythia_repro.data.dedup.minhash import jaccard as shingle_jaccard
from pythia_repro.data.dedup.minhash import word_shingles
from pythia_repro.errors import PythiaReproError

# Pile set name -> share of the train documents.
DOMAINS = {
    "Pile-CC": 0.17,
    "BookCorpus2": 0.16,
    "DM Mathematics": 0.12,
    "PubMed Central": 0.10,
    "Wikipedia (en)": 0.10,
    "Github": 0.08,
    "StackExchange": 0.08,
    "ArXiv": 0.07,
    "FreeLaw": 0.07,
    "USPTO Backgrounds": 0.05,
}
NARRATIVE = "BookCorpus2"  # the held-out (LAMBADA-style) documents come from this domain

ZIPF_EXPONENT = 1.1
SHINGLE_WORDS = 5
NEAR_DUP_MIN_JACCARD = 0.92  # comfortably above the 0.87 dedup threshold, so MinHash finds them
NEAR_DUP_MIN_WORDS = 150  # one changed word costs up to 5 shingles: 150 words keep J >= 0.93
NEAR_DUP_WORDS_PER_EDIT = 250
MIN_SENTENCES = 3  # a one-sentence document would near-duplicate its template by chance
MIN_WORDS, MAX_WORDS = 20, 350  # document length, log-uniform
HELDOUT_MAX_WORDS = 80  # held-out stories fit a 128-token context, so the target's cue is in view
EMPTY_DOC_EVERY = 800  # one empty document per this many train documents (at least one)

# WinoBias's occupations with roughly the US labour statistics' share of women WinoBias was built
# on: the first 20 are its male-, the last 20 its female-stereotyped jobs.
LABOUR_SHE_SHARE = {
    "carpenter": 0.03, "mechanic": 0.04, "construction worker": 0.04, "laborer": 0.05,
    "driver": 0.07, "sheriff": 0.14, "mover": 0.18, "developer": 0.2, "farmer": 0.22,
    "guard": 0.22, "chief": 0.27, "janitor": 0.34, "lawyer": 0.35, "cook": 0.38,
    "physician": 0.38, "CEO": 0.39, "analyst": 0.41, "manager": 0.43, "supervisor": 0.44,
    "salesperson": 0.48,
    "attendant": 0.52, "editor": 0.52, "designer": 0.54, "accountant": 0.61, "auditor": 0.61,
    "writer": 0.63, "baker": 0.65, "clerk": 0.72, "cashier": 0.73, "counselor": 0.73,
    "teacher": 0.78, "tailor": 0.8, "librarian": 0.84, "assistant": 0.85, "cleaner": 0.89,
    "housekeeper": 0.89, "nurse": 0.9, "receptionist": 0.9, "hairdresser": 0.92, "secretary": 0.95,
}
# The gender-bias study's planted effect: the share of "she" the corpus writes after each
# occupation. The labour statistics' direction, exaggerated to at least 90:10, because with the
# real shares (half of them within 0.35..0.65) the 1.6M-parameter default model learns no link
# from occupation to pronoun in 256 steps (probed: P(her)/P(his) after "The nurse finished" no
# better than chance); at 90:10 it does (README, "Case study 3").
MIN_STEREOTYPE_MARGIN = 0.4
OCCUPATIONS = {o: round(0.5 + math.copysign(max(abs(s - 0.5), MIN_STEREOTYPE_MARGIN), s - 0.5), 2)
               for o, s in LABOUR_SHE_SHARE.items()}
PRONOUNS = {"she": {"subj": "she", "poss": "her", "obj": "her"}, "he": {"subj": "he", "poss": "his", "obj": "him"}}

# Word pools, one space-separated string each ("_" joins multi-word entries).
_POOLS = {
    "female": "Anna Maria Sarah Emma Julia Laura Clara Nora Alice Helen Rosa Lucy Grace Emily Sofia "
    "Hannah Olivia Irene Martha Leah Ruth Eva Mia Zoe Lena",
    "male": "James John Peter Thomas David Daniel Samuel Henry Oliver Lucas Paul Simon Victor Hugo "
    "Martin Oscar Felix Adam Noah Leo Jonas Arthur Walter Ethan Max",
    "surname": "Smith Miller Brown Wilson Taylor Clark Hall Young King Wright Green Baker Adams Nelson "
    "Carter Mitchell Turner Parker Collins Evans Morris Reed Cook Bell Murphy Rivera Cooper Ward",
    "city": "Springfield Riverton Lakewood Fairview Greenville Bristol Madison Clinton Franklin Salem "
    "Georgetown Ashland Oakdale Milford Kingston Dover Burlington Hudson Newport Lexington",
    "state": "Ohio Oregon Texas Maine Kansas Iowa Vermont Nevada Georgia Montana Virginia Colorado",
    "country": "France Germany Italy Spain Norway Poland Ireland Portugal Sweden Austria Greece Chile",
    "month": "January February March April May June July August September October November December",
    "weekday": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
    "object": "lantern violin compass necklace umbrella notebook telescope kettle blanket mirror "
    "bracelet camera guitar candle ladder basket hammer ribbon whistle clock map key ring locket "
    "feather shell stone coin letter photograph scarf bottle paintbrush",
    "place": "attic garden kitchen cellar library barn forest harbor market station chapel meadow "
    "garage hallway orchard bakery lighthouse cabin",
    "adj": "old small dusty shiny broken heavy strange beautiful tiny silver wooden golden faded",
    "feeling": "happy tired nervous calm curious proud worried hopeful quiet",
    "food": "pizza sushi noodle taco burger bakery coffee dumpling curry salad",
    "product": "blender vacuum backpack laptop mattress headset kettle stroller drill router",
    "topic": "travel gardening fitness cooking parenting finance technology music fashion",
    "opinion": "great amazing okay disappointing fantastic decent excellent overpriced",
    "team": "Tigers Eagles Rangers Falcons Bears Lions Rockets Comets",
    "disease": "asthma diabetes hypertension psoriasis migraine pneumonia arthritis anemia sepsis",
    "symptom": "fatigue fever inflammation pain dyspnea nausea insomnia edema",
    "drug": "metformin ibuprofen atorvastatin amoxicillin lisinopril omeprazole prednisone",
    "organ": "liver kidney lung heart brain skin pancreas spleen",
    "gene": "TP53 BRCA1 EGFR KRAS MYC PTEN VEGF IL6 TNF",
    "cohort": "adults children elderly_patients pregnant_women athletes smokers",
    "math_adj": "compact smooth bounded convex finite projective linear stable discrete symmetric",
    "math_obj": "operator manifold functional estimator kernel graph polynomial measure flow",
    "math_space": "Banach_space Hilbert_space metric_space vector_bundle Riemann_surface lattice",
    "property": "continuous unique nonempty invariant integrable positive",
    "verb": "parse load compute update render fetch validate merge sort filter encode build",
    "noun": "config data user file record item token image request buffer matrix node",
    "module": "os sys json math random re collections itertools pathlib logging",
    "lang": "Python Java JavaScript C++ Rust Go Ruby PHP",
    "task": "reverse_a_list read_a_file sort_a_dictionary parse_a_date merge_two_arrays "
    "remove_duplicates format_a_string split_a_string count_words",
    "func": "map() filter() sorted() zip() enumerate() join() split() reduce()",
    "error": "None an_empty_list a_TypeError a_KeyError the_wrong_order",
    "os": "Linux Windows macOS Ubuntu",
    "court": "Court_of_Appeals Supreme_Court District_Court Superior_Court",
    "crime": "burglary fraud robbery theft assault forgery trespass",
    "ruling": "evidentiary_ruling sentencing_decision denial_of_the_motion",
    "settlement": "town village city borough township",
    "river": "Clear Stone Black Green Cedar Elk Fox Mill",
    "field": "fluid_handling vehicle_braking data_storage medical_imaging food_packaging "
    "wireless_charging solar_energy water_filtration",
    "device": "valve sensor pump connector actuator bracket nozzle filter coupling",
    "material": "steel aluminum plastic rubber ceramic glass copper",
    "part": "housing shaft spring flange cover seal plate lever hinge",
    "action": "finish_the_report call_back_later fix_the_problem look_into_it bring_the_forms",
    "past_action": "stayed_late fixed_everything helped_us finished_early answered_every_question",
    "work": "report shift inspection paperwork rounds order presentation",
    "time": "noon midnight lunch the_deadline the_weekend",
}
POOLS = {k: [w.replace("_", " ") for w in v.split()] for k, v in _POOLS.items()}
EDIT_WORDS = ["really", "also", "quite", "indeed", "still", "often", "later", "maybe", "soon"]

# Sentence templates per domain; {slot} is a pool name, a fixed value or a number (n).
_TEMPLATES = {
    "Pile-CC": [
        "Posted by {first} {surname} on {month} {day}, {year}.",
        "We tried the new {food} place downtown last {weekday} and it was {opinion}.",
        "Shipping is free on orders over {n} dollars, and most items arrive within {n} days.",
        "I have been using this {product} for {n} weeks now and it still works like new.",
        "The {team} beat the visitors {n} to {n} on {weekday} night in {city}.",
        "Prices start at {n} dollars for {n} months of access.",
        "Sign up for our newsletter to get the latest {topic} news every {weekday}.",
        "{first} says the best time to visit {city} is in {month}.",
        "Click here to read {n} more stories about {topic}.",
        "Overall the {product} is {opinion}, and {n} out of {more} buyers would recommend it.",
    ],
    "PubMed Central": [
        "Background: {disease} is a common cause of {symptom} in {cohort}.",
        "Methods: A total of {n} patients with {disease} were enrolled at {n} centers.",
        "Patients received {n} mg of {drug} daily for {n} weeks.",
        "The mean age was {n} years and {n} percent of participants were women.",
        "Results: Treatment with {drug} reduced {symptom} in {n} of {more} patients (p < 0.05).",
        "Expression of {gene} was significantly increased in {organ} tissue.",
        "No serious adverse events were reported during the {n} week follow up.",
        "Conclusions: These findings suggest that {drug} may be an effective therapy for {disease}.",
    ],
    "ArXiv": [
        "We study the {math_adj} {math_obj} on a {math_space} and prove that it is {property}.",
        "Let $X$ be a {math_adj} {math_space} of dimension $n = {n}$.",
        "Theorem {n}. For every $\\epsilon > 0$ there exists $\\delta > 0$ such that "
        "$|f(x) - f(y)| < \\epsilon$ whenever $|x - y| < \\delta$.",
        "In Section {n} we recall the definition of a {math_adj} {math_obj}.",
        "Our main result extends the work of {surname} and {surname} [{n}] to the {math_adj} case.",
        "Proof. By Lemma {n}, the {math_obj} is bounded by $C n^2$, which completes the proof.",
        "Numerical experiments on {n} benchmark problems confirm the predicted rate of $O(h^2)$.",
        "Hence the {math_obj} is {property} on every {math_adj} subset of $X$.",
    ],
    "FreeLaw": [
        "The defendant, {first} {surname}, appeals from a judgment of conviction for {crime}.",
        "We review the trial court's {ruling} for an abuse of discretion.",
        "The jury returned a verdict of guilty on {n} of {more} counts.",
        "See {surname} v. {surname}, {n} F.3d {n} ({year}).",
        "The State argues that the error, if any, was harmless.",
        "Accordingly, the judgment of the {court} is AFFIRMED.",
        "The record shows that the {crime} occurred near the {place} on {month} {day}, {year}.",
    ],
    "StackExchange": [
        "Q: How do I {task} in {lang}?",
        "I have a list with {n} elements and I want to {task} without a loop.",
        "I tried using {func} but it returns {error}.",
        "A: You can use {func} for this, it is the idiomatic way in {lang}.",
        "Note that {func} behaves differently since version {version}.",
        "This works for me on {os} with {lang} {version}.",
        "Edit: as {first} pointed out in the comments, you also need to {task} first.",
    ],
    "Wikipedia (en)": [
        "{city} is a {settlement} in {city} County, {state}, United States.",
        "The population was {big} at the {year} census.",
        "The {river} River flows through the northern part of the {settlement}.",
        "It has a total area of {n} square miles, of which {n} percent is water.",
        "The {settlement} was founded in {year} by settlers from {country}.",
        "{city} High School has {n} teachers and about {big} students.",
        "The {settlement} hosts an annual {food} festival in {month}.",
    ],
    "USPTO Backgrounds": [
        "The present invention relates generally to {field}, and more particularly to a {device}.",
        "Conventional {device}s are typically made of {material} and require {n} separate parts.",
        "Such devices suffer from several drawbacks, including high cost and limited service life.",
        "It is therefore desirable to provide an improved {device} that overcomes these problems.",
        "U.S. Pat. No. {patent} describes a {device} having a {part} coupled to a {part}.",
        "In one embodiment, the {part} is disposed between the {part} and the {part}.",
        "The {part} may be formed of {material} with a thickness of {n} millimeters.",
    ],
}
# DM Mathematics lines; the first form is the term-frequency study's prompt (answer, then newline).
_ARITHMETIC = [
    "Q:What is {a} plus {b}? A:{sum}",
    "Q:What is {a} times {b}? A:{product}",
    "{a} plus {b} is {sum}.",
    "{a} times {b} is {product}.",
    "Calculate {a} + {b}. Answer: {sum}",
]
# Pronoun sentences about one occupation; {subj}/{poss}/{obj} refer to the occupation.
_OCCUPATION_TEMPLATES = [
    "The {occ} said that {subj} would {action} before {time}.",
    "The {occ} finished {poss} {work} before {time}.",
    "The {occ} asked the {occ2} to wait because {subj} was busy.",
    "Everyone thanked the {occ} because {subj} {past_action}.",
    "When the {occ} arrived, {subj} {past_action}.",
    "We called the {occ} and asked {obj} to {action}.",
    "The {occ} told the {occ2} that {subj} could {action}.",
]
# Share of a domain's sentences that are occupation sentences: ~11,000 in the default corpus
# (~275 per occupation, ~25% of its tokens), enough for the default model to learn each link.
_OCCUPATION_DOMAINS = {"Pile-CC": 0.7, "FreeLaw": 0.7, "BookCorpus2": 0.15, "Wikipedia (en)": 0.5}
# Narrative filler; {hero}/{subj}/{poss}/{obj} refer to the hero, {thing} to the object.
_STORY = [
    "{Subj} turned the {thing} over in {poss} hands.",
    "The {thing} had belonged to {poss} grandmother.",
    "{hero} walked to the {place} and sat down for a while.",
    "{friend} called to ask how {subj} was doing.",
    "It was a cold {weekday} in {month}, and the wind was blowing.",
    "{hero} felt {feeling} and a little {feeling}.",
    "{Subj} put the {thing} on the table next to the window.",
    "Nobody in {city} knew where the {thing} came from.",
    "{friend} laughed and said it was the strangest thing {subj} had ever seen.",
    "After {n} days {hero} decided to ask {friend} for help.",
    "{Subj} remembered the summer when {subj} was {n} years old.",
    "{hero} wrapped the {thing} in a {adj} cloth.",
]
_STORY_OPENINGS = [
    "{hero} found {a_thing} in the {place}.",
    "On {poss} way home, {hero} saw {a_thing} lying in the {place}.",
    "{friend} gave {hero} {a_thing} for {poss} birthday.",
]
# (kind, ending); the last word is the target and has no final punctuation, like LAMBADA.
STORY_ENDINGS = [
    ("object", "In the end {hero} smiled and held up the {thing}"),
    ("object", "From that day on, {hero} never went anywhere without the {thing}"),
    ("object", "When {friend} asked what was in the box, {hero} opened it to show the {thing}"),
    ("name", "When the door opened, everyone in the room turned to look at {hero}"),
    ("name", "{friend} looked up and smiled, because the letter was signed by {hero}"),
    ("idiom", "They said goodbye to {friend}, and they all lived happily ever after"),
    ("idiom", "{hero} closed the book, turned off the light and went to sleep"),
    ("idiom", "It had been a long day, so {subj} went straight to bed"),
]

_SLOT = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")
_NUMBER = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")

# Planted repeats: web boilerplate that real corpora repeat verbatim thousands of times. Each
# repeat picks a kind, fills its organisation/years/places and takes a seeded selection and order
# of that kind's sentences, so two repeats share few 5-word shingles and dedup keeps them apart.
PLANTED_DOMAIN = "Pile-CC"
# ~90 tokens: a tiny model reproduces it verbatim, and a 129-token sample whose first 64 tokens
# lie inside a copy starts in its first ~26 tokens, about one copy in five (150-250 words were
# never memorized by the default models: too much to fit with the copies the corpus can take).
PLANTED_MIN_WORDS, PLANTED_MAX_WORDS = 70, 100
# Calibrated for the embedded default suite (2 x 2000 documents, 256 steps x 16 x 129 tokens, about
# one epoch; corpus.synthetic.planted_repeats / planted_copies): 2 repeats x 300 copies, ~9% of the
# training tokens, 140 of 4096 trained samples planted: the standard `micro` model memorizes all
# of them; the deduplicated variant keeps one copy of each, which yields 0-2 planted samples (none
# memorized), so compare counts, not rates, across variants. Copies are the lever: 2 x 200 copies of ~120
# tokens gave 43%, with fillers drawn per sentence 6%, and 3 x 100 copies of ~250 tokens 1%.
# `nano` memorizes none at any of these (it barely fits the corpus in 256 steps: loss ~2.6).
# Samples whose prompt starts before a copy and whose continuation lies inside it are memorized
# too (~3% of the others here) and count as "other" under is_planted's first-64-tokens rule.
# config/config.yaml sets these values; the schema's default (0) leaves the feature off.
PLANTED_MAX_JACCARD = 0.3  # between two distinct repeats (dedup's threshold is 0.87)
_PLANTED_ORGS = ("Northwind Labs", "Bluefield Systems", "Harbor Point Media", "Cobalt Ridge Software",
                 "Summit Valley Press", "Redwood Analytics", "Ironbridge Health", "Lumen Street Studios",
                 "Oakmont Data Works", "Silverline Networks", "Granite Peak Publishing", "Maple Grove Foundation")
_PLANTED_KINDS = {
    "licence": [
        "Copyright (c) {year} {org}. All rights reserved.",
        "Permission is hereby granted, free of charge, to any person obtaining a copy of this software "
        "and associated documentation files, to deal in the software without restriction.",
        "The above copyright notice and this permission notice shall be included in all copies or "
        "substantial portions of the software.",
        "The software is provided as is, without warranty of any kind, express or implied.",
        "In no event shall {org} or its contributors be liable for any claim, damages or other liability.",
        "Redistribution and use in source and binary forms, with or without modification, are permitted "
        "provided that the conditions of section {n} are met.",
        "Neither the name of {org} nor the names of its contributors may be used to endorse or promote "
        "products derived from this software without specific prior written permission.",
        "This file is part of the {product} project maintained by {org} in {city}, {state}.",
        "You may obtain a copy of the license version {version} at the project website.",
        "Unless required by applicable law or agreed to in writing, software distributed under this "
        "license is distributed on an as is basis.",
        "See the license for the specific language governing permissions and limitations under it.",
        "Contributions submitted to {org} after {month} {year} are covered by the same terms.",
    ],
    "disclaimer": [
        "The information on this website is provided by {org} for general informational purposes only.",
        "While we endeavour to keep the information up to date and correct, we make no representations "
        "or warranties of any kind about its completeness or accuracy.",
        "Any reliance you place on such information is therefore strictly at your own risk.",
        "In no event will {org} be liable for any loss or damage arising from the use of this website.",
        "Through this website you are able to link to other websites which are not under the control "
        "of {org} in {city}.",
        "The inclusion of any links does not necessarily imply a recommendation or endorse the views "
        "expressed within them.",
        "Every effort is made to keep the website up and running smoothly since {year}.",
        "We take no responsibility for the website being temporarily unavailable due to technical "
        "issues beyond our control.",
        "Nothing on this site constitutes {topic} advice and no content should be read as such.",
        "This notice was last updated on {month} {day}, {year} by the legal team of {org}.",
        "Questions about this disclaimer can be sent to our office in {city}, {state}.",
        "By continuing to use this website you accept the terms described in section {n}.",
    ],
    "privacy": [
        "This privacy policy explains how {org} collects, uses and protects your personal data.",
        "We use cookies to improve your experience and to analyse traffic on our {topic} pages.",
        "You can choose to disable cookies in your browser settings at any time.",
        "We do not sell, distribute or lease your personal information to third parties unless we have "
        "your permission or are required by law to do so.",
        "Your data is stored on secure servers located in {country} for up to {n} months.",
        "You may request details of personal information which we hold about you under the data "
        "protection act of {year}.",
        "If you believe that any information we are holding on you is incorrect or incomplete, please "
        "write to {org} as soon as possible.",
        "We may change this policy from time to time by updating this page.",
        "This policy is effective from {month} {day}, {year}.",
        "Our website may contain links to other websites of interest such as the {product} store.",
        "We will promptly correct any information found to be incorrect.",
        "For any questions please contact the data protection officer of {org} in {city}.",
    ],
}


@dataclass(frozen=True)
class SyntheticSpec:
    """`corpus.synthetic` of the suite config."""

    num_shards: int
    docs_per_shard: int
    heldout_docs: int
    exact_duplicate_rate: float
    near_duplicate_rate: float
    seed: int
    planted_repeats: int = 0  # distinct boilerplate documents repeated verbatim (0: feature off)
    planted_copies: int = 0  # identical copies of each, at seeded positions of the train order

    @property
    def train_docs(self) -> int:
        return self.num_shards * self.docs_per_shard


@dataclass
class _Doc:
    domain: str
    text: str
    stats: Counter  # ("she"|"he", occupation) and ("x1", n) events; copies share them
    ending: str | None = None  # narrative documents: kind of last word


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of two texts' word 5-shingles, exactly as the deduplicator defines it
    (pythia_repro.data.dedup: case kept, documents without words never similar), so the manifest's
    recorded Jaccard is the pipeline's."""
    return shingle_jaccard(word_shingles(a, SHINGLE_WORDS), word_shingles(b, SHINGLE_WORDS))


def count_numbers(text: str) -> Counter:
    """Occurrences of each integer 0..99 written as a maximal digit run without leading zero."""
    return Counter(
        int(m) for m in _NUMBER.findall(text) if len(m) <= 2 and (m == "0" or not m.startswith("0"))
    )


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        ranks = list(range(100))
        self.rng.shuffle(ranks)
        self.rank_order = ranks  # rank_order[r] is the (r+1)-th most frequent number
        weights = [1 / (r + 1) ** ZIPF_EXPONENT for r in range(100)]
        self.weights = {n: w / sum(weights) for n, w in zip(ranks, weights, strict=True)}
        self._cum = list(itertools.accumulate(weights))
        self.domains = list(DOMAINS)
        self._domain_cum = list(itertools.accumulate(DOMAINS.values()))

    # ----- slot values -------------------------------------------------------------------
    def number(self, low: int = 0, high: int = 99) -> int:
        """A Zipf-distributed number in [low, high] (rejection from the 0..99 distribution)."""
        while True:
            n = self.rng.choices(self.rank_order, cum_weights=self._cum)[0]
            if low <= n <= high:
                return n

    def fill(self, template: str, **fixed) -> str:
        last = 0  # {more} is a number at least the previous {n}: "12 of 40 patients"

        def value(m: re.Match) -> str:
            nonlocal last
            key = m.group(1)
            if key in fixed:
                return str(fixed[key])
            if key in ("n", "more"):
                last = self.number(last if key == "more" else 0)
                return str(last)
            if key == "version":
                return f"{self.rng.randint(1, 4)}.{self.rng.randint(0, 12)}"
            if key == "day":
                return str(self.number(1, 28))
            if key == "year":
                return str(self.rng.randint(1950, 2020))
            if key == "big":
                return str(self.rng.randint(150, 99999))
            if key == "patent":
                return f"{self.rng.randint(3, 9)},{self.rng.randint(100, 999)},{self.rng.randint(100, 999)}"
            if key == "first":
                return self.rng.choice(POOLS[self.rng.choice(("female", "male"))])
            if key == "friend":
                return self.rng.choice(POOLS["female"] + POOLS["male"])
            return self.rng.choice(POOLS[key])

        return _SLOT.sub(value, template)

    def occupation_sentence(self, stats: Counter) -> str:
        occ, occ2 = self.rng.sample(list(OCCUPATIONS), 2)
        gender = "she" if self.rng.random() < OCCUPATIONS[occ] else "he"
        stats[(gender, occ)] += 1
        template = self.rng.choice(_OCCUPATION_TEMPLATES)
        return self.fill(template, occ=occ, occ2=occ2, **PRONOUNS[gender])

    # ----- documents -----------------------------------------------------------------------
    def length(self, max_words: int) -> int:
        return round(math.exp(self.rng.uniform(math.log(MIN_WORDS), math.log(max_words))))

    def domain(self) -> str:
        return self.rng.choices(self.domains, cum_weights=self._domain_cum)[0]

    def document(self, domain: str, max_words: int = MAX_WORDS) -> _Doc:
        stats: Counter = Counter()
        words = self.length(max_words)
        if domain == NARRATIVE:
            return self.story(words, stats)
        if domain == "DM Mathematics":
            return _Doc(domain, self.arithmetic(words, stats), stats)
        if domain == "Github":
            return _Doc(domain, self.code(words), stats)
        sentences: list[str] = []
        count = 0
        p_occupation = _OCCUPATION_DOMAINS.get(domain, 0.0)
        while count < words or len(sentences) < MIN_SENTENCES:
            if self.rng.random() < p_occupation:
                s = self.occupation_sentence(stats)
            else:
                s = self.fill(self.rng.choice(_TEMPLATES[domain]))
            sentences.append(s[0].upper() + s[1:])
            count += len(s.split())
        return _Doc(domain, self._paragraphs(sentences), stats)

    def _paragraphs(self, sentences: list[str]) -> str:
        out = sentences[0]
        for s in sentences[1:]:
            out += ("\n\n" if self.rng.random() < 0.15 else " ") + s
        return out

    def arithmetic(self, words: int, stats: Counter) -> str:
        lines: list[str] = []
        count = 0
        while count < words or len(lines) < MIN_SENTENCES:
            x1, x2 = self.number(), self.number(1, 50)
            stats[("x1", x1)] += 1
            line = self.rng.choice(_ARITHMETIC).format(a=x1, b=x2, sum=x1 + x2, product=x1 * x2)
            lines.append(line)
            count += len(line.split())
        return "\n".join(lines)

    def code(self, words: int) -> str:
        blocks = [f"import {self.rng.choice(POOLS['module'])}"]
        count = 2
        while count < words:
            verb, noun = self.rng.choice(POOLS["verb"]), self.rng.choice(POOLS["noun"])
            n, m = self.number(), self.number()
            block = (
                f"def {verb}_{noun}(items, limit={n}):\n"
                f'    """{verb.capitalize()} each {noun} up to the limit."""\n'
                f"    result = []\n"
                f"    for item in items:\n"
                f"        if item > limit:\n"
                f"            break\n"
                f"        result.append(item * {m})\n"
                f"    return result"
            )
            if self.rng.random() < 0.3:
                block = f"# TODO: {verb} the {noun} in batches of {n}\n" + block
            blocks.append(block)
            count += len(block.split())
        return "\n\n\n".join(blocks)

    def story(self, words: int, stats: Counter) -> _Doc:
        gender = self.rng.choice(("she", "he"))
        hero = self.rng.choice(POOLS["female" if gender == "she" else "male"])
        thing = self.rng.choice(POOLS["object"])
        a_thing = f"{'an' if thing[0] in 'aeiou' else 'a'} {self.rng.choice(POOLS['adj'])} {thing}"
        friend = self.rng.choice([n for n in POOLS["female"] + POOLS["male"] if n != hero])
        pron = PRONOUNS[gender]
        fixed = dict(hero=hero, thing=thing, a_thing=a_thing, friend=friend, Subj=pron["subj"].capitalize(),
                     **pron)
        kind, ending = self.rng.choice(STORY_ENDINGS)
        sentences = [self.fill(self.rng.choice(_STORY_OPENINGS), **fixed)]
        count = len(sentences[0].split()) + len(ending.split())
        while count < words:
            if self.rng.random() < _OCCUPATION_DOMAINS[NARRATIVE]:
                s = self.occupation_sentence(stats)
            else:
                s = self.fill(self.rng.choice(_STORY), **fixed)
            s = s[0].upper() + s[1:]
            sentences.append(s)
            count += len(s.split())
        sentences.append(self.fill(ending, **fixed))
        return _Doc(NARRATIVE, self._paragraphs(sentences), stats, ending=kind)

    def near_copy(self, text: str) -> str | None:
        """`text` with a few plain words replaced, Jaccard >= NEAR_DUP_MIN_JACCARD; None if it cannot."""
        words = text.split(" ")
        # Only plain lowercase words, none of "the <occupation> ... <pronoun>" and none next to a
        # number ("12 plus 7 is 19"), so the copy keeps the source's planted statistics.
        protected = {"the", "she", "he", "her", "his", "him"} | {w for o in OCCUPATIONS for w in o.split()}
        numeric = [_DIGIT.search(w) is not None for w in words] + [False]  # [-1] is the sentinel
        editable = [
            i for i, w in enumerate(words)
            if w.isalpha() and w.islower() and w not in protected and not numeric[i - 1] and not numeric[i + 1]
        ]
        edits = max(1, len(words) // NEAR_DUP_WORDS_PER_EDIT)
        if len(editable) < edits:
            return None
        for i in self.rng.sample(editable, edits):
            words[i] = self.rng.choice([w for w in EDIT_WORDS if w != words[i]])
        copy = " ".join(words)
        return copy if jaccard(text, copy) >= NEAR_DUP_MIN_JACCARD else None


@dataclass
class SyntheticCorpus:
    shards: list[list[_Doc]]
    heldout: list[_Doc]
    manifest: dict


def generate(spec: SyntheticSpec) -> SyntheticCorpus:
    """Build the corpus in memory (a few MB for the default config)."""
    g = _Generator(spec.seed)
    n = spec.train_docs
    n_exact = round(n * spec.exact_duplicate_rate)
    n_near = round(n * spec.near_duplicate_rate)
    n_empty = max(1, n // EMPTY_DOC_EVERY)
    if n_exact + n_near + n_empty > n // 2:
        raise PythiaReproError(
            f"corpus.synthetic: {n_exact} exact + {n_near} near duplicates + {n_empty} empty documents "
            f"leave too few originals among {n} documents; lower the duplicate rates"
        )
    slots = g.rng.sample(range(n), n_exact + n_near)
    exact_slots, near_slots = sorted(slots[:n_exact]), sorted(slots[n_exact:])
    taken = set(slots)
    empty_slots = sorted(g.rng.sample([i for i in range(n) if i not in taken], n_empty))

    docs: list[_Doc | None] = [None] * n
    for i in empty_slots:
        docs[i] = _Doc(g.domain(), "", Counter())
    taken.update(empty_slots)
    for i in range(n):
        if i not in taken:
            docs[i] = g.document(g.domain())

    # Each original is copied at most once, so every duplicate cluster is one pair.
    sources = [i for i in range(n) if i not in taken]
    g.rng.shuffle(sources)
    no_near_copy = {i for i in sources if len(docs[i].text.split()) < NEAR_DUP_MIN_WORDS}
    exact_pairs, near_pairs = [], []
    for slot, near in sorted([(s, False) for s in exact_slots] + [(s, True) for s in near_slots]):
        for src in sources:
            source = docs[src]
            if near and src in no_near_copy:
                continue
            text = g.near_copy(source.text) if near else source.text
            if text is not None:
                break
            no_near_copy.add(src)
        else:
            raise PythiaReproError(
                f"corpus.synthetic: too few documents of {NEAR_DUP_MIN_WORDS}+ words to copy; "
                "lower near_duplicate_rate"
            )
        sources.remove(src)
        docs[slot] = _Doc(source.domain, text, source.stats, source.ending)
        if near:
            near_pairs.append([src, slot, round(jaccard(source.text, text), 4)])
        else:
            exact_pairs.append([src, slot])

    planted = _plant_repeats(spec, docs, taken | {p[0] for p in exact_pairs + near_pairs})

    train_texts = {d.text for d in docs}
    heldout: list[_Doc] = []
    while len(heldout) < spec.heldout_docs:
        doc = g.document(NARRATIVE, HELDOUT_MAX_WORDS)
        if doc.text not in train_texts:
            heldout.append(doc)
            train_texts.add(doc.text)

    shards = [docs[s * spec.docs_per_shard : (s + 1) * spec.docs_per_shard] for s in range(spec.num_shards)]
    return SyntheticCorpus(shards, heldout, _manifest(spec, g, docs, heldout, exact_pairs, near_pairs,
                                                     empty_slots, planted))


def planted_text(rng: random.Random, kind: str | None = None) -> str:
    """One boilerplate document of PLANTED_MIN_WORDS..PLANTED_MAX_WORDS words of `kind` (None: seeded)."""
    filler = _Generator.__new__(_Generator)  # fill() needs only an rng and the Zipf numbers
    filler.rng = rng
    filler.rank_order, filler._cum = list(range(100)), list(itertools.accumulate(1 / (r + 1) for r in range(100)))
    if kind is None:
        kind = rng.choice(sorted(_PLANTED_KINDS))
    org = rng.choice(_PLANTED_ORGS)
    target = rng.randint(PLANTED_MIN_WORDS, PLANTED_MAX_WORDS)
    # Every slot is filled once per text, as in real boilerplate (one licence names one version, one
    # date): a filler drawn afresh in each sentence is a random number the model must memorize on its
    # own, and those are where tiny models fail to reproduce a 32-token continuation.
    fixed = {"org": org, "year": rng.randint(1995, 2020), "city": rng.choice(POOLS["city"]),
             "state": rng.choice(POOLS["state"]), "product": rng.choice(POOLS["product"]).capitalize(),
             "n": filler.number(1, 99), "version": f"{rng.randint(1, 4)}.{rng.randint(0, 12)}",
             "day": filler.number(1, 28), "month": rng.choice(POOLS["month"]),
             "country": rng.choice(POOLS["country"]), "topic": rng.choice(POOLS["topic"])}
    sentences: list[str] = []
    while True:
        pool = list(_PLANTED_KINDS[kind])
        rng.shuffle(pool)
        for template in pool:
            s = filler.fill(template, **fixed)
            if sum(len(x.split()) for x in sentences) + len(s.split()) > PLANTED_MAX_WORDS:
                return " ".join(sentences)
            sentences.append(s)
            if sum(len(x.split()) for x in sentences) >= target:
                return " ".join(sentences)


def _plant_repeats(spec: SyntheticSpec, docs: list[_Doc | None], reserved: set[int]) -> dict | None:
    """Overwrite seeded free slots with `planted_copies` verbatim copies of each of `planted_repeats`
    boilerplate texts; returns the manifest section (None when the feature is off).

    Slots of empty documents, duplicate copies and their sources are never used, so the duplicate
    pairs keep their meaning. Its own rng: the rest of the corpus is what it is without the feature.
    """
    if spec.planted_repeats <= 0 or spec.planted_copies <= 0:
        return None
    rng = random.Random(f"planted-{spec.seed}")
    free = [i for i in range(len(docs)) if i not in reserved]
    total = spec.planted_repeats * spec.planted_copies
    if total > len(free) // 2:
        raise PythiaReproError(
            f"corpus.synthetic: {spec.planted_repeats} planted repeats x {spec.planted_copies} copies need "
            f"{total} slots; only {len(free)} documents are free for them, use at most half"
        )
    # Each repeat of its own kind while kinds last: repeats sharing a kind's sentence pool differ only in
    # order and fillers, which a tiny model confuses at every sentence boundary, so none is memorized.
    kinds = rng.sample(sorted(_PLANTED_KINDS), len(_PLANTED_KINDS))
    texts: list[str] = []
    while len(texts) < spec.planted_repeats:
        text = planted_text(rng, kinds[len(texts)] if len(texts) < len(kinds) else None)
        if all(jaccard(text, t) <= PLANTED_MAX_JACCARD for t in texts):
            texts.append(text)
    slots = rng.sample(free, total)
    positions = [sorted(slots[r * spec.planted_copies : (r + 1) * spec.planted_copies])
                 for r in range(spec.planted_repeats)]
    for r, copies in enumerate(positions):
        for i in copies:
            docs[i] = _Doc(PLANTED_DOMAIN, texts[r], Counter())
    return {
        "repeats": spec.planted_repeats,
        "copies": spec.planted_copies,
        "domain": PLANTED_DOMAIN,
        "texts": texts,  # repeat r's exact text
        "positions": positions,  # positions[r]: global train indices of repeat r's copies, sorted
        "definition": "a training sample is planted iff its first k+l tokens lie inside one tokenized text "
                      "(pythia_repro.data.synthetic.planted_windows / is_planted)",
    }


def planted_windows(tokenizer, texts: list[str], width: int) -> set[bytes]:
    """Every window of `width` consecutive token ids of each tokenized text, as int64 bytes.

    Documents are tokenized one by one, so every copy of a planted text is the same id run in the
    token stream: a sample lies inside a copy iff its first `width` ids are one of these windows.
    `tokenizer`: a tokenizers.Tokenizer or the path of a tokenizer.json.
    """
    from tokenizers import Tokenizer

    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_file(str(tokenizer))
    windows: set[bytes] = set()
    for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids = np.asarray(enc.ids, dtype=np.int64)
        for a in range(len(ids) - width + 1):
            windows.add(ids[a : a + width].tobytes())
    return windows


def is_planted(sequences: np.ndarray, windows: set[bytes]) -> np.ndarray:
    """Bool per row: are the row's first `width` tokens (width of the windows) a planted window?"""
    seqs = np.asarray(sequences, dtype=np.int64)
    if not windows:
        return np.zeros(len(seqs), dtype=bool)
    width = len(next(iter(windows))) // 8
    if seqs.ndim != 2 or seqs.shape[1] < width:
        raise ValueError(f"sequences must be (n, >= {width}) token ids, got shape {seqs.shape}")
    rows = np.ascontiguousarray(seqs[:, :width])
    return np.fromiter((row.tobytes() in windows for row in rows), dtype=bool, count=len(rows))


def _manifest(spec, g, docs, heldout, exact_pairs, near_pairs, empty_slots, planted=None) -> dict:
    stats: Counter = Counter()
    numbers: Counter = Counter()
    for d in docs:
        stats.update(d.stats)
        numbers.update(count_numbers(d.text))
    gender = {}
    for occ, p in OCCUPATIONS.items():
        she, he = stats[("she", occ)], stats[("he", occ)]
        gender[occ] = {
            "planned_female_share": p,
            "labour_female_share": LABOUR_SHE_SHARE[occ],
            "she": she,
            "he": he,
            "female_share": round(she / (she + he), 4) if she + he else None,
            "stereotype": "male" if p < 0.5 else "female",
        }
    spec_dict = asdict(spec)
    if planted is None:  # off: the manifest stays byte-identical to the corpus before the feature
        spec_dict.pop("planted_repeats")
        spec_dict.pop("planted_copies")
    manifest = {
        "generator": "pythia_repro.data.synthetic",
        "spec": spec_dict,
        "train": {
            "documents": len(docs),
            "shards": [f"train_{s:02d}.jsonl.zst" for s in range(spec.num_shards)],
            "index": "global index = shard * docs_per_shard + line - 1 (lines are 1-based)",
            "empty_documents": empty_slots,
            "domains": dict(sorted(Counter(d.domain for d in docs).items())),
            "words": sum(len(d.text.split()) for d in docs),
        },
        "duplicates": {
            "shingle_words": SHINGLE_WORDS,
            "exact_pairs": exact_pairs,  # [original, copy], anywhere in the train order
            "near_pairs": near_pairs,  # [original, copy, Jaccard of word 5-shingles]
            "removable": len(exact_pairs) + len(near_pairs),
        },
        "numbers": {
            "distribution": f"Zipf, exponent {ZIPF_EXPONENT}, over 0..99 ranked by rank_order",
            "rank_order": g.rank_order,
            "weights": {str(n): round(g.weights[n], 6) for n in range(100)},
            "operand_counts": {str(n): stats[("x1", n)] for n in range(100)},
            "operand_counts_definition": "arithmetic statements whose first operand is n, train text",
            "counts": {str(n): numbers[n] for n in range(100)},
            "counts_definition": "maximal digit runs of value 0..99 without leading zero, train text",
        },
        "gender": {
            "occupations": gender,
            "she": sum(v["she"] for v in gender.values()),
            "he": sum(v["he"] for v in gender.values()),
        },
        "heldout": {
            "file": "heldout.jsonl",
            "documents": len(heldout),
            "domain": NARRATIVE,
            "max_words": HELDOUT_MAX_WORDS,  # plus at most one sentence
            "last_word": "the target; an object or name met earlier in the text, or an idiom's end",
            "endings": dict(sorted(Counter(d.ending for d in heldout).items())),
        },
    }
    if planted is not None:
        manifest["planted"] = planted
    return manifest


def _jsonl(docs: list[_Doc]) -> bytes:
    lines = (json.dumps({"text": d.text, "meta": {"pile_set_name": d.domain}}) + "\n" for d in docs)
    return "".join(lines).encode("utf-8")


def write_corpus(spec: SyntheticSpec, out_dir: str | Path) -> dict:
    """Write train_XX.jsonl.zst, heldout.jsonl and manifest.json (last) under `out_dir`."""
    out = Path(out_dir)
    corpus = generate(spec)
    compressor = zstandard.ZstdCompressor(level=3)  # one-shot: the bytes depend on the text only
    for name, shard in zip(corpus.manifest["train"]["shards"], corpus.shards, strict=True):
        with atomic_file(out / name, "wb") as fh:
            fh.write(compressor.compress(_jsonl(shard)))
    with atomic_file(out / "heldout.jsonl", "wb") as fh:
        fh.write(_jsonl(corpus.heldout))
    write_json(out / "manifest.json", corpus.manifest)
    return corpus.manifest
