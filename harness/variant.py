"""What a migration compares: which QEMU, and whether its balloon offers
free page hints.  The label is what tables, result files and
--variants name."""

from typing import NamedTuple


class Variant(NamedTuple):
    label: str
    qemu: str        # a key of harness.vm.QEMU: "ours", "stock", "debian"
    hints: bool
    # The ablation's (bench/ablation/): QEMU_FPH_ABLATE for both QEMUs,
    # and migration parameters
    ablate: str = ""
    params: tuple = ()


VARIANTS = {v.label: v for v in (
    Variant("no hints", "ours", False),
    Variant("upstream hints", "stock", True),
    Variant("our hints", "ours", True),
    # Only for the compatibility tests
    Variant("debian no hints", "debian", False),
    Variant("debian hints", "debian", True),
)}
BENCH_VARIANTS = ("no hints", "upstream hints", "our hints")

# The series with one mechanism switched off (make ablation): the
# destination's zero page skip (patch 2), the wait before the bulk round
# (7, with everything that acts in it), zero pages first while it waits
# and the wait's two early ends (13), rounds only while they pay (14).
ABLATION = (
    Variant("ours - dest zero skip", "ablate", True, "dest-zero"),
    Variant("ours - wait", "ours", True,
            params=(("free-page-hint-wait", 0),)),
    Variant("ours - zero first", "ablate", True, "zero-first"),
    Variant("ours - futility end", "ablate", True, "futility"),
    Variant("ours - link-rate end", "ablate", True, "link-rate"),
    Variant("ours - paying rounds", "ablate", True, "pay"),
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
