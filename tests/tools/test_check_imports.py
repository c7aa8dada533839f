"""The import checker finds cycles and upward arrows in a real tree of files."""

from __future__ import annotations

from pathlib import Path

from tools.check_imports import build_graph, cycles, floor_arrows, upward_arrows


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "proxy/__init__.py": "",
            "proxy/a.py": "from proxy.b import thing\n",
            "proxy/b.py": "def thing():\n    from proxy import a\n",
            "proxy/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import proxy.a\n"
            ),
        },
    )
    graph = build_graph(tmp_path)
    assert cycles(graph) == [["proxy.a", "proxy.b"]]
    assert graph["proxy.c"] == set()  # annotations-only imports never run


def test_finds_an_upward_arrow_but_allows_composition_roots(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "predictor_onnx/__init__.py": "",
            "predictor_onnx/runtime.py": "from proxy.errors import Oops\n",
            "proxy/__init__.py": "",
            "proxy/errors.py": "",
            "proxy/cli.py": "import bench.run\n",
            "bench/__init__.py": "",
            "bench/run.py": "from proxy import errors\n",
        },
    )
    graph = build_graph(tmp_path)
    assert upward_arrows(graph) == ["upward import: predictor_onnx.runtime imports proxy.errors"]
    assert cycles(graph) == []


def test_inside_proxy_an_executor_may_not_import_the_http_floor(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "proxy/__init__.py": "",
            "proxy/wire/__init__.py": "",
            "proxy/wire/errors.py": "",
            "proxy/execute/__init__.py": "",
            "proxy/execute/route.py": "from proxy.wire import errors\nfrom proxy.http import sse\n",
            "proxy/http/__init__.py": "",
            "proxy/http/sse.py": "from proxy.execute import route\n",
            "proxy/decide/__init__.py": "",
            "proxy/decide/cache.py": "import proxy.learn.log\n",
            "proxy/learn/__init__.py": "",
            "proxy/learn/log.py": "",
            "proxy/cli.py": "import proxy.http.sse\n",
        },
    )
    graph = build_graph(tmp_path)
    assert floor_arrows(graph) == [
        "upward import inside proxy: proxy.decide.cache imports proxy.learn.log",
        "upward import inside proxy: proxy.execute.route imports proxy.http",
        "upward import inside proxy: proxy.execute.route imports proxy.http.sse",
    ]


def test_the_repository_is_clean() -> None:
    graph = build_graph(Path(__file__).resolve().parents[2])
    assert upward_arrows(graph) == []
    assert floor_arrows(graph) == []
    assert cycles(graph) == []
