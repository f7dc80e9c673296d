#!/usr/bin/env python3
"""Builds the metric fixtures under tests/fixtures/metrics/ from Python
reference implementations, for tests/test_metrics.c:

  vqa.json      VQA accuracy (OK-VQA, VizWiz). No pip package carries the
                official evaluation, so this script transcribes the official
                vqaEval.py logic (GT-Vision-Lab/VQA, in the form the VQA
                challenge server and OpenFlamingo's open_flamingo/eval/
                vqa_metric.py run) into Python below, independently of the C.
                {"punct": [[in, processPunctuation(in)], ...],
                 "digit_article": [[in, processDigitArticle(in)], ...],
                 "normalize": [[in, both stages], ...],
                 "accuracy": [{"pred", "gts": [...], "acc", "acc_gt_vision_lab",
                               "acc_vizwiz"}, ...]}
                "acc" is what OpenFlamingo computes; the other two are the
                GT-Vision-Lab/VQA master and vizwiz.org forms (metrics.h).
  cider.json    CIDEr-D from pycocoevalcap's Cider (sigma 6, n 4).
                "raw": captions as written; "ptb" holds the same captions
                after pycocoevalcap's own PTBTokenizer (the Stanford jar that
                ships inside the pip package, run with Java) and "expected"
                Cider's scores on those tokens: the true COCO pipeline.
                "tokens": a second, synthetic corpus given to Cider already
                tokenized (repeated n-grams, empty candidates, 1..7 refs).
                "tokenizer": [[raw, ptb], ...] strings aimc's tokenizer must
                tokenize exactly as PTB + pycocoevalcap's punctuation filter
                do (hand-picked cases, captions, abbreviations, fuzz). The
                known differences are listed in host/metrics.h.
  auc.json      ROC-AUC from sklearn.metrics.roc_auc_score; "undefined": true
                where sklearn has no value (one class only: ValueError in
                older releases, a warning and NaN in 1.9): aimc returns NaN.

Needs (fixture generation only): pip install pycocoevalcap scikit-learn (made
with pycocoevalcap 1.2, scikit-learn 1.9.1, OpenJDK 17), and
java on PATH (pycocoevalcap's tokenizer runs the bundled CoreNLP 3.4.1 jar).
Run: python3 scripts/make_metric_fixtures.py [OUT_DIR]
Deterministic: fixed seeds; reruns write identical files.
"""
import json
import math
import os
import random
import re
import sys
import warnings

from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# ============================================================================
# VQA: a transcription of the official evaluation's normalisation and scoring
# ============================================================================
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def process_punctuation(in_text):
    out_text = in_text
    for p in PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    # The official call passes re.UNICODE as sub's 4th positional argument,
    # which is `count`: at most 32 periods are stripped. Kept on purpose.
    out_text = PERIOD_STRIP.sub("", out_text, re.UNICODE)
    return out_text


def process_digit_article(in_text):
    out = []
    for word in in_text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            out.append(word)
    out = [CONTRACTIONS.get(w, w) for w in out]
    return " ".join(out)


def clean_whitespace(s):
    return s.replace("\n", " ").replace("\t", " ").strip()


def leave_one_out(res, gts):
    accs = []
    for i in range(len(gts)):
        others = [g for j, g in enumerate(gts) if j != i]
        matching = [g for g in others if g == res]
        accs.append(min(1, float(len(matching)) / 3))
    return float(sum(accs)) / len(accs)


def vqa_accuracy(pred, gts):
    """One question as OpenFlamingo's vqa_metric.py (the VQA challenge
    server's vqaEval) scores it. Answers are compared by position (VQA's
    answers carry unique answer_ids)."""
    gts = [clean_whitespace(g) for g in gts]
    res = clean_whitespace(pred)
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(g)) for g in gts]
        res = process_digit_article(process_punctuation(res))
    return leave_one_out(res, gts)


def vqa_accuracy_gt_vision_lab(pred, gts):
    """GT-Vision-Lab/VQA master vqaEval.py: the prediction always normalised,
    raw answers punctuation-processed only when they disagree."""
    res = process_digit_article(process_punctuation(clean_whitespace(pred)))
    if len(set(gts)) > 1:
        gts = [process_punctuation(g) for g in gts]
    return leave_one_out(res, gts)


def vqa_accuracy_vizwiz(pred, gts):
    """vizwiz.org's evaluation: the prediction always normalised, answers raw."""
    res = process_digit_article(process_punctuation(clean_whitespace(pred)))
    return leave_one_out(res, list(gts))


NORMALIZE_CASES = [
    "", " ", "yes", "Yes", "YES!", "yes.", "dog.", "a dog.", "The dog", "an apple", "a", "the", "A  Dog ",
    "1,000", "1000", "1, 000", "1,000 dollars", "10,5", "a,b", "a, b", "red,white", "red, white and blue",
    "3.5", "3.5.", "3.", ".5", "..", "...", "u.s.", "e.g. this", "1.", "no. 5", "dr.who", "end.",
    "two", "Two", "TWO", "ten", "eleven", "none", "zero", "one two three", "twenty-one", "one-way",
    "dont", "Dont", "don't", "doesnt", "isnt", "Im", "im", "Ive", "youre", "wont", "cant", "somebody'd",
    "hes", "let's", "ow's'at", "twas", "yall'll", "y'allll",
    "left/right", "left / right", "(yes)", "( yes )", "[a]", "{b}", "x=y", "x = y", "c++", "a+b", "back\\slash",
    "snake_case", "e-mail", "e - mail", "a>b", "<3", "@home", "`tick`", "why?", "why ?", "wow!", "wow !",
    "semi;colon", "semi; colon", "it's", "'quoted'", "\"quoted\"", "\"quoted\" word", "colon:here", "50%",
    "$5", "#1", "&", "a & b", "~", "1,000.", "1,000 dogs!", "2,3-dimethyl", "yes, 1,2",
    "\tyes\n", "yes\tno", "new\nline", "  spaced   out  ", "MiXeD CaSe", "Café", "ÉCOLE", "naïve",
    "İstanbul", "straße", "ΑΘΗΝΑ", "日本", "١,٢", "١.٥", "１,０００", "x\u00a0y", "x\u2003y", "x\u3000y",
    "a" + "." * 40, "." * 50, ". " * 40, "3" + ". " * 35 + "end",
    "the the the", "a an the", "A dog, a cat.", "The two dogs", "none of the above",
]


def vqa_fixture():
    rng = random.Random(20240607)
    alphabet = list("abcdeAB01239 .,;/-_?!()[]{}\"'`=+\\<>@:") + [" ", " ", "two", "the ", "a ", "dont", "1,0"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(300)]
    cases = NORMALIZE_CASES + fuzz
    acc_cases = []

    def add(pred, gts):
        acc_cases.append({"pred": pred, "gts": gts, "acc": vqa_accuracy(pred, gts),
                          "acc_gt_vision_lab": vqa_accuracy_gt_vision_lab(pred, gts),
                          "acc_vizwiz": vqa_accuracy_vizwiz(pred, gts)})

    add("yes", ["yes"] * 10)
    add("Yes", ["yes"] * 10)                      # unanimous GT: no normalisation, no match
    add("yes.", ["yes"] * 10)
    add("no", ["yes"] * 10)
    add("2", ["2"] * 3 + ["two"] * 7)
    add("two", ["2"] * 3 + ["two"] * 7)
    add("two", ["two"] * 10)                      # unanimous: raw compare matches
    add("2", ["two"] * 10)                        # unanimous: raw compare, no match
    add("dog", ["a dog."] * 2 + ["dog"] * 8)
    add("a dog.", ["a dog."] * 2 + ["dog"] * 8)
    add("1000", ["1,000"] * 5 + ["1000"] * 5)
    add("1,000", ["1,000"] * 5 + ["1000"] * 5)
    add("don't know", ["dont know"] * 4 + ["unanswerable"] * 6)
    add("unanswerable", ["dont know"] * 4 + ["unanswerable"] * 6)
    add("", ["", "", "yes", "no", "", "", "", "", "", "maybe"])
    add("", [""] * 10)
    add("", ["yes"] * 10)
    add("red", ["red", "red", "blue", "green", "red", "blue", "red", "white", "red", "blue"])
    add("blue", ["red", "red", "blue", "green", "red", "blue", "red", "white", "red", "blue"])
    add("green", ["red", "red", "blue", "green", "red", "blue", "red", "white", "red", "blue"])
    add("white", ["red", "red", "blue", "green", "red", "blue", "red", "white", "red", "blue"])
    add("purple", ["red", "red", "blue", "green", "red", "blue", "red", "white", "red", "blue"])
    add("Café", ["café"] * 4 + ["cafe"] * 6)
    add("  yes\n", ["yes", "yes ", "no", "yes", "yes", "yes", "yes", "yes", "yes", "yes"])
    add("yes", ["yes"])                           # a single answer: leave-one-out leaves nothing
    add("yes", ["yes", "no"])
    add("yes", ["yes", "yes", "yes", "no"])
    add("yes", ["yes", "Yes", "YES", "no"])
    add("yes", ["yes", "yes", "yes", "yes", "no"])
    add("\u3000yes\u00a0", ["yes", "yes", "no", "yes\u2003", "\x1cyes", "yes", "yes", "no", "yes", "yes"])
    add("\u3000yes\u00a0", ["yes"] * 10)
    add("yes", ["\u2003yes"] * 10)
    add("Two dogs", ["two dogs"] * 3 + ["2 dogs"] * 7)
    add("two dogs!", ["two dogs!"] * 2 + ["2 dogs"] * 8)
    add("No.", ["no"] * 10)
    add("no", ["No."] * 6 + ["no"] * 4)
    words = ["yes", "no", "2", "two", "a dog", "dog", "dog.", "1,000", "1000", "dont", "don't", "",
             "red", "Red!", "the red", "3.5", "none", "0"]
    for _ in range(120):
        n = rng.choice([10, 10, 10, 3, 5, 1, 7])
        add(rng.choice(words + ["cat"]), [rng.choice(words) for _ in range(n)])
    return {
        "punct": [[s, process_punctuation(s)] for s in cases],
        "digit_article": [[s, process_digit_article(s)] for s in cases],
        "normalize": [[s, process_digit_article(process_punctuation(s))] for s in cases],
        "accuracy": acc_cases,
    }


# ============================================================================
# CIDEr-D
# ============================================================================
SUBJECTS = ["a man", "a woman", "two dogs", "a little girl", "the boy", "a group of people", "an old man",
            "three children", "a black dog", "a young woman", "a person", "two men"]
VERBS = ["is riding", "is walking", "are playing", "is sitting", "stands", "runs", "is jumping",
         "are standing", "is holding", "looks"]
OBJECTS = ["a bike", "a red ball", "the street", "a bench", "the water", "a camera", "a frisbee",
           "a horse", "the grass", "a guitar"]
PLACES = ["in the park", "on the beach", "near a building", "at night", "in the snow", "on a sidewalk",
          "in front of a crowd", "by the lake"]


def synth_caption(rng):
    s = "%s %s %s" % (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS))
    if rng.random() < 0.6:
        s += " " + rng.choice(PLACES)
    r = rng.random()
    if r < 0.4:
        s += "."
    elif r < 0.5:
        s += " ."
    if rng.random() < 0.5:
        s = s[0].upper() + s[1:]
    if rng.random() < 0.15:
        s = s.upper()
    if rng.random() < 0.2:
        s = s.replace(" is ", ", who is ", 1)
    return s


# Hand-written items: PTB-sensitive punctuation, clitics, brackets, quotes,
# repeated n-grams, an empty and an all-punctuation candidate.
HAND_ITEMS = [
    ("A man's hat is on the table.", ["A man's hat sits on a wooden table.", "The hat of a man, on a table.",
                                       "A hat is on the table", "a brown hat on the table .",
                                       "Someone's hat lies on the kitchen table."]),
    ("a dog a dog a dog a dog", ["A dog runs.", "a dog is running on the grass", "The dog plays.",
                                 "a brown dog", "A dog and a dog."]),
    ("", ["A cat sleeps.", "a cat is sleeping on a couch", "The cat naps", "cat on couch", "A sleeping cat."]),
    (".", ["Two kids play soccer.", "children playing soccer", "Kids kick a ball.", "a soccer game",
           "Two children play a game of soccer."]),
    ("The children (two of them) play \"tag\" outside!", [
        "Two children play tag outside.", "Kids playing a game of tag.", "Two kids run around outside",
        "children play outdoors", "Two young children (a boy and a girl) play tag."]),
    ("They're sitting; we don't know why?", ["They are sitting down.", "People who don't stand.",
                                             "Two people sit; one waves.", "They're sitting on chairs",
                                             "People sitting in chairs, waiting."]),
    ("A woman with 1,000 balloons at 10:30 in the U.S.", [
        "A woman holds many balloons.", "The woman has 1,000 colorful balloons.",
        "A lady holding balloons at 10:30", "Balloons held by a woman in the U.S.", "a woman and balloons"]),
    ("A surfer -- riding a wave... wow", ["A surfer rides a big wave.", "A man surfing - on a wave.",
                                          "Surfer on a wave", "A surfer riding a large wave in the ocean.",
                                          "Someone surfs; the wave is big."]),
    ("a black-and-white photo of an old man's face", [
        "A black-and-white photo of a man.", "An old man's face in black and white.",
        "Black and white portrait of an elderly man", "A close-up of an old man's face.",
        "an old man , black-and-white"]),
    ("A dog is running on the grass.", ["A dog is running on the grass.", "a dog runs on grass",
                                        "The dog is running through the grass.", "A brown dog runs.",
                                        "A dog running on green grass."]),
    ("Kids' toys are on the floor, aren't they?", ["Toys on the floor.", "Children's toys lie on the floor.",
                                                   "The kids' toys are scattered on the floor",
                                                   "Many toys are on the floor.", "toys , toys , toys"]),
    ("A man in a red shirt: climbing a rock wall!", ["A man climbs a rock wall.",
                                                    "A man in a red shirt is rock climbing.",
                                                    "Rock climber in red.", "A climber on a wall",
                                                    "A man wearing red climbs a wall!"]),
]


def cider_raw_corpus():
    rng = random.Random(7)
    items = list(HAND_ITEMS)
    while len(items) < 40:
        items.append((synth_caption(rng), [synth_caption(rng) for _ in range(5)]))
    return items


def ptb_tokenize(strings):
    """pycocoevalcap's PTBTokenizer on a flat list of strings."""
    data = {i: [{"caption": s}] for i, s in enumerate(strings)}
    out = PTBTokenizer().tokenize(data)
    return [out[i][0] for i in range(len(strings))]


def run_cider(cands, refs):
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [c] for i, c in enumerate(cands)}
    mean, scores = Cider().compute_score(gts, res)
    return float(mean), [float(x) for x in scores]


def cider_token_corpus():
    """Synthetic pre-tokenized items from a small vocabulary, so n-grams repeat."""
    rng = random.Random(11)
    vocab = ["a", "dog", "cat", "runs", "on", "the", "grass", "red", "ball", "is", "and", "x"]

    def sent(lo, hi):
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(lo, hi)))

    cands, refs = [], []
    for i in range(34):
        cands.append(sent(0, 12) if i % 9 else "")
        refs.append([sent(0, 14) for _ in range(rng.randint(1, 7))])
    cands.append("a dog a dog a dog a dog a dog")
    refs.append(["a dog", "a dog runs", "dog dog dog dog"])
    cands.append("x")
    refs.append(["x", "x x", ""])
    return cands, refs


# Strings aimc's tokenizer reproduces exactly (checked against PTB here).
TOKENIZER_CASES = [
    "A dog's toy, isn't it? The dog is grey.", "a dog.", "a dog .", "A MAN RIDING A HORSE.",
    "Don't can't won't I'm you're we've they'll he'd", "dogs' toys", "the children's park.",
    "1,000 people and 3.5 dogs at 10:30", "hello,world a,b 1,2 1, 2", "x: y a:b 3:4",
    "She said \"hello\" (quietly) [really] {ok}.", "well...ok ok.. ok....", "a -- b a - b a--b",
    "twenty-five 5-year-old black-and-white", "wow!!! what?! why? yes!", "mr. jones and dr. who",
    "in the u.s. at 5 p.m. e.g. here", "it costs $5 or 50%", "don’t it’s “curly” ‘single’ — dash – dash … end",
    "  leading and   multiple   spaces  ", "", ".", "...", "!", "'hello' 'em 'cause", "a/b and/or 1/2",
    "A man in a red shirt: climbing a rock wall!", "Kids' toys are on the floor, aren't they?",
]


# Flickr30k-style captions (written for this fixture) and non-ASCII text.
CAPTION_CASES = [
    'Two young guys with shaggy hair look at their hands while hanging out in the yard.',
    'Two young, White males are outside near many bushes.',
    'Two men in green shirts are standing in a yard.',
    'A man in a blue shirt standing in a garden.',
    'Two friends enjoy time spent together.',
    'Several men in hard hats are operating a giant pulley system.',
    'Workers look down from up above on a piece of equipment.',
    'Two men working on a machine wearing hard hats.',
    'Four men on top of a tall structure.',
    'Three men on a large rig.',
    'A child in a pink dress is climbing up a set of stairs in an entry way.',
    'A little girl in a pink dress going into a wooden cabin.',
    'A little girl climbing the stairs to her playhouse.',
    'A little girl climbing into a wooden playhouse',
    'A girl going into a wooden building.',
    'Someone in a blue shirt and hat is standing on stairs and leaning against a window.',
    'A man in a blue shirt is standing on a ladder cleaning windows.',
    'A man on a ladder cleans the window of a tall building.',
    'man in blue shirt and jeans on ladder cleaning windows',
    'a man on a ladder cleans a window',
    'Two men, one in a gray shirt, one in a black shirt, standing near a stove.',
    'Two guy cooking and joking around with each other.',
    'Two men are at the stove preparing food.',
    'Two men are cooking a meal.',
    'Two men are in a kitchen.',
    'A man in a vest is sitting in a chair and holding magazines.',
    'A man with glasses is wearing a beer can crocheted hat.',
    'The man with pierced ears is wearing glasses and an orange hat.',
    'A man wears an orange hat and glasses.',
    'A man with gauges and glasses is wearing a Blitz hat.',
    '"A person in a ""Wake me up"" shirt is sleeping."',
    'A black dog and a spotted dog are fighting',
    'A black dog and a tri-colored dog playing with each other on the road.',
    'Two dogs of different breeds looking at each other on the road.',
    'Two dogs on pavement moving toward each other.',
    'A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl.',
    'A small girl in the grass plays with fingerpaints in front of a white canvas with a rainbow on it.',
    'There is a girl with pigtails sitting in front of a rainbow painting.',
    'Young girl with pigtails painting outside in the grass.',
    'A man lays on a bench while his dog sits by him.',
    'A man lays on the bench to which a white dog is also tied.',
    'a man sleeping on a bench outside with a white and black dog sitting next to him.',
    'A shirtless man lies on a park bench with his dog.',
    'man laying on bench holding leash of dog sitting on ground',
    "The man, who's wearing a hat, isn't smiling; he's tired.",
    "A woman's purse and a child's toy (a teddy bear) lie on the couch.",
    "The players' uniforms are red-and-white.",
    'A dog jumps over a 3-foot hurdle at the 2012 U.S. Open.',
    'A boy in a t-shirt that says "I love NY" walks down 5th Ave.',
    'A man - wearing a hat - walks; a dog follows.',
    'People watch a parade at 7:30 p.m. on Main St. in Washington, D.C.',
    "A toddler's birthday cake with 2 candles!",
    "Is that a cat?? No, it's a fox!!",
    "The dog's owner can't catch it...",
    'A group of 10-15 people stand around (some are sitting).',
    "A woman holds a sign reading 'Stop the war'.",
    'An old man with a cane & a hat sits alone.',
    'A sign says: "No parking."',
    "Kids play with a ball; it's a sunny day.",
    'A man (left) and a woman (right) shake hands.',
    'a man on a bike does a trick on a ramp , while others watch .',
    'A man in an orange hat starring at something.',
    'A Boston Terrier is running on lush green grass in front of a white fence.',
    'A man and woman are sitting on a bench.  One is reading.',
    'Mr. and Mrs. Smith dance at their wedding.',
    "A dog in a Santa hat sits by the tree -- it's Christmas!",
    'A woman wearing a red jacket and jeans is walking her dog, a black lab.',
    'Motorcyclist #23 leans into a turn.',
    'A band performs on stage; the crowd cheers "encore!"',
    'A café in Zürich, naïve.',
    'ÉCOLE sign – closed.',
    'A dog…',
    'The “best” day’s end',
    'A man’s hat — red',
    'το ΣΚΥΛΙ',
    '日本 の 犬.',
    'He said: “Don’t!”',
]

# Abbreviations aimc keeps the period of (host/metrics_cider.c), each in
# the middle and at the end of a sentence.
PTB_ABBREVIATIONS = ("mr mrs ms dr st jr sr etc vs mt prof inc co ltd ave jan feb mar apr jun jul aug sep sept "
                     "oct nov dec gen gov sen rep lt col sgt capt dept univ corp bros ft est blvd rd cf al calif "
                     "fla ariz mich minn penn va wis mon tue wed thu fri adm maj messrs rev hon pres supt assn adj "
                     "esq mo tel ext intl natl ph.d").split()


def fuzz_captions(count):
    """Words with punctuation glued on either side at random (leading ',' and
    ':' before digits are left out: PTB keeps ",1,000" whole, aimc does not)."""
    rng = random.Random(5)
    words = ("a man dog's can't it's 1,000 3.5 u.s. mr. the red-and-white 10:30 $5 50% (big) \"quoted\" "
             "'single' dogs' ok").split()
    tail = [".", ",", "!", "?", ";", ":", "...", "--", "-", "'", "\"", "(", ")", "!!", "?!"]
    head = [p for p in tail if p not in (",", ":")]
    out = []
    for _ in range(count):
        toks = []
        for _ in range(rng.randint(1, 8)):
            w = rng.choice(words)
            if rng.random() < 0.3:
                w = w + rng.choice(tail)
            if rng.random() < 0.15:
                w = rng.choice(head) + w
            if rng.random() < 0.2:
                w = w.capitalize()
            toks.append(w)
        out.append(" ".join(toks))
    return out


def tokenizer_fixture():
    cases = list(TOKENIZER_CASES) + CAPTION_CASES + fuzz_captions(300)
    for a in PTB_ABBREVIATIONS:
        cases += ["the %s. of it" % a, "see %s." % a.capitalize()]
    ptb = ptb_tokenize(cases)
    return [[raw, tok] for raw, tok in zip(cases, ptb)]


def cider_fixture():
    items = cider_raw_corpus()
    cands = [c for c, _ in items]
    flat_refs = [r for _, refs in items for r in refs]
    tok_cands = ptb_tokenize(cands)
    tok_flat = ptb_tokenize(flat_refs)
    tok_refs, k = [], 0
    for _, refs in items:
        tok_refs.append(tok_flat[k:k + len(refs)])
        k += len(refs)
    mean, scores = run_cider(tok_cands, tok_refs)
    tcands, trefs = cider_token_corpus()
    tmean, tscores = run_cider(tcands, trefs)
    return {
        "raw": [{"candidate": c, "refs": r} for c, r in items],
        "ptb": [{"candidate": c, "refs": r} for c, r in zip(tok_cands, tok_refs)],
        "expected": {"mean": mean, "scores": scores},
        "tokens": {"items": [{"candidate": c, "refs": r} for c, r in zip(tcands, trefs)],
                   "mean": tmean, "scores": tscores},
        "tokenizer": tokenizer_fixture(),
    }


# ============================================================================
# ROC-AUC
# ============================================================================
def auc_case(name, scores, labels):
    """sklearn raises ValueError (older releases) or warns and returns NaN
    (1.9) when only one class is present; both are recorded as undefined."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            auc = float(roc_auc_score(labels, scores))
    except ValueError:
        auc = math.nan
    if math.isnan(auc):
        return {"name": name, "scores": scores, "labels": labels, "auc": None, "undefined": True}
    return {"name": name, "scores": scores, "labels": labels, "auc": auc, "undefined": False}


def auc_fixture():
    rng = random.Random(3)
    cases = [
        auc_case("perfect", [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]),
        auc_case("inverted", [0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]),
        auc_case("all_tied", [0.5] * 6, [0, 1, 0, 1, 1, 0]),
        auc_case("two", [0.3, 0.3], [1, 0]),
        auc_case("ties_across", [0.1, 0.4, 0.4, 0.4, 0.35, 0.8, 0.8], [0, 0, 1, 1, 0, 1, 0]),
        auc_case("negative_scores", [-3.0, -1.5, -1.5, 0.0, -7.25], [1, 0, 1, 1, 0]),
        auc_case("all_positive", [0.1, 0.2, 0.3], [1, 1, 1]),
        auc_case("all_negative", [0.1, 0.2, 0.3], [0, 0, 0]),
        auc_case("one_item", [0.7], [1]),
    ]
    for n in (17, 100, 1000):
        scores = [round(rng.gauss(0, 1), 1) for _ in range(n)]  # rounding makes many ties
        labels = [1 if rng.random() < 0.5 + 0.15 * math.tanh(s) else 0 for s in scores]
        cases.append(auc_case("random_ties_%d" % n, scores, labels))
    scores = [rng.random() for _ in range(257)]
    labels = [1 if rng.random() < 0.2 else 0 for _ in range(257)]
    cases.append(auc_case("imbalanced_257", scores, labels))
    return {"cases": cases}


def dump_one_per_line(obj, depth=0):
    """JSON with one list element or object member per line down to depth 2,
    and compact below, so the files stay small and diff well."""
    if depth >= 2 or not isinstance(obj, (dict, list)) or not obj:
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, dict):
        inner = ",\n".join(json.dumps(k) + ": " + dump_one_per_line(v, depth + 1) for k, v in obj.items())
        return "{\n" + inner + "\n}" + ("\n" if depth == 0 else "")
    return "[\n" + ",\n".join(dump_one_per_line(v, depth + 1) for v in obj) + "\n]"


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "metrics")
    os.makedirs(out_dir, exist_ok=True)
    for name, data in (("vqa.json", vqa_fixture()), ("cider.json", cider_fixture()), ("auc.json", auc_fixture())):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(dump_one_per_line(data))
        print("wrote", os.path.join(out_dir, name))


if __name__ == "__main__":
    main()
