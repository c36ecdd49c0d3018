"""The kernels' binding against their C sources: every entry point the Python side calls has, in
the C definition, the parameter names, order and C types of ``binding.SIGNATURES``; so a swapped
pair of arguments on either side fails here (and a call by a wrong name fails at once)."""

import re

import pytest

from harness.kernels import binding, fixedgemm
from harness.kernels.build import SOURCE_DIR, SOURCES

C_TYPES = {"int": "i", "long": "l", "float": "f"}


def c_definitions() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Exported (non-static) functions of the sources: name → (return type, [(param, kind)])."""
    found = {}
    pattern = re.compile(r"^(int|long|void) (fx_\w+)\(([^)]*)\) \{", re.M)
    for name in SOURCES:
        for ret, fn, params in pattern.findall((SOURCE_DIR / name).read_text()):
            args = []
            for p in " ".join(params.split()).split(","):
                p = p.strip()
                if p in ("", "void"):
                    continue
                kind, pname = p.rsplit(" ", 1)
                if pname.startswith("*") or "*" in kind:
                    args.append((pname.lstrip("*"), "p"))
                else:
                    args.append((pname, C_TYPES[kind.replace("const ", "")]))
            found[fn] = (ret, args)
    return found


KINDS = {binding._I: "i", binding._L: "l", binding._P: "p", binding._F: "f", None: "void"}


@pytest.mark.parametrize("name", sorted(binding.SIGNATURES))
def test_the_binding_names_the_c_parameters_in_order(name):
    defs = c_definitions()
    assert name in defs, f"{name} is bound but defined in no source"
    ret, params = defs[name]
    restype, want = binding.SIGNATURES[name]
    assert [(n, KINDS[t]) for n, t in want] == params
    assert {"int": "i", "long": "l", "void": "void"}[ret] == KINDS[restype]


def test_a_call_by_a_wrong_or_missing_name_fails_at_once():
    lib = fixedgemm.library()
    if lib is None:
        pytest.skip(fixedgemm.unavailable())
    with pytest.raises(TypeError, match=r"fx_packed_size: missing \['K'\], unknown \['k'\]"):
        lib.packed_size(N=3, k=4)
    assert lib.packed_size(N=3, K=4) > 0
