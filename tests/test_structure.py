"""Structure checks a reviewer makes, on the source (``ast``), without importing it.

- the evaluation package has no import cycle, counting imports inside functions, and
  imports only heavy optional libraries inside functions;
- the layers import downwards only: ``textmask`` <- ``omniad_core`` <- ``omniad_train``
  <- ``benchmarks``;
- no module is over 600 lines (``textmask/_kernels.py`` excepted);
- every public name the evaluation package, its modules and the demo offered before
  they were split still imports from where it did.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("textmask", "omniad_core", "omniad_train", "benchmarks")
EVALUATION = "omniad_train.evaluation"
#: Imported inside functions on purpose: heavy or optional (and fcntl: POSIX only).
LAZY_OK = frozenset({"torch", "transformers", "PIL", "matplotlib", "tqdm", "fcntl"})
MAX_LINES = 600
SIZE_EXEMPT = frozenset({"textmask/_kernels.py"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a project module when it is one)
    line: int
    in_function: bool


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four layers."""
    out = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


class _Collector(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, known: set[str]) -> None:
        self.name, self.is_package, self.known = name, is_package, known
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(self.name, target, node.lineno, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = self.name.split(".")
            if not self.is_package:
                package.pop()
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([base] if base else [])])
        for alias in node.names:  # ``from pkg import submodule`` imports the submodule
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.known else base, node)


def collect_imports(root: Path = ROOT) -> list[Import]:
    """Every import statement of the four layers, at module level or in a function."""
    files = module_files(root)
    known = set(files)
    found: list[Import] = []
    for name, path in files.items():
        collector = _Collector(name, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found += collector.found
    return found


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` of the directed graph, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _layer(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in LAYERS else None


def _show(imports: list[Import]) -> str:
    return "\n".join(
        f"{i.source} -> {i.target} (line {i.line}{', in a function' if i.in_function else ''})"
        for i in imports
    )


def evaluation_cycle(root: Path = ROOT) -> list[str] | None:
    edges: dict[str, set[str]] = {}
    for i in collect_imports(root):
        if _inside(i.source, EVALUATION) and _inside(i.target, EVALUATION):
            edges.setdefault(i.source, set()).add(i.target)
    return find_cycle(edges)


def lazy_project_imports(root: Path = ROOT) -> list[Import]:
    """Function-level imports in the evaluation package and the plotting module that are
    not of a heavy optional library."""
    return [
        i
        for i in collect_imports(root)
        if i.in_function
        and (_inside(i.source, EVALUATION) or i.source == "omniad_train.plots")
        and i.target.split(".")[0] not in LAZY_OK
    ]


def upward_imports(root: Path = ROOT) -> list[Import]:
    """Imports from a lower layer to a higher one (function-level ones included)."""
    out = []
    for i in collect_imports(root):
        src, dst = _layer(i.source), _layer(i.target)
        if src and dst and LAYERS.index(dst) > LAYERS.index(src):
            out.append(i)
    return out


def long_modules(root: Path = ROOT) -> dict[str, int]:
    """``path: lines`` of every module over :data:`MAX_LINES` lines."""
    out = {}
    for path in module_files(root).values():
        rel = path.relative_to(root).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES and rel not in SIZE_EXEMPT:
            out[rel] = n
    return out


# --------------------------------------------------------------------------- the checker
def test_checker_sees_function_level_imports_and_cycles(tmp_path):
    pkg = tmp_path / "omniad_train" / "evaluation"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from omniad_train.evaluation import a\n")
    (pkg / "a.py").write_text("from omniad_train.evaluation.b import f\n")
    (pkg / "b.py").write_text(
        "import torch\n\ndef f():\n    from . import a\n    import tqdm\n    return a\n"
    )
    (tmp_path / "textmask").mkdir()
    (tmp_path / "textmask" / "x.py").write_text("def g():\n    import omniad_core.y\n")
    (tmp_path / "textmask" / "big.py").write_text("\n" * (MAX_LINES + 1))
    assert evaluation_cycle(tmp_path) == [
        "omniad_train.evaluation.a",
        "omniad_train.evaluation.b",
        "omniad_train.evaluation.a",
    ]
    assert [(i.source, i.target) for i in lazy_project_imports(tmp_path)] == [
        ("omniad_train.evaluation.b", "omniad_train.evaluation.a")
    ]
    assert [(i.source, i.target) for i in upward_imports(tmp_path)] == [
        ("textmask.x", "omniad_core.y")
    ]
    assert long_modules(tmp_path) == {"textmask/big.py": MAX_LINES + 1}


# --------------------------------------------------------------------------- evaluation
def test_evaluation_has_no_import_cycle():
    cycle = evaluation_cycle()
    assert cycle is None, "import cycle (function-level imports counted): " + " -> ".join(
        cycle or []
    )


def test_evaluation_imports_project_modules_at_module_level_only():
    lazy = lazy_project_imports()
    assert not lazy, "function-level imports of project or light modules:\n" + _show(lazy)


def test_argparse_lives_in_the_evaluation_cli_only():
    users = sorted(
        i.source
        for i in collect_imports()
        if _inside(i.source, EVALUATION) and i.target == "argparse"
    )
    assert users == [f"{EVALUATION}.cli"]


# --------------------------------------------------------------------------- layers
def _upward_from(layer: str) -> list[Import]:
    return [i for i in upward_imports() if _layer(i.source) == layer]


def test_textmask_imports_no_higher_layer():
    found = _upward_from("textmask")
    assert not found, _show(found)


def test_omniad_core_imports_nothing_from_omniad_train():
    found = _upward_from("omniad_core")
    assert not found, _show(found)


def test_omniad_train_imports_nothing_from_benchmarks():
    found = _upward_from("omniad_train")
    assert not found, _show(found)


# --------------------------------------------------------------------------- sizes
def test_no_module_over_600_lines():
    long = long_modules()
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# --------------------------------------------------------------------------- old names
OLD_NAMES = {
    EVALUATION: [
        "EvalInterrupted",
        "EvalResult",
        "IncompleteRunError",
        "Item",
        "LogRepair",
        "RunConfigError",
        "RunLog",
        "RunLogLockedError",
        "build_report",
        "check_line",
        "collect_detection_items",
        "collect_mmad_items",
        "compare_detection",
        "compare_mmad",
        "detection_meter",
        "line_validator",
        "load_paper_numbers",
        "merge_shards",
        "mmad_meter",
        "normalize_roots",
        "read_jsonl",
        "read_run",
        "resolve_shard",
        "run_detection",
        "run_mmad",
        "shard_slice",
        "shard_status",
    ],
    f"{EVALUATION}.cli": [
        "EXIT_INTERRUPTED",
        "EvalInterrupted",
        "EvalResult",
        "IncompleteRunError",
        "RunConfigError",
        "RunLogLockedError",
        "add_model_args",
        "add_run_args",
        "build_report",
        "common_kwargs",
        "finish_merge",
        "main",
        "merge_main",
        "run_cli",
    ],
    f"{EVALUATION}.common": [
        "EvalInterrupted",
        "EvalResult",
        "IncompleteRunError",
        "Item",
        "RESULTS_FILE",
        "RUN_FILE",
        "RUN_FORMAT",
        "RunConfigError",
        "SkipItem",
        "Task",
        "base_line",
        "build_report",
        "check_model",
        "done_path",
        "execute",
        "json_safe",
        "load_inspector",
        "merge_shards",
        "model_settings",
        "now",
        "package_versions",
        "parse_categories",
        "read_json",
        "read_run",
        "results_path",
        "select",
        "sha256_text",
        "shard_status",
        "wanted",
        "write_json",
    ],
    f"{EVALUATION}.detection": [
        "IMAGE_DECISIONS",
        "RootsLike",
        "build_parser",
        "collect_detection_items",
        "detection_meter",
        "detection_report",
        "image_prediction",
        "main",
        "normalize_roots",
        "run_detection",
    ],
    f"{EVALUATION}.mmad": [
        "build_parser",
        "collect_mmad_items",
        "main",
        "mmad_meter",
        "mmad_report",
        "reject_kind",
        "run_mmad",
    ],
    f"{EVALUATION}.report": [
        "PRPoint",
        "SKIP_LIST_LIMIT",
        "config_markdown",
        "draw_pr_points",
        "report_config",
        "skipped_summary",
        "timing",
        "write_report",
    ],
    "omniad_train.config": [
        "GRPO_COLUMNS",
        "MAX_RECIPE_BYTES",
        "SFT_COLUMNS",
        "OmniADScriptArguments",
        "RecipeError",
        "check_args",
        "check_dataset",
        "dataset_spec",
        "load_manifest",
        "parse_recipe",
        "read_recipe",
    ],
    "omniad_train.demo": [
        "DemoError",
        "DemoPlan",
        "DemoResult",
        "Step",
        "StepDecision",
        "claim_folder",
        "decide_steps",
        "demo_main",
        "demo_steps",
        "export_model",
        "is_demo_folder",
        "mean_detection_reward",
        "plot_curves",
        "run_demo",
        "run_steps",
    ],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_old_public_names_still_import(module):
    mod = importlib.import_module(module)
    missing = [n for n in OLD_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}"


def test_old_and_new_homes_hold_the_same_objects():
    from omniad_train import plots
    from omniad_train.evaluation import cli, common, detection, merge, mmad, report, runfiles

    assert mmad.main is cli.mmad_main and detection.main is cli.detection_main
    assert common.build_report is merge.build_report is cli.build_report
    assert common.write_json is runfiles.write_json
    assert report.draw_pr_points is plots.draw_pr_points and report.PRPoint is plots.PRPoint


def test_the_moved_tiny_builder_says_where_it_went():
    """omniad_core.tiny moved up to the training layer; the old path names the new one."""
    with pytest.raises(ImportError, match=r"from omniad_train\.tiny import TinyConfig"):
        from omniad_core.tiny import TinyConfig
    from omniad_train.tiny import TinyConfig, build_tiny_qwen2_5_vl

    assert callable(build_tiny_qwen2_5_vl) and TinyConfig.test().hidden_size > 0


def test_the_repository_cites_only_its_own_files():
    """Docs, code and reports point to docs/method.md and docs/format.md, never outside."""
    outside = ["METHOD" + ".md", "FORMAT" + ".md", "STACK" + ".md", "shared" + "/spec"]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for rel in tracked:
        path = ROOT / rel
        if path.suffix not in {".py", ".md", ".json", ".yaml", ".toml", ".txt", ".jinja"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{rel}: {name}" for name in outside if name in text]
    assert not found, found
