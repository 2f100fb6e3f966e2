from __future__ import annotations

import rag


def test_public_surface_is_sorted_and_importable() -> None:
    assert rag.__all__ == sorted(rag.__all__, key=lambda n: (not n.isupper(), n))
    for name in rag.__all__:
        assert getattr(rag, name) is not None


def test_library_does_not_import_the_gateway() -> None:
    import subprocess
    import sys

    code = "import sys, rag; print(any(m.split('.')[0] == 'gateway' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
