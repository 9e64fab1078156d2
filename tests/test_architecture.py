"""The package's shape: layered stages, no import cycle, no import side effects, a public API per stage."""

import importlib
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import tilesearch

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("core", "nn", "zoo", "data", "scoring", "search", "deploy", "demo", "cli")


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's strongly connected components of the module import graph (function-level imports included)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            components.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return components


def test_no_import_cycle_even_through_function_level_imports():
    graph = grimp.build_graph("tilesearch")
    assert len(graph.modules) > 40
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert cycles == []
    assert not [module for module in graph.modules if module in graph.find_modules_directly_imported_by(module)]


def test_the_layers_contract_holds():
    lint_imports = Path(sys.executable).with_name("lint-imports")  # import-linter, from the test extras
    result = subprocess.run([str(lint_imports)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_lower_stage_importing_a_higher_one_would_be_caught():
    graph = grimp.build_graph("tilesearch")
    graph.add_import(importer="tilesearch.core._cost", imported="tilesearch.search._runner")
    assert graph.find_illegal_dependencies_for_layers(layers=tuple(reversed(STAGES)), containers={"tilesearch"})


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_reading_and_costing_a_config_needs_no_torch(tmp_path):
    code = f"""
import sys
from tilesearch.core import SEBlock, buffer_report, config_document, load_config, save_config
blocks = [SEBlock("a.se", 1, "SEModule", 8, 14, 14, 100)]
path = save_config({str(tmp_path / "c.yaml")!r}, config_document("m", (224, 224), buffer_report(blocks, "7xW")))
print(load_config(path).tiles["a.se"], "torch" in sys.modules)
"""
    assert run_python(code) == "7xW False"


def test_importing_everything_changes_no_global_state():
    code = """
import logging, warnings
import matplotlib, optuna, timm
backend, filters, level = matplotlib.get_backend(), list(warnings.filters), optuna.logging.get_verbosity()
models = set(timm.list_models())
import tilesearch.cli, tilesearch.demo, tilesearch.deploy
tilesearch.search.RunSettings, tilesearch.scoring.Scorer
print(matplotlib.get_backend() == backend, warnings.filters == filters, optuna.logging.get_verbosity() == level,
      set(timm.list_models()) == models)
"""
    assert run_python(code) == "True True True True"


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_a_public_api_that_resolves(stage):
    package = importlib.import_module(f"tilesearch.{stage}")
    assert package.__doc__ and hasattr(package, "__all__")
    assert [name for name in package.__all__ if not hasattr(package, name)] == []


def test_the_root_package_re_exports_the_public_api_lazily():
    assert tilesearch.__all__ and all(getattr(tilesearch, name) is not None for name in tilesearch.__all__)
    assert set(tilesearch.__all__) <= set(dir(tilesearch))
    with pytest.raises(AttributeError):
        tilesearch.not_a_name  # noqa: B018


def test_user_errors_are_value_errors_and_keep_their_cause(tmp_path):
    from tilesearch.core import DataError, TilesearchError, load_config

    assert issubclass(TilesearchError, ValueError) and issubclass(DataError, TilesearchError)
    (tmp_path / "bad.yaml").write_text("schema: [unclosed")
    with pytest.raises(ValueError) as caught:
        load_config(tmp_path / "bad.yaml")
    assert isinstance(caught.value, DataError) and caught.value.__cause__ is not None
