"""A text classifier flagging sensitive information, trained on Faker-generated text.

TF-IDF over character 2-4-grams (digits and separators are what tells a card
number from a phone number; word tokens would memorise the numbers themselves)
into a linear SVM. LinearSVC has no probabilities; we wrap it in
CalibratedClassifierCV (Platt scaling, 3 folds) so ``probabilities`` are
calibrated and mean something when a client thresholds on them; a softmax over
raw margins would look like probabilities without being any.

``lowercase=False``: skl2onnx lowercases with onnxruntime's StringNormalizer,
which needs an ``en_US.UTF-8`` locale that slim images (and Lambda) lack; the
model would fail to load there. Case matters little for these classes.
No ``sublinear_tf``: skl2onnx's conversion of it drifts (probabilities off by
0.009, measured), beyond the conversion check's tolerance.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from modelbay.convert.data import Dataset
from modelbay.manifest import ClassifierPostprocessing, StringPreprocessing, VersionMetadata

LABELS = ["ordinary", "email", "phone", "card_number", "id_number", "address"]


def _generate(n_per_class: int, seed: int) -> tuple[list[str], list[str]]:
    from faker import Faker

    fake = Faker(["en_US", "en_GB", "fr_FR", "de_DE"])
    Faker.seed(seed)
    rng = random.Random(seed)
    us = fake["en_US"]

    def ctx(value: str, options: list[str]) -> str:
        return rng.choice(options + ["{}"] * 2).format(value)

    makers = {
        "email": lambda: ctx(
            fake.email(), ["Contact me at {}", "my email is {}", "Send the invoice to {} please", "{} (work)", "cc: {}"]
        ),
        "phone": lambda: ctx(
            fake.phone_number(), ["Call me on {}", "phone: {}", "Tel {}", "You can reach the office at {} after 9"]
        ),
        "card_number": lambda: ctx(
            us.credit_card_number(),
            ["card {}", "Visa ending {}", "my card number is {}", "CC# {} exp " + us.credit_card_expire()],
        ),
        "id_number": lambda: ctx(
            rng.choice([us.ssn(), fake.iban(), us.passport_number(), fake["fr_FR"].ssn(), us.bban()]),
            ["SSN {}", "IBAN: {}", "passport no. {}", "my social security number is {}", "account {}"],
        ),
        "address": lambda: ctx(
            fake.address().replace("\n", ", "), ["I live at {}", "Ship to {}", "address: {}", "Our office moved to {}"]
        ),
        "ordinary": lambda: rng.choice(
            [
                fake.sentence(),
                fake.catch_phrase(),
                us.bs().capitalize() + ".",
                fake.text(max_nb_chars=120),
                f"We sold {rng.randint(2, 9000)} units in {rng.randint(1990, 2030)}.",
                f"The meeting is at {rng.randint(1, 12)}:{rng.choice(['00', '15', '30', '45'])} "
                f"in room {rng.randint(1, 400)}.",
                f"Version {rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)} "
                f"fixes {rng.randint(2, 40)} bugs.",
                f"{fake.first_name()} thinks the {fake.color_name().lower()} one looks better.",
            ]
        ),
    }
    x, y = [], []
    for label in LABELS:
        for _ in range(n_per_class):
            x.append(makers[label]())
            y.append(label)
    return x, y


def dataset(seed: int = 0, n_per_class: int = 500):
    from sklearn.model_selection import train_test_split

    x, y = _generate(n_per_class, seed)
    return train_test_split(np.array(x, dtype=object), np.array(y), test_size=0.25, random_state=seed, stratify=y)


def make_pipeline():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=(2, 4), lowercase=False, max_features=20000)),
            ("svm", CalibratedClassifierCV(LinearSVC(C=1.0), method="sigmoid", cv=3)),
        ]
    )


def metadata() -> VersionMetadata:
    return VersionMetadata(
        task="classifier",
        preprocessing=StringPreprocessing(input="text", instance_shape=[1]),
        postprocessing=ClassifierPostprocessing(scores="probabilities", apply_softmax=False),
        labels=LABELS,
        description="Sensitive-information flagger: char 2-4-gram TF-IDF + calibrated LinearSVC (skl2onnx)",
        tags={"example": "pii"},
    )


def build(work: Path, target: str = "arm64", progress=None):
    from modelbay.convert.pipeline import prepare

    xtr, xte, ytr, yte = dataset()
    pipe = make_pipeline().fit(list(xtr), ytr)
    if list(pipe.classes_) != sorted(LABELS):
        raise AssertionError(f"unexpected classes {pipe.classes_}")
    meta = metadata()
    # skl2onnx orders probability columns like classes_ (sorted)
    meta.labels = [str(c) for c in pipe.classes_]
    evals = Dataset([{"text": xte[i : i + 150].reshape(-1, 1)} for i in range(0, len(xte), 150)], labels=yte)
    # TF-IDF and the linear classifier are ai.onnx.ml ops onnxruntime does not
    # quantize: "auto" finds nothing to do and publishes fp32, saying why.
    return prepare(
        pipe,
        name="pii",
        workdir=work,
        input_spec="text:string:[batch,1]",
        quantize_mode="auto",
        eval_data=evals,
        metadata=meta,
        target=target,
        progress=progress,
    )


def bench_feed() -> dict[str, np.ndarray]:
    return {"text": dataset(n_per_class=20)[1][:32].reshape(-1, 1)}
