"""The package's layers, as docs/architecture.md draws them, are the ones the imports keep: every
import of a module (at module level or inside a function) points to a lower layer, never up or
sideways, so there is no import circle between subpackages or modules."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lerobot_amf"


def documented_layers() -> dict[str, int]:
    """``lerobot_amf.<unit>`` -> layer, read off the table under "## Layers"."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for row in re.findall(r"^\| (\d+) \| ([^|]+) \|", table, flags=re.M):
        for name in re.findall(r"`([\w_]+)/?`", row[1]):
            layers["lerobot_amf" if name == "lerobot_amf" else f"lerobot_amf.{name}"] = int(row[0])
    return layers


def unit_of(module: str) -> str:
    """The first-level unit a module belongs to (``lerobot_amf.selection.amf`` -> ``lerobot_amf.selection``)."""
    return ".".join(module.split(".")[:2])


def internal_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of the package by itself."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    out = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("lerobot_amf"):
                    out.append((name, target, node.lineno))
    return out


def test_every_unit_of_the_package_has_a_documented_layer():
    layers = documented_layers()
    units = {unit_of(m) for m, _, _ in internal_imports()} | {
        unit_of(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in PACKAGE.glob("*.py")} | {
        f"lerobot_amf.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    units.discard("lerobot_amf.__init__")
    assert units - set(layers) == set(), "modules missing from docs/architecture.md's layer table"
    assert set(layers) - units == set(), "docs/architecture.md names modules that do not exist"


def test_imports_only_point_down():
    layers = documented_layers()
    upward = []
    for importer, imported, line in internal_imports():
        a, b = unit_of(importer), unit_of(imported)
        if a != b and layers[b] >= layers[a]:
            upward.append(f"{importer}:{line} imports {imported} (layer {layers[a]} -> {layers[b]})")
    assert upward == []


def test_no_import_circle_between_modules():
    edges: dict[str, set[str]] = {}
    for importer, imported, _ in internal_imports():
        edges.setdefault(importer, set()).add(imported)

    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    circles = sorted(m for m in edges if reaches(m, m, set()))
    assert circles == []


def test_the_workaround_list_names_code_that_exists_and_the_lerobot_it_works_around():
    """docs/architecture.md's list of LeRobot workarounds matches the code: every ``module.name`` it
    gives is there, and the module it lives in names LeRobot 0.6.1 (what it works around)."""
    import importlib

    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## LeRobot 0.6.1 workarounds", 1)[1].split("\n## ", 1)[0].split("Removed with the port")[0]
    named = set(re.findall(r"`((?:data|trust|configs|envs\.libero|routing|quiet_logs)(?:\.\w+)*)`", section))
    where = {"routing": "isolation.routing"}
    assert len(named) >= 10, named
    for ref in sorted(named):
        head, _, attr = ref.partition(".") if not ref.startswith("envs.") else ("envs.libero", ".", ref[12:])
        module = importlib.import_module(f"lerobot_amf.{where.get(head, head)}")
        for part in filter(None, attr.split(".")):
            assert hasattr(module, part), f"docs/architecture.md names {ref}, which the code does not have"
            module = getattr(module, part)
    for path in ("data.py", "trust/processors.py", "configs.py", "envs/libero.py", "quiet_logs.py"):
        assert "0.6.1" in (PACKAGE / path).read_text(), f"{path} does not say which LeRobot it works around"
    assert "episode_aware_sampler" not in section and "memoise_help_sources" not in section


def test_peft_dropping_lerobots_transformers_is_not_said_on_every_run():
    """peft 0.22 warns at import about the Transformers LeRobot 0.6.1 requires; once lerobot_amf is
    imported, that warning (and no other) is ignored, under Python's own default filters."""
    import subprocess
    import sys

    code = ("import warnings, lerobot_amf\n"
            "warnings.warn('Support for Transformers < 5.6 is deprecated in PEFT and will be removed', FutureWarning)\n"
            "warnings.warn('another deprecation', FutureWarning)\n")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Support for Transformers" not in proc.stderr and "another deprecation" in proc.stderr
