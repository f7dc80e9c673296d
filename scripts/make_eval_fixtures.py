#!/usr/bin/env python3
"""Generates tests/fixtures/eval/: tiny synthetic benchmarks in the published
formats `aimc eval` reads (host/eval_data.h), so the whole evaluation path
runs in CI on the tiny model fixtures.

    pip install pillow numpy
    python3 scripts/make_eval_fixtures.py

Deterministic (fixed seeds; reruns write identical files). Everything is made
up: small gradient/shape images and short texts. Layout:

  coco/train2014/COCO_train2014_%012d.jpg   OK-VQA train images (6)
  coco/val2014/COCO_val2014_%012d.jpg       OK-VQA val images (4)
  okvqa/OpenEnded_mscoco_{train,val}2014_questions.json
  okvqa/mscoco_{train,val}2014_annotations.json       (10 answers each)
  vizwiz/{train,val}.json + vizwiz/{train,val}/VizWiz_*.jpg  (single-file format)
  flickr30k/dataset_flickr30k.json + flickr30k/flickr30k-images/*.jpg (Karpathy split)
  hateful_memes/{train,dev_seen}.jsonl + hateful_memes/img/*.png
"""
import json
import os

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "eval")
RNG = np.random.default_rng(20240607)

COLOURS = [(200, 40, 40), (40, 160, 60), (50, 70, 210), (230, 200, 40), (150, 60, 170),
           (30, 180, 190), (240, 130, 30), (90, 90, 90), (250, 250, 250), (20, 20, 20)]


def make_image(index, size):
    """A small picture: a two-colour gradient with a shape on it."""
    w, h = size
    a = np.array(COLOURS[index % len(COLOURS)], dtype=np.float64)
    b = np.array(COLOURS[(index * 3 + 1) % len(COLOURS)], dtype=np.float64)
    t = np.linspace(0.0, 1.0, w)[None, :, None]
    img = (a * (1 - t) + b * t) * np.ones((h, 1, 1))
    img += RNG.normal(0, 6, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    c = COLOURS[(index * 7 + 2) % len(COLOURS)]
    x0, y0 = (index * 5) % (w // 2), (index * 3) % (h // 2)
    if index % 2:
        d.ellipse([x0, y0, x0 + w // 2, y0 + h // 2], fill=c)
    else:
        d.rectangle([x0, y0, x0 + w // 3, y0 + h // 3], fill=c)
    return im


def save(im, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".png"):
        im.save(path, optimize=True)
    else:
        im.save(path, quality=85)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


SIZES = [(32, 32), (40, 30), (30, 44), (36, 36), (48, 32)]
image_counter = [0]


def new_image(path):
    i = image_counter[0]
    image_counter[0] += 1
    save(make_image(i, SIZES[i % len(SIZES)]), path)


# ---- OK-VQA (VQA v2 format) -------------------------------------------------------------

OKVQA = {
    "train": [
        (101, 1011, "What color is the square?", ["red"] * 7 + ["dark red", "maroon", "red"]),
        (102, 1021, "Is this a circle?", ["yes"] * 10),
        (103, 1031, "How many shapes are there?", ["one", "1", "1", "one", "1", "1", "single", "1", "one", "1"]),
        (104, 1041, "What is the background?", ["gradient", "a gradient", "colors", "gradient", "paint",
                                                "gradient", "gradient", "wall", "gradient", "sky"]),
        (105, 1051, "Which sport uses this shape?", ["soccer", "soccer", "football", "soccer", "basketball",
                                                     "soccer", "soccer", "tennis", "soccer", "soccer"]),
        (106, 1061, "Where could you find this?", ["in a museum", "museum", "museum", "art gallery", "gallery",
                                                   "museum", "school", "museum", "gallery", "museum"]),
    ],
    "val": [
        (201, 2011, "What color is the shape?", ["blue"] * 6 + ["navy", "dark blue", "blue", "blue"]),
        (202, 2021, "Is it round?", ["no", "no", "No", "no", "no", "no", "no", "no", "nope", "no"]),
        (203, 2031, "What does this remind you of?", ["the sun", "sun", "a ball", "ball", "sun", "moon",
                                                      "sun", "orange", "the sun", "sunset"]),
        (203, 2032, "Can you eat this?", ["no", "no", "no", "yes", "no", "no", "no", "no", "no", "no"]),
    ],
}


def okvqa():
    for split, rows in OKVQA.items():
        qs, anns, seen = [], [], set()
        for image_id, qid, question, answers in rows:
            if image_id not in seen:
                seen.add(image_id)
                new_image(os.path.join(ROOT, "coco", f"{split}2014", f"COCO_{split}2014_{image_id:012d}.jpg"))
            qs.append({"image_id": image_id, "question": question, "question_id": qid})
            anns.append({
                "image_id": image_id, "question_type": "other", "question_id": qid, "answer_type": "other",
                "confidence": 3,
                "answers": [{"answer": a, "raw_answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                            for j, a in enumerate(answers)],
            })
        info = {"description": "synthetic OK-VQA-format fixture for aimc", "version": "1.0"}
        write_json(os.path.join(ROOT, "okvqa", f"OpenEnded_mscoco_{split}2014_questions.json"),
                   {"info": info, "task_type": "Open-Ended", "data_type": "mscoco",
                    "data_subtype": f"{split}2014", "questions": qs, "license": {}})
        write_json(os.path.join(ROOT, "okvqa", f"mscoco_{split}2014_annotations.json"),
                   {"info": info, "data_type": "mscoco", "data_subtype": f"{split}2014",
                    "annotations": anns, "license": {}})


# ---- VizWiz (single-file format) ------------------------------------------------------------

VIZWIZ = {
    "train": [
        ("What is this?", ["a can", "can", "soda can", "can", "can of soda", "can", "unanswerable", "can", "can", "tin"]),
        ("What color is this shirt?", ["blue"] * 8 + ["light blue", "blue"]),
        ("What does this say?", ["unanswerable"] * 6 + ["milk", "unsuitable", "unanswerable", "unanswerable"]),
        ("Is it sunny?", ["yes", "yes", "yes", "no", "yes", "yes", "yes", "yes", "yes", "unanswerable"]),
    ],
    "val": [
        ("What is in this box?", ["cereal", "cereal", "cereal box", "cereal", "unanswerable", "cereal",
                                  "corn flakes", "cereal", "cereal", "food"]),
        ("Which color is this?", ["green"] * 7 + ["dark green", "green", "olive"]),
        ("What is the temperature?", ["unanswerable"] * 5 + ["72", "72 degrees", "unanswerable", "70", "72"]),
    ],
}


def vizwiz():
    for split, rows in VIZWIZ.items():
        out = []
        for i, (question, answers) in enumerate(rows):
            name = f"VizWiz_{split}_{i:08d}.jpg"
            new_image(os.path.join(ROOT, "vizwiz", split, name))
            out.append({"image": name, "question": question,
                        "answers": [{"answer": a, "answer_confidence": "yes" if j % 3 else "maybe"}
                                    for j, a in enumerate(answers)],
                        "answer_type": "other", "answerable": 0 if answers[0] == "unanswerable" else 1})
        write_json(os.path.join(ROOT, "vizwiz", f"{split}.json"), out)


# ---- Flickr30k (Karpathy split) ------------------------------------------------------------------

FLICKR = [
    ("train", ["A red square on a green background.", "A square sits on a wall.", "Red and green colours.",
               "A painting of a square.", "Two colours and a box."]),
    ("train", ["A blue circle in the sky.", "A round shape floats.", "The ball is blue.",
               "A circle over a gradient.", "Blue and yellow."]),
    ("train", ["A yellow box on a purple wall.", "Yellow square.", "A small square, yellow.",
               "A box on purple paint.", "Shapes on a wall."]),
    ("val", ["An orange dot.", "A dot.", "Orange circle.", "A round thing.", "A dot on grey."]),
    ("train", ["A grey square next to a white edge.", "Grey box.", "A square in grey.",
               "A box by the border.", "Grey and white."]),
    ("test", ["A green circle on red.", "A round green shape.", "Green ball on a red wall.",
              "A circle, green.", "Red and green."]),
    ("test", ["A purple box in the corner.", "A square at the top.", "Purple square.",
              "A box on a gradient.", "Purple and blue colours."]),
    ("test", ["A white circle on black.", "A bright dot.", "White ball in the dark.",
              "A round white shape.", "Black and white."]),
]


def tokens(raw):
    return [t for t in raw.lower().replace(".", " ").replace(",", " ").split() if t]


def flickr():
    images, sentid = [], 0
    for imgid, (split, sents) in enumerate(FLICKR):
        name = f"{1000092795 + 17 * imgid}.jpg"
        new_image(os.path.join(ROOT, "flickr30k", "flickr30k-images", name))
        ids = list(range(sentid, sentid + len(sents)))
        images.append({"sentids": ids, "imgid": imgid, "split": split, "filename": name,
                       "sentences": [{"tokens": tokens(s), "raw": s, "imgid": imgid, "sentid": sid}
                                     for s, sid in zip(sents, ids)]})
        sentid += len(sents)
    write_json(os.path.join(ROOT, "flickr30k", "dataset_flickr30k.json"), {"images": images, "dataset": "flickr30k"})


# ---- Hateful Memes (jsonl) ---------------------------------------------------------------------

HATEFUL = {  # neutral made-up texts; the labels are arbitrary (synthetic fixture)
    "train": [(42953, 0, "its their character not their colour that matters"),
              (23058, 0, "don't be afraid to try again"),
              (13894, 1, "putting bows on your pet"),
              (37408, 1, "i love everything! except for mondays"),
              (82403, 0, "everybody loves chocolate chip cookies"),
              (16952, 1, "go sports! do the thing! win the points!")],
    "dev_seen": [(8291, 1, "when the wifi is down"),
                 (46971, 0, "bravery at its finest"),
                 (3745, 1, "your order comes to $37.50"),
                 (83745, 0, "it is time.. to water the plants")],
}


def hateful():
    for split, rows in HATEFUL.items():
        lines = []
        for meme_id, label, text in rows:
            rel = f"img/{meme_id:05d}.png"
            new_image(os.path.join(ROOT, "hateful_memes", rel))
            lines.append(json.dumps({"id": meme_id, "img": rel, "label": label, "text": text}))
        with open(os.path.join(ROOT, "hateful_memes", f"{split}.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    okvqa()
    vizwiz()
    flickr()
    hateful()
    print(f"wrote {image_counter[0]} images and the benchmark files under {os.path.normpath(ROOT)}")
