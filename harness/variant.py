"""What a migration compares: which QEMU, and whether its balloon offers
free page hints.  The label is what tables, result files and
--variants name."""

from typing import NamedTuple


class Variant(NamedTuple):
    label: str
    qemu: str        # a key of harness.vm.QEMU: "ours", "stock", "debian"
    hints: bool
    # The ablation's (bench/ablation/): QEMU_FPH_ABLATE for both QEMUs,
    # migration parameters, and the variant it is compared with
    ablate: str = ""
    params: tuple = ()
    against: str = ""


VARIANTS = {v.label: v for v in (
    Variant("no hints", "ours", False),
    Variant("upstream hints", "stock", True),
    Variant("our hints", "ours", True),
    # Only for the compatibility tests
    Variant("debian no hints", "debian", False),
    Variant("debian hints", "debian", True),
)}
BENCH_VARIANTS = ("no hints", "upstream hints", "our hints")

# What each mechanism of the series buys (make ablation): the
# destination's zero page skip (patch 2) switched off; the wait before the
# bulk round (7, opt-in) switched on, and with it on, zero pages first and
# the wait's early end when hints spare nothing (13) switched off.
WAIT = (("free-page-hint-wait", 1000),)
ABLATION = (
    Variant("ours - dest zero skip", "ablate", True, "dest-zero",
            against="our hints"),
    Variant("ours + wait", "ours", True, params=WAIT, against="our hints"),
    Variant("ours + wait - zero first", "ablate", True, "zero-first",
            params=WAIT, against="ours + wait"),
    Variant("ours + wait - futility end", "ablate", True, "futility",
            params=WAIT, against="ours + wait"),
)
VARIANTS.update((v.label, v) for v in ABLATION)
ABLATION_VARIANTS = (("no hints", "upstream hints", "our hints")
                     + tuple(v.label for v in ABLATION))


def lookup(v):
    """The Variant @v names (or @v itself); ValueError names the known ones."""
    if isinstance(v, Variant):
        return v
    try:
        return VARIANTS[v]
    except KeyError:
        raise ValueError(f"unknown variant '{v}': one of "
                         f"{', '.join(VARIANTS)}") from None
