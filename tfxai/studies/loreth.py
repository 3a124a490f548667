"""``loreth2023-roar``: RemOve And Retrain on the synthetic shapes with ``small_cnn``.

[Loreth 2023, BSc thesis, JKU Linz: ROAR reconstructed; Hooker, Erhan, Kindermans & Kim 2019, "A
Benchmark for Interpretability Methods in Deep Neural Networks"]
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tfxai.studies.base import Study, StudyContext, StudyError, cell_row, finding_row

__all__ = ["Loreth2023Roar"]

METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "integrated_gradients": {"steps": 50, "baseline": "black", "rule": "riemann_right"},
    "guided_backprop": {},
}
QUICK_METHODS = ("saliency", "integrated_gradients")
#: the ROAR protocol (REFERENCE.md, metric roar) and the training of benchmarks/ROAR.md
FULL = {"fractions": (0.1, 0.3, 0.5, 0.7, 0.9), "seeds": 5, "n_per_class": 600, "size": 32,
        "epochs": 15, "optimizer": "adam", "lr": 1e-3, "lr_after": 1e-4, "lr_drop_epoch": 10,
        "batch_size": 32}
#: --quick: the same protocol on less data and fewer cells. 200 images per class and 10 epochs is
#: the least that trains small_cnn well above chance (clean test accuracy 0.90 against 0.35 with
#: 100 per class and 5 epochs, which learnt nothing); t = 0.9 is left out (the leakage regime)
QUICK = {**FULL, "fractions": (0.1, 0.5), "seeds": 2, "n_per_class": 200, "epochs": 10,
         "lr_drop_epoch": 7}
TABLE = "ROAR test accuracy (mean over seeds)"


class Loreth2023Roar(Study):
    name = "loreth2023-roar"
    title = "Loreth 2023: RemOve And Retrain (ROAR) against a random ranking"
    summary = "retrained accuracy after removing the top t of pixels by each method vs random"
    default_models: ClassVar[tuple[str, ...]] = ("small_cnn",)
    quick_models: ClassVar[tuple[str, ...]] = ("small_cnn",)

    def settings(self, quick: bool = False) -> dict[str, Any]:
        p = QUICK if quick else FULL
        return {
            "methods": {m: dict(v) for m, v in METHODS.items()
                        if not quick or m in QUICK_METHODS},
            "baseline": "random", "fill": "per-channel mean of the clean training images",
            "target": "predicted", "models": ["small_cnn"], "data": "tfxai synth",
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
        }

    def protocol(self) -> list[str]:
        f = FULL
        return [
            "data: the synthetic shapes (tfxai synth: circle/square/triangle, "
            f"{f['n_per_class']} per class, {f['size']}×{f['size']}, 20 % test), or --images: a "
            "folder of class folders (with train/ and test/, or split 80/20)",
            "model: small_cnn trained from scratch (Adam, lr 1e-3 then 1e-4 after epoch 10, "
            f"{f['epochs']} epochs, batch 32); a model trained on clean data explains every image",
            "methods: saliency, integrated gradients (50 steps, black baseline), guided backprop; "
            "pixels ranked by Σ_c |attribution|; a random ranking is the baseline",
            "for t in 10, 30, 50, 70, 90 %: the top t of pixels replaced by the per-channel mean "
            "of the clean training images in train and test; retrained from scratch with 5 seeds; "
            "test accuracy (t = 0: the clean data)",
            "criterion: a method is better than random when its accuracy drops more; the finding "
            "holds when the mean over t of (accuracy − random's accuracy) is below 0 (the area "
            "between the two ROAR curves), and each t is listed",
            f"--quick: {QUICK['n_per_class']} images per class, {QUICK['epochs']} epochs, "
            f"t in {', '.join(f'{t:g}' for t in QUICK['fractions'])}, {QUICK['seeds']} seeds, "
            f"{', '.join(QUICK_METHODS)}",
        ]

    def execute(self, ctx: StudyContext) -> None:
        from tfxai.data.synthetic import make_synthetic_dataset
        from tfxai.training import roar

        if ctx.models != ["small_cnn"] and len(ctx.models) != 1:
            raise StudyError("loreth2023-roar trains one model: give one --model (default "
                             "small_cnn)")
        p = QUICK if ctx.quick else FULL
        methods = self.methods(ctx.options)
        settings = {"model": ctx.models[0], "methods": list(methods),
                    **{k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
                    "images": str(ctx.options.images) if ctx.options.images else None,
                    "seed": ctx.options.seed}
        self._check_settings(ctx.out, settings)
        if ctx.options.images is not None:
            data_dir = Path(ctx.options.images)
            ctx.say(f"data: {data_dir} (--images)", "data")
        else:
            data_dir = ctx.out / "data"
            if not (data_dir / "labels.csv").is_file():
                make_synthetic_dataset(data_dir, n_per_class=p["n_per_class"], size=p["size"],
                                       seed=ctx.options.seed)
            ctx.say(f"data: the synthetic shapes written by tfxai synth to {data_dir} "
                    f"({p['n_per_class']} per class, {p['size']}×{p['size']}, seed "
                    f"{ctx.options.seed})", "data")
        ctx.say(f"roar: {ctx.models[0]} × {', '.join(methods)} + random, t = "
                f"{', '.join(f'{t:g}' for t in p['fractions'])}, {p['seeds']} seeds, "
                f"{p['epochs']} epochs")
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / "roar_settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True)
                                                    + "\n")
        table = roar(ctx.models[0], data_dir, methods=list(methods), fractions=p["fractions"],
                     seeds=p["seeds"], epochs=p["epochs"], out_dir=ctx.out, lr=p["lr"],
                     lr_after=p["lr_after"], lr_drop_epoch=p["lr_drop_epoch"],
                     batch_size=p["batch_size"], seed=ctx.options.seed, optimizer=p["optimizer"],
                     method_params={m: v for m, v in methods.items() if v},
                     progress=ctx.options.progress)
        ctx.echo(f"  roar.csv: {len(table)} rows")

    @staticmethod
    def _check_settings(out: Path, settings: dict[str, Any]) -> None:
        """roar.csv is keyed by method, fraction and seed only: a folder holding a ROAR run with
        other settings (data, epochs, model) would be resumed with the wrong rows."""
        path = out / "roar_settings.json"
        if not path.is_file():
            return
        try:
            before = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return
        keep = ("model", "n_per_class", "size", "epochs", "optimizer", "lr", "lr_after",
                "lr_drop_epoch", "batch_size", "images", "seed")
        changed = [k for k in keep if before.get(k) != settings.get(k)]
        if changed:
            raise StudyError(
                f"{out} holds a ROAR run with other settings ({', '.join(changed)}); its roar.csv "
                "would be resumed with rows that do not belong to this run: choose another --out")

    def rows(self, ctx: StudyContext) -> list[dict[str, Any]]:
        path = ctx.out / "roar.csv"
        pub = self.published()["findings"]["beats random"]
        model = ctx.models[0]
        if not path.is_file():
            return [finding_row(self.name, "beats random", pub, None, model, "no roar.csv")]
        table = pd.read_csv(path, dtype={"method": str})
        table["fraction"] = pd.to_numeric(table["fraction"], errors="coerce").round(6)
        fractions = sorted(f for f in table["fraction"].unique() if f > 0)
        random = table[table["method"] == "random"]
        out: list[dict[str, Any]] = []
        verdicts = {}
        for method in [*[m for m in METHODS if m in set(table["method"])], "random"]:
            part = table[table["method"] == method]
            beats = []
            for t in fractions:
                rows = part[part["fraction"] == t]
                base = random[random["fraction"] == t]["accuracy"].mean()
                published = ("baseline (random ranking)" if method == "random" else
                             "criterion: below random's accuracy at this t (REFERENCE.md gives no "
                             "Loreth numbers)")
                note = "n = seeds; the baseline is the random row at the same t"
                cell = cell_row(self.name, TABLE, method, f"t={t:g}", rows["accuracy"], published,
                                model, note, rows["seed"])
                out.append(cell)
                if method != "random" and not math.isnan(cell["ours"]):
                    beats.append((t, cell["ours"] < base, cell["ours"] - base))
            if method != "random":
                verdicts[method] = beats
        clean = table[table["fraction"] == 0]["accuracy"].mean()
        for method, beats in verdicts.items():
            if not beats:
                continue
            won = [f"{t:g}" for t, ok, _ in beats if ok]
            deltas = ", ".join(f"t={t:g}: {d:+.3f}" for t, _, d in beats)
            area = float(np.mean([d for _, _, d in beats]))
            evidence = (f"criterion: the mean over t of (accuracy − random's) is below 0 (the area "
                        f"between the ROAR curves): {area:+.3f}; {method} below random at "
                        f"{len(won)} of {len(beats)} fractions ({', '.join(won) or 'none'}); "
                        f"accuracy − random's: {deltas}; clean accuracy (t = 0) {clean:.3f}")
            out.append(finding_row(self.name, f"beats random: {method}", pub, area < 0, model,
                                   evidence))
        return out
