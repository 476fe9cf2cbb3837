"""No code in mmdat/ reaches into mmengine's Runner: no private attribute of a runner is read or set."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import mmengine.runner.runner as runner_module

import mmdat

PACKAGE = Path(mmdat.__file__).resolve().parent


def runner_private_attributes() -> set[str]:
    """The ``self._x`` attributes of mmengine's ``Runner`` (its own state, not an API)."""
    return set(re.findall(r'self\.(_[A-Za-z]\w*)', inspect.getsource(runner_module.Runner)))


def is_runner_subclass(node: ast.ClassDef) -> bool:
    return any(isinstance(b, (ast.Name, ast.Attribute)) and ast.unparse(b).split('.')[-1] == 'Runner'
               for b in node.bases)


def private_runner_uses(source: str, private: set[str]) -> list[str]:
    """``<expr>._x`` with ``_x`` one of the Runner's own attributes, where ``<expr>`` is a runner:
    a name or attribute chain containing ``runner``, or ``self`` inside a ``Runner`` subclass."""
    found = []
    tree = ast.parse(source)
    runner_classes = {id(n) for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and is_runner_subclass(n)}

    def visit(node: ast.AST, in_runner_class: bool) -> None:
        if isinstance(node, ast.ClassDef):
            in_runner_class = id(node) in runner_classes
        if isinstance(node, ast.Attribute) and node.attr in private:
            owner = ast.unparse(node.value)
            if 'runner' in owner.lower() or (owner == 'self' and in_runner_class):
                found.append(f'line {node.lineno}: {ast.unparse(node)}')
        for child in ast.iter_child_nodes(node):
            visit(child, in_runner_class)

    visit(tree, False)
    return found


def test_the_check_finds_what_it_looks_for():
    private = runner_private_attributes()
    assert {'_test_loop', '_has_loaded', '_val_loop', '_train_loop'} <= private
    bad = ('class R(Runner):\n    def f(self):\n        self._has_loaded = True\n'
           'def g(runner, loop):\n    runner._test_loop = 1\n    return loop.runner._val_loop\n')
    assert private_runner_uses(bad, private) == ['line 3: self._has_loaded', 'line 5: runner._test_loop',
                                                 'line 6: loop.runner._val_loop']
    assert private_runner_uses('class L:\n    def f(self):\n        return self._test_loop\n', private) == []


def test_no_private_runner_attribute_in_mmdat():
    private = runner_private_attributes()
    uses = {str(path.relative_to(PACKAGE.parent)): found for path in sorted(PACKAGE.rglob('*.py'))
            if (found := private_runner_uses(path.read_text(), private))}
    assert uses == {}
