"""P4D recipes: the paper's settings and the released code's, as named configs.

`paper` (Sec. 4.2, A1.1, A1.3): D_4DP a 3-layer MLP (hidden 2560, GELU, Xavier weights, zero
biases), Smooth-L1 for L_LD and every L_ED term, depth compared in metres, lambda = depth 1.0,
flow 0.1, motion 0.05, camray 0.05, L = L_SFT + 0.5 L_LD + 0.1 L_ED.
`official` (REFERENCE.md §2): one Linear per teacher hook (normal init, std 0.1), MSE per token
for L_LD, depth compared as log(x + 1e-8), lambda = depth 0.1, flow 0.001, motion 0.01,
camray 1e-5, L = L_SFT + 0.01 L_LD + sum(lambda_m ED_m) (no separate beta).
Rearrange is the same in both: time 16 -> 8 keeping every other frame, bilinear resize to the
teacher grid. Every field can be overridden; the comparison rows of the paper's tables are
small edits of a recipe (`variant`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from r4d.errors import InputError
from r4d.model.config import FUSIONS

MODALITIES = ("depth", "flow", "motion", "camray")


@dataclass(frozen=True)
class P4DRecipe:
    name: str
    decoder: str  # "mlp" (paper) or "linear" (one Linear per hook, official)
    decoder_hidden: int  # the MLP's hidden width (paper 2560)
    decoder_init_std: float  # normal init of the per-hook Linear (official 0.1)
    time_reduce: str  # "stride" (every other frame) or "mean" (pairs averaged)
    ld_distance: str  # "smooth_l1" or "mse"
    ed_distance: str
    depth_space: str  # "metres" or "log"
    lambdas: dict[str, float]
    alpha: float  # weight of L_LD
    beta: float  # weight of L_ED
    modalities: tuple[str, ...] = MODALITIES
    fusion: str = "none"  # "none" (P4D), or the Tab. 4 baselines "concat" / "pe"

    @property
    def distils(self) -> bool:
        return self.alpha > 0 or (self.beta > 0 and bool(self.modalities))

    def to_dict(self) -> dict:
        return asdict(self)


PAPER = P4DRecipe(
    name="paper",
    decoder="mlp",
    decoder_hidden=2560,
    decoder_init_std=0.1,
    time_reduce="stride",
    ld_distance="smooth_l1",
    ed_distance="smooth_l1",
    depth_space="metres",
    lambdas={"depth": 1.0, "flow": 0.1, "motion": 0.05, "camray": 0.05},
    alpha=0.5,
    beta=0.1,
)
OFFICIAL = P4DRecipe(
    name="official",
    decoder="linear",
    decoder_hidden=0,
    decoder_init_std=0.1,
    time_reduce="stride",
    ld_distance="mse",
    ed_distance="smooth_l1",
    depth_space="log",
    lambdas={"depth": 0.1, "flow": 0.001, "motion": 0.01, "camray": 1e-5},
    alpha=0.01,
    beta=1.0,
)
RECIPES = {"paper": PAPER, "official": OFFICIAL}
# The values each named field may take.
CHOICES = {
    "decoder": ("mlp", "linear"),
    "time_reduce": ("stride", "mean"),
    "ld_distance": ("smooth_l1", "mse"),
    "ed_distance": ("smooth_l1", "mse"),
    "depth_space": ("metres", "log"),
    "fusion": FUSIONS,
}

# The comparison rows of Tab. 4 and Tab. 5 as edits of a base recipe.
VARIANTS = {
    "p4d": {},
    "4d-sft": {"alpha": 0.0, "beta": 0.0},
    "ld-only": {"beta": 0.0},
    "ed-only": {"alpha": 0.0},
    "ld+d": {"modalities": ("depth",)},
    "ld+d+f": {"modalities": ("depth", "flow")},
    "ld+d+f+m": {"modalities": ("depth", "flow", "motion")},
    "4d-concat": {"alpha": 0.0, "beta": 0.0, "fusion": "concat"},
    "4d-pe": {"alpha": 0.0, "beta": 0.0, "fusion": "pe"},
}


def recipe(name: str = "paper", variant: str = "p4d", **overrides) -> P4DRecipe:
    """A named recipe, a comparison row applied to it, then any field overridden."""
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}", field="recipe")
    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}", field="variant")
    base = replace(RECIPES[name], **VARIANTS[variant])
    unknown = sorted(set(overrides) - set(base.__dataclass_fields__))
    if unknown:
        raise InputError(f"unknown recipe field {unknown[0]!r}", field=unknown[0])
    if "modalities" in overrides:
        overrides["modalities"] = tuple(overrides["modalities"])
    out = replace(base, **overrides)
    bad = sorted(set(out.modalities) - set(MODALITIES))
    if bad:
        raise InputError(f"unknown modality {bad[0]!r}", field="modalities")
    for name, known in CHOICES.items():
        if getattr(out, name) not in known:
            value = getattr(out, name)
            raise InputError(f"unknown {name} {value!r}; known: {', '.join(known)}", field=name)
    unweighted = [m for m in out.modalities if m not in out.lambdas]
    if unweighted:
        raise InputError(f"no lambda for modality {unweighted[0]!r}", field="lambdas")
    return out


__all__ = ["OFFICIAL", "PAPER", "RECIPES", "VARIANTS", "P4DRecipe", "recipe"]
