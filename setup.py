"""Only for the routing .pth (issue 10): everything else is in pyproject.toml.

``rankwise-as-wandb.pth`` must land in site-packages itself (a .pth is read only there), which neither
``data_files`` (installed under sys.prefix, not site-packages) nor package data can do. A normal wheel gets
it from ``build_py`` (the file at the root of build_lib goes to the wheel's root, i.e. site-packages); an
editable (PEP 660) wheel holds only the editable finder, so ``editable_wheel`` adds the file to that wheel.
Both are tested in fresh venvs by tests/compat/test_compat_routing.py.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "rankwise-as-wandb.pth"
SOURCE = Path(__file__).resolve().parent / "rankwise" / PTH


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(SOURCE), str(Path(self.build_lib) / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


class _StrategyWithPth:
    """Wraps setuptools' editable strategy: the same wheel, plus the .pth at its root."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self.strategy.__exit__(*exc)

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH, SOURCE.read_bytes())


class EditableWheelWithPth(editable_wheel):
    def _select_strategy(self, name, tag, build_lib):
        return _StrategyWithPth(super()._select_strategy(name, tag, build_lib))


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
