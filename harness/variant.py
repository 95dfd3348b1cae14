"""What a migration compares: which QEMU, and whether its balloon offers
free page hints.  The label is what tables, result files and
--variants name."""

from typing import NamedTuple


class Variant(NamedTuple):
    label: str
    qemu: str        # a key of harness.vm.QEMU: "ours", "stock", "debian"
    hints: bool


VARIANTS = {v.label: v for v in (
    Variant("no hints", "ours", False),
    Variant("upstream hints", "stock", True),
    Variant("our hints", "ours", True),
    # Only for the compatibility tests
    Variant("debian no hints", "debian", False),
    Variant("debian hints", "debian", True),
)}
BENCH_VARIANTS = ("no hints", "upstream hints", "our hints")


def lookup(v):
    """The Variant @v names (or @v itself); ValueError names the known ones."""
    if isinstance(v, Variant):
        return v
    try:
        return VARIANTS[v]
    except KeyError:
        raise ValueError(f"unknown variant '{v}': one of "
                         f"{', '.join(VARIANTS)}") from None
