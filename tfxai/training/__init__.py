"""Fine-tuning model families and ROAR: the trainable side of tfxai.

* :func:`finetune` trains one classifier per training-data fraction (Erdem 2021's reliability
  protocol: a new dense head on a backbone, SGD with momentum, cross-entropy, 15 epochs, learning rate
  1e-3 dropped to 1e-4 after epoch 7) and writes ``<out>/<model>_f<fraction>.keras`` plus
  ``<out>/models.csv`` with accuracy and macro-F1 on the test split.
* :func:`roar` runs RemOve And Retrain [Hooker, Erhan, Kindermans & Kim 2019, "A Benchmark for
  Interpretability Methods in Deep Neural Networks"; Loreth 2023]: rank pixels by |attribution|
  (channels summed), replace the top ``t`` share with the per-channel training mean in train and
  test data alike, retrain from scratch per seed and record the test accuracy, against a random
  ranking, in ``roar.csv``.

Data is an ImageNet-style folder with one sub-folder of images per class (classes in sorted order).
When the folder has ``train/`` and ``test/`` sub-folders they are the split; otherwise a seeded,
stratified 80/20 split is drawn. Images are RGB float32 0..255; every saved model takes that input
(its preprocessing is a layer inside the model), so ``tfxai.load_model(path)`` reads it back with
the default identity preprocessing.

``model="small_cnn"`` is a small CNN built in code (:func:`build_small_cnn`) for runs that must
finish in minutes on a CPU.

Layout: :mod:`~tfxai.training.data` (folders, splits), :mod:`~tfxai.training.classifier`
(models and the training loop), :mod:`~tfxai.training.family`, :mod:`~tfxai.training.retrain`.
"""

from __future__ import annotations

from tfxai.training.classifier import (
    OPTIMIZERS,
    SMALL_CNN,
    TrainConfig,
    build_classifier,
    build_small_cnn,
    check_model,
    evaluate_classifier,
    macro_f1,
    train_classifier,
)
from tfxai.training.data import (
    FolderData,
    load_image_folder,
    stratified_split,
    stratified_subset,
)
from tfxai.training.family import (
    MODELS_CSV_COLUMNS,
    check_fractions,
    finetune,
)
from tfxai.training.retrain import (
    RANDOM_METHOD,
    ROAR_CSV_COLUMNS,
    attribution_scores,
    pixel_scores,
    random_scores,
    roar,
    roar_mask,
    top_pixel_mask,
)

__all__ = ["FolderData", "stratified_split", "stratified_subset", "load_image_folder", "SMALL_CNN", "OPTIMIZERS", "build_small_cnn", "build_classifier", "TrainConfig", "train_classifier", "macro_f1", "evaluate_classifier", "check_model", "MODELS_CSV_COLUMNS", "check_fractions", "finetune", "RANDOM_METHOD", "ROAR_CSV_COLUMNS", "pixel_scores", "top_pixel_mask", "roar_mask", "attribution_scores", "random_scores", "roar"]
